"""The supervisor in-process: start, restart after kill -9, crash loop, hang, memory guard."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from swarm_supervisor.config import Config, SupervisorConfig
from swarm_supervisor.errors import ProcessError
from swarm_supervisor.paths import dirs
from swarm_supervisor.proxy.upstreams import UpstreamPool
from swarm_supervisor.swarm.daemon import wire
from swarm_supervisor.swarm.events import Event, InstanceEvent, StatusEvent
from swarm_supervisor.swarm.instance import State
from swarm_supervisor.swarm.runfile import RunFile
from swarm_supervisor.swarm.spec import InstanceConfig, SwarmSpec
from swarm_supervisor.swarm.supervisor import Supervisor
from swarm_supervisor.swarm.system import port_is_free
from testkit.llama import FAKE_LLAMA_SERVER

FAKE = FAKE_LLAMA_SERVER
REPO = Path(__file__).resolve().parent.parent


def make_spec(
    tmp: Path,
    binary: Path,
    model: Path,
    n: int,
    *extra: str,
    per_instance: dict[int, tuple[str, ...]] | None = None,
    **sup: Any,
) -> SwarmSpec:
    sup.setdefault("health_interval_s", 0.2)
    sup.setdefault("restart_backoff_s", 0.1)
    sup.setdefault("stop_grace_s", 3.0)
    sup.setdefault("ready_timeout_s", 60.0)
    insts = tuple(
        InstanceConfig(
            id=str(i),
            binary=binary,
            model_path=model,
            model_id="test:model",
            context=1024,
            threads=1,
            log_path=tmp / "logs" / f"instance-{i}.log",
            seed=1000 + i,
            extra_args=extra + (per_instance or {}).get(i, ()),
        )
        for i in range(n)
    )
    return SwarmSpec(
        name="t",
        model_id="test:model",
        model_path=str(model),
        context=1024,
        device="cpu",
        instances=insts,
        api_key="k",
        proxy_port=0,
        config=Config(supervisor=SupervisorConfig(**sup)),
        log_dir=str(tmp / "logs"),
    )


def fake_model(tmp: Path) -> Path:
    m = tmp / "fake.gguf"
    m.write_bytes(b"GGUF")
    return m


async def until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


Body = Callable[[Supervisor, UpstreamPool], Awaitable[None]]


def run_with(spec: SwarmSpec, body: Body, **kw: Any) -> Supervisor:
    """Start the swarm wired to a proxy pool as the daemon wires it, run the health loop in the
    background while ``body`` runs, then stop."""
    sup, pool = wire(spec, **kw)

    async def main() -> None:
        async with sup:
            await sup.start()
            loop = asyncio.ensure_future(sup.run())
            try:
                await body(sup, pool)
            finally:
                sup.request_stop("test over")
                await loop

    asyncio.run(main())
    return sup


def assert_all_gone(sup: Supervisor, ports: list[int]) -> None:
    for inst in sup.instances.values():
        assert inst.state in (State.STOPPED, State.FAILED)
        assert not inst.alive()
    for port in ports:
        assert port_is_free(port)


@pytest.mark.llama
def test_kill9_instance_is_restarted_and_requests_keep_succeeding(
    tmp_path: Path, llama_server_bin: Path, smollm2_gguf: Path, swarm_home: Path
) -> None:
    spec = make_spec(tmp_path, llama_server_bin, smollm2_gguf, 2)
    rf = RunFile("t", dirs())
    ports: list[int] = []

    async def body(sup: Supervisor, pool: UpstreamPool) -> None:
        assert [u.id for u in pool.ready()] == ["0", "1"]
        rec = rf.read()
        assert rec is not None and [i.state for i in rec.instances] == ["ready", "ready"]
        ports.extend(i.port for i in sup.instances.values() if i.port)
        victim = sup.instances["1"]
        old_pid = victim.pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)
        answered = 0
        async with httpx.AsyncClient(headers={"Authorization": "Bearer k"}) as client:
            deadline = time.monotonic() + 60
            while not (victim.state == State.READY and victim.pid != old_pid):
                assert time.monotonic() < deadline, "instance 1 was not restarted"
                # what the proxy does: send to a ready upstream
                up = pool.ready()[0]
                r = await client.post(
                    f"{up.url}/v1/chat/completions",
                    json={"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4},
                )
                assert r.status_code == 200
                answered += 1
        assert answered >= 1
        assert victim.restarts == 1
        assert pool.restarts == {"1": 1}  # what /metrics reports as swarm_instance_restarts
        assert [u.id for u in pool.ready()] == ["0", "1"]
        await until(
            lambda: [i.pid for i in getattr(rf.read(), "instances", ())][1:] == [victim.pid], 5, "run file"
        )

    sup = run_with(spec, body, runfile=rf)
    assert_all_gone(sup, ports)
    assert getattr(rf.read(), "status", None) == "stopped"


@pytest.mark.llama
def test_start_failure_stops_the_others_and_says_why(
    tmp_path: Path, llama_server_bin: Path, smollm2_gguf: Path
) -> None:
    spec = make_spec(tmp_path, llama_server_bin, smollm2_gguf, 2, per_instance={1: ("--bogus-flag",)})
    sup = Supervisor(spec)

    async def main() -> None:
        async with sup:
            await sup.start()

    with pytest.raises(ProcessError, match="bogus-flag"):
        asyncio.run(main())
    assert sup.status == "failed"
    assert_all_gone(sup, [i.port for i in sup.instances.values() if i.port])


def test_crash_loop_marks_failed_with_the_reason(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, FAKE, fake_model(tmp_path), 2, per_instance={0: ("--fake-die-after-s", "0.1")},
                     max_crashes=2, crash_window_s=60)  # fmt: skip

    async def body(sup: Supervisor, pool: UpstreamPool) -> None:
        await until(lambda: sup.instances["0"].state == State.FAILED, 30, "instance 0 failed")
        assert sup.instances["1"].state == State.READY
        assert [u.id for u in pool.ready()] == ["1"]
        snap = sup.snapshot()
        failed = snap["instances"][0]
        assert failed["state"] == "failed"
        assert "crashed 3 times" in failed["reason"]
        assert "exited with code 4" in failed["reason"]
        assert failed["restarts"] == 2

        # what /swarm/status serves: the status the supervisor published through the daemon's wiring
        def published() -> object:
            return (pool.status or {}).get("instances", [{}])[0].get("state")

        await until(lambda: published() == "failed", 5, "status")
        assert pool.status is not None and "internal_key" not in pool.status
        assert pool.states == {"0": "failed", "1": "ready"} and pool.restarts == {"0": 2}

    sup = run_with(spec, body)
    assert_all_gone(sup, [])


def test_hung_instance_is_restarted(tmp_path: Path) -> None:
    hang = ("--fake-hang-after-s", "0.3", "--fake-ignore-sigterm")
    spec = make_spec(tmp_path, FAKE, fake_model(tmp_path), 1, *hang, stop_grace_s=0.5)

    async def body(sup: Supervisor, pool: UpstreamPool) -> None:
        inst = sup.instances["0"]
        first = inst.pid
        await until(lambda: inst.restarts >= 1, 30, "a restart")
        assert "/health did not answer" in (inst.reason or "")
        await until(lambda: inst.state == State.READY, 30, "ready again")
        assert first is not None and first != inst.pid
        assert not psutil.pid_exists(first) or psutil.Process(first).status() == "zombie"

    run_with(spec, body, probe_timeout_s=0.3)


def test_memory_guard_stops_the_newest_but_never_the_last(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, FAKE, fake_model(tmp_path), 3, min_free_memory_bytes=1 << 30)
    free = {"bytes": 8 << 30}

    async def body(sup: Supervisor, pool: UpstreamPool) -> None:
        free["bytes"] = 100 << 20  # the machine runs short
        await until(lambda: sup.instances["2"].state == State.STOPPED, 20, "the newest stopped")
        assert "memory guard" in (sup.instances["2"].reason or "")
        assert sup.instances["0"].state == State.READY
        await until(lambda: sup.instances["1"].state == State.STOPPED, 20, "the next stopped")
        await asyncio.sleep(1.0)
        assert sup.instances["0"].state == State.READY  # the last one stays
        assert [u.id for u in pool.ready()] == ["0"]

    sup = run_with(spec, body, free_memory=lambda: free["bytes"], guard_cooldown_s=0.5)
    assert_all_gone(sup, [])


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="no process file descriptors here")
def test_an_instance_that_dies_leaves_the_pool_at_once_not_at_the_next_round(
    tmp_path: Path, swarm_home: Path
) -> None:
    """A round every 60 s: the exit itself wakes the loop, so the proxy stops sending to the dead
    instance (no window of connection errors) and the restart begins straight away."""
    spec = make_spec(tmp_path, FAKE, fake_model(tmp_path), 2, health_interval_s=60.0)

    async def body(sup: Supervisor, pool: UpstreamPool) -> None:
        await asyncio.sleep(0.2)  # the loop's first round is done; the next is 60 s away
        victim = sup.instances["1"]
        old_pid = victim.pid
        assert old_pid is not None and [u.id for u in pool.ready()] == ["0", "1"]
        os.kill(old_pid, signal.SIGKILL)
        await until(lambda: [u.id for u in pool.ready()] == ["0"], 10, "the dead instance to leave the pool")
        await until(lambda: victim.state == State.READY and victim.pid != old_pid, 20, "the restart")
        assert [u.id for u in pool.ready()] == ["0", "1"] and victim.restarts == 1

    started = time.monotonic()
    run_with(spec, body)
    assert time.monotonic() - started < 45  # nothing waited for a round of the loop


def test_the_supervisor_reports_each_change_as_an_event(tmp_path: Path) -> None:
    """What the daemon builds the proxy's pool from: one InstanceEvent per change, in order, and
    the status (no internal key) as StatusEvents; the supervisor itself holds no proxy object."""
    spec = make_spec(tmp_path, FAKE, fake_model(tmp_path), 1)
    events: list[Event] = []
    sup = Supervisor(spec, on_event=events.append)

    async def main() -> None:
        async with sup:
            await sup.start()
            await sup.tick()
            sup.request_stop("test over")
            await sup.run()

    asyncio.run(main())
    changes = [e for e in events if isinstance(e, InstanceEvent)]
    assert [e.state for e in changes] == ["starting", "ready", "stopping", "removed"]
    assert changes[1].ready and changes[1].url.startswith("http://127.0.0.1:") and changes[1].slots == 1
    statuses = [e.status for e in events if isinstance(e, StatusEvent)]
    assert [s["status"] for s in statuses][-1] == "stopped"
    assert any(s["instances"][0]["state"] == "ready" for s in statuses)
    assert all("internal_key" not in s for s in statuses)


def test_a_cpu_swarm_asks_nvml_nothing(tmp_path: Path) -> None:
    """The status of a CPU swarm has no VRAM to read: pynvml (30 ms to import, and the driver's
    library looked for) stays out of the supervisor process, which starts while the models load."""
    code = (
        "import sys, asyncio\n"
        "from pathlib import Path\n"
        "from tests.test_supervisor import make_spec\n"
        "from swarm_supervisor.swarm.supervisor import Supervisor\n"
        f"spec = make_spec(Path({str(tmp_path)!r}), Path('/bin/true'), Path('m.gguf'), 2)\n"
        "assert spec.device == 'cpu'\n"
        "snap = Supervisor(spec).snapshot()\n"
        "print(len(snap['instances']), 'pynvml' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "False"]

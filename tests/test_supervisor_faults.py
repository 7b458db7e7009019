"""The supervisor survives its own errors: a failing health round, a run file locked by another
process, a run file deleted or damaged behind its back. Fake llama-servers, real processes."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_supervisor import fake_model, make_spec, run_with, until

from swarm_supervisor.paths import dirs
from swarm_supervisor.proxy.upstreams import UpstreamPool
from swarm_supervisor.swarm.instance import State
from swarm_supervisor.swarm.runfile import RunFile
from swarm_supervisor.swarm.supervisor import DEGRADED_AFTER, Supervisor
from testkit.llama import FAKE_LLAMA_SERVER

FAKE = FAKE_LLAMA_SERVER


def _read(rf: RunFile) -> dict[str, object]:
    try:
        data = json.loads(rf.path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def test_a_failing_round_is_logged_and_a_persistent_one_marks_the_swarm_degraded(
    tmp_path: Path, swarm_home: Path
) -> None:
    spec = make_spec(tmp_path, FAKE, fake_model(tmp_path), 1, health_interval_s=0.1)
    rf = RunFile("t", dirs())
    broken = {"on": False}

    def free_memory() -> int:
        if broken["on"]:  # what 1,100 half-open connections under `ulimit -n 1024` did
            raise OSError(errno.EMFILE, "Too many open files")
        return 8 << 30

    async def body(sup: Supervisor, pool: UpstreamPool) -> None:
        broken["on"] = True
        await until(lambda: sup.failed_rounds >= DEGRADED_AFTER + 2, 10, "failed rounds")
        assert not sup.stopping
        assert sup.instances["0"].state == State.READY and sup.instances["0"].alive()
        await until(lambda: _read(rf).get("status") == "degraded", 10, "degraded in the run file")
        assert "Too many open files" in str(_read(rf).get("reason"))
        assert sup.snapshot()["status"] == "degraded"  # what `swarm ps` and /swarm/status show
        broken["on"] = False
        await until(lambda: _read(rf).get("status") == "up", 10, "up again")
        assert sup.failed_rounds == 0

    run_with(spec, body, runfile=rf, free_memory=free_memory)


HOLD_LOCK = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_a_run_file_locked_elsewhere_freezes_neither_the_loop_nor_the_swarm(
    tmp_path: Path, swarm_home: Path
) -> None:
    spec = make_spec(tmp_path, FAKE, fake_model(tmp_path), 2, health_interval_s=0.2)
    rf = RunFile("t", dirs())

    async def body(sup: Supervisor, pool: UpstreamPool) -> None:
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, str(rf.dirs.runs / "t.lock"), "6"], stdout=subprocess.PIPE
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
            victim = sup.instances["1"]
            old = victim.pid
            assert old is not None
            os.kill(old, signal.SIGKILL)  # a state change the run file must record
            worst = 0.0
            start = time.monotonic()
            while time.monotonic() - start < 4.0:  # the event loop keeps turning meanwhile
                t0 = time.monotonic()
                await asyncio.sleep(0.02)
                worst = max(worst, time.monotonic() - t0)
            assert worst < 3.0, f"the event loop froze for {worst:.1f} s"  # the lock is held 6 s
            assert not sup.stopping
            await until(lambda: victim.state == State.READY and victim.pid != old, 10, "restart")
        finally:
            holder.kill()
            holder.wait()
        pid = victim.pid
        await until(lambda: [i.get("pid") for i in _instances(rf)][1:] == [pid], 10, "run file caught up")

    run_with(spec, body, runfile=rf)


def _instances(rf: RunFile) -> list[dict[str, object]]:
    insts = _read(rf).get("instances")
    return [i for i in insts if isinstance(i, dict)] if isinstance(insts, list) else []


def test_a_deleted_or_damaged_run_file_is_written_again(tmp_path: Path, swarm_home: Path) -> None:
    spec = make_spec(tmp_path, FAKE, fake_model(tmp_path), 1, health_interval_s=0.1)
    rf = RunFile("t", dirs())

    async def body(sup: Supervisor, pool: UpstreamPool) -> None:
        assert _read(rf).get("status") == "up"
        rf.path.write_text("{")
        await until(lambda: _read(rf).get("status") == "up", 5, "the damaged file rewritten")
        rf.path.unlink()
        await until(lambda: _read(rf).get("status") == "up", 5, "the deleted file rewritten")

    run_with(spec, body, runfile=rf)

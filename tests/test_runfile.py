"""The run file: private and atomic, one live swarm per name, stale files cleaned, safe teardown."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import psutil
import pytest

from swarm_supervisor.errors import RunFileDamaged, SwarmStateError
from swarm_supervisor.paths import dirs
from swarm_supervisor.swarm.instance import Instance
from swarm_supervisor.swarm.record import InstanceRecord, ProcessRef, ProxyRecord, RunRecord
from swarm_supervisor.swarm.runfile import (
    RunFile,
    check_name,
    claim,
    is_stale,
    list_names,
    live_status,
    write_private,
)
from swarm_supervisor.swarm.spec import InstanceConfig
from swarm_supervisor.swarm.system import free_port, port_is_free
from swarm_supervisor.swarm.teardown import teardown
from testkit.llama import FAKE_LLAMA_SERVER

FAKE = FAKE_LLAMA_SERVER


def _me() -> dict[str, object]:
    return {"pid": os.getpid(), "create_time": psutil.Process().create_time()}


def _rec(**fields: object) -> RunRecord:
    """A run record from the JSON a run file holds."""
    return RunRecord.from_json(fields)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _spawn_fake(tmp: Path, *extra: str) -> Instance:
    model = tmp / "m.gguf"
    model.write_bytes(b"GGUF")
    inst = Instance(
        InstanceConfig(
            id="0",
            binary=FAKE,
            model_path=model,
            model_id="m",
            context=512,
            log_path=tmp / f"fake-{time.monotonic_ns()}.log",
            extra_args=extra,
        )
    )
    inst.spawn(free_port())
    return inst


def test_write_is_private_and_atomic(swarm_home: Path) -> None:
    rf = RunFile("default", dirs())
    with rf.lock():
        rf.write(RunRecord(name="default", status="up", supervisor=ProcessRef()))
    assert stat.S_IMODE(rf.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(dirs().state.stat().st_mode) == 0o700
    assert stat.S_IMODE(dirs().runs.stat().st_mode) == 0o700
    assert json.loads(rf.path.read_text())["name"] == "default"
    assert [p.name for p in dirs().runs.iterdir() if p.name.endswith(".tmp")] == []
    write_private(rf.key_path, "secret")
    assert stat.S_IMODE(rf.key_path.stat().st_mode) == 0o600


def test_names_are_checked(swarm_home: Path) -> None:
    assert check_name("gpu-0.big_one") == "gpu-0.big_one"
    for bad in ("", "../x", "a/b", "-x"):
        with pytest.raises(SwarmStateError):
            check_name(bad)


def test_claim_refuses_a_live_swarm_and_replaces_a_stale_one(swarm_home: Path) -> None:
    rf = RunFile("default", dirs())
    with rf.lock():
        claim(rf, _rec(supervisor=_me(), instances=[], base_url="http://127.0.0.1:8000/v1"))
        with pytest.raises(SwarmStateError, match="already running"):
            claim(rf, _rec(supervisor=_me(), instances=[]))
    # a supervisor that is gone and no instance alive: stale
    with rf.lock():
        rf.write(_rec(supervisor={"pid": _dead_pid(), "create_time": 1.0}, instances=[]))
    rec = rf.read()
    assert rec is not None and is_stale(rec)
    with rf.lock():
        claim(rf, _rec(supervisor=_me(), instances=[], base_url="http://127.0.0.1:8001/v1"))
    fresh = rf.read()
    assert fresh is not None and fresh.base_url == "http://127.0.0.1:8001/v1"
    assert list_names(dirs()) == ["default"]


def test_a_recycled_pid_counts_as_dead(swarm_home: Path) -> None:
    # our own pid, but recorded with another create_time: that process is not ours any more
    rec = _rec(supervisor={"pid": os.getpid(), "create_time": 12345.0}, instances=[])
    assert is_stale(rec)


def test_teardown_after_supervisor_sigkill_stops_instances(tmp_path: Path, swarm_home: Path) -> None:
    """The supervisor is gone (SIGKILL); its instances are found through the run file."""
    a = _spawn_fake(tmp_path)
    b = _spawn_fake(tmp_path, "--fake-ignore-sigterm")
    try:
        asyncio.run(_ready(a, b))
        rf = RunFile("default", dirs())
        rec = _rec(
            supervisor={"pid": _dead_pid(), "create_time": 1.0},
            proxy={"port": None},
            instances=[
                {"id": i.id, "pid": i.pid, "create_time": i.create_time, "port": i.port} for i in (a, b)
            ],
        )
        with rf.lock():
            rf.write(rec)
        assert not is_stale(rec)
        status = live_status(rec)
        assert [i["alive"] for i in status["instances"]] == [True, True]
        assert not status["supervisor_alive"]
        lines = teardown(rf, grace_s=1.0)
        assert len([line for line in lines if "stopped" in line]) == 2
        for inst in (a, b):
            assert inst.proc is not None
            inst.proc.wait(timeout=5)
            assert port_is_free(inst.port or 0)
        assert not rf.path.exists()
    finally:
        for inst in (a, b):
            if inst.alive() and inst.pid:
                os.killpg(inst.pid, 9)


def test_teardown_never_kills_a_process_that_reused_a_pid(tmp_path: Path, swarm_home: Path) -> None:
    other = _spawn_fake(tmp_path)
    try:
        rf = RunFile("default", dirs())
        with rf.lock():  # the run file recorded this pid, but for an older process
            rf.write(
                _rec(
                    supervisor={"pid": _dead_pid(), "create_time": 1.0},
                    instances=[{"id": "0", "pid": other.pid, "create_time": 1.0, "port": other.port}],
                )
            )
        teardown(rf, grace_s=1.0)
        assert other.alive()
        assert not rf.path.exists()
    finally:
        if other.pid:
            os.killpg(other.pid, 9)
            other.proc.wait() if other.proc else None


def test_teardown_without_a_run_file_says_so(swarm_home: Path) -> None:
    with pytest.raises(SwarmStateError, match="no swarm named 'x'"):
        teardown(RunFile("x", dirs()))


async def _ready(*insts: Instance) -> None:
    for inst in insts:
        await inst.wait_ready(20)


# --------------------------------------------------------------------------- the record's JSON


def _full() -> RunRecord:
    """A record with every field set to something other than its default."""
    inst = InstanceRecord(
        id="1", pid=4242, create_time=1.5, port=9001, state="ready", reason="r", restarts=2, gpu="0,1",
        slots=4, voters=2, log="/l/instance-1.log", started_at=10.0, ready_at=11.0, requests=7, errors=1,
        avg_latency_ms=12.5,
    )  # fmt: skip
    return RunRecord(
        name="second", status="up", supervisor=ProcessRef(99, 2.5), reason="why", base_url="http://h:1/v1",
        model="m:1b:q4", model_path="/m.gguf", device="gpu", context=8192, voters=4, ready_voters=3,
        fallback={"planned": "p:7b", "running": "m:1b:q4", "why": "offline", "fix": "swarm pull p:7b"},
        binary="/bin/llama-server", concurrency=2, requests=5,
        proxy=ProxyRecord("0.0.0.0", 8001, True, ("gpt-4o", "coder"), False), internal_key="sk-k",
        started_at=3.0, stop_grace_s=4.0, log_dir="/logs", instances=(inst,), version=1,
    )  # fmt: skip


def test_every_field_of_the_record_survives_the_run_file(swarm_home: Path) -> None:
    rec = _full()

    def unset(value: object, blank: object) -> list[str]:
        return [f.name for f in fields(blank) if getattr(value, f.name) == getattr(blank, f.name)]  # type: ignore[arg-type]

    # every field is covered (a new one: set it in _full); the version is the only one at its default
    assert unset(rec, RunRecord(name="default", status="starting", supervisor=ProcessRef())) == ["version"]
    assert unset(rec.instances[0], InstanceRecord(id="0")) == []
    assert unset(rec.proxy, ProxyRecord()) == []
    rf = RunFile("second", dirs())
    with rf.lock():
        rf.write(rec)
        assert rf.read() == rec
    on_disk = json.loads(rf.path.read_text())
    assert on_disk["supervisor_pid"] == 99 and on_disk["instances"][0]["pgid"] == 4242  # read flat by scripts


def test_an_odd_or_old_run_file_reads_leniently(swarm_home: Path) -> None:
    """Fields of the wrong type read as their defaults and junk instance entries are skipped: `swarm
    ps` shows what it can. A file written before `proxy.requires_api_key` was recorded says None, and
    `swarm opencode` then checks no --model-id against its aliases."""
    rf = RunFile("default", dirs())
    rf.ensure_dirs()
    odd = {
        "supervisor": _me(),
        "status": "up",
        "context": "8192",
        "fallback": "smollm2",
        "proxy": {"host": "127.0.0.1", "port": 8000, "aliases": "gpt-4o", "accept_any_model": "no"},
        "instances": ["junk", {"id": 0, "pid": True, "port": "x", "state": "ready"}],
    }
    rf.path.write_text(json.dumps(odd))
    rec = rf.read()
    assert rec is not None and rec.name == "default" and rec.context is None
    assert rec.proxy.requires_api_key is None and rec.proxy.port == 8000
    assert rec.fallback is None and rec.proxy.aliases == () and rec.proxy.accept_any_model is None
    assert [(i.id, i.pid, i.port, i.state) for i in rec.instances] == [("0", None, None, "ready")]
    assert not is_stale(rec)  # its supervisor (this process) is alive
    status = live_status(rec)
    assert status["supervisor_alive"] and status["instances"][0]["alive"] is False


def test_a_file_without_a_supervisor_object_is_damaged_and_kept(swarm_home: Path) -> None:
    rf = RunFile("default", dirs())
    rf.ensure_dirs()
    rf.path.write_text(json.dumps({"name": "default", "supervisor": 12, "instances": []}))
    with pytest.raises(RunFileDamaged, match="no `supervisor` object"):
        rf.read()
    assert rf.peek() is None and rf.path.exists()

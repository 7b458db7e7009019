"""The run file: private and atomic, one live swarm per name, stale files cleaned, safe teardown."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from swarm_supervisor.errors import SwarmStateError
from swarm_supervisor.paths import dirs
from swarm_supervisor.swarm.instance import Instance
from swarm_supervisor.swarm.runfile import (
    RunFile,
    check_name,
    claim,
    is_stale,
    list_names,
    live_status,
    teardown,
    write_private,
)
from swarm_supervisor.swarm.spec import InstanceConfig
from swarm_supervisor.swarm.system import free_port, port_is_free

FAKE = Path(__file__).parent / "fakes" / "fake_llama_server.py"


def _me() -> dict[str, object]:
    return {"pid": os.getpid(), "create_time": psutil.Process().create_time()}


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
        rf.write({"name": "default", "instances": []})
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
        claim(rf, {"supervisor": _me(), "instances": [], "base_url": "http://127.0.0.1:8000/v1"})
        with pytest.raises(SwarmStateError, match="already running"):
            claim(rf, {"supervisor": _me(), "instances": []})
    # a supervisor that is gone and no instance alive: stale
    with rf.lock():
        rf.write({"supervisor": {"pid": _dead_pid(), "create_time": 1.0}, "instances": []})
    rec = rf.read()
    assert rec is not None and is_stale(rec)
    with rf.lock():
        claim(rf, {"supervisor": _me(), "instances": [], "fresh": True})
    assert (rf.read() or {}).get("fresh") is True
    assert list_names(dirs()) == ["default"]


def test_a_recycled_pid_counts_as_dead(swarm_home: Path) -> None:
    # our own pid, but recorded with another create_time: that process is not ours any more
    rec = {"supervisor": {"pid": os.getpid(), "create_time": 12345.0}, "instances": []}
    assert is_stale(rec)


def test_teardown_after_supervisor_sigkill_stops_instances(tmp_path: Path, swarm_home: Path) -> None:
    """The supervisor is gone (SIGKILL); its instances are found through the run file."""
    a = _spawn_fake(tmp_path)
    b = _spawn_fake(tmp_path, "--fake-ignore-sigterm")
    try:
        asyncio.run(_ready(a, b))
        rf = RunFile("default", dirs())
        rec = {
            "supervisor": {"pid": _dead_pid(), "create_time": 1.0},
            "proxy": {"port": None},
            "instances": [
                {"id": i.id, "pid": i.pid, "create_time": i.create_time, "port": i.port} for i in (a, b)
            ],
        }
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
                {
                    "supervisor": {"pid": _dead_pid(), "create_time": 1.0},
                    "instances": [{"id": "0", "pid": other.pid, "create_time": 1.0, "port": other.port}],
                }
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
    import httpx

    async with httpx.AsyncClient() as client:
        for inst in insts:
            await inst.wait_ready(client, 20)

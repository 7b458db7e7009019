"""The supervisor process's start order (issue 17): ``swarm up`` starts it before its own imports
(it waits for the swarm's name: swarm/prestart.py); it spawns the instances before it imports the
proxy, so the imports overlap the models' loading; a proxy port that cannot be bound still fails
the start and leaves no instance running; a ``swarm up`` that fails leaves no waiting process.

What the background process had loaded when it spawned an instance is read by an audit hook
(``sys.addaudithook``: the ``subprocess.Popen`` event) installed through a ``sitecustomize``
module on ``PYTHONPATH``; it observes the real ``swarm up``, it changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from swarm_supervisor.errors import ProcessError
from swarm_supervisor.paths import dirs
from swarm_supervisor.swarm.launcher import start_detached, wait_until_up
from swarm_supervisor.swarm.prestart import WAIT_FLAG, Prestarted
from swarm_supervisor.swarm.runfile import RunFile, list_names
from swarm_supervisor.swarm.spec import SwarmSpec
from swarm_supervisor.swarm.teardown import teardown
from testkit.llama import FAKE_LLAMA_SERVER
from tests.test_supervisor import make_spec

REPO = Path(__file__).resolve().parent.parent

#: the proxy's own modules and what only the proxy brings (the supervisor's health checks use httpx
#: too, but only once the instances are spawned)
PROXY_MODULES = ("swarm_supervisor.proxy.app", "swarm_supervisor.proxy.server", "starlette", "aiohttp",
                 "uvicorn", "httpx", "jsonschema")  # fmt: skip

SITECUSTOMIZE = """
import json, os, sys

_OUT = os.environ.get("SWARM_TEST_SPAWN_LOG")
_WATCH = {watch!r}


def _hook(event, args):
    if event != "subprocess.Popen":
        return
    loaded = sorted(m for m in list(sys.modules) if m.split(".")[0] in _WATCH or m in _WATCH)
    argv = [str(a) for a in (args[1] if isinstance(args[1], (list, tuple)) else [args[1]])]
    with open(_OUT, "a", encoding="utf-8") as f:
        f.write(json.dumps({{"pid": os.getpid(), "argv": argv, "loaded": loaded}}) + "\\n")


if _OUT:
    sys.addaudithook(_hook)
"""


@pytest.fixture
def home(swarm_home: Path) -> Any:
    (swarm_home / "config").mkdir(parents=True)
    (swarm_home / "config" / "config.toml").write_text("[supervisor]\nstop_grace_s = 3.0\n")
    try:
        yield swarm_home
    finally:
        for name in list_names(dirs()):
            teardown(RunFile(name, dirs()), grace_s=2.0)


def _leftovers(home: Path) -> list[list[str]]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if str(home) in " ".join(cmd):
            out.append(cmd)
    return out


def swarm_up_observed(
    tmp_path: Path, *args: str, watch: tuple[str, ...] = PROXY_MODULES
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """``swarm up ARGS`` with the audit hook: its result, and every process start of the CLI and
    of its supervisor process (pid of the starter, argv, the ``watch`` modules it had loaded)."""
    hooks = tmp_path / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE.format(watch=watch), encoding="utf-8")
    spawn_log = tmp_path / "spawns.jsonl"
    spawn_log.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(hooks), str(REPO), os.environ.get("PYTHONPATH", "")]),
        "SWARM_TEST_SPAWN_LOG": str(spawn_log),
    }
    up = subprocess.run(
        [sys.executable, "-m", "swarm_supervisor", "up", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    lines = spawn_log.read_text(encoding="utf-8").splitlines() if spawn_log.exists() else []
    return up, [json.loads(line) for line in lines]


def waiting_supervisors(home: Path) -> list[int]:
    """Prestarted supervisor processes of this SWARM_HOME still alive."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        if WAIT_FLAG in (p.info["cmdline"] or []):
            try:
                if p.environ().get("SWARM_HOME") == str(home) and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p.pid)
            except psutil.Error:
                pass
    return out


@pytest.mark.llama
def test_the_instances_are_spawned_before_the_proxy_is_imported(
    home: Path, tmp_path: Path, smollm2_gguf: Path
) -> None:
    # the fake server takes llama-server's argv; the model file is only read for the plan
    up, events = swarm_up_observed(
        tmp_path, "--model", str(smollm2_gguf), "--instances", "2", "--topology", "processes",
        "--llama-server", str(FAKE_LLAMA_SERVER), "--port", "0",
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    rec = RunFile("default", dirs()).read()
    assert rec is not None and rec.supervisor is not None and rec.base_url
    # the same process then serves the proxy
    assert httpx.get(f"{rec.base_url}/models", timeout=10, trust_env=False).status_code == 200

    # the CLI started its supervisor first, waiting for the name, before it imported its own modules
    assert WAIT_FLAG in events[0]["argv"], events[0]
    spawns = [e for e in events if e["pid"] == rec.supervisor.pid and str(FAKE_LLAMA_SERVER) in e["argv"]]
    assert len(spawns) == 2, events  # both instances, by the supervisor process
    for e in spawns:
        early = sorted({m.split(".")[0] for m in e["loaded"]})
        assert not early, f"the supervisor imported {early} before it spawned an instance"


def _spec(home: Path, model: Path, proxy_port: int) -> SwarmSpec:
    """Two fake instances, as `swarm up` would hand them to the supervisor of swarm "default"."""
    spec = make_spec(home / "state" / "logs" / "default", FAKE_LLAMA_SERVER, model, 2)
    return dataclasses.replace(spec, name="default", proxy_host="127.0.0.1", proxy_port=proxy_port)


def test_a_proxy_port_taken_after_the_check_fails_the_start_and_stops_the_instances(
    home: Path, tmp_path: Path
) -> None:
    """`swarm up` checks the port first; another program can still take it before the supervisor
    binds it (here: before it starts). The instances, already spawned by then, are stopped again."""
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rf = RunFile("default", dirs())
        rf.ensure_dirs()
        spec = _spec(home, model, port)
        proc = start_detached(rf, spec)
        with pytest.raises(ProcessError) as err:
            wait_until_up(rf, proc, 60)
        assert proc.wait(timeout=30) == 1
    assert f"the proxy cannot listen on 127.0.0.1:{port}" in str(err.value)
    for inst in spec.instances:  # they were spawned (the proxy is bound after that) ...
        assert str(FAKE_LLAMA_SERVER) in inst.log_path.read_text(encoding="utf-8")
    assert _leftovers(home) == []  # ... and stopped again
    assert list_names(dirs()) == []  # the failed run file is removed by `swarm up`'s wait


def test_a_swarm_up_that_fails_leaves_no_waiting_supervisor(home: Path, tmp_path: Path) -> None:
    up, events = swarm_up_observed(tmp_path, "--model", str(tmp_path / "missing.gguf"), "--port", "0")
    assert up.returncode != 0 and "missing.gguf" in up.stderr
    assert any(WAIT_FLAG in e["argv"] for e in events)  # one was started ...
    deadline = time.monotonic() + 15
    while waiting_supervisors(home):  # ... and it exits on its own once `swarm up` has
        assert time.monotonic() < deadline, "a prestarted supervisor outlived `swarm up`"
        time.sleep(0.1)
    assert list_names(dirs()) == []
    assert not (dirs().state / "logs" / "default" / "supervisor.log").exists()  # without a trace


def test_a_prestarted_supervisor_that_died_is_replaced(home: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    pre = Prestarted.start()
    os.kill(pre.proc.pid, signal.SIGKILL)
    pre.proc.wait(timeout=10)
    rf = RunFile("default", dirs())
    rf.ensure_dirs()
    proc = start_detached(rf, _spec(home, model, 0), pre)
    assert proc is not pre.proc
    rec = wait_until_up(rf, proc, 60)
    assert rec.supervisor is not None and rec.supervisor.pid == proc.pid
    assert (
        rec.base_url and httpx.get(f"{rec.base_url}/models", timeout=10, trust_env=False).status_code == 200
    )

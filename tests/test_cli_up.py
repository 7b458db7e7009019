"""`swarm up / ps / down` end to end, as a user runs them: separate processes, real llama-server.

up -> ps shows all ready -> a chat request through the proxy is answered -> kill -9 one
instance -> it is restarted and ready again while requests keep succeeding -> SIGKILL the
supervisor -> `swarm down` still cleans up -> no process of this swarm is left, its ports are free.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from swarm_supervisor.errors import SwarmStateError
from swarm_supervisor.paths import dirs
from swarm_supervisor.swarm.runfile import RunFile, list_names
from swarm_supervisor.swarm.system import port_is_free
from swarm_supervisor.swarm.teardown import teardown
from testkit.llama import FAKE_LLAMA_SERVER

FAKE = FAKE_LLAMA_SERVER


def swarm(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm_supervisor", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def ps_json(name: str = "default") -> dict[str, Any]:
    r = swarm("ps", "--json", "--name", name)
    assert r.returncode == 0, r.stderr
    data: dict[str, Any] = json.loads(r.stdout)
    return data


@pytest.fixture
def home(swarm_home: Path) -> Iterator[Path]:
    """An isolated SWARM_HOME with a fast health loop; every swarm in it is torn down afterwards."""
    cfg = swarm_home / "config"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text(
        "[supervisor]\nhealth_interval_s = 0.5\nrestart_backoff_s = 0.2\nstop_grace_s = 5.0\n"
    )
    try:
        yield swarm_home
    finally:
        for name in list_names(dirs()):
            teardown(RunFile(name, dirs()), grace_s=2.0)


@contextlib.contextmanager
def configured_home(swarm_home: Path, supervisor: str, heal_s: float = 5.0) -> Iterator[Path]:
    """``swarm_home`` with these ``[supervisor]`` settings; afterwards every swarm in it is torn
    down (one whose run file is already gone is skipped)."""
    cfg = swarm_home / "config"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text(f"[supervisor]\n{supervisor}")
    try:
        yield swarm_home
    finally:
        for name in list_names(dirs()):
            with contextlib.suppress(SwarmStateError):
                teardown(RunFile(name, dirs()), grace_s=2.0, heal_s=heal_s)


def _pids_and_ports(status: dict[str, Any]) -> tuple[list[tuple[int, float]], list[int]]:
    procs = [(status["supervisor"]["pid"], status["supervisor"]["create_time"])]
    procs += [(i["pid"], i["create_time"]) for i in status["instances"]]
    ports = [i["port"] for i in status["instances"]] + [status["proxy"]["port"]]
    return procs, ports


def _alive(pid: int, ctime: float) -> bool:
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE and abs(p.create_time() - ctime) < 0.01
    except psutil.NoSuchProcess:
        return False


def _chat(client: httpx.Client, base_url: str) -> str:
    r = client.post(
        f"{base_url}/chat/completions",
        json={"messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 8},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    content: str = r.json()["choices"][0]["message"]["content"]
    return content


@pytest.mark.llama
@pytest.mark.slow
def test_up_ps_chat_kill9_restart_sigkill_supervisor_down(
    home: Path, llama_server_bin: Path, smollm2_gguf: Path
) -> None:
    r = swarm(
        "up",
        "--model",
        str(smollm2_gguf),
        "--instances",
        "2",
        "--topology",
        "processes",
        "--context",
        "2048",
        "--llama-server",
        str(llama_server_bin),
        "--port",
        "0",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Base URL" in r.stdout

    status = ps_json()
    assert status["status"] == "up"
    assert [i["state"] for i in status["instances"]] == ["ready", "ready"]
    assert all(i["restarts"] == 0 for i in status["instances"])
    assert isinstance(status["supervisor_pid"], int)
    assert all(i["rss_bytes"] for i in status["instances"])
    assert "internal_key" not in status
    base_url = status["base_url"]
    procs, ports = _pids_and_ports(status)

    # the instances answer only with the internal key: nobody but the proxy can use them
    inst = status["instances"][0]
    direct = httpx.post(
        f"http://127.0.0.1:{inst['port']}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
    )
    assert direct.status_code == 401

    with httpx.Client() as client:
        assert _chat(client, base_url)

        victim = status["instances"][1]
        os.kill(victim["pid"], signal.SIGKILL)
        answered = 0
        deadline = time.monotonic() + 90
        while True:
            _chat(client, base_url)  # the proxy still answers: the other instance votes
            answered += 1
            now = ps_json()["instances"][1]
            if now["state"] == "ready" and now["pid"] != victim["pid"]:
                break
            assert time.monotonic() < deadline, f"instance 1 not restarted: {now}"
        assert answered >= 1
        assert now["restarts"] == 1
        assert _chat(client, base_url)

    # a second `swarm up` of the same name refuses
    again = swarm("up", "--model", str(smollm2_gguf), "--llama-server", str(llama_server_bin), "--port", "0")
    assert again.returncode != 0
    assert "already running" in again.stderr

    status = ps_json()
    procs, ports = _pids_and_ports(status)
    os.kill(status["supervisor_pid"], signal.SIGKILL)
    time.sleep(0.5)
    orphaned = swarm("ps")
    assert orphaned.returncode == 0
    assert "supervisor" in orphaned.stderr and "is gone" in orphaned.stderr

    down = swarm("down")
    assert down.returncode == 0, down.stderr
    for pid, ctime in procs:
        assert not _alive(pid, ctime), f"pid {pid} survived swarm down"
    for port in ports:
        assert port_is_free(port), f"port {port} still listening"
    assert not RunFile("default", dirs()).path.exists()
    assert swarm("ps").returncode != 0


@pytest.mark.llama
def test_up_fails_fast_with_the_reason_and_leaves_nothing(
    home: Path, llama_server_bin: Path, smollm2_gguf: Path
) -> None:
    (home / "config" / "config.toml").write_text('[binary]\nextra_args = ["--no-such-flag"]\n')
    r = swarm("up", "--model", str(smollm2_gguf), "--llama-server", str(llama_server_bin), "--port", "0")
    assert r.returncode != 0
    assert "did not start" in r.stderr
    assert "no-such-flag" in r.stderr  # the tail of the instance's log says what was wrong
    assert list_names(dirs()) == []
    for p in psutil.process_iter(["cmdline"]):
        assert str(home) not in " ".join(p.info["cmdline"] or []), p.info["cmdline"]


@pytest.mark.llama
def test_named_swarms_run_beside_each_other(home: Path, smollm2_gguf: Path) -> None:
    # the fake server takes llama-server's argv; the model file is only read for the plan
    common = ["--model", str(smollm2_gguf), "--instances", "1", "--llama-server", str(FAKE), "--port", "0"]
    assert swarm("up", *common).returncode == 0
    second = swarm("up", "--name", "second", *common)
    assert second.returncode == 0, second.stderr
    assert sorted(list_names(dirs())) == ["default", "second"]
    assert ps_json("second")["instances"][0]["state"] == "ready"
    down = swarm("down", "--all")
    assert down.returncode == 0
    assert list_names(dirs()) == []


@pytest.mark.llama
def test_a_fallback_swarm_says_so_and_refuses_the_planned_name(home: Path, hub_unreachable: Path) -> None:
    r = swarm("up", "--instances", "1", "--llama-server", str(FAKE), "--port", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    status = ps_json()
    fb = status["fallback"]
    assert fb["running"] == status["model"] == "smollm2:135m:q4_1"
    assert fb["planned"].startswith("qwen2.5-coder:")  # what `swarm plan` picks for this machine
    assert fb["why"] == "the hub is unreachable"
    assert f"swarm pull --model {fb['planned'].rsplit(':', 1)[0]}" in fb["fix"]
    base_url = status["base_url"]
    models = httpx.get(f"{base_url}/models").json()["data"]
    assert [m["fallback"] for m in models] == [fb]
    asked = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    refused = httpx.post(f"{base_url}/chat/completions", json={**asked, "model": fb["planned"]})
    assert refused.status_code == 404
    assert f"is an embedded stand-in for {fb['planned']}" in refused.json()["error"]["message"]
    answered = httpx.post(f"{base_url}/chat/completions", json={**asked, "model": fb["running"]})
    assert answered.status_code == 200, answered.text
    assert answered.json()["swarm"]["fallback"] == fb
    assert answered.headers["x-swarm-fallback"] == f"{fb['running']}; planned={fb['planned']}"
    assert swarm("down").returncode == 0

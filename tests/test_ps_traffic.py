"""`swarm ps` counts a request as soon as it is answered, not at the next health round.

A real `swarm up` (separate processes) of two fake llama-servers and a tiny real GGUF for the plan;
the health loop is set to a minute, so nothing but the request itself can bring the run file up to
date before `swarm ps` reads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarm_supervisor.errors import SwarmStateError
from swarm_supervisor.paths import dirs
from swarm_supervisor.swarm.daemon import TRAFFIC_SAVE_S
from swarm_supervisor.swarm.runfile import RunFile, list_names
from swarm_supervisor.swarm.teardown import teardown
from testkit.hub_server import tiny_gguf
from testkit.llama import FAKE_LLAMA_SERVER


def swarm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm_supervisor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def ps_json() -> dict[str, Any]:
    r = swarm("ps", "--json")
    assert r.returncode == 0, r.stderr
    data: dict[str, Any] = json.loads(r.stdout)
    return data


@pytest.fixture
def slow_health(swarm_home: Path) -> Iterator[Path]:
    """A SWARM_HOME whose health loop runs once a minute: the run file is not rewritten by it."""
    cfg = swarm_home / "config"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text("[supervisor]\nhealth_interval_s = 60\nstop_grace_s = 2.0\n")
    try:
        yield swarm_home
    finally:
        for name in list_names(dirs()):
            with contextlib.suppress(SwarmStateError):
                teardown(RunFile(name, dirs()), grace_s=2.0, heal_s=0.5)


def test_ps_counts_an_answered_request_at_once(slow_health: Path, tmp_path: Path) -> None:
    model = tiny_gguf(tmp_path / "tiny.gguf")
    r = swarm(
        "up",
        "--model",
        str(model),
        "--instances",
        "2",
        "--llama-server",
        str(FAKE_LLAMA_SERVER),
        "--port",
        "0",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    before = ps_json()
    assert before["requests"] == 0
    assert [i["requests"] for i in before["instances"]] == [0, 0]

    def chat(stream: bool = False) -> None:
        answer = httpx.post(
            f"{before['base_url']}/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}], "stream": stream},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text

    chat()
    after = ps_json()  # straight after the answer: the run file was brought up to date before it
    assert after["requests"] == 1
    assert [i["requests"] for i in after["instances"]] == [1, 1]
    assert all(i["avg_latency_ms"] is not None for i in after["instances"])

    chat(stream=True)  # two more at once: written together, a moment later (daemon.TRAFFIC_SAVE_S)
    chat()
    time.sleep(4 * TRAFFIC_SAVE_S)
    shown = swarm("ps")
    assert shown.returncode == 0, shown.stderr
    assert "3 requests" in shown.stdout
    assert [i["requests"] for i in ps_json()["instances"]] == [3, 3]

"""`swarm ps` counts a request as soon as it is answered, not at the next health round.

A real `swarm up` (separate processes) of two fake llama-servers and a tiny real GGUF for the plan;
the health loop is set to a minute, so nothing but the request itself can bring the run file up to
date before `swarm ps` reads it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from swarm_supervisor.swarm.daemon import TRAFFIC_SAVE_S
from testkit.hub_server import tiny_gguf
from testkit.llama import FAKE_LLAMA_SERVER
from tests.test_cli_up import configured_home, ps_json, swarm


@pytest.fixture
def slow_health(swarm_home: Path) -> Iterator[Path]:
    """A SWARM_HOME whose health loop runs once a minute: the run file is not rewritten by it."""
    with configured_home(swarm_home, "health_interval_s = 60\nstop_grace_s = 2.0\n", heal_s=0.5) as home:
        yield home


def test_ps_counts_an_answered_request_at_once(slow_health: Path, tmp_path: Path) -> None:
    model = tiny_gguf(tmp_path / "tiny.gguf")
    r = swarm(
        "up",
        "--model",
        str(model),
        "--instances",
        "2",
        "--topology",
        "processes",  # two processes, each counting its own requests
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

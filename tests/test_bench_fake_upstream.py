"""The overhead benchmark's fake upstream must answer the way the proxy asks its voters (streams),
or the benchmark measures errors: the proxy over it answers, plain and streamed."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from bench.loadgen import REQUEST
from testkit.llama.fast import ANSWER
from testkit.spawn import Child, spawn_proxy


@pytest.fixture
def upstream() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "testkit.llama.fast", "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the fake upstream did not start"
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_proxy_votes_over_the_fake_upstream(upstream: str) -> None:
    proxy: Child = spawn_proxy([upstream, upstream])
    try:
        r = httpx.post(proxy.url + "/v1/chat/completions", json=REQUEST, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == ANSWER["choices"][0]["message"]["content"]
        assert r.json()["swarm"]["votes"] == 2
        direct = httpx.post(upstream + "/v1/chat/completions", json=REQUEST, timeout=30)
        assert direct.json() == ANSWER  # what LiteLLM and the direct baseline get: the plain body
    finally:
        proxy.stop()

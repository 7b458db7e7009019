"""The fake llama-server's transports answer with the one surface: the process fake (what
``swarm up --llama-server`` runs, under the ``python3`` on PATH) and the in-process fake declare
their slots on ``/props``, stream ``n`` interleaved choices with a usage chunk each, and refuse
what llama-server refuses."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testkit.llama import FAKE_LLAMA_SERVER
from testkit.llama.inprocess import Behaviour, fake_upstreams

KEY = "k-test"
STREAM = {
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
    "n": 2,
    "stream_options": {"include_usage": True},
}


def events(text: str) -> list[dict[str, object]]:
    lines = [ln[len("data: ") :] for ln in text.splitlines() if ln.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(ln) for ln in lines[:-1]]


@pytest.fixture
def process_fake(tmp_path: Path) -> Iterator[str]:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [str(FAKE_LLAMA_SERVER), "-m", str(model), "--port", str(port), "--parallel", "3"]
    argv += ["--api-key-file", str(key_file), "-kvu", "--fake-load-s", "0"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)  # as the supervisor runs it: by path
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the process fake did not start"
            time.sleep(0.05)
        yield url
    finally:
        proc.kill()
        proc.wait(10)


def test_the_process_fake_speaks_the_surface(process_fake: str) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(process_fake + "/props").json()["total_slots"] == 3
    assert "llamacpp:prompt_tokens_total" in httpx.get(process_fake + "/metrics").text
    refused = httpx.post(process_fake + "/v1/chat/completions", json=STREAM)
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    r = httpx.post(process_fake + "/v1/chat/completions", json=STREAM, headers=auth)
    chunks = events(r.text)
    finished = [
        c["choices"][0]["index"] for c in chunks if c["choices"] and c["choices"][0].get("finish_reason")
    ]
    assert finished == [0, 1]
    assert sum(1 for c in chunks if "usage" in c) == 2
    text = "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in chunks
        if c["choices"] and c["choices"][0]["index"] == 1
    )
    assert text.startswith("hello from ")


def test_the_in_process_fake_declares_its_slots_and_honours_ignore_n() -> None:
    with fake_upstreams(Behaviour("x", slots=4), Behaviour("y", ignore_n=True)) as (many, one):
        assert httpx.get(many.url + "/props").json()["total_slots"] == 4
        assert httpx.get(many.url + "/v1/models").json()["data"][0]["id"]
        indices = {
            c["choices"][0]["index"]
            for c in events(httpx.post(one.url + "/v1/chat/completions", json=STREAM).text)
            if c["choices"]
        }
        assert indices == {0}
        assert many.record.bodies == [] and one.record.bodies[0]["n"] == 2


def test_an_unknown_fault_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown fault 'timeout'.*hang"):
        Behaviour(fault="timeout")

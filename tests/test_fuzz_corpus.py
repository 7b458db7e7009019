"""The hand-made cases fuzzers miss, against a live proxy (its own process) over fake upstreams.

tests/data/fuzz_corpus/bodies.json holds the bodies (not JSON, not an object, wrong types,
empty or odd ``messages``, huge and negative numbers, invalid UTF-8, deep nesting, ...), each with
the status it must get; here are the ones a file cannot hold: a wrong type in every typed field,
a 50 MB body, a request cut off mid-body, thousands of tiny requests at once. After each group
the proxy process must still be alive and answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from testkit.spawn import Child, spawn_fakes, spawn_proxy

CORPUS = json.loads((Path(__file__).parent / "data" / "fuzz_corpus" / "bodies.json").read_text())
CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}

#: one wrong value per typed field of ChatRequest / CompletionRequest
WRONG_TYPES: dict[str, list[Any]] = {
    "model": [5, ["m"], {"id": "m"}],
    "stream": ["true", 1, None.__class__.__name__],
    "stream_options": ["yes", 1, [True]],
    "n": ["2", 2.5, True, [2]],
    "seed": ["7", 7.5, {}],
    "temperature": ["hot", True, [0.1]],
    "max_tokens": ["5", 5.5, False, {}],
    "max_completion_tokens": ["5", -1, []],
    "swarm_strategy": [5, "majority", ["similarity"]],
    "swarm_stream_mode": [True, "slowest"],
    "messages": [{}, "hi", 5, [[]], [None]],
    "tools": ["bash", 5, {"type": "function"}, ["bash"]],
    "tool_choice": [3, ["auto"], True],
    "stop": [5, [5], {"a": 1}, ""],
    "logit_bias": [[1, 2], {"abc": "x"}, "x", {"5": 101}],
    "response_format": ["json", {"type": "yaml"}, {"type": "json_schema"}],
}


def assert_openai_error(r: httpx.Response, status: int | None = None) -> dict[str, Any]:
    assert r.status_code >= 400, r.text[:300]
    if status is not None:
        assert r.status_code == status, r.text[:300]
    body = r.json()
    assert isinstance(body, dict) and set(body) == {"error"}, r.text[:300]
    err: dict[str, Any] = body["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and "param" in err and "code" in err
    return err


def still_answers(proxy: Child) -> None:
    assert proxy.proc.poll() is None, "the proxy process died"
    r = httpx.post(f"{proxy.url}/v1/chat/completions", json=CHAT, timeout=60)
    assert r.status_code == 200, r.text
    assert httpx.get(f"{proxy.url}/health", timeout=10).status_code == 200


@pytest.fixture(scope="module")
def proxy() -> Iterator[Child]:
    fakes = spawn_fakes(3)
    try:
        child = spawn_proxy(fakes.urls, request_timeout_s=20.0, keepalive_s=1.0)
        try:
            yield child
            still_answers(child)
        finally:
            child.stop()
    finally:
        fakes.stop()


def _content(case: dict[str, Any]) -> bytes | None:
    if "json" in case:
        return json.dumps(case["json"]).encode()
    if "raw" in case:
        return str(case["raw"]).encode("utf-8", "surrogatepass")
    if "hex" in case:
        return bytes.fromhex(case["hex"].replace(" ", ""))
    if "raw_repeat" in case:
        head, left, n_left, right, n_right, tail = case["raw_repeat"]
        return (head + left * n_left + right * n_right + tail).encode()
    return None


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_corpus(proxy: Child, case: dict[str, Any]) -> None:
    method = case.get("method", "POST")
    path = case.get("path", "/v1/chat/completions")
    content = _content(case)
    headers = {"Content-Type": "application/json"} if content is not None else {}
    r = httpx.request(method, f"{proxy.url}{path}", content=content, headers=headers, timeout=60)
    expected = case["status"]
    if expected == "2xx|4xx":
        assert r.status_code < 500, (r.status_code, r.text[:300])
        if r.status_code >= 400:
            assert_openai_error(r)
    else:
        err = assert_openai_error(r, expected)
        if "param" in case:
            assert err["param"] == case["param"], err
    assert proxy.proc.poll() is None


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_a_wrong_type_in_every_field_is_a_400_naming_it(proxy: Child, path: str) -> None:
    base = CHAT if path.endswith("chat/completions") else {"prompt": "hi"}
    with httpx.Client(base_url=proxy.url, timeout=30) as client:
        for field, values in WRONG_TYPES.items():
            if path.endswith("/v1/completions") and field in {
                "messages",
                "tools",
                "tool_choice",
                "response_format",
            }:
                continue  # passed through untouched on /v1/completions
            if field == "max_completion_tokens" and path.endswith("/v1/completions"):
                continue
            for value in values:
                r = client.post(path, json={**base, field: value})
                err = assert_openai_error(r, 400)
                assert str(err["param"]).split(".")[0] == field, (field, value, err)
        for value in [5, None, {"text": "x"}, [None]]:
            if path.endswith("/v1/completions"):
                r = client.post(path, json={"prompt": value})
                assert_openai_error(r, 400)
    still_answers(proxy)


def test_a_50_mb_body_is_a_413(proxy: Child) -> None:
    big = b'{"messages": [{"role": "user", "content": "' + b"a" * (50 * 2**20) + b'"}]}'
    r = httpx.post(f"{proxy.url}/v1/chat/completions", content=big, timeout=60)
    assert_openai_error(r, 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the proxy counts as it reads
        for i in range(0, len(big), 2**20):
            yield big[i : i + 2**20]

    try:
        r = httpx.post(f"{proxy.url}/v1/chat/completions", content=chunks(), timeout=60)
        assert_openai_error(r, 413)
    except httpx.WriteError:
        pass  # the proxy answered 413 and closed before the whole body was sent: also a refusal
    still_answers(proxy)


def _raw(port: int, data: bytes, *, read: bool = True, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if not read:
            return b""
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def test_cut_off_and_malformed_http(proxy: Child) -> None:
    port = int(proxy.url.rsplit(":", 1)[1])
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    for _ in range(20):  # headers promise 1000 bytes, 10 arrive, the client closes
        _raw(port, head + b'{"message', read=False)
    # promised 1000, sent 10, then half-closed: the proxy must not answer 5xx or hang
    answer = _raw(port, head + b'{"message')
    assert not answer.startswith(b"HTTP/1.1 5"), answer[:200]
    for junk in (
        b"GARBAGE\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"\x00\xff" * 100,
    ):
        answer = _raw(port, junk)
        assert not answer.startswith(b"HTTP/1.1 5"), (junk, answer[:200])
    # a head over proxy.max_header_bytes (64 KiB) is refused without being buffered
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(OSError):  # the proxy answers and closes before it is all sent
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20))
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    time.sleep(0.5)
    still_answers(proxy)


def test_thousands_of_tiny_requests_at_once(proxy: Child) -> None:
    """3000 requests at once, half of them chats, each on its own connection. The client is aiohttp:
    httpx's pool spends seconds per request once a thousand connections are open (encode/httpx#3215)."""

    async def main() -> list[int]:
        connector = aiohttp.TCPConnector(limit=1000, force_close=True)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(proxy.url, connector=connector, timeout=timeout) as session:

            async def one(i: int) -> int:
                if i % 2:
                    async with session.get("/health") as r:
                        await r.read()
                        return r.status
                async with session.post("/v1/chat/completions", json=CHAT) as r:
                    await r.read()
                    return r.status

            return await asyncio.gather(*(one(i) for i in range(3000)))

    statuses = asyncio.run(main())
    assert statuses.count(200) == len(statuses), {s: statuses.count(s) for s in set(statuses)}
    still_answers(proxy)

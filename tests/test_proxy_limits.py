"""Clients that misbehave, against the proxy on a real socket: huge headers, too many connections,
heads and bodies that never finish, requests too big to fan out, and voters that hang, send an
endless SSE line or an answer nested too deep to vote on. Each gets a typed 4xx/5xx (or a vote
without the bad voter), and the proxy keeps answering."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from typing import Any

import httpx
import pytest

from swarm_supervisor.proxy.app import create_app
from swarm_supervisor.proxy.settings import ProxySettings
from swarm_supervisor.proxy.upstreams import Upstream, UpstreamPool
from testkit.llama.inprocess import Behaviour, fake_upstreams, served_client

pytestmark = pytest.mark.anyio

GOOD = "def add(a, b):\n    return a + b\n"
CHAT: dict[str, Any] = {"model": "swarm", "messages": [{"role": "user", "content": "add"}]}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _read_all(sock: socket.socket, timeout_s: float = 10.0) -> bytes:
    sock.settimeout(timeout_s)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return out


# --------------------------------------------------------------------------- the connection
# (raw sockets in a thread: the proxy serves in this test's event loop)


def _huge_header(url: str) -> bytes:
    sock = _connect(url)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
    try:
        for _ in range(200):  # up to 8 MB, but the proxy answers long before
            sock.sendall(b"a" * 40960)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    answered = _read_all(sock)
    sock.close()
    return answered


def _too_many(url: str, open_already: int) -> bytes:
    idle = [_connect(url) for _ in range(open_already)]
    time.sleep(0.3)
    extra = _connect(url)
    refused = _read_all(extra, 5)
    extra.close()
    for s in idle:
        s.close()
    time.sleep(0.3)
    return refused


def _trickle(url: str, first: bytes, byte: bytes) -> tuple[bytes, float]:
    """Send ``first``, then ``byte`` every 0.2 s until the proxy answers; (answer, seconds)."""
    sock = _connect(url)
    sock.sendall(first)
    start = time.monotonic()
    sock.settimeout(0.2)
    got = b""
    while time.monotonic() - start < 6 and not got:
        try:
            sock.sendall(byte)
            got = sock.recv(4096)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    took = time.monotonic() - start
    if got:
        got += _read_all(sock, 3)  # the rest of the answer (the proxy closes after it)
    sock.close()
    return got, took


def _idle(url: str) -> tuple[bytes, float]:
    sock = _connect(url)
    start = time.monotonic()
    got = _read_all(sock, 5)
    sock.close()
    return got, time.monotonic() - start


async def test_a_huge_header_is_a_431_and_nothing_is_buffered() -> None:
    with fake_upstreams(Behaviour(GOOD)) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with served_client(create_app(pool, ProxySettings(max_header_bytes=16 * 1024))) as client:
            answered = await asyncio.to_thread(_huge_header, str(client.base_url))
            assert answered.startswith(b"HTTP/1.1 431"), answered[:200]
            assert b"proxy.max_header_bytes" in answered
            r = await client.get("/health")
            assert r.status_code == 200
            big = await client.get("/health", headers={"X-Ok": "a" * 8000})  # under the limit: fine
            assert big.status_code == 200


async def test_connections_past_the_limit_get_a_503_and_the_rest_still_work() -> None:
    with fake_upstreams(Behaviour(GOOD)) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        settings = ProxySettings(max_connections=10, header_timeout_s=30)
        async with served_client(create_app(pool, settings)) as client:
            url = str(client.base_url)
            await client.get("/health")  # the test's own keep-alive connection is one of them
            refused = await asyncio.to_thread(_too_many, url, 9)
            assert refused.startswith(b"HTTP/1.1 503"), refused[:200]
            assert b"retry-after" in refused.lower() and b"too many open connections" in refused
            async with httpx.AsyncClient(base_url=url) as fresh:
                assert (await fresh.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_a_head_that_never_finishes_is_a_408_and_an_idle_connection_is_closed() -> None:
    with fake_upstreams(Behaviour(GOOD)) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with served_client(create_app(pool, ProxySettings(header_timeout_s=1.0))) as client:
            url = str(client.base_url)
            head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            got, took = await asyncio.to_thread(_trickle, url, head, b"X")  # slowloris: a byte at a time
            assert got.startswith(b"HTTP/1.1 408"), got[:200]
            assert took < 4.5  # header_timeout_s is 1 s; without it, never
            got, took = await asyncio.to_thread(_idle, url)
            assert got == b"" and took < 4.5  # an idle connection is closed without a word
            assert (await client.get("/health")).status_code == 200


async def test_a_body_that_never_ends_is_a_408() -> None:
    with fake_upstreams(Behaviour(GOOD)) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with served_client(create_app(pool, ProxySettings(body_timeout_s=1.0))) as client:
            head = (
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            got, _ = await asyncio.to_thread(_trickle, str(client.base_url), head, b"1\r\n \r\n")
            assert got.startswith(b"HTTP/1.1 408"), got[:300]
            assert b"proxy.body_timeout_s" in got
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
            assert len(fakes[0].record.bodies) == 1  # only the good one reached the instance


def _send_and_close(url: str, data: bytes) -> None:
    sock = _connect(url)
    sock.sendall(data)
    sock.close()


def _send_and_read(url: str, data: bytes) -> bytes:
    sock = _connect(url)
    sock.sendall(data)
    answered = _read_all(sock, 5)
    sock.close()
    return answered


async def test_a_client_gone_before_its_body_arrived_is_no_proxy_error(caplog: Any) -> None:
    """A client that hangs up halfway through its upload has gone: a 499 in the metrics like any
    client that left, not a 500 with two tracebacks in the supervisor log (one per such client)."""
    with fake_upstreams(Behaviour(GOOD)) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with served_client(create_app(pool)) as client:
            head = (
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"messages": ['
            )
            await asyncio.to_thread(_send_and_close, str(client.base_url), head)
            counted = 'swarm_requests_total{endpoint="/v1/chat/completions"'
            for _ in range(100):
                metrics = (await client.get("/metrics")).text
                if counted in metrics:
                    break
                await asyncio.sleep(0.05)
            assert counted + ',status="499"} 1.0' in metrics, metrics
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert "proxy error" not in caplog.text and "Traceback" not in caplog.text
    assert len(fakes[0].record.bodies) == 1  # only the whole request reached the instance


@pytest.mark.parametrize(
    "request_",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Swarm-Strategy: \x7f\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
        # a body longer than its Content-Length: a request, then bytes that are not one
        b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{"messages": []}',
    ],
)
async def test_a_request_that_is_not_http_is_a_400_in_the_openai_shape(request_: bytes, caplog: Any) -> None:
    """What the HTTP parser refuses gets the same JSON error body as every other 4xx, not
    uvicorn's plain-text "Invalid HTTP request received.", and nothing of the proxy fails."""
    with fake_upstreams(Behaviour(GOOD)) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with served_client(create_app(pool)) as client:
            answered = await asyncio.to_thread(_send_and_read, str(client.base_url), request_)
            assert (await client.get("/health")).status_code == 200
    head, _, body = answered.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answered[:300]
    assert b"content-type: application/json" in head.lower()
    err = json.loads(body)["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and "not a valid HTTP" in err["message"]
    assert "proxy error" not in caplog.text and "Traceback" not in caplog.text


# --------------------------------------------------------------------------- what is fanned out


async def test_what_is_too_big_to_fan_out_is_refused_before_any_instance_sees_it() -> None:
    with fake_upstreams(Behaviour(GOOD), Behaviour(GOOD)) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes], context=4096)
        async with served_client(create_app(pool, ProxySettings(max_messages=100))) as client:
            many = {"messages": [{"role": "user", "content": "x"}] * 101}
            r = await client.post("/v1/chat/completions", json=many)
            assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_messages", r.text
            long = {"messages": [{"role": "user", "content": "word " * 8000}]}  # 40 kB: over 4096 tokens
            r = await client.post("/v1/chat/completions", json=long)
            err = r.json()["error"]
            assert r.status_code == 400 and err["code"] == "context_length_exceeded", r.text
            assert "maximum context length is 4096 tokens" in err["message"]
            # what coding agents match to compact the session and retry (opencode 1.18.33's list)
            for phrase in (r"exceeds the available context size", r"maximum context length is \d+ tokens"):
                assert re.search(phrase, err["message"], re.I), phrase
            r = await client.post("/v1/completions", json={"prompt": list(range(5000))})
            assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
            r = await client.post("/v1/chat/completions", json={**CHAT, "n_probs": 100000})
            assert r.status_code == 400 and r.json()["error"]["param"] == "n_probs"
            for field in ("max_tokens", "max_completion_tokens"):  # past a 32-bit int: it would wrap
                r = await client.post("/v1/chat/completions", json={**CHAT, field: 2**31})
                assert r.status_code == 400 and r.json()["error"]["param"] == field, r.text
            assert [f.record.bodies for f in fakes] == [[], []]  # no instance saw any of them
            near = {"messages": [{"role": "user", "content": "word " * 2400}]}  # 12 kB: may fit
            assert (await client.post("/v1/chat/completions", json=near)).status_code == 200


# --------------------------------------------------------------------------- voters that misbehave


async def test_a_hung_voter_does_not_hold_the_vote_once_the_others_answered() -> None:
    with fake_upstreams(Behaviour(GOOD), Behaviour(GOOD, latency_s=0.2), Behaviour(fault="hang")) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        settings = ProxySettings(
            request_timeout_s=60, straggler_min_s=1.0, straggler_factor=3.0, quorum=False
        )
        async with served_client(create_app(pool, settings)) as client:
            start = time.monotonic()
            r = await client.post("/v1/chat/completions", json=CHAT)
            took = time.monotonic() - start
    assert r.status_code == 200, r.text
    assert took < 10, f"the hung voter held the request {took:.1f} s"  # request_timeout_s is 60
    voters = {v["id"]: v for v in r.json()["swarm"]["voters"]}
    assert "straggler" in voters["2.0"]["error"]
    assert r.json()["swarm"]["votes"] == 2


async def test_an_sse_line_too_long_to_read_is_an_upstream_failure() -> None:
    with fake_upstreams(Behaviour(GOOD), Behaviour(fault="huge_line")) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with served_client(create_app(pool, ProxySettings(quorum=False))) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 200, r.text
            voters = {v["id"]: v for v in r.json()["swarm"]["voters"]}
            assert "too long" in voters["1.0"]["error"]
            fakes[0].behaviour.fault = "huge_line"
            r = await client.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 502, r.text
            assert "too long" in r.json()["error"]["message"]


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("strategy", ["quality", "similarity"])
async def test_answers_nested_too_deep_to_parse_are_voted_on_not_a_500(strategy: str) -> None:
    block = Behaviour(f"Here:\n```json\n{DEEP}\n```\n")
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": ' + DEEP + "}"}}
    tools = Behaviour(tool_calls=[call])
    with fake_upstreams(block, block, tools, tools) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        settings = ProxySettings(strategy=strategy, quorum=False)  # type: ignore[arg-type]
        async with served_client(create_app(pool, settings)) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200, r.text[:500]


async def test_ps_counts_client_requests_not_voter_answers() -> None:
    with fake_upstreams(Behaviour(GOOD), Behaviour(GOOD)) as fakes:
        pool = UpstreamPool(model_id="swarm", context=4096)
        for i, f in enumerate(fakes):
            pool.set_ready(Upstream(str(i), f.url, slots=3), True)
        async with served_client(create_app(pool, ProxySettings(quorum=False))) as client:
            for _ in range(4):
                r = await client.post("/v1/chat/completions", json=CHAT)
                assert r.status_code == 200
                assert len(r.json()["swarm"]["voters"]) == 6
            status = (await client.get("/swarm/status")).json()
    assert status["requests"] == 4
    assert [i["requests"] for i in status["instances"]] == [4, 4]


async def test_instances_refusing_the_internal_key_is_a_502_not_the_clients_401() -> None:
    with fake_upstreams(Behaviour(fault="401"), Behaviour(fault="401")) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        async with served_client(create_app(pool)) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 502, r.text
    err = r.json()["error"]
    assert err["code"] == "internal_key_rejected" and "swarm down" in err["message"]

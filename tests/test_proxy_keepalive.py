"""The upstream client and connections the server closes: llama-server drops a keep-alive connection
after 5 s idle, and a request sent on it just then fails before any answer (found by the soak
benchmark: a lost request whenever the other instance was down). Such a request is sent once more;
a server that is not there at all is not retried."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from swarm_supervisor.proxy.client import KEEPALIVE_S, STALE_RETRIES, UpstreamClient, new_session
from swarm_supervisor.proxy.failures import UpstreamFailure, UpstreamUnreachable
from swarm_supervisor.proxy.upstreams import UpstreamPool
from swarm_supervisor.swarm.system import free_port

SSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)


@asynccontextmanager
async def server(drop_first: int) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback HTTP server that closes the first ``drop_first`` connections after reading the
    request (no answer), then answers with a short SSE stream; yields its URL and a counter."""
    seen = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen[0] += 1
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ),
            0,
        )
        await reader.readexactly(length)
        if seen[0] > drop_first:
            writer.write(SSE)
            await writer.drain()
        writer.close()

    port = free_port()
    srv = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}/v1/chat/completions", seen
    finally:
        srv.close()
        await srv.wait_closed()


async def _call(url: str) -> list[bytes]:
    async with new_session() as session:
        client = UpstreamClient(session, UpstreamPool(model_id="m", context=1024))
        async with client.stream(url, {"stream": True}) as payloads:
            return [p async for p in payloads]


def test_idle_connections_are_dropped_before_llama_server_drops_them() -> None:
    assert KEEPALIVE_S < 5.0  # cpp-httplib's CPPHTTPLIB_KEEPALIVE_TIMEOUT_SECOND


def test_a_connection_closed_without_an_answer_is_tried_once_more() -> None:
    async def main() -> None:
        async with server(drop_first=1) as (url, seen):
            payloads = await _call(url)
        assert payloads[-1] == b"[DONE]"
        assert json.loads(payloads[0])["choices"][0]["delta"]["content"] == "hi"
        assert seen[0] == 2

    asyncio.run(main())


def test_a_server_that_keeps_closing_is_a_connection_failure_after_the_retry() -> None:
    async def main() -> None:
        async with server(drop_first=100) as (url, seen):
            with pytest.raises(UpstreamFailure) as info:
                await _call(url)
        assert isinstance(info.value, UpstreamUnreachable)
        assert "ServerDisconnected" in str(info.value)
        assert seen[0] == STALE_RETRIES + 1

    asyncio.run(main())


def test_nothing_listening_fails_at_once_without_a_retry() -> None:
    async def main() -> None:
        with pytest.raises(UpstreamFailure) as info:
            await _call(f"http://127.0.0.1:{free_port()}/v1/chat/completions")
        assert isinstance(info.value, UpstreamUnreachable)
        assert "ClientConnectorError" in str(info.value)

    asyncio.run(main())

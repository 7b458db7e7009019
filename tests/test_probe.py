"""The supervisor's /health probe (swarm/probe.py) against small real servers on loopback ports:
the status code of a server that answers, None for one that refuses, stays silent or is not HTTP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from swarm_supervisor.swarm.probe import health_status

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _with_server(handler: Handler, timeout_s: float = 1.0) -> int | None:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        return await health_status("127.0.0.1", port, timeout_s)


def _answering(status: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        assert request.startswith(b"GET /health HTTP/1.1\r\n")
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    return handle


def test_the_status_code_of_an_answer() -> None:
    assert asyncio.run(_with_server(_answering(b"200 OK"))) == 200
    assert asyncio.run(_with_server(_answering(b"503 Service Unavailable"))) == 503


def test_nothing_listening_is_none() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        assert asyncio.run(health_status("127.0.0.1", port, 1.0)) is None


def test_a_silent_server_is_none_at_the_deadline() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    assert asyncio.run(_with_server(silent, timeout_s=0.2)) is None


def test_a_reply_that_is_not_http_is_none() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH\r\n")
        await writer.drain()
        writer.close()

    assert asyncio.run(_with_server(garbage)) is None

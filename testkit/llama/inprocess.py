"""The fake llama-server in-process: the surface (``surface.py``) as a Starlette app served by a
real uvicorn in a thread, for tests that change its :class:`Behaviour` between requests.

    with fake_upstreams(Behaviour("x = 1"), Behaviour(fault="hang")) as fakes:
        pool = UpstreamPool.from_urls([f.url for f in fakes])
        ...
        assert fakes[1].record.disconnects == 1

It misbehaves on demand (``Behaviour``: latency, HTTP errors, invalid JSON, a connection dropped
mid-answer, never answering, a 3 MiB event, ignoring ``n``) and records what it received and
every client disconnect it saw while still working. Also here: :func:`asgi_client` and
:func:`served_client`, httpx clients for the proxy app in-process or served by uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from testkit.llama import surface
from testkit.llama.surface import Behaviour

__all__ = ["Behaviour", "FakeUpstream", "Record", "asgi_client", "fake_upstreams", "served_client"]


@dataclass
class Record:
    """What one fake received: request bodies and headers, client disconnects it saw while still
    working, answers it finished."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    disconnects: int = 0  # clients that went away before the fake finished
    finished: int = 0


def make_app(behaviour: Behaviour, record: Record) -> Starlette:
    async def gone(request: Request) -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    async def wait_or_gone(request: Request, seconds: float) -> bool:
        """Sleep ``seconds``; True if the client disconnected first."""
        if seconds <= 0:
            return False
        try:
            await asyncio.wait_for(gone(request), seconds)
        except TimeoutError:
            return False
        record.disconnects += 1
        return True

    async def completions(request: Request) -> Response:
        body = await request.json()
        record.bodies.append(body)
        record.headers.append(dict(request.headers))
        b = behaviour
        if b.fault == "hang":
            await wait_or_gone(request, 3600)
            return Response(status_code=204)
        if await wait_or_gone(request, b.latency_s):
            return Response(status_code=204)
        failed = surface.error(b.fault)
        if failed is not None:
            return JSONResponse(failed[1], failed[0])
        if b.fault == "invalid_json":
            if body.get("stream"):
                return Response(b'data: {"choices": [\n\n', media_type="text/event-stream")
            return Response(b'{"choices": [', media_type="application/json")
        chat = request.url.path.endswith("/chat/completions")
        if b.fault == "huge_line" and body.get("stream"):
            return Response(surface.huge_line(), media_type="text/event-stream")
        if body.get("stream"):
            return StreamingResponse(_stream(b, record, chat, body), media_type="text/event-stream")
        if b.fault == "drop":
            return StreamingResponse(_drop(), media_type="application/json")
        record.finished += 1
        return JSONResponse(surface.completion(b, chat))

    async def health(request: Request) -> Response:
        if behaviour.ready:
            return JSONResponse({"status": "ok"})
        code, body = surface.loading()
        return JSONResponse(body, code)

    async def props(request: Request) -> Response:
        return JSONResponse(surface.props(behaviour))

    async def models(request: Request) -> Response:
        return JSONResponse(surface.models())

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(surface.METRICS_TEXT)

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/health", health),
            Route("/props", props),
            Route("/v1/models", models),
            Route("/metrics", metrics),
        ]
    )


async def _drop() -> AsyncIterator[bytes]:
    yield b'{"choices": [{"index": 0, '
    raise ConnectionResetError("the fake drops the connection")


async def _stream(b: Behaviour, record: Record, chat: bool, body: dict[str, Any]) -> AsyncIterator[bytes]:
    """The surface's stream, with the behaviour's pauses between steps and its "drop"."""
    planned = surface.stream(b, chat, body)
    for chunk in planned.head:
        yield surface.sse(chunk)
    for step_no, chunks in enumerate(planned.steps):
        if b.fault == "drop" and step_no >= 1:
            raise ConnectionResetError("the fake drops the connection mid-stream")
        if b.piece_delay_s:
            await asyncio.sleep(b.piece_delay_s)
        for chunk in chunks:
            yield surface.sse(chunk)
    for chunk in planned.tail:
        yield surface.sse(chunk)
    record.finished += 1
    yield surface.DONE


class ThreadedServer:
    """uvicorn serving ``app`` on a free 127.0.0.1 port in a thread of its own."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="critical", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.server.force_exit = True
        self.thread.join(10)
        self.sock.close()


@dataclass
class FakeUpstream:
    """One running fake llama-server: change ``behaviour``, read ``record``."""

    behaviour: Behaviour
    record: Record
    server: ThreadedServer

    @property
    def url(self) -> str:
        return self.server.url


@contextlib.contextmanager
def fake_upstreams(*behaviours: Behaviour) -> Iterator[list[FakeUpstream]]:
    """Start one fake per behaviour; stop them all afterwards."""
    fakes: list[FakeUpstream] = []
    try:
        for b in behaviours:
            rec = Record()
            fakes.append(FakeUpstream(b, rec, ThreadedServer(make_app(b, rec)).start()))
        yield fakes
    finally:
        for f in fakes:
            f.server.stop()


@contextlib.asynccontextmanager
async def asgi_client(app: Any) -> AsyncIterator[Any]:
    """An httpx client talking to ``app`` in-process (its lifespan runs around it)."""
    import httpx

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy", timeout=30) as client:
            yield client


@contextlib.asynccontextmanager
async def served_client(app: Any) -> AsyncIterator[Any]:
    """An httpx client talking to ``app`` served by a real uvicorn (ProxyServer) on a free port."""
    import httpx

    from swarm_supervisor.proxy.server import ProxyServer

    async with ProxyServer(app) as server, httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client

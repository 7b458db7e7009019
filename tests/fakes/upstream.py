"""A fake llama-server for the proxy's tests: a small Starlette app served by a real uvicorn.

It speaks enough of llama-server: ``POST /v1/chat/completions`` and ``/v1/completions`` (JSON
and SSE), ``GET /health``, ``GET /metrics``; and it misbehaves on demand (``Behaviour``): slow,
HTTP 500, invalid JSON, a connection dropped mid-answer, never answering. It records what it
received and every client disconnect it saw while still working.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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

METRICS_TEXT = """# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 42
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 0
"""


@dataclass
class Behaviour:
    """What the fake answers and how. Change it between requests from the test."""

    content: str = "hello from the fake"
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None  # None: "tool_calls" with tool calls, else "stop"
    latency_s: float = 0.0
    #: None | "500" | "reject" | "400" | "401" | "invalid_json" | "drop" | "hang" | "huge_line" (3 MiB SSE)
    fault: str | None = None
    ready: bool = True
    stream_pieces: int = 4  # content deltas per streamed answer
    piece_delay_s: float = 0.0
    #: what choice i of a streamed ``n > 1`` request says (i modulo the list); None: ``content``
    contents: list[str] | None = None
    ignore_n: bool = False  # answer one choice whatever ``n`` asks (an older llama-server)


@dataclass
class Record:
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    disconnects: int = 0  # clients that went away before the fake finished
    finished: int = 0


def _usage(b: Behaviour) -> dict[str, int]:
    completion = max(1, len(b.content.split()))
    return {"prompt_tokens": 10, "completion_tokens": completion, "total_tokens": 10 + completion}


def _message(b: Behaviour) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": None if b.tool_calls else b.content}
    if b.tool_calls:
        msg["tool_calls"] = b.tool_calls
    return msg


def _finish(b: Behaviour) -> str:
    return b.finish_reason or ("tool_calls" if b.tool_calls else "stop")


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
        if b.fault == "500":
            return JSONResponse({"error": {"code": 500, "message": "boom", "type": "server_error"}}, 500)
        if b.fault == "reject":  # how llama-server refuses messages it cannot parse: a 500
            message = "Failed to parse messages: Missing tool call type: {}"
            return JSONResponse({"error": {"code": 500, "message": message, "type": "server_error"}}, 500)
        if b.fault == "401":  # llama-server with another --api-key
            return JSONResponse(
                {"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}}, 401
            )
        if b.fault == "400":
            return JSONResponse(
                {
                    "error": {
                        "code": 400,
                        "message": "the prompt is too long",
                        "type": "exceed_context_size_error",
                    }
                },
                400,
            )
        if b.fault == "invalid_json":
            if body.get("stream"):
                return Response(b'data: {"choices": [\n\n', media_type="text/event-stream")
            return Response(b'{"choices": [', media_type="application/json")
        chat = request.url.path.endswith("/chat/completions")
        if b.fault == "huge_line" and body.get("stream"):
            huge = _sse({"choices": [{"index": 0, "delta": {"content": "x" * (3 << 20)}}]})
            return Response(huge + b"data: [DONE]\n\n", media_type="text/event-stream")
        if body.get("stream"):
            return StreamingResponse(_stream(b, record, chat, body), media_type="text/event-stream")
        if b.fault == "drop":
            return StreamingResponse(_drop(), media_type="application/json")
        record.finished += 1
        choice: dict[str, Any] = {"index": 0, "finish_reason": _finish(b)}
        if chat:
            choice["message"] = _message(b)
        else:
            choice["text"] = b.content
        return JSONResponse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": "/models/fake.gguf",
                "choices": [choice],
                "usage": _usage(b),
                "timings": {"predicted_n": 3},
            }
        )

    async def health(request: Request) -> Response:
        if behaviour.ready:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"error": {"code": 503, "message": "Loading model"}}, 503)

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(METRICS_TEXT)

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/health", health),
            Route("/metrics", metrics),
        ]
    )


async def _drop() -> AsyncIterator[bytes]:
    yield b'{"choices": [{"index": 0, '
    raise ConnectionResetError("the fake drops the connection")


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


async def _stream(b: Behaviour, record: Record, chat: bool, body: dict[str, Any]) -> AsyncIterator[bytes]:
    """SSE as llama-server streams it; ``n`` choices interleaved chunk by chunk, each with its index."""
    base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": "/models/fake.gguf"}
    n = 1 if b.ignore_n else max(1, int(body.get("n") or 1))
    texts = [(b.contents[i % len(b.contents)] if b.contents else b.content) for i in range(n)]
    if chat:
        base["object"] = "chat.completion.chunk"
        for i in range(n):
            yield _sse({**base, "choices": [{"index": i, "delta": {"role": "assistant", "content": None}}]})
    pieces: list[list[str]] = []
    for text in texts:
        step = max(1, len(text) // max(1, b.stream_pieces))
        pieces.append([text[j : j + step] for j in range(0, len(text), step)] if not b.tool_calls else [])
    for step_no in range(max(len(p) for p in pieces)):
        if b.fault == "drop" and step_no >= 1:
            raise ConnectionResetError("the fake drops the connection mid-stream")
        if b.piece_delay_s:
            await asyncio.sleep(b.piece_delay_s)
        for i, parts in enumerate(pieces):
            if step_no < len(parts):
                part = parts[step_no]
                delta: dict[str, Any] = {"content": part} if chat else {}
                choice = {"index": i, "delta": delta} if chat else {"index": i, "text": part}
                if body.get("logprobs"):  # one "token" per piece, as llama-server sends per token
                    choice["logprobs"] = {"content": [{"token": part, "logprob": -0.25, "top_logprobs": []}]}
                yield _sse({**base, "choices": [{**choice, "finish_reason": None}]})
    for i in range(n):
        for c, call in enumerate(b.tool_calls or []):
            yield _sse({**base, "choices": [{"index": i, "delta": {"tool_calls": [{"index": c, **call}]}}]})
        end = {"index": i, "delta": {}} if chat else {"index": i, "text": ""}
        yield _sse({**base, "choices": [{**end, "finish_reason": _finish(b)}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            # as llama-server does: each choice's usage (and timings) right after its finish
            yield _sse({**base, "choices": [], "usage": _usage(b), "timings": {"predicted_n": 3}})
    record.finished += 1
    yield b"data: [DONE]\n\n"


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

"""The fake llama-server at the least cost it can have, for the overhead benchmark: the surface's
answer (``surface.py``) rendered once into bytes and sent after a constant delay.

    python -m testkit.llama.fast --port 9101 [--delay-ms 0]

Every POST gets the same chat completion (as an SSE stream with the usage chunk when the request
asks for a stream, as the proxy's voters do), every GET ``{"status":"ok"}``; HTTP/1.1 keep-alive;
raw asyncio + httptools on uvloop, one process, any number of requests at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from testkit.llama import surface

#: the code answer: about the size of a small real one
CONTENT = (
    "```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```\n"
    "This adds the two numbers and returns the sum."
)
BEHAVIOUR = surface.Behaviour(CONTENT)
#: the whole answer every POST without ``"stream": true`` gets
ANSWER: dict[str, Any] = {**surface.completion(BEHAVIOUR, chat=True, model="fake"), "created": 1_700_000_000}


def _stream_bytes() -> bytes:
    body = {"stream": True, "stream_options": {"include_usage": True}}
    events = surface.stream(BEHAVIOUR, True, body, model="fake").events()
    return b"".join(surface.sse({**e, "created": ANSWER["created"]}) for e in events) + surface.DONE


def _response(body: bytes, content_type: str = "application/json") -> bytes:
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


class _Protocol(asyncio.Protocol):
    """One connection: httptools parses, each complete request gets the canned answer."""

    def __init__(self, delay_s: float, post: bytes, stream: bytes, get: bytes) -> None:
        import httptools

        self.delay_s = delay_s
        self.post = post
        self.stream = stream
        self.get = get
        self.body = bytearray()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Exception:
            if self.transport is not None:
                self.transport.close()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        if self.parser.get_method() == b"POST":
            wants_stream = b'"stream": true' in self.body or b'"stream":true' in self.body
            answer = self.stream if wants_stream else self.post
        else:
            answer = self.get
        self.body.clear()
        if self.delay_s > 0:
            asyncio.get_running_loop().call_later(self.delay_s, self._send, answer)
        else:
            self._send(answer)

    def _send(self, answer: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(port: int, delay_s: float) -> None:
    post = _response(json.dumps(ANSWER).encode())
    stream = _response(_stream_bytes(), "text/event-stream")
    get = _response(b'{"status":"ok"}')
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Protocol(delay_s, post, stream, get), "127.0.0.1", port, reuse_address=True, backlog=1024
    )
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m testkit.llama.fast")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(serve(args.port, args.delay_ms / 1000.0))


if __name__ == "__main__":
    main()

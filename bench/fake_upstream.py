"""A constant-latency fake llama-server for the overhead benchmark, and the load client it is
measured with. Both run in their own processes, on loopback only.

    python -m bench.fake_upstream serve --port 9101 [--delay-ms 0]
        answers every POST with the same OpenAI chat completion (as an SSE stream when the request
        asks for one, as the proxy's voters do) after the delay, and every GET
        with ``{"status":"ok"}``; HTTP/1.1 keep-alive; raw asyncio + httptools on uvloop, so the
        upstream costs as little as it can.

    python -m bench.fake_upstream load --url URL --concurrency 16 --seconds 3 [--warmup 0.5]
        ``concurrency`` aiohttp clients on keep-alive connections, each sending the next request
        when its answer is read; prints one JSON line: requests, errors, seconds, latencies (ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

#: the answer: a short code reply, about the size of a small real one (usage and timings as
#: llama-server adds them)
ANSWER: dict[str, Any] = {
    "id": "chatcmpl-fake",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "fake",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {
                "role": "assistant",
                "content": "```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```\n"
                "This adds the two numbers and returns the sum.",
            },
        }
    ],
    "usage": {"prompt_tokens": 31, "completion_tokens": 29, "total_tokens": 60},
    "timings": {"prompt_n": 31, "prompt_ms": 1.0, "predicted_n": 29, "predicted_ms": 1.0},
}

#: what the load client sends: a small chat request, as a coding client would (no `model`: the
#: proxy answers with the one it serves, whatever it is called)
REQUEST: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "You are a helpful coding assistant."},
        {"role": "user", "content": "Write a Python function add(a, b) that returns the sum."},
    ],
    "max_tokens": 64,
    "temperature": 0.7,
}


def _sse(answer: dict[str, Any], pieces: int = 4) -> bytes:
    """``answer`` as llama-server streams it: a role chunk, content deltas, the finish chunk with
    usage and timings, ``[DONE]`` (the swarm's proxy asks its voters for streams)."""
    base = {k: answer[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    text = answer["choices"][0]["message"]["content"]
    step = max(1, -(-len(text) // pieces))
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": None}]
    deltas += [{"content": text[i : i + step]} for i in range(0, len(text), step)]
    events = [{**base, "choices": [{"index": 0, "finish_reason": None, "delta": d}]} for d in deltas]
    events.append(
        {
            **base,
            "choices": [{"index": 0, "finish_reason": "stop", "delta": {}}],
            "usage": answer["usage"],
            "timings": answer["timings"],
        }
    )
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def _response(body: bytes, keep_alive: bool, content_type: str = "application/json") -> bytes:
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
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
    post = _response(json.dumps(ANSWER).encode(), True)
    stream = _response(_sse(ANSWER), True, "text/event-stream")
    get = _response(b'{"status":"ok"}', True)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Protocol(delay_s, post, stream, get), "127.0.0.1", port, reuse_address=True, backlog=1024
    )
    async with server:
        await server.serve_forever()


async def load(
    url: str, concurrency: int, seconds: float, warmup: float, headers: dict[str, str]
) -> dict[str, Any]:
    """Closed-loop load: ``concurrency`` workers for ``warmup`` + ``seconds``; latencies of the
    requests that started after the warm-up and finished before the end."""
    import aiohttp

    body = json.dumps(REQUEST).encode()
    hdrs = {"Content-Type": "application/json", **headers}
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    lat: list[float] = []
    errors = 0
    sent = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors, sent
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                sent += 1
                try:
                    async with session.post(url, data=body, headers=hdrs) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except aiohttp.ClientError:
                    ok = False
                t1 = time.perf_counter()
                if t0 >= measure_from and t1 <= stop_at:
                    if ok:
                        lat.append((t1 - t0) * 1000.0)
                    else:
                        errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"requests": len(lat), "sent": sent, "errors": errors, "seconds": seconds, "latencies_ms": lat}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_upstream")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--delay-ms", type=float, default=0.0)
    ld = sub.add_parser("load")
    ld.add_argument("--url", required=True)
    ld.add_argument("--concurrency", type=int, default=1)
    ld.add_argument("--seconds", type=float, default=3.0)
    ld.add_argument("--warmup", type=float, default=0.5)
    ld.add_argument("--header", action="append", default=[], help="NAME: VALUE")
    args = parser.parse_args(argv)
    import uvloop

    if args.cmd == "serve":
        uvloop.run(serve(args.port, args.delay_ms / 1000.0))
        return
    headers = dict(h.split(": ", 1) for h in args.header)
    result = uvloop.run(load(args.url, args.concurrency, args.seconds, args.warmup, headers))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

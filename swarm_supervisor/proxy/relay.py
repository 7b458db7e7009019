"""``stream_mode = "fastest"``: relay the stream of the first instance that produces a token.

Every ready instance gets the streamed request (one per instance, not per slot); the first
whose stream carries a token (or a finish) wins, the others are closed at once so their slots
free up. Each relayed chunk is re-labelled with the swarm's model id.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from .client import UpstreamClient
from .errors import ApiError
from .failures import UpstreamFailure, UpstreamHttpError, UpstreamUnreachable, no_answer
from .sampling import seeds
from .sse import DONE, event
from .upstreams import Upstream


@dataclass
class OpenStream:
    """A winning upstream stream: chunks read so far, the rest, and what closes it."""

    instance: str
    stack: AsyncExitStack
    rest: AsyncIterator[bytes]
    head: list[bytes] = field(default_factory=list)
    latency_s: float = 0.0  # time to the first token

    async def close(self) -> None:
        await self.stack.aclose()


def _is_token(payload: bytes) -> bool:
    if payload == b"[DONE]":
        return True
    try:
        chunk = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    if not isinstance(chunk, dict):
        return False
    if "error" in chunk:
        raise UpstreamHttpError(f"the stream carried an error: {chunk['error']}")
    choices = chunk.get("choices")
    if not choices:
        return "usage" in chunk
    choice = choices[0]
    delta = choice.get("delta") or {}
    return bool(
        choice.get("finish_reason")
        or choice.get("text")
        or delta.get("content")
        or delta.get("tool_calls")
        or delta.get("reasoning_content")
    )


async def _open(client: UpstreamClient, upstream: Upstream, url: str, body: dict[str, Any]) -> OpenStream:
    start = time.perf_counter()
    stack = AsyncExitStack()
    try:
        lines = await stack.enter_async_context(client.stream(url, body))
        head: list[bytes] = []
        async for payload in lines:
            head.append(payload)
            if _is_token(payload):
                return OpenStream(upstream.id, stack, lines, head, time.perf_counter() - start)
        raise UpstreamUnreachable("the stream ended before any token")
    except BaseException:
        await stack.aclose()
        raise


async def first_stream(
    client: UpstreamClient, upstreams: list[Upstream], path: str, body: dict[str, Any], timeout_s: float
) -> OpenStream:
    """Open the request on every upstream; keep the first with a token, close the rest."""
    tasks = [
        asyncio.ensure_future(_open(client, u, u.url + path, {**body, "seed": seed, "stream": True, "n": 1}))
        for u, seed in zip(upstreams, seeds(len(upstreams), body.get("seed")), strict=True)
    ]
    pending = set(tasks)
    failures: list[UpstreamFailure] = []
    deadline = time.monotonic() + timeout_s
    winner: OpenStream | None = None
    try:
        while pending and winner is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            done, pending = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is None and winner is None:
                    winner = task.result()
                elif exc is None:
                    await task.result().close()
                elif isinstance(exc, UpstreamFailure):
                    failures.append(exc)
    finally:
        for task in pending:
            task.cancel()
        for result in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(result, OpenStream):
                await result.close()
    if winner is None:
        raise no_answer(failures, timed_out=not failures or time.monotonic() >= deadline)
    return winner


async def relay(stream: OpenStream, model: str) -> AsyncIterator[bytes]:
    """The winner's SSE events, model id replaced; an error event if it breaks off mid-way."""
    try:
        payloads: AsyncIterator[bytes] = _chain(stream.head, stream.rest)
        async for payload in payloads:
            if payload == b"[DONE]":
                yield DONE
                return
            yield b"data: " + _relabel(payload, model) + b"\n\n"
    except UpstreamFailure as exc:
        err = ApiError(502, f"the instance's stream broke off: {exc}", type="upstream_error")
        yield event(err.body())
    finally:
        await stream.close()


async def _chain(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for payload in head:
        yield payload
    async for payload in rest:
        yield payload


def _relabel(payload: bytes, model: str) -> bytes:
    try:
        chunk = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return payload
    if isinstance(chunk, dict) and "model" in chunk:
        chunk["model"] = model
        return json.dumps(chunk, separators=(",", ":"), ensure_ascii=False).encode()
    return payload

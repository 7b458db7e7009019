"""The soak's clients (``python -m bench soak``): the request mix (plain, streamed, tool-calling), one
request checked for its status and shape, and the bounded client loop (loopback only) that
records an :class:`Outcome` per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import click

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "The city's name."}},
                "required": ["city"],
            },
        },
    }
]


KINDS = ("plain", "stream", "tools")


def body_for(i: int, max_tokens: int) -> tuple[str, dict[str, Any]]:
    """Request ``i`` of the mix: plain, streamed, tool-calling (streamed and plain in turn)."""
    kind = KINDS[i % len(KINDS)]
    body: dict[str, Any] = {"max_tokens": max_tokens, "temperature": 0.7}  # no model: the one it serves
    if kind == "tools":
        body["messages"] = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
        body["tools"] = TOOLS
        body["tool_choice"] = "auto"
        stream = (i // len(KINDS)) % 2 == 0
    else:
        body["messages"] = [{"role": "user", "content": "Write add(a, b) in Python."}]
        stream = kind == "stream"
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return kind + (" (stream)" if kind == "tools" and stream else ""), body


@dataclass
class Outcome:
    kind: str
    t0: float
    t1: float
    ok: bool
    why: str | None = None
    detail: str | None = None  # the error's message, for a failure
    wall: float = 0.0  # time.time() at the start, to line it up with the logs


class BadShape(Exception):
    pass


def _check_message(data: Any) -> None:
    if not isinstance(data, dict) or not data.get("choices"):
        raise BadShape("no choices")
    choice = data["choices"][0]
    msg = choice.get("message")
    if not isinstance(msg, dict) or msg.get("role") != "assistant":
        raise BadShape("no assistant message")
    if choice.get("finish_reason") not in ("stop", "length", "tool_calls"):
        raise BadShape(f"finish_reason {choice.get('finish_reason')!r}")
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") or {}
        if not isinstance(fn.get("name"), str) or not isinstance(fn.get("arguments"), str):
            raise BadShape("a tool call without a name or arguments")
    if not isinstance(data.get("usage"), dict):
        raise BadShape("no usage")


async def _check_stream(resp: Any) -> None:
    if not resp.headers.get("Content-Type", "").startswith("text/event-stream"):
        raise BadShape(f"content-type {resp.headers.get('Content-Type')!r}")
    done = usage = finished = False
    chunks = 0
    async for raw in resp.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            done = True
            break
        try:
            chunk = json.loads(payload)
        except ValueError:
            raise BadShape("an event is not JSON") from None
        if "error" in chunk:
            code = (chunk["error"] or {}).get("code") if isinstance(chunk["error"], dict) else None
            raise BadShape(f"error event {code}")
        chunks += 1
        usage = usage or isinstance(chunk.get("usage"), dict)
        for choice in chunk.get("choices") or []:
            finished = finished or choice.get("finish_reason") in ("stop", "length", "tool_calls")
            for call in (choice.get("delta") or {}).get("tool_calls") or []:
                if not isinstance(call.get("index"), int):
                    raise BadShape("a tool-call delta without an index")
    if not done:
        raise BadShape("no [DONE]")
    if not chunks or not finished:
        raise BadShape("no finish_reason")
    if not usage:
        raise BadShape("no usage chunk")


async def one_request(session: Any, url: str, kind: str, body: dict[str, Any]) -> Outcome:
    import aiohttp

    t0, wall = time.monotonic(), time.time()
    why: str | None = None
    detail: str | None = None
    try:
        async with session.post(f"{url}/chat/completions", json=body) as resp:
            if resp.status != 200:
                text = await resp.read()
                code = None
                with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
                    err = json.loads(text)["error"]
                    code, detail = err.get("code"), str(err.get("message"))[:400]
                why = f"HTTP {resp.status} {code or ''}".strip()
            elif body.get("stream"):
                await _check_stream(resp)
            else:
                _check_message(await resp.json())
    except BadShape as exc:
        why = f"shape: {exc}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        why = type(exc).__name__
    return Outcome(kind, t0, time.monotonic(), why is None, why, detail, wall)


async def client_loop(
    url: str,
    count: int,
    concurrency: int,
    max_tokens: int,
    cap_s: float,
    timeout_s: float,
    outcomes: list[Outcome],
    start_index: int = 0,
    rate: float | None = None,
) -> float:
    """``count`` requests, ``concurrency`` at a time (and at most ``rate`` a second when given),
    until done or ``cap_s`` passed; seconds taken."""
    import aiohttp

    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        raise click.UsageError(f"the soak only talks to loopback addresses, not {host}")
    begin = time.monotonic()
    end = begin + cap_s
    next_i = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
    ) as s:

        async def worker() -> None:
            nonlocal next_i
            while next_i < count and time.monotonic() < end:
                i = next_i
                next_i += 1
                if rate:
                    await asyncio.sleep(max(0.0, begin + i / rate - time.monotonic()))
                kind, body = body_for(start_index + i, max_tokens)
                outcomes.append(await one_request(s, url, kind, body))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - t0

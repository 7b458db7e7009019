"""The winner of a vote sent as an OpenAI SSE stream, the way OpenAI itself streams.

Chat: a role chunk; content (and reasoning) deltas in small pieces; for each tool call a first
delta with index, id, type and the function name with empty arguments, then argument pieces;
a chunk with ``finish_reason``; the usage chunk (``choices: []``) when the client asked for it
with ``stream_options.include_usage``; then ``data: [DONE]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

KEEPALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"
PIECE = 24  # characters per delta: small enough to look like a stream, few enough events


def event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def pieces(text: str, size: int = PIECE) -> Iterator[str]:
    """``text`` in pieces of about ``size`` characters, cut after whitespace where possible."""
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            cut = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
            if cut > start:
                end = cut + 1
        yield text[start:end]
        start = end


def chat_events(
    *,
    message: dict[str, Any],
    finish_reason: str | None,
    id: str,
    created: int,
    model: str,
    usage: dict[str, Any] | None,
    include_usage: bool,
    extension: dict[str, Any] | None = None,
    logprobs: dict[str, Any] | None = None,
) -> Iterator[bytes]:
    """The SSE events of one chat answer. ``logprobs`` (the whole answer's) rides on the chunk
    that carries ``finish_reason``: the text is re-chunked, so per-chunk token lists would lie."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    yield event(chunk({"role": "assistant", "content": ""}))
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str):
        for part in pieces(reasoning):
            yield event(chunk({"reasoning_content": part}))
    content = message.get("content")
    if isinstance(content, str):
        for part in pieces(content):
            yield event(chunk({"content": part}))
    tool_calls = message.get("tool_calls") or []
    for index, call in enumerate(tool_calls):
        function = call.get("function") or {}
        first = {
            "index": index,
            "id": call.get("id") or f"call_{index}",
            "type": "function",
            "function": {"name": function.get("name", ""), "arguments": ""},
        }
        yield event(chunk({"tool_calls": [first]}))
        arguments = function.get("arguments", "")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        for part in pieces(arguments):
            yield event(chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]}))
    if tool_calls:
        finish_reason = "tool_calls"
    last = chunk({}, finish_reason or "stop")
    if logprobs is not None:
        last["choices"][0]["logprobs"] = logprobs
    if extension is not None:
        last["swarm"] = extension
    yield event(last)
    if include_usage:
        yield event(
            {
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage or {},
            }
        )
    yield DONE


def completion_events(
    *,
    text: str,
    finish_reason: str | None,
    id: str,
    created: int,
    model: str,
    usage: dict[str, Any] | None,
    include_usage: bool,
    extension: dict[str, Any] | None = None,
    logprobs: dict[str, Any] | None = None,
) -> Iterator[bytes]:
    """The SSE events of one text completion (``logprobs`` as in :func:`chat_events`)."""

    def chunk(part: str, finish: str | None = None) -> dict[str, Any]:
        return {
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "text": part, "logprobs": None, "finish_reason": finish}],
        }

    for part in pieces(text):
        yield event(chunk(part))
    last = chunk("", finish_reason or "stop")
    if logprobs is not None:
        last["choices"][0]["logprobs"] = logprobs
    if extension is not None:
        last["swarm"] = extension
    yield event(last)
    if include_usage:
        yield event(
            {
                "id": id,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage or {},
            }
        )
    yield DONE


def error_event(body: dict[str, Any]) -> bytes:
    """An error after the stream has started (headers are gone): the OpenAI clients raise on it."""
    return event(body)

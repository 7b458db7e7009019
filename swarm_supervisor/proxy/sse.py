"""The winner of a vote sent as an OpenAI SSE stream, the way OpenAI itself streams.

Chat: a role chunk; content (and reasoning) deltas in small pieces; for each tool call a first
delta with index, id, type and the function name with empty arguments, then argument pieces.
A completion: its text in small pieces. Then, for both, a chunk with ``finish_reason``; the
usage chunk (``choices: []``) when the client asked for it with ``stream_options.include_usage``;
then ``data: [DONE]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ..vocabulary import Endpoint

KEEPALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"
PIECE = 24  # characters per delta: small enough to look like a stream, few enough events


def event(payload: dict[str, Any]) -> bytes:
    """One SSE event: ``data:`` and compact JSON. An error after the stream has started (the
    status is gone) is sent this way too, ``{"error": {...}}``: the OpenAI clients raise on it."""
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


def answer_events(
    endpoint: Endpoint,
    choice: dict[str, Any],
    *,
    id: str,
    created: int,
    model: str,
    usage: dict[str, Any] | None,
    include_usage: bool,
    extension: dict[str, Any] | None = None,
    logprobs: dict[str, Any] | None = None,
) -> Iterator[bytes]:
    """The SSE events of one answer: ``choice`` is its non-streamed first choice (``message``
    for chat, ``text`` for a completion). ``logprobs`` (the whole answer's) rides on the chunk
    that carries ``finish_reason``: the text is re-chunked, so per-chunk token lists would lie."""
    chat = endpoint == "chat"
    obj = "chat.completion.chunk" if chat else "text_completion"

    def chunk(part: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": id,
            "object": obj,
            "created": created,
            "model": model,
            "choices": [{"index": 0, **part, "logprobs": None, "finish_reason": finish}],
        }

    finish_reason = choice.get("finish_reason")
    if chat:
        message = choice.get("message") or {}
        for delta in _deltas(message):
            yield event(chunk({"delta": delta}))
        if message.get("tool_calls"):
            finish_reason = "tool_calls"
    else:
        for part in pieces(str(choice.get("text") or "")):
            yield event(chunk({"text": part}))
    last = chunk({"delta": {}} if chat else {"text": ""}, finish_reason or "stop")
    if logprobs is not None:
        last["choices"][0]["logprobs"] = logprobs
    if extension is not None:
        last["swarm"] = extension
    yield event(last)
    if include_usage:
        yield event(
            {"id": id, "object": obj, "created": created, "model": model, "choices": [], "usage": usage or {}}
        )
    yield DONE


def _deltas(message: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A chat message as deltas: the role, reasoning and content in pieces, then for each tool
    call a first delta with index, id, type and name (empty arguments), then argument pieces."""
    yield {"role": "assistant", "content": ""}
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str):
        for part in pieces(reasoning):
            yield {"reasoning_content": part}
    content = message.get("content")
    if isinstance(content, str):
        for part in pieces(content):
            yield {"content": part}
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        first = {
            "index": index,
            "id": call.get("id") or f"call_{index}",
            "type": "function",
            "function": {"name": function.get("name", ""), "arguments": ""},
        }
        yield {"tool_calls": [first]}
        arguments = function.get("arguments", "")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        for part in pieces(arguments):
            yield {"tool_calls": [{"index": index, "function": {"arguments": part}}]}

"""A voter's answer read as a stream and put back together as one non-streamed body.

Voters are asked for streams, not whole answers, because llama-server stops generating when a
*streamed* request's connection closes, but finishes a non-streamed one (measured with this
build: the slot stayed busy 7 s and more after the client left). A cancelled straggler
therefore frees its slot at once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from .client import UpstreamFailure

Kind = Literal["chat", "completion"]


async def assemble(payloads: AsyncIterator[bytes], kind: Kind) -> dict[str, Any]:
    """The OpenAI non-streamed body equivalent to the SSE ``payloads`` of one choice."""
    content: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    head: dict[str, Any] = {}
    finish: str | None = None
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    done = False
    async for payload in payloads:
        if payload == b"[DONE]":
            done = True
            break
        try:
            chunk = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UpstreamFailure("invalid_json", "a stream event is not valid JSON") from None
        if not isinstance(chunk, dict):
            raise UpstreamFailure("invalid_json", "a stream event is not a JSON object")
        if "error" in chunk:
            raise UpstreamFailure("status", f"the stream carried an error: {chunk['error']}", body=chunk)
        for key in ("id", "created", "model", "system_fingerprint"):
            if key in chunk and key not in head:
                head[key] = chunk[key]
        usage = chunk.get("usage") or usage
        timings = chunk.get("timings") or timings
        choices = chunk.get("choices") or []
        if not choices or not isinstance(choices[0], dict):
            continue
        choice = choices[0]
        finish = choice.get("finish_reason") or finish
        if kind == "completion":
            content.append(str(choice.get("text") or ""))
            continue
        delta = choice.get("delta") or {}
        if delta.get("content"):
            content.append(str(delta["content"]))
        if delta.get("reasoning_content"):
            reasoning.append(str(delta["reasoning_content"]))
        for part in delta.get("tool_calls") or []:
            _merge_call(calls, part)
    if not done and finish is None:
        raise UpstreamFailure("connection", "the stream ended before the answer was complete")

    choice_out: dict[str, Any] = {"index": 0, "finish_reason": finish or "stop"}
    if kind == "completion":
        choice_out["text"] = "".join(content)
    else:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(content) or None}
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
        if calls:
            message["tool_calls"] = [calls[i] for i in sorted(calls)]
        choice_out["message"] = message
    body: dict[str, Any] = {
        "id": head.get("id"),
        "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": head.get("created"),
        "model": head.get("model"),
        "choices": [choice_out],
    }
    if "system_fingerprint" in head:
        body["system_fingerprint"] = head["system_fingerprint"]
    if usage is not None:
        body["usage"] = usage
    if timings is not None:
        body["timings"] = timings
    return body


def _merge_call(calls: dict[int, dict[str, Any]], part: dict[str, Any]) -> None:
    index = part.get("index", len(calls))
    if not isinstance(index, int):
        index = len(calls)
    call = calls.setdefault(
        index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
    )
    if part.get("id"):
        call["id"] = part["id"]
    if part.get("type"):
        call["type"] = part["type"]
    function = part.get("function") or {}
    if function.get("name"):
        call["function"]["name"] += function["name"]
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        call["function"]["arguments"] += arguments
    elif arguments is not None:
        call["function"]["arguments"] += json.dumps(arguments)

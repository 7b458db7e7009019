"""Voters' answers read as a stream and put back together as non-streamed bodies, one per choice.

Voters are asked for streams, not whole answers, because llama-server stops generating when a
*streamed* request's connection closes, but finishes a non-streamed one (measured with this
build: the slot stayed busy 7 s and more after the client left). A cancelled straggler
therefore frees its slot at once.

One request may carry several voters (``n = k``: llama-server evaluates the prompt once and
copies it to k slots); its stream interleaves the choices, each chunk naming its ``index``.
:func:`assemble_choices` hands each choice over as soon as its ``finish_reason`` arrives, so the
vote can start before the slowest choice of the same request is done.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ..vocabulary import Endpoint
from .failures import UpstreamBadStream, UpstreamHttpError, UpstreamUnreachable


@dataclass
class _Choice:
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    logprobs: list[Any] = field(default_factory=list)
    finish: str | None = None
    tokens: int = 0  # delta chunks that carried something: llama-server sends one per token
    handed: bool = False

    def body(self, endpoint: Endpoint, head: dict[str, Any]) -> dict[str, Any]:
        choice_out: dict[str, Any] = {"index": 0, "finish_reason": self.finish or "stop"}
        if endpoint == "completion":
            choice_out["text"] = "".join(self.content)
        else:
            message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content) or None}
            if self.reasoning:
                message["reasoning_content"] = "".join(self.reasoning)
            if self.calls:
                message["tool_calls"] = [self.calls[i] for i in sorted(self.calls)]
            choice_out["message"] = message
        if self.logprobs:
            choice_out["logprobs"] = {"content": list(self.logprobs)}
        body: dict[str, Any] = {
            "id": head.get("id"),
            "object": "chat.completion" if endpoint == "chat" else "text_completion",
            "created": head.get("created"),
            "model": head.get("model"),
            "choices": [choice_out],
        }
        if "system_fingerprint" in head:
            body["system_fingerprint"] = head["system_fingerprint"]
        return body


@dataclass
class Collected:
    """What one request's stream held besides its choices."""

    choices: int  # choices that finished


async def assemble_choices(
    payloads: AsyncIterator[bytes],
    endpoint: Endpoint,
    on_choice: Callable[[int, dict[str, Any]], None],
) -> Collected:
    """Read SSE ``payloads`` of one request; call ``on_choice(index, body)`` with the OpenAI
    non-streamed body of each choice as soon as it finishes. Raises an :class:`~.failures.UpstreamFailure`
    when the stream is broken, carries an error, or ends before any choice finished.

    With ``n > 1`` llama-server streams a usage chunk (``choices: []``, with ``timings``) right
    after each choice's finishing chunk; it belongs to that choice. A finished choice is handed
    over with it, or as soon as anything else arrives (a server that sends no such chunk).
    """
    choices: dict[int, _Choice] = {}
    head: dict[str, Any] = {}
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    pending: list[int] = []  # finished, waiting for their usage chunk
    done = False

    def hand_over(extra: dict[str, Any] | None = None) -> None:
        for index in pending:
            body = choices[index].body(endpoint, head)
            if extra:
                body.update(extra)
            elif choices[index].tokens:
                body["usage"] = {"completion_tokens": choices[index].tokens}
            choices[index].handed = True
            on_choice(index, body)
            extra = None  # a usage chunk is one choice's: the first pending one
        pending.clear()

    async for payload in payloads:
        if payload == b"[DONE]":
            done = True
            break
        try:
            chunk = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UpstreamBadStream("a stream event is not valid JSON") from None
        if not isinstance(chunk, dict):
            raise UpstreamBadStream("a stream event is not a JSON object")
        if "error" in chunk:
            raise UpstreamHttpError(f"the stream carried an error: {chunk['error']}", body=chunk)
        for key in ("id", "created", "model", "system_fingerprint"):
            if key in chunk and key not in head:
                head[key] = chunk[key]
        raw_choices = chunk.get("choices") or []
        if isinstance(chunk.get("usage"), dict) and not raw_choices:
            usage = chunk["usage"]
            timings = chunk.get("timings") if isinstance(chunk.get("timings"), dict) else timings
            extra: dict[str, Any] = {"usage": usage}
            if timings is not None:
                extra["timings"] = timings
            hand_over(extra)
            continue
        hand_over()
        for raw in raw_choices:
            if not isinstance(raw, dict):
                continue
            index = raw.get("index", 0)
            if not isinstance(index, int) or index < 0:
                index = 0
            c = choices.setdefault(index, _Choice())
            if c.handed or index in pending:
                continue
            _merge(c, raw, endpoint)
            if c.finish is not None:
                pending.append(index)
    hand_over()
    finished = [i for i, c in choices.items() if c.handed]
    if not finished:
        if not done:
            raise UpstreamUnreachable("the stream ended before the answer was complete")
        if not choices:
            raise UpstreamBadStream("the answer has no choices")
        # [DONE] without a finish_reason: take what came as finished ("stop")
        for index in sorted(choices):
            choices[index].finish = "stop"
            pending.append(index)
        hand_over({"usage": usage} if usage else None)
        finished = sorted(choices)
    return Collected(choices=len(finished))


async def assemble(payloads: AsyncIterator[bytes], endpoint: Endpoint) -> dict[str, Any]:
    """The OpenAI non-streamed body equivalent to the SSE ``payloads`` of one choice (the first)."""
    bodies: dict[int, dict[str, Any]] = {}
    await assemble_choices(payloads, endpoint, bodies.__setitem__)
    return bodies[min(bodies)]


def _merge(c: _Choice, choice: dict[str, Any], endpoint: Endpoint) -> None:
    if choice.get("finish_reason"):
        c.finish = str(choice["finish_reason"])
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
        c.logprobs.extend(logprobs["content"])
    if endpoint == "completion":
        text = choice.get("text")
        if text:
            c.content.append(str(text))
            c.tokens += 1
        return
    delta = choice.get("delta") or {}
    if not isinstance(delta, dict):
        return
    counted = False
    if delta.get("content"):
        c.content.append(str(delta["content"]))
        counted = True
    if delta.get("reasoning_content"):
        c.reasoning.append(str(delta["reasoning_content"]))
        counted = True
    for part in delta.get("tool_calls") or []:
        if isinstance(part, dict):
            _merge_call(c.calls, part)
            counted = True
    c.tokens += counted


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

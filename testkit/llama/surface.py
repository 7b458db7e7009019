"""What the fake llama-server answers: the one implementation of its OpenAI / llama-server surface.

Pure functions of a :class:`Behaviour` (the switches) and the request body; no sockets, no
third-party imports (the process entry, ``server.py``, runs under whatever ``python3`` is on PATH).
The transports beside it only move these bodies and chunks: ``inprocess.py`` (Starlette in a
thread, for tests that change the behaviour between requests), ``server.py`` (a process with
llama-server's argv) and ``fast.py`` (canned bytes, for the overhead benchmark).

    GET  /health                    200 {"status": "ok"}, or 503 "Loading model" while not ready
    GET  /props                     {"total_slots": slots, "model_path": model}
    GET  /v1/models                 one model
    GET  /metrics                   Prometheus text (two llamacpp: series)
    POST /v1/chat/completions       JSON, or SSE with ``"stream": true``: ``n`` choices interleaved
    POST /v1/completions            chunk by chunk, tool-call deltas, finish_reason, a usage chunk
                                    per choice with ``stream_options.include_usage``, logprobs
                                    when asked, ``[DONE]``
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

METRICS_TEXT = """# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 42
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 0
"""

#: the faults a request can meet (``Behaviour.fault``); each is answered by the transport:
#: "500" / "reject" / "400" / "401": that HTTP error as llama-server words it (:func:`error`);
#: "invalid_json": a truncated body; "drop": the connection cut mid-answer; "hang": no answer
#: until the client goes away; "huge_line": one 3 MiB SSE event
FAULTS = frozenset({"500", "reject", "400", "401", "invalid_json", "drop", "hang", "huge_line"})

DEFAULT_MODEL = "/models/fake.gguf"


@dataclass
class Behaviour:
    """What the fake answers and how. Change it between requests from the test."""

    content: str = "hello from the fake"
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None  # None: "tool_calls" with tool calls, else "stop"
    latency_s: float = 0.0
    #: None or one of :data:`FAULTS`
    fault: str | None = None
    ready: bool = True
    stream_pieces: int = 4  # content deltas per streamed answer
    piece_delay_s: float = 0.0
    #: what choice i of a streamed ``n > 1`` request says (i modulo the list); None: ``content``
    contents: list[str] | None = None
    ignore_n: bool = False  # answer one choice whatever ``n`` asks (an older llama-server)
    slots: int = 1  # what /props declares as ``total_slots``

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}: use one of {sorted(FAULTS)}")


_ERRORS: dict[str, tuple[int, str, str]] = {
    "500": (500, "boom", "server_error"),
    # how llama-server refuses messages it cannot parse: a 500
    "reject": (500, "Failed to parse messages: Missing tool call type: {}", "server_error"),
    "401": (401, "Invalid API Key", "authentication_error"),  # another --api-key
    "400": (400, "the prompt is too long", "exceed_context_size_error"),
}


def error(fault: str | None) -> tuple[int, dict[str, Any]] | None:
    """The HTTP status and body of an error fault, as llama-server words it; None for the rest."""
    if fault not in _ERRORS:
        return None
    code, message, kind = _ERRORS[fault]
    return code, {"error": {"code": code, "message": message, "type": kind}}


def loading() -> tuple[int, dict[str, Any]]:
    return 503, {"error": {"code": 503, "message": "Loading model"}}


def props(b: Behaviour, model: str = DEFAULT_MODEL) -> dict[str, Any]:
    return {"total_slots": b.slots, "model_path": model}


#: the vocabulary size the fake reports in /v1/models ``meta`` (SmolLM2's, as llama-server does)
N_VOCAB = 49152


def models(model: str = DEFAULT_MODEL) -> dict[str, Any]:
    entry = {"id": model, "object": "model", "owned_by": "llamacpp", "meta": {"n_vocab": N_VOCAB}}
    return {"object": "list", "data": [entry]}


def usage(b: Behaviour) -> dict[str, int]:
    completion = max(1, len(b.content.split()))
    return {"prompt_tokens": 10, "completion_tokens": completion, "total_tokens": 10 + completion}


def _message(b: Behaviour) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": None if b.tool_calls else b.content}
    if b.tool_calls:
        msg["tool_calls"] = b.tool_calls
    return msg


def _finish(b: Behaviour) -> str:
    return b.finish_reason or ("tool_calls" if b.tool_calls else "stop")


def completion(b: Behaviour, chat: bool, model: str = DEFAULT_MODEL) -> dict[str, Any]:
    """The whole (not streamed) answer: one choice."""
    choice: dict[str, Any] = {"index": 0, "finish_reason": _finish(b)}
    if chat:
        choice["message"] = _message(b)
    else:
        choice["text"] = b.content
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage(b),
        "timings": {"predicted_n": 3},
    }


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


@dataclass
class Stream:
    """A streamed answer in three parts: ``head`` (role chunks), ``steps`` (one list of content
    chunks per step, the transport waits ``piece_delay_s`` before each and "drop" cuts after the
    first) and ``tail`` (tool-call deltas, finish, usage); then ``[DONE]``."""

    head: list[dict[str, Any]]
    steps: list[list[dict[str, Any]]]
    tail: list[dict[str, Any]]

    def events(self) -> list[dict[str, Any]]:
        return [*self.head, *(c for step in self.steps for c in step), *self.tail]


def stream(b: Behaviour, chat: bool, body: dict[str, Any], model: str = DEFAULT_MODEL) -> Stream:
    """SSE chunks as llama-server streams them; ``n`` choices interleaved, each with its index."""
    base: dict[str, Any] = {"id": "chatcmpl-fake", "created": int(time.time()), "model": model}
    n = 1 if b.ignore_n else max(1, int(body.get("n") or 1))
    texts = [(b.contents[i % len(b.contents)] if b.contents else b.content) for i in range(n)]
    head: list[dict[str, Any]] = []
    if chat:
        base["object"] = "chat.completion.chunk"
        head = [
            {**base, "choices": [{"index": i, "delta": {"role": "assistant", "content": None}}]}
            for i in range(n)
        ]
    pieces: list[list[str]] = []
    for text in texts:
        step = max(1, len(text) // max(1, b.stream_pieces))
        pieces.append([text[j : j + step] for j in range(0, len(text), step)] if not b.tool_calls else [])
    steps: list[list[dict[str, Any]]] = []
    for step_no in range(max(len(p) for p in pieces)):
        chunks = []
        for i, parts in enumerate(pieces):
            if step_no < len(parts):
                part = parts[step_no]
                delta: dict[str, Any] = {"content": part} if chat else {}
                choice = {"index": i, "delta": delta} if chat else {"index": i, "text": part}
                if body.get("logprobs"):  # one "token" per piece, as llama-server sends per token
                    choice["logprobs"] = {"content": [{"token": part, "logprob": -0.25, "top_logprobs": []}]}
                chunks.append({**base, "choices": [{**choice, "finish_reason": None}]})
        steps.append(chunks)
    tail: list[dict[str, Any]] = []
    for i in range(n):
        for c, call in enumerate(b.tool_calls or []):
            tail.append({**base, "choices": [{"index": i, "delta": {"tool_calls": [{"index": c, **call}]}}]})
        end = {"index": i, "delta": {}} if chat else {"index": i, "text": ""}
        tail.append({**base, "choices": [{**end, "finish_reason": _finish(b)}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            # as llama-server does: each choice's usage (and timings) right after its finish
            tail.append({**base, "choices": [], "usage": usage(b), "timings": {"predicted_n": 3}})
    return Stream(head, steps, tail)


def huge_line() -> bytes:
    """The "huge_line" fault: one 3 MiB SSE event, then ``[DONE]``."""
    return sse({"choices": [{"index": 0, "delta": {"content": "x" * (3 << 20)}}]}) + DONE

"""What one request may ask of the swarm before it is fanned out to every voter.

A body under ``proxy.max_body_bytes`` can still cost the instances far more than itself: 550k
tiny messages in 15 MiB kept one llama-server busy for minutes at 7 GB while it applied the chat
template, and llama-server cannot be cancelled while it prepares a prompt. So the proxy refuses,
with a 400 that says why, what is certainly too big for the per-slot context or too many
messages, before any instance sees it::

    check_budget("chat", body, context=8192, max_messages=2048)   # ApiError(400) or None

The prompt size is a lower bound: text bytes / :data:`BYTES_PER_TOKEN_MAX` plus a few tokens per
message for the chat template. No tokenizer packs more than that many bytes in a token on average
over text, so a refused prompt is over the context for certain; one near the limit goes on, and
llama-server answers for it (``exceed_context_size_error``, passed through as a 400).

The refusal says it in the words coding agents look for to compact a session and retry: opencode,
pi and LiteLLM match the error against phrases such as llama-server's "exceeds the available
context size", OpenAI's "maximum context length is N tokens" and "context_length_exceeded".
"""

from __future__ import annotations

import json
from typing import Any

from ..vocabulary import Endpoint
from .errors import ApiError

#: bytes of text per token that no tokenizer exceeds on average (typical: 3-4 for code and English)
BYTES_PER_TOKEN_MAX = 8
#: tokens the chat template adds around each message (role markers), at least
TOKENS_PER_MESSAGE = 3


def _text_bytes(value: Any) -> int:
    """Bytes of the text parts of a message content (images and audio are not counted)."""
    if isinstance(value, str):
        return len(value.encode("utf-8", errors="replace"))
    if isinstance(value, list):
        total = 0
        for part in value:
            if isinstance(part, dict):
                total += _text_bytes(part.get("text"))
            elif isinstance(part, str):
                total += _text_bytes(part)
        return total
    return 0


def estimate_prompt_tokens(endpoint: Endpoint, body: dict[str, Any]) -> int:
    """A lower bound of the tokens the prompt of ``body`` takes (see the module docstring)."""
    if endpoint == "completion":
        return _prompt_tokens(body.get("prompt"))
    raw = body.get("messages")
    messages: list[Any] = raw if isinstance(raw, list) else []
    size = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        size += _text_bytes(message.get("content"))
        for call in message.get("tool_calls") or []:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                size += _text_bytes(fn.get("name")) + _text_bytes(fn.get("arguments"))
    tools = body.get("tools")
    if tools:
        size += len(json.dumps(tools, ensure_ascii=False).encode())
    return size // BYTES_PER_TOKEN_MAX + TOKENS_PER_MESSAGE * len(messages)


def _prompt_tokens(prompt: Any) -> int:
    if isinstance(prompt, str):
        return _text_bytes(prompt) // BYTES_PER_TOKEN_MAX
    if isinstance(prompt, int):
        return 1  # a token id
    if isinstance(prompt, list):
        return sum(_prompt_tokens(p) for p in prompt)
    return 0


def check_budget(endpoint: Endpoint, body: dict[str, Any], *, context: int, max_messages: int) -> None:
    """Raise a 400 :class:`ApiError` when ``body`` is more than the swarm takes (see above)."""
    messages = body.get("messages")
    if endpoint == "chat" and isinstance(messages, list) and len(messages) > max_messages:
        raise ApiError(
            400,
            f"the request has {len(messages)} messages, more than the {max_messages} the swarm takes "
            "(proxy.max_messages); shorten the conversation",
            param="messages",
            code="too_many_messages",
        )
    if context <= 0:
        return
    tokens = estimate_prompt_tokens(endpoint, body)
    if tokens > context:
        raise ApiError(
            400,
            f"the prompt exceeds the available context size: this model's maximum context length is "
            f"{context} tokens (each voter's), and the prompt takes at least {tokens} (estimated from its "
            "size); shorten it (a coding agent: compact the session), or start the swarm with a larger "
            "`--context`",
            param="prompt" if endpoint == "completion" else "messages",
            code="context_length_exceeded",
        )

"""The proxy's side of the vote: upstream answers become consensus candidates, a request the
`Ask` the vote reads, a verdict the winner's body.

The consensus package is pure; everything that knows the OpenAI body shapes lives here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from ..consensus import Candidate, Toolbox, Verdict
from ..vocabulary import Endpoint
from .confidence import logprob_fields
from .failures import UpstreamFailure


@dataclass
class VoterOutcome:
    """One voter's fate, for the swarm extension and metrics."""

    id: str  # "INSTANCE.K": the K-th request sent to instance INSTANCE
    instance: str
    latency_s: float = 0.0
    ok: bool = False
    #: why it gave no answer (None: it answered, or is still out)
    failure: UpstreamFailure | None = None
    body: dict[str, Any] | None = None  # the upstream's answer (ok voters only)
    #: this voter's request evaluated the prompt: its ``usage.prompt_tokens`` counts once in totals
    #: (False for the other choices of an ``n = k`` request, which share that evaluation)
    prompt_share: bool = True
    #: the temperature this voter was asked to sample at (None: none sent, so the server's default)
    temperature: float | None = None

    @property
    def outstanding(self) -> bool:
        """Neither answered nor failed yet: it can still change the vote."""
        return not self.ok and self.failure is None

    @property
    def error(self) -> str | None:
        """What the swarm extension says went wrong (``cancelled``, ``timed out``, ``HTTP 500``...)."""
        return None if self.failure is None else str(self.failure)


def candidate_of(outcome: VoterOutcome, endpoint: Endpoint) -> Candidate:
    """A consensus candidate from an upstream answer (first choice)."""
    body = outcome.body or {}
    choice = first_choice(body)
    if endpoint == "chat":
        message = choice.get("message") or {}
        content = message.get("content") or ""
        tool_calls = message.get("tool_calls") or None
    else:
        content = choice.get("text") or ""
        tool_calls = None
    return Candidate(
        voter=outcome.id,
        content=str(content),
        tool_calls=tool_calls,
        finish_reason=choice.get("finish_reason"),
        latency_s=outcome.latency_s,
        usage=body.get("usage"),
        **logprob_fields(choice),
    )


def first_choice(body: dict[str, Any]) -> dict[str, Any]:
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


@dataclass(frozen=True)
class Ask:
    """What the vote reads of a request: its last user text, the tools it declared (None when
    it declared none, or forbade calls with ``tool_choice: "none"``), and how many voters it
    went to (agreement is counted against them)."""

    prompt: str | None
    tools: Toolbox | None = None
    voters: int | None = None


def vote_request(endpoint: Endpoint, body: dict[str, Any], voters: int) -> Ask:
    """The `Ask` of a request sent to ``voters`` voters."""
    tools = body.get("tools") if endpoint == "chat" and body.get("tool_choice") != "none" else None
    box = Toolbox.from_openai(tools) if isinstance(tools, list) else None
    return Ask(prompt_text(endpoint, body), box if box is not None and box.names else None, voters)


def as_answered(body: dict[str, Any] | None, verdict: Verdict) -> dict[str, Any] | None:
    """The winner's upstream ``body`` as the client gets it: where the winner wrote its tool
    call as text and the vote recovered it, a proper ``tool_calls`` message (content emptied,
    ``finish_reason: "tool_calls"``, ids of the proxy's making) that a client acts on."""
    if body is None or verdict.winner not in verdict.recovered or not verdict.tool_calls:
        return body
    choice = first_choice(body)
    message = dict(choice.get("message") or {})
    message["content"] = None
    message["tool_calls"] = [
        {**call, "id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}"} for call in verdict.tool_calls
    ]
    choices = [{**choice, "message": message, "finish_reason": "tool_calls"}]
    return {**body, "choices": choices}


def prompt_text(endpoint: Endpoint, body: dict[str, Any]) -> str | None:
    """The request's last user text (the ``quality`` strategy reads requested function names)."""
    if endpoint == "completion":
        prompt = body.get("prompt")
        return prompt if isinstance(prompt, str) else None
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                parts = [p.get("text", "") for p in content if isinstance(p, dict)]
                return "\n".join(str(p) for p in parts)
    return None

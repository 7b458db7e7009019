"""The proxy's side of the vote: upstream answers become consensus candidates, a verdict a winner.

The consensus package is pure; everything that knows the OpenAI body shapes lives here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..config import Strategy
from ..consensus import Candidate, Verdict, quorum_reached, vote

Kind = Literal["chat", "completion"]


@dataclass
class VoterOutcome:
    """One voter's fate, for the swarm extension and metrics."""

    id: str  # "INSTANCE.K": the K-th request sent to instance INSTANCE
    instance: str
    latency_s: float = 0.0
    ok: bool = False
    error: str | None = None
    body: dict[str, Any] | None = None  # the upstream's answer (ok voters only)
    #: this voter's request evaluated the prompt: its ``usage.prompt_tokens`` counts once in totals
    #: (False for the other choices of an ``n = k`` request, which share that evaluation)
    prompt_share: bool = True


def candidate_of(outcome: VoterOutcome, kind: Kind) -> Candidate:
    """A consensus candidate from an upstream answer (first choice)."""
    body = outcome.body or {}
    choice = first_choice(body)
    if kind == "chat":
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
    )


def first_choice(body: dict[str, Any]) -> dict[str, Any]:
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def usable(body: dict[str, Any]) -> bool:
    """An answer the vote can use: it has a first choice."""
    return bool(first_choice(body))


def enough(
    candidates: list[Candidate], voters: int, strategy: Strategy, threshold: float, prompt: str | None
) -> bool:
    """True once the answers so far settle the vote (quorum), so the rest may be cancelled."""
    return quorum_reached(candidates, voters, threshold, strategy, prompt=prompt)


def decide(candidates: list[Candidate], strategy: Strategy, threshold: float, prompt: str | None) -> Verdict:
    return vote(candidates, strategy, threshold, prompt=prompt)


def prompt_text(kind: Kind, body: dict[str, Any]) -> str | None:
    """The request's last user text (the ``quality`` strategy reads requested function names)."""
    if kind == "completion":
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

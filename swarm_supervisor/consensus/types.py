"""The values the vote works on: what each voter answered, and what the vote decided."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..vocabulary import Strategy

Kind = Literal["text", "tool_calls", "none"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One voter's answer, as the upstream sent it.

    ``tool_calls`` is the OpenAI list (``[{"id", "type": "function", "function": {"name",
    "arguments"}}]``) or None; ``latency_s`` is the time the voter took (the last tie-breaker).
    ``token_logprobs`` (the model's log-probability of each token it wrote) and
    ``top_logprobs`` (at each position, the K most likely tokens' log-probabilities, most likely
    first) are the voter's own confidence, None when the upstream was not asked for them
    (``proxy.confidence.logprob_fields`` reads them from an answer).
    """

    voter: str
    content: str | None
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = "stop"
    latency_s: float = 0.0
    usage: dict[str, Any] | None = None
    token_logprobs: tuple[float, ...] | None = None
    top_logprobs: tuple[tuple[float, ...], ...] | None = None

    @property
    def kind(self) -> Kind:
        if self.tool_calls:
            return "tool_calls"
        if self.content and self.content.strip():
            return "text"
        return "none"


@dataclass(frozen=True, slots=True)
class Dropped:
    """A candidate the `quality` strategy left out of the vote, and why."""

    index: int
    reason: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the vote decided. Indices refer to the list of candidates given to `vote`.

    ``agreement`` is the share of the voters asked (``asked``: every voter the request went
    to, whether its answer was collected, dropped or not) that sit in the winning cluster:
    1.0 is unanimous, 1/N means nobody agreed with the winner (and is all `fastest` can say).
    It is the vote's confidence signal: the more voters agree, the likelier the answer is right.
    """

    winner: int
    clusters: list[list[int]]
    agreement: float
    strategy: Strategy
    kind: Kind = "text"
    #: pairwise similarity, rows and columns in candidate order (1.0 on the diagonal);
    #: dropped candidates have rows of 0.0
    similarity: list[list[float]] = field(default_factory=list)
    mean_similarity: float = 1.0
    dropped: list[Dropped] = field(default_factory=list)
    #: True when `quality` dropped every candidate and voted over all of them instead
    fallback: bool = False
    #: voters asked (0 only for a Verdict made by hand: then the number of candidates)
    asked: int = 0
    #: candidates whose tool call was written as text and recovered -> the form it was in
    recovered: dict[int, str] = field(default_factory=dict)
    #: the winner's tool calls as they should reach the client (recovered ones included)
    tool_calls: list[dict[str, Any]] | None = None

"""How sure a voter was of its own answer, from its token log-probabilities (pure).

``mean_logprob``
    The mean log-probability of the tokens it wrote (0 is certain; the log of the per-token
    geometric mean probability).
``self_certainty``
    The mean, over its tokens, of KL(uniform || p) on the top-K distribution at each position
    (p renormalised over the K tokens llama-server reported): 0 when the K were equally likely,
    log K when one token held all the mass. Kang et al. 2025 ("Scalable Best-of-N Selection for
    Large Language Models via Self-Certainty") use the full vocabulary; top-K is what the
    endpoint returns.

Both are None for a candidate without log-probabilities: the vote then falls back to what it
did before (the medoid, then the faster answer).

    >>> from swarm_supervisor.consensus import Candidate
    >>> mean_logprob(Candidate("a", "x", token_logprobs=(-0.1, -0.3)))
    -0.2
"""

from __future__ import annotations

import math
from typing import Literal

from .types import Candidate

Measure = Literal["mean_logprob", "self_certainty"]
MEASURES: tuple[Measure, ...] = ("mean_logprob", "self_certainty")


def mean_logprob(c: Candidate) -> float | None:
    lps = c.token_logprobs
    if not lps:
        return None
    return sum(lps) / len(lps)


def self_certainty(c: Candidate) -> float | None:
    tops = c.top_logprobs
    if not tops:
        return None
    total = 0.0
    count = 0
    for row in tops:
        k = len(row)
        if k < 2:
            continue
        top = max(row)
        # log-sum-exp for the renormalisation, shifted by the largest for stability
        norm = top + math.log(sum(math.exp(x - top) for x in row))
        total += -math.log(k) - sum(x - norm for x in row) / k
        count += 1
    return total / count if count else None


def certainty(c: Candidate, measure: Measure) -> float | None:
    """``c``'s confidence by ``measure`` (higher is surer), None when it has no log-probabilities."""
    if measure == "mean_logprob":
        return mean_logprob(c)
    if measure == "self_certainty":
        return self_certainty(c)
    raise ValueError(f"unknown confidence measure {measure!r}: use {' or '.join(MEASURES)}")

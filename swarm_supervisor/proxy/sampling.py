"""What each process is asked for in a voted request: how many answers (``n``) at which
sampling settings. Pure: the fan-out sends, per process, one request per `Group` with
``body | group.overrides`` and ``n = group.n``, and seeds from :func:`seeds`.

The temperature policy (measured live on the lent H200: SmolLM2-135M, 5 voters, the 130 dev
tasks, docs/voting.md):

- the client sent no ``temperature`` (opencode and most clients): every voter samples at
  ``proxy.voter_temperature`` (`VOTER_TEMPERATURE`, 0.2), one request per process. Against the
  earlier default (one greedy anchor, the others on a 0.5 / 0.8 ladder) it scored 2.5 points
  higher and took 28% less time per answer (one prompt evaluation per process, not three);
  ``None`` leaves it to llama-server (its own default, 0.8, scored below one greedy instance).
  A lone voter has nothing to vote on and decodes greedily instead;
- the client sent one: a vote samples at most at ``proxy.voter_temperature`` (``cap``, the
  default: ``proxy.client_temperature = "cap"``), so a client's 0.5 or 0.8 becomes 0.2 while a
  lower one, 0 (greedy) included, stands. Pooled live over nine leases, voters at 0.2 beat voters
  at a client's 0.8 by 3.2 points [90% CI +0.9, +5.5], and at 0.8 the vote fell below one greedy
  instance (-1.7 [-4.4, +0.9]): samples that scatter agree less, and the vote picks worse.
  ``"keep"`` gives every voter the client's temperature. A lone voter, and the ``fastest``
  strategy (no vote: the first answer wins), always keep it.

When the strategy uses the voters' confidence (``quality``) the answers are asked for with
``logprobs`` (``top_logprobs`` = `TOP_LOGPROBS`), unless the client asked for them itself or
declared tools: llama-server refuses ``logprobs`` with tools on a streamed request (the voters
are always streamed), so tool-calling requests vote without confidence.

    >>> voter_groups([3, 2], {"messages": []}, "similarity")  # doctest: +NORMALIZE_WHITESPACE
    [[Group(n=3, overrides={'temperature': 0.2})], [Group(n=2, overrides={'temperature': 0.2})]]
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..vocabulary import Strategy

#: the voters' temperature when the client sends none (``proxy.voter_temperature``)
VOTER_TEMPERATURE = 0.2
#: alternatives per position asked for when the vote reads confidence: the default measure
#: (mean log-probability) needs only the token's own; llama-server sends none with 0
TOP_LOGPROBS = 1
#: strategies whose vote reads the voters' log-probabilities
CONFIDENT: frozenset[str] = frozenset({"quality"})


#: llama.cpp's "pick a random seed" (``LLAMA_DEFAULT_SEED``, 0xFFFFFFFF, as a signed int)
RANDOM_SEED = -1
#: seeds wrap around below this (llama.cpp reads them as 32-bit)
SEED_SPAN = 2**31 - 1


def seeds(count: int, seed: int | None) -> list[int]:
    """One seed per voter: the request's seed, then its successors. Without a seed, or with
    llama.cpp's ``-1`` ("random"), a fresh random base on every request: voters with the same
    seeds on every request would repeat the same answers and the same errors."""
    base = random.randrange(SEED_SPAN) if seed is None or seed == RANDOM_SEED else seed
    return [(base + i) % SEED_SPAN for i in range(count)]


@dataclass(frozen=True)
class Group:
    """``n`` answers from one request to one process, with ``overrides`` on the client's body."""

    n: int
    overrides: dict[str, Any] = field(default_factory=dict)


def _client_temperature(body: dict[str, Any]) -> float | None:
    t = body.get("temperature")
    if isinstance(t, bool) or not isinstance(t, int | float):
        return None
    return float(t)


def voter_temperature(
    body: dict[str, Any], default: float | None = VOTER_TEMPERATURE, cap: bool = False
) -> float | None:
    """The temperature every voter is sent: ``default`` when the client sent none; with ``cap``,
    ``default`` too when the client's is above it; else None (the client's own stands)."""
    client = _client_temperature(body)
    if client is None or (cap and default is not None and client > default):
        return default
    return None


def _confidence_overrides(body: dict[str, Any], strategy: Strategy) -> dict[str, Any]:
    if strategy not in CONFIDENT or body.get("tools") or "logprobs" in body or "top_logprobs" in body:
        return {}
    return {"logprobs": True, "top_logprobs": TOP_LOGPROBS}


def voter_groups(
    per_process: Sequence[int],
    body: dict[str, Any],
    strategy: Strategy,
    default_temperature: float | None = VOTER_TEMPERATURE,
    cap: bool = True,
) -> list[list[Group]]:
    """For each process (holding ``per_process[i]`` voters) one request for all of them; a process
    with 0 voters gets none. ``default_temperature``: the voters' when the client sent none, and
    with ``cap`` the most a vote samples at (see the module docstring)."""
    if any(k < 0 for k in per_process):
        raise ValueError(f"voters per process must be >= 0, got {list(per_process)}")
    overrides = _confidence_overrides(body, strategy)
    alone = sum(per_process) == 1
    t = voter_temperature(body, default_temperature, cap and not alone and strategy != "fastest")
    if t is not None:  # one voter has nothing to vote on: its single best guess
        overrides["temperature"] = 0.0 if alone else t
    return [[Group(k, dict(overrides))] if k else [] for k in per_process]

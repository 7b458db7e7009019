"""What each process is asked for in a voted request: how many answers (``n``) at which
sampling settings. Pure: the fan-out sends, per process, one request per `Group` with
``body | group.overrides`` and ``n = group.n``, and seeds from :func:`seeds`.

The temperature policy (measured offline over a pool of SmolLM2 answers: chosen on 30 micro2-dev
tasks, checked on 24 micro-dev tasks,
docs/voting.md):

- the client sent no ``temperature`` (opencode's default): one voter decodes greedily
  (temperature 0) as the anchor, the others sample on the ladder `SAMPLE_TEMPERATURES`
  (half at 0.5, half at 0.8, the first extra one at 0.5);
- the client sent one: every voter keeps it (`ANCHOR_WITH_CLIENT_TEMPERATURE` is off: an
  anchor did not help there), and a client temperature of 0 is greedy for all.

A process holding voters at several temperatures gets one request per temperature, and each
costs one more prompt evaluation (the prompt is processed once per request, then shared by its
``n`` answers). The voters are laid out in temperature order so that each process sees as few
temperatures as possible: one process holding all 5 voters gets three requests (1 greedy,
2 at 0.5, 2 at 0.8), so two more prompt evaluations than one request with ``n = 5``; with one
voter per process each process gets one request.

When the strategy uses the voters' confidence (``quality``) the answers are asked for with
``logprobs`` (``top_logprobs`` = `TOP_LOGPROBS`), unless the client asked for them itself or
declared tools: llama-server refuses ``logprobs`` with tools on a streamed request (the voters
are always streamed), so tool-calling requests vote without confidence.

    >>> voter_groups([3], {"messages": []}, "similarity")  # doctest: +NORMALIZE_WHITESPACE
    [[Group(n=1, overrides={'temperature': 0.0}), Group(n=1, overrides={'temperature': 0.5}),
      Group(n=1, overrides={'temperature': 0.8})]]
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..vocabulary import Strategy

#: the temperatures the sampled voters take turns at when the client sends none
SAMPLE_TEMPERATURES: tuple[float, ...] = (0.5, 0.8)
#: keep one greedy voter when the client sends a temperature above 0 (measured: no better)
ANCHOR_WITH_CLIENT_TEMPERATURE = False
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


#: a prompt longer than this (characters, about 4 per token) gets no separate greedy anchor: on a
#: process holding several voters the anchor is one more request, and so one more evaluation of
#: the prompt, which on a coding agent's long prompts costs more than the vote can win back
ANCHOR_MAX_PROMPT_CHARS = 6000


def _prompt_chars(body: dict[str, Any]) -> int:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return len(prompt)
    total = 0
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(str(part.get("text", ""))) for part in content if isinstance(part, dict))
    return total


def anchored(body: dict[str, Any]) -> bool:
    """Whether one voter decodes greedily as the vote's anchor: not for agent turns (the request
    declares ``tools``; its prompt carries their schemas and every tool result) nor for other
    long prompts, where the extra prompt evaluation is the cost that matters."""
    return not body.get("tools") and _prompt_chars(body) <= ANCHOR_MAX_PROMPT_CHARS


def voter_temperatures(total: int, body: dict[str, Any]) -> list[float | None]:
    """The temperature of each of ``total`` voters, greedy first (None: keep the client's)."""
    if total <= 0:
        return []
    if not anchored(body):
        return [None] * total
    client = _client_temperature(body)
    if client is None:
        ladder = [SAMPLE_TEMPERATURES[i % len(SAMPLE_TEMPERATURES)] for i in range(total - 1)]
        return [0.0, *sorted(ladder)]
    if client <= 0 or not ANCHOR_WITH_CLIENT_TEMPERATURE or total == 1:
        return [None] * total
    return [0.0, *([None] * (total - 1))]


def _confidence_overrides(body: dict[str, Any], strategy: Strategy) -> dict[str, Any]:
    if strategy not in CONFIDENT or body.get("tools") or "logprobs" in body or "top_logprobs" in body:
        return {}
    return {"logprobs": True, "top_logprobs": TOP_LOGPROBS}


def voter_groups(per_process: Sequence[int], body: dict[str, Any], strategy: Strategy) -> list[list[Group]]:
    """For each process (holding ``per_process[i]`` voters) the requests to send it; the groups'
    ``n`` add up to that process's voters. A process with 0 voters gets no request."""
    if any(k < 0 for k in per_process):
        raise ValueError(f"voters per process must be >= 0, got {list(per_process)}")
    temps = voter_temperatures(sum(per_process), body)
    extra = _confidence_overrides(body, strategy)
    out: list[list[Group]] = []
    start = 0
    for k in per_process:
        mine = temps[start : start + k]
        start += k
        groups: list[Group] = []
        for t in dict.fromkeys(mine):  # distinct, in order (greedy first)
            overrides = dict(extra)
            if t is not None:
                overrides["temperature"] = t
            groups.append(Group(mine.count(t), overrides))
        out.append(groups)
    return out

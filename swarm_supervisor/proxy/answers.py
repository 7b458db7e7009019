"""A vote's result as the client sees it: the winner's body with the swarm's model id, the
``swarm`` extension (how the vote went, who voted, what it cost), the ``X-Swarm-*`` headers,
and the same answer as SSE events."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

from ..consensus.certainty import mean_logprob, self_certainty
from ..vocabulary import Endpoint
from .fanout import Ballot
from .sse import answer_events
from .voting import VoterOutcome, first_choice


def billed(outcome: VoterOutcome) -> dict[str, Any]:
    """A voter's usage as it adds up across voters: the prompt counted once per evaluation."""
    usage = dict((outcome.body or {}).get("usage") or {})
    if not outcome.prompt_share:
        usage.pop("prompt_tokens", None)
        usage.pop("total_tokens", None)
    return usage


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def candidates(ballot: Ballot) -> list[dict[str, Any]]:
    """Every answer the vote counted, as the voter wrote it, with what the vote knew of it: the
    voter's temperature (None: none was sent, so llama-server's default), its cluster (index into
    ``clusters``; None when the vote dropped it) and its own confidence (None without
    log-probabilities). Sent only when the client asks (``swarm_candidates``)."""
    verdict = ballot.verdict
    cluster_of = {i: k for k, members in enumerate(verdict.clusters) for i in members}
    temperature = {o.id: o.temperature for o in ballot.outcomes}
    return [
        {
            "voter": c.voter,
            "temperature": temperature.get(c.voter),
            "cluster": cluster_of.get(i),
            "content": c.content,
            "tool_calls": c.tool_calls,
            "finish_reason": c.finish_reason,
            "mean_logprob": _rounded(mean_logprob(c)),
            "self_certainty": _rounded(self_certainty(c)),
        }
        for i, c in enumerate(ballot.candidates)
    ]


def extension(
    ballot: Ballot, fallback: dict[str, str] | None = None, with_candidates: bool = False
) -> dict[str, Any]:
    """The ``swarm`` object: how the vote went, who voted, and the stand-in model's ``fallback``
    facts (``pool.fallback``: None unless the embedded stand-in runs; docs/api.md); every
    counted answer too when ``with_candidates``."""
    ids = [c.voter for c in ballot.candidates]
    answered = {c.voter: c.kind for c in ballot.candidates}
    verdict = ballot.verdict
    total: dict[str, int] = {}
    for o in ballot.outcomes:
        for key, value in billed(o).items():
            if isinstance(value, int):
                total[key] = total.get(key, 0) + value
    if "prompt_tokens" in total:
        total["total_tokens"] = total["prompt_tokens"] + total.get("completion_tokens", 0)
    out = {
        "votes": len(ids),
        "asked": len(ballot.outcomes),
        "winner": ids[verdict.winner],
        "clusters": [[ids[i] for i in cluster] for cluster in verdict.clusters],
        "agreement": round(verdict.agreement, 4),
        "strategy": verdict.strategy,
        "kind": verdict.kind,
        "mean_similarity": round(verdict.mean_similarity, 4),
        "dropped": [{"voter": ids[d.index], "reason": d.reason} for d in verdict.dropped],
        "recovered": {ids[i]: form for i, form in verdict.recovered.items()},
        "usage_total": total,
        "requests": ballot.requests,
        "voters": [
            {
                "id": o.id,
                "instance": o.instance,
                "latency_ms": round(o.latency_s * 1000, 1),
                "ok": o.ok,
                "error": o.error,
                # what it answered, as it wrote it: text, tool_calls or none (null: no answer)
                "answer": answered.get(o.id),
            }
            for o in ballot.outcomes
        ],
        "fallback": fallback,
    }
    if with_candidates:
        out["candidates"] = candidates(ballot)
    return out


def swarm_headers(ballot: Ballot) -> dict[str, str]:
    return {
        "X-Swarm-Agreement": f"{ballot.verdict.agreement:.3f}",
        "X-Swarm-Strategy": ballot.verdict.strategy,
        "X-Swarm-Votes": str(len(ballot.candidates)),
        "X-Swarm-Winner": ballot.winner.id,
    }


def answer(
    ballot: Ballot,
    model: str,
    logprobs: bool = False,
    fallback: dict[str, str] | None = None,
    with_candidates: bool = False,
) -> dict[str, Any]:
    """The winner's body as the client sees it: one choice, the swarm's ``model`` id, the
    extension. ``usage`` is the winner's own; ``swarm.usage_total`` sums every voter's."""
    body = dict(ballot.winner.body or {})
    body["model"] = model
    choice = {**first_choice(body), "index": 0}
    if not logprobs:
        choice.pop("logprobs", None)  # asked of the voters for the vote's own use only
    body["choices"] = [choice]
    body["swarm"] = extension(ballot, fallback, with_candidates)
    return body


def events(
    ballot: Ballot,
    endpoint: Endpoint,
    model: str,
    include_usage: bool,
    logprobs: bool = False,
    fallback: dict[str, str] | None = None,
    with_candidates: bool = False,
) -> Iterator[bytes]:
    """The winner as SSE events (sse.py), with the swarm's ``model`` id and the extension."""
    body = ballot.winner.body or {}
    choice = first_choice(body)
    return answer_events(
        endpoint,
        choice,
        logprobs=choice.get("logprobs") if logprobs else None,
        id=str(body.get("id") or f"chatcmpl-{uuid.uuid4().hex}"),
        created=int(body.get("created") or time.time()),
        model=model,
        usage=body.get("usage"),
        include_usage=include_usage,
        extension=extension(ballot, fallback, with_candidates),
    )

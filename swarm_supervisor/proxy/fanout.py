"""Fan-out: one request per voter (a slot), each with its own seed; collect until quorum or deadline.

Stragglers are cancelled as soon as the vote is settled: cancelling a call closes its connection and
llama-server frees the slot. Voters that fail or time out do not vote.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import Strategy
from ..consensus import Candidate, Verdict
from .client import UpstreamClient, UpstreamFailure
from .collect import assemble
from .errors import ApiError, UpstreamStatusError
from .stragglers import GAVE_UP, StragglerPolicy
from .upstreams import Upstream
from .voting import Kind, VoterOutcome, candidate_of, decide, enough, prompt_text, usable

_SEED_SPAN = 2**31 - 1


@dataclass
class Ballot:
    """The result of a fan-out and vote: the winner's upstream body, the verdict, every voter."""

    winner: VoterOutcome
    verdict: Verdict
    outcomes: list[VoterOutcome]
    candidates: list[Candidate] = field(default_factory=list)


def voter_plan(upstreams: list[Upstream]) -> list[tuple[str, Upstream]]:
    """(voter id, upstream) for every slot of every ready upstream, slot-major so that the first
    voters land on different processes."""
    out: list[tuple[str, Upstream]] = []
    depth = max((u.slots for u in upstreams), default=0)
    for k in range(depth):
        out.extend((f"{u.id}.{k}", u) for u in upstreams if k < u.slots)
    return out


def seeds(count: int, seed: int | None) -> list[int]:
    """One seed per voter: the request's seed, then its successors; random when none was given."""
    base = random.randrange(_SEED_SPAN) if seed is None else seed
    return [(base + i) % _SEED_SPAN for i in range(count)]


async def _call(
    client: UpstreamClient, url: str, body: dict[str, Any], outcome: VoterOutcome, kind: Kind
) -> VoterOutcome:
    start = time.perf_counter()
    try:
        async with client.stream(url, body) as payloads:
            answer = await assemble(payloads, kind)
        if not usable(answer):
            raise UpstreamFailure("invalid_json", "the answer has no choices")
        outcome.body = answer
        outcome.ok = True
    except UpstreamFailure as exc:
        outcome.error = str(exc)
        raise
    finally:
        outcome.latency_s = time.perf_counter() - start
    return outcome


async def fan_out(
    client: UpstreamClient,
    upstreams: list[Upstream],
    path: str,
    body: dict[str, Any],
    *,
    kind: Kind,
    strategy: Strategy,
    threshold: float,
    quorum: bool,
    timeout_s: float,
    on_done: Callable[[VoterOutcome], None] | None = None,
    stragglers: StragglerPolicy | None = None,
) -> Ballot:
    """Send ``body`` to every voter, vote on the answers; raise :class:`ApiError` when none answer."""
    plan = voter_plan(upstreams)
    per_voter = seeds(len(plan), body.get("seed"))
    outcomes = [VoterOutcome(id=vid, instance=u.id) for vid, u in plan]
    tasks: dict[asyncio.Task[VoterOutcome], VoterOutcome] = {}
    for (_, u), seed, outcome in zip(plan, per_voter, outcomes, strict=True):
        # streamed: closing a stream is what makes llama-server stop a cancelled voter (collect.py)
        voter_body = {**body, "seed": seed, "stream": True, "stream_options": {"include_usage": True}, "n": 1}
        task = asyncio.ensure_future(_call(client, u.url + path, voter_body, outcome, kind))
        tasks[task] = outcome

    prompt = prompt_text(kind, body)
    candidates: list[Candidate] = []
    failures: list[UpstreamFailure] = []
    pending = set(tasks)
    start = time.monotonic()
    deadline = start + timeout_s
    policy = stragglers or StragglerPolicy()
    cutoff = deadline
    try:
        while pending:
            latencies = [tasks[t].latency_s for t in tasks if t.done() and tasks[t].ok]
            cutoff = min(deadline, policy.cutoff(start, latencies, len(failures), len(plan)))
            left = cutoff - time.monotonic()
            if left <= 0:
                break
            done, pending = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if isinstance(exc, UpstreamFailure):
                    failures.append(exc)
                elif exc is not None:
                    tasks[task].error = f"{type(exc).__name__}: {exc}"
                else:
                    candidates.append(candidate_of(tasks[task], kind))
            if (
                quorum
                and candidates
                and pending
                and enough(candidates, len(plan), strategy, threshold, prompt)
            ):
                break
    finally:
        now = time.monotonic()
        reason = "timed out" if now >= deadline else GAVE_UP if now >= cutoff else "cancelled"
        for task in pending:
            task.cancel()
            tasks[task].error = reason
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if on_done is not None:
            for outcome in outcomes:
                on_done(outcome)

    if not candidates:
        raise no_answer(failures, timed_out=any(o.error == "timed out" for o in outcomes))
    verdict = decide(candidates, strategy, threshold, prompt)
    by_id = {o.id: o for o in outcomes}
    winner = by_id[candidates[verdict.winner].voter]
    return Ballot(winner=winner, verdict=verdict, outcomes=outcomes, candidates=candidates)


#: how llama-server words a 500 that is about the request (its input parsing), not about itself
_REJECTION = re.compile(r"^Failed to parse|not supported|^Invalid |^Unsupported |must be ", re.IGNORECASE)


def no_answer(failures: list[UpstreamFailure], *, timed_out: bool) -> ApiError:
    """The error for a fan-out in which no voter answered."""
    statuses = {f.status for f in failures}
    if failures and len(statuses) == 1:
        status = next(iter(statuses))
        if status is not None and 400 <= status < 500 and isinstance(failures[0].body, dict):
            return UpstreamStatusError(status, failures[0].body)
        rejected = _unanimous_rejection(failures) if status == 500 else None
        if rejected is not None:
            return ApiError(
                400, f"the instances rejected the request: {rejected}", code="rejected_by_instances"
            )
    if timed_out:
        return ApiError(
            504,
            "no instance answered before the deadline (proxy.request_timeout_s); "
            "ask for fewer tokens or raise the timeout",
            type="timeout",
            code="upstream_timeout",
        )
    detail = "; ".join(sorted({str(f) for f in failures})) or "no answer"
    return ApiError(
        502,
        f"every instance failed to answer ({detail}); `swarm logs` shows why",
        type="upstream_error",
        code="upstream_failed",
    )


def _unanimous_rejection(failures: list[UpstreamFailure]) -> str | None:
    """llama-server answers 500 to some requests it cannot take (``Failed to parse messages: ...``,
    ``image input is not supported``). When every voter gave the same message of that kind, the
    request is at fault, not an instance: the message, else None (then it is a 502)."""
    messages = set()
    for f in failures:
        err = f.body.get("error") if isinstance(f.body, dict) else None
        message = err.get("message") if isinstance(err, dict) else None
        if not isinstance(message, str) or not message:
            return None
        messages.add(message)
    if len(messages) != 1:
        return None
    message = messages.pop()
    return message if _REJECTION.search(message) else None

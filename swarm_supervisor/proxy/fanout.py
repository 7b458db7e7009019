"""Fan-out: every voter asked, each with its own seed; collect until quorum or deadline.

A process that holds k voters (slots) gets ONE request with ``n = k``: llama-server evaluates
the prompt once, copies its state to k slots and samples each child with seed + i. A coding
agent's prompts are long and its answers short, so this is most of what a vote costs
(ARCHITECTURE.md, "One prefill per process"). A server that ignores ``n`` (an older build
answers one choice) is remembered and asked once per voter from then on.

Stragglers are cancelled as soon as the vote is settled: cancelling a request closes its
connection and llama-server frees its slots (all k children of an ``n = k`` request at once).
Voters that fail or time out do not vote.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..consensus import Candidate, Verdict
from ..vocabulary import Endpoint, Strategy
from .client import UpstreamClient, UpstreamFailure
from .collect import Collected, assemble_choices
from .errors import ApiError, UpstreamStatusError
from .sampling import Group, voter_groups
from .stragglers import GAVE_UP, StragglerPolicy
from .upstreams import Upstream
from .voting import VoterOutcome, candidate_of, decide, enough, vote_request

_SEED_SPAN = 2**31 - 1


@dataclass
class Ballot:
    """The result of a fan-out and vote: the winner's upstream body, the verdict, every voter."""

    winner: VoterOutcome
    verdict: Verdict
    outcomes: list[VoterOutcome]
    candidates: list[Candidate] = field(default_factory=list)
    requests: int = 0  # upstream requests sent (one per group, more where a server ignored n)


@dataclass
class _Request:
    """One upstream request: ``n`` voters of one process."""

    upstream: Upstream
    group: Group
    seed: int
    voters: list[VoterOutcome]


#: llama.cpp's "pick a random seed" (``LLAMA_DEFAULT_SEED``, 0xFFFFFFFF, as a signed int)
RANDOM_SEED = -1


def seeds(count: int, seed: int | None) -> list[int]:
    """One seed per voter: the request's seed, then its successors. Without a seed, or with
    llama.cpp's ``-1`` ("random"), a fresh random base on every request: voters with the same
    seeds on every request would repeat the same answers and the same errors."""
    base = random.randrange(_SEED_SPAN) if seed is None or seed == RANDOM_SEED else seed
    return [(base + i) % _SEED_SPAN for i in range(count)]


def _requests(
    upstreams: list[Upstream], body: dict[str, Any], strategy: Strategy, single: set[str]
) -> list[_Request]:
    """The requests of one vote, voters numbered ``INSTANCE.K`` within each process."""
    per_process = [u.per_request for u in upstreams]
    groups = voter_groups(per_process, body, strategy)
    total = sum(per_process)
    base = seeds(total, body.get("seed"))
    out: list[_Request] = []
    offset = 0
    for u, u_groups in zip(upstreams, groups, strict=True):
        k = 0
        for g in u_groups:
            parts = [Group(1, g.overrides)] * g.n if u.url in single else [g]
            for part in parts:
                voters = [VoterOutcome(id=f"{u.id}.{k + j}", instance=u.id) for j in range(part.n)]
                out.append(_Request(u, part, base[offset % total], voters))
                offset += part.n
                k += part.n
    return out


async def _run(
    client: UpstreamClient,
    req: _Request,
    path: str,
    body: dict[str, Any],
    endpoint: Endpoint,
    inbox: asyncio.Queue[tuple[_Request, int, dict[str, Any]]],
) -> Collected:
    """Send one request; put each finished choice in ``inbox``; return what the stream held."""
    start = time.perf_counter()
    upstream_body = {
        **body,
        **req.group.overrides,
        "seed": req.seed,
        "stream": True,
        "stream_options": {"include_usage": True},
        "n": req.group.n,
    }

    def arrived(index: int, answer: dict[str, Any]) -> None:
        if index < len(req.voters):
            req.voters[index].latency_s = time.perf_counter() - start
            inbox.put_nowait((req, index, answer))

    async with client.stream(req.upstream.url + path, upstream_body) as payloads:
        return await assemble_choices(payloads, endpoint, arrived)


def _prompt_share(req: _Request) -> None:
    """The prompt of an ``n = k`` request was evaluated once: its first voter carries it in totals."""
    for index, outcome in enumerate(req.voters):
        outcome.prompt_share = index == 0


async def fan_out(
    client: UpstreamClient,
    upstreams: list[Upstream],
    path: str,
    body: dict[str, Any],
    *,
    endpoint: Endpoint,
    strategy: Strategy,
    threshold: float,
    quorum: bool,
    timeout_s: float,
    on_done: Callable[[VoterOutcome], None] | None = None,
    stragglers: StragglerPolicy | None = None,
) -> Ballot:
    """Ask every voter, vote on the answers; raise :class:`ApiError` when none answer."""
    requests = _requests(upstreams, body, strategy, client.ignores_n)
    outcomes = [o for r in requests for o in r.voters]
    inbox: asyncio.Queue[tuple[_Request, int, dict[str, Any]]] = asyncio.Queue()
    tasks: dict[asyncio.Task[Collected], _Request] = {}
    running: set[asyncio.Task[Collected]] = set()

    def launch(req: _Request) -> None:
        task = asyncio.ensure_future(_run(client, req, path, body, endpoint, inbox))
        tasks[task] = req
        running.add(task)

    for req in requests:
        launch(req)

    prompt = vote_request(endpoint, body, len(outcomes))  # what the vote reads: text, tools, voters
    candidates: list[Candidate] = []
    failures: list[UpstreamFailure] = []
    finished: set[asyncio.Task[Collected]] = set()
    start = time.monotonic()
    deadline = start + timeout_s
    cutoff = deadline  # earlier once most voters answered: stragglers.py
    policy = stragglers or StragglerPolicy()
    settled = False
    try:
        while True:
            _absorb(inbox, candidates, endpoint)
            for task in finished:
                failure = _finish(task, tasks[task], client.ignores_n, launch)
                if failure is not None:
                    failures.append(failure)
            finished = set()
            waiting = any(not o.ok and o.error is None for o in outcomes)
            if (
                quorum
                and candidates
                and waiting
                # a voter that failed is not outstanding: it can no longer change the vote
                and enough(
                    candidates, sum(o.ok or o.error is None for o in outcomes), strategy, threshold, prompt
                )
            ):
                settled = True
                break
            answered = [o.latency_s for o in outcomes if o.ok]
            failed = sum(1 for o in outcomes if not o.ok and o.error is not None)
            cutoff = min(deadline, policy.cutoff(start, answered, failed, len(outcomes)))
            left = cutoff - time.monotonic()
            if not running or left <= 0:
                break
            getter = asyncio.ensure_future(inbox.get())
            done, _ = await asyncio.wait(
                running | {getter}, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            if getter in done:
                inbox.put_nowait(getter.result())  # absorbed at the top of the loop, in order
            else:
                getter.cancel()
                await asyncio.gather(getter, return_exceptions=True)
            finished = done - {getter}  # type: ignore[assignment]
            running -= finished
    finally:
        reason = _why_left(settled, time.monotonic(), deadline, cutoff)
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        _absorb(inbox, candidates, endpoint)  # answers that arrived while the loop was leaving still vote
        for o in outcomes:
            if not o.ok and o.error is None:
                o.error = reason
        for req in tasks.values():
            _prompt_share(req)
        if on_done is not None:
            for outcome in outcomes:
                on_done(outcome)

    if not candidates:
        raise no_answer(failures, timed_out=any(o.error == "timed out" for o in outcomes))
    verdict = decide(candidates, strategy, threshold, prompt)
    by_id = {o.id: o for o in outcomes}
    winner = by_id[candidates[verdict.winner].voter]
    return Ballot(
        winner=winner, verdict=verdict, outcomes=outcomes, candidates=candidates, requests=len(tasks)
    )


def _why_left(settled: bool, now: float, deadline: float, cutoff: float) -> str:
    """What a voter still out when the loop ended is told (its ``error``)."""
    if settled:
        return "cancelled"
    if now >= deadline:
        return "timed out"
    return GAVE_UP if now >= cutoff else "cancelled"


def _absorb(
    inbox: asyncio.Queue[tuple[_Request, int, dict[str, Any]]],
    candidates: list[Candidate],
    endpoint: Endpoint,
) -> None:
    """Move the answers that arrived into ``candidates`` (each voter once)."""
    while not inbox.empty():
        req, index, answer = inbox.get_nowait()
        outcome = req.voters[index]
        if outcome.ok:
            continue
        outcome.body, outcome.ok, outcome.error = answer, True, None
        candidates.append(candidate_of(outcome, endpoint))


def _finish(
    task: asyncio.Task[Collected],
    req: _Request,
    single: set[str],
    launch: Callable[[_Request], None],
) -> UpstreamFailure | None:
    """A request ended: mark its unanswered voters failed, or (a server that answered fewer
    choices than ``n`` asked for ignores ``n``) ask them again one request each."""
    exc = task.exception()
    missing = [o for o in req.voters if not o.ok and o.error is None]
    if exc is None:
        if missing:
            single.add(req.upstream.url)
            for outcome in missing:
                index = req.voters.index(outcome)
                seed = (req.seed + index) % _SEED_SPAN
                launch(_Request(req.upstream, Group(1, req.group.overrides), seed, [outcome]))
        return None
    for o in missing:
        o.error = str(exc) if isinstance(exc, UpstreamFailure) else f"{type(exc).__name__}: {exc}"
    return exc if isinstance(exc, UpstreamFailure) else None


#: how llama-server words a 500 that is about the request (its input parsing), not about itself
_REJECTION = re.compile(r"^Failed to parse|not supported|^Invalid |^Unsupported |must be ", re.IGNORECASE)


def no_answer(failures: list[UpstreamFailure], *, timed_out: bool) -> ApiError:
    """The error for a fan-out in which no voter answered."""
    statuses = {f.status for f in failures}
    if failures and len(statuses) == 1:
        status = next(iter(statuses))
        if status in (401, 403):  # the instances refuse the swarm's own key: never the client's fault
            return ApiError(
                502,
                "the instances refused the swarm's internal key (its key file changed since they "
                "started); restart the swarm: `swarm down`, then `swarm up`",
                type="upstream_error",
                code="internal_key_rejected",
            )
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
    ``image input is not supported``). When every voter gave the same message of that sort, the
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

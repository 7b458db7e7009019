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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..consensus import Candidate, Verdict, quorum_reached, vote
from ..vocabulary import Endpoint, Strategy
from .client import UpstreamClient
from .collect import Collected, assemble_choices
from .failures import UpstreamCancelled, UpstreamFailure, UpstreamTimeout, no_answer
from .sampling import SEED_SPAN, VOTER_TEMPERATURE, Group, seeds, voter_groups
from .stragglers import GAVE_UP, StragglerPolicy
from .upstreams import Upstream
from .voting import VoterOutcome, candidate_of, vote_request


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


def _requests(
    upstreams: list[Upstream],
    body: dict[str, Any],
    strategy: Strategy,
    single: set[str],
    temperature: float | None,
    cap: bool,
) -> list[_Request]:
    """The requests of one vote, voters numbered ``INSTANCE.K`` within each process."""
    per_process = [u.per_request for u in upstreams]
    groups = voter_groups(per_process, body, strategy, temperature, cap)
    total = sum(per_process)
    base = seeds(total, body.get("seed"))
    out: list[_Request] = []
    offset = 0
    for u, u_groups in zip(upstreams, groups, strict=True):
        k = 0
        for g in u_groups:
            parts = [Group(1, g.overrides)] * g.n if u.url in single else [g]
            for part in parts:
                t = part.overrides.get("temperature", body.get("temperature"))
                voters = [
                    VoterOutcome(id=f"{u.id}.{k + j}", instance=u.id, temperature=t) for j in range(part.n)
                ]
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
    temperature: float | None = VOTER_TEMPERATURE,
    cap_temperature: bool = True,
) -> Ballot:
    """Ask every voter, vote on the answers; raise :class:`ApiError` when none answer.
    ``temperature``: the voters' when the client sent none, and with ``cap_temperature`` the most
    a vote samples at (proxy/sampling.py)."""
    requests = _requests(upstreams, body, strategy, client.ignores_n, temperature, cap_temperature)
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

    ask = vote_request(endpoint, body, len(outcomes))  # what the vote reads: text, tools, voters
    candidates: list[Candidate] = []
    failures: list[UpstreamFailure] = []
    finished: set[asyncio.Task[Collected]] = set()
    start = time.monotonic()
    deadline = start + timeout_s
    cutoff = deadline  # earlier once most voters answered: stragglers.py
    policy = stragglers or StragglerPolicy()
    settled = False
    getter: asyncio.Future[tuple[_Request, int, dict[str, Any]]] | None = None
    try:
        while True:
            _absorb(inbox, candidates, endpoint)
            for task in finished:
                failure = _finish(task, tasks[task], client.ignores_n, launch)
                if failure is not None:
                    failures.append(failure)
            finished = set()
            waiting = any(o.outstanding for o in outcomes)
            if (
                quorum
                and candidates
                and waiting
                # a voter that failed is not outstanding: it can no longer change the vote
                and quorum_reached(
                    candidates,
                    strategy,
                    threshold,
                    asked=sum(o.ok or o.outstanding for o in outcomes),
                    prompt=ask.prompt,
                    tools=ask.tools,
                )
            ):
                settled = True
                break
            answered = [o.latency_s for o in outcomes if o.ok]
            failed = sum(1 for o in outcomes if o.failure is not None)
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
        # the getter too: this fan-out may be cancelled while it waits (the client left)
        outstanding: list[asyncio.Future[Any]] = [*running, *([getter] if getter is not None else [])]
        for future in outstanding:
            future.cancel()
        if outstanding:
            await asyncio.gather(*outstanding, return_exceptions=True)
        _absorb(inbox, candidates, endpoint)  # answers that arrived while the loop was leaving still vote
        for o in outcomes:
            if o.outstanding:
                o.failure = reason
        for req in tasks.values():
            _prompt_share(req)
        if on_done is not None:
            for outcome in outcomes:
                on_done(outcome)

    if not candidates:
        raise no_answer(failures, timed_out=any(isinstance(o.failure, UpstreamTimeout) for o in outcomes))
    verdict = vote(candidates, strategy, threshold, asked=ask.voters, prompt=ask.prompt, tools=ask.tools)
    by_id = {o.id: o for o in outcomes}
    winner = by_id[candidates[verdict.winner].voter]
    return Ballot(
        winner=winner, verdict=verdict, outcomes=outcomes, candidates=candidates, requests=len(tasks)
    )


def _why_left(settled: bool, now: float, deadline: float, cutoff: float) -> UpstreamFailure:
    """Why a voter still out when the loop ended gave no answer (its ``failure``)."""
    if settled:
        return UpstreamCancelled("cancelled")
    if now >= deadline:
        return UpstreamTimeout("timed out")
    return UpstreamTimeout(GAVE_UP) if now >= cutoff else UpstreamCancelled("cancelled")


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
        outcome.body, outcome.ok, outcome.failure = answer, True, None
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
    missing = [o for o in req.voters if o.outstanding]
    if exc is None:
        if missing:
            single.add(req.upstream.url)
            for outcome in missing:
                index = req.voters.index(outcome)
                seed = (req.seed + index) % SEED_SPAN
                launch(_Request(req.upstream, Group(1, req.group.overrides), seed, [outcome]))
        return None
    if not isinstance(exc, UpstreamFailure):  # not one of the client's: a bug, shown as it is
        for o in missing:
            o.failure = UpstreamFailure(f"{type(exc).__name__}: {exc}")
        return None
    for o in missing:
        o.failure = exc
    return exc

"""POST /v1/chat/completions and /v1/completions: validate, fan out, vote, answer or stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar, get_args

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..vocabulary import Endpoint, Strategy, StreamMode
from .answers import answer, billed, events, swarm_headers
from .budget import check_budget
from .client import UpstreamClient
from .context import Context
from .errors import ApiError, bad_request, unavailable
from .failures import UpstreamCancelled, UpstreamTimeout
from .fanout import Ballot, fan_out
from .fields import completion_format, token_ids
from .relay import OpenStream, first_stream, relay
from .schemas import ChatRequest, CompletionRequest, forwardable, parse_json, validate
from .served import check_model
from .sse import KEEPALIVE, event
from .stragglers import StragglerPolicy
from .vocab import check_vocab, vocab_size
from .voting import VoterOutcome, as_answered

T = TypeVar("T")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
PATHS: dict[Endpoint, str] = {"chat": "/v1/chat/completions", "completion": "/v1/completions"}


class ClientGone(Exception):
    """The client closed its connection before the answer was ready."""


async def read_body(request: Request, limit: int, timeout_s: float = 60.0) -> bytes:
    """The request body, refusing more than ``limit`` bytes (by Content-Length and by count) and a
    body that takes longer than ``timeout_s`` to arrive (a slow or never-ending upload: 408)."""
    too_big = ApiError(
        413, f"the request body is larger than {limit} bytes (proxy.max_body_bytes)", code="body_too_large"
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks: list[bytes] = []
    total = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                total += len(chunk)
                if total > limit:
                    raise too_big
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(
            408,
            f"the request body did not arrive within {timeout_s:g} s (proxy.body_timeout_s)",
            code="body_timeout",
            headers={"Connection": "close"},
        ) from None
    return b"".join(chunks)


def _choice(value: str | None, allowed: tuple[str, ...], what: str) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    if value not in allowed:
        raise bad_request(f"{what} {value!r} is not one of: {', '.join(allowed)}", param=what)
    return value


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` unless the client goes away first; then cancel it (and its upstream calls)."""
    job = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_wait_disconnect(request))
    try:
        done, _ = await asyncio.wait({job, watch}, return_when=asyncio.FIRST_COMPLETED)
        if job in done:
            return job.result()
        raise ClientGone
    finally:
        for task in (job, watch):
            task.cancel()
        await asyncio.gather(job, watch, return_exceptions=True)


async def handle(ctx: Context, request: Request, endpoint: Endpoint) -> Response:
    s = ctx.settings
    try:
        raw = await read_body(request, s.max_body_bytes, s.body_timeout_s)
    except ClientDisconnect:  # gone before its body arrived: nobody to answer
        return Response(status_code=499)
    data = parse_json(raw)
    req = validate(ChatRequest if endpoint == "chat" else CompletionRequest, data)
    check_model(req.model, ctx.pool, s)  # 404 for a name the swarm does not serve
    strategy: Strategy = (
        req.swarm_strategy
        or _choice(request.headers.get("x-swarm-strategy"), get_args(Strategy), "swarm_strategy")  # type: ignore[assignment]
        or ctx.settings.strategy
    )
    upstreams = ctx.pool.ready()
    if not upstreams:
        raise unavailable(ctx.settings.retry_after_s)
    check_budget(endpoint, data, context=ctx.pool.context, max_messages=s.max_messages)  # before any fan-out
    if ids := token_ids(data.get("logit_bias")):
        check_vocab(ids, await vocab_size(ctx.upstream_client(), ctx.pool, upstreams))
    ctx.pool.client_requests += 1
    body = forwardable(data)
    body.pop("model", None)  # checked above; each instance serves the one model under its own name
    if endpoint == "completion":
        body = completion_format(body)  # llama-server reads response_format on chat only
    client = ctx.upstream_client()
    tools = isinstance(req, ChatRequest) and bool(req.tools)
    if req.stream:
        mode: StreamMode = (
            req.swarm_stream_mode
            or _choice(request.headers.get("x-swarm-stream-mode"), get_args(StreamMode), "swarm_stream_mode")  # type: ignore[assignment]
            or ctx.settings.stream_mode_for(ctx.pool.voters)
        )
        ctx.metrics.observe_request(PATHS[endpoint], mode, tools)
        if mode == "fastest":
            opened = first_stream(client, upstreams, PATHS[endpoint], body, ctx.settings.request_timeout_s)
            return await _stream(ctx, opened, lambda w: relay(w, ctx.pool.model_id), _fastest_headers)
        usage, logprobs, every = req.include_usage, req.wants_logprobs, req.swarm_candidates
        return await _stream(
            ctx,
            _vote(ctx, client, upstreams, endpoint, body, strategy),
            lambda b: _iterate(
                events(b, endpoint, ctx.pool.model_id, usage, logprobs, ctx.pool.fallback, every)
            ),
            swarm_headers,
        )
    ctx.metrics.observe_request(PATHS[endpoint], None, tools)
    try:
        ballot = await until_disconnect(request, _vote(ctx, client, upstreams, endpoint, body, strategy))
    except ClientGone:
        return Response(status_code=499)
    reply = answer(ballot, ctx.pool.model_id, req.wants_logprobs, ctx.pool.fallback, req.swarm_candidates)
    return JSONResponse(reply, headers=swarm_headers(ballot))


async def _vote(
    ctx: Context,
    client: UpstreamClient,
    upstreams: list[Any],
    endpoint: Endpoint,
    body: dict[str, Any],
    strategy: Strategy,
) -> Ballot:
    assert ctx.admission is not None
    async with ctx.admission.turn():
        ballot = await _fan_out(ctx, client, upstreams, endpoint, body, strategy)
    ballot.winner.body = as_answered(ballot.winner.body, ballot.verdict)  # a call written as text
    ctx.metrics.agreement.labels(strategy).observe(ballot.verdict.agreement)
    for outcome in ballot.outcomes:
        if outcome.ok and outcome.body is not None:
            ctx.metrics.observe_usage(billed(outcome))
    return ballot


async def _fan_out(
    ctx: Context,
    client: UpstreamClient,
    upstreams: list[Any],
    endpoint: Endpoint,
    body: dict[str, Any],
    strategy: Strategy,
) -> Ballot:
    s = ctx.settings
    upstreams = ctx.pool.ready() or upstreams  # the pool may have changed while this request waited
    finished: list[VoterOutcome] = []
    try:
        return await fan_out(
            client,
            upstreams,
            PATHS[endpoint],
            body,
            endpoint=endpoint,
            strategy=strategy,
            threshold=s.threshold,
            quorum=s.quorum,
            timeout_s=s.request_timeout_s,
            on_done=finished.append,
            stragglers=StragglerPolicy(s.straggler_min_s, s.straggler_factor),
            temperature=s.voter_temperature,
            cap_temperature=s.cap_client_temperature,
        )
    finally:
        _record_voters(ctx, finished)


def _record_voters(ctx: Context, outcomes: list[VoterOutcome]) -> None:
    """Metrics per voter; for `swarm ps`, one request per instance that took part (its voters'
    answers are one client request, not several), ok when any of its voters answered."""
    per_instance: dict[str, list[VoterOutcome]] = {}
    for o in outcomes:
        if isinstance(o.failure, UpstreamCancelled):
            ctx.metrics.voters.labels(o.instance, "cancelled").inc()
            continue
        outcome = "ok" if o.ok else ("timeout" if isinstance(o.failure, UpstreamTimeout) else "error")
        ctx.metrics.voters.labels(o.instance, outcome).inc()
        if o.ok:
            ctx.metrics.voter_latency.labels(o.instance).observe(o.latency_s)
        per_instance.setdefault(o.instance, []).append(o)
    for instance, mine in per_instance.items():
        answered = [o.latency_s for o in mine if o.ok]
        ctx.pool.record(instance, max(answered or [o.latency_s for o in mine]), bool(answered))


# --------------------------------------------------------------------------- streaming


async def _stream(
    ctx: Context,
    work: Awaitable[T],
    events: Callable[[T], AsyncIterator[bytes]],
    headers: Callable[[T], dict[str, str]],
) -> Response:
    """Stream the ``events`` of what ``work`` gives (a ballot, the fastest stream). Done within
    one keep-alive interval: a real status (an `ApiError` is answered as such) and ``headers``;
    later, a 200 with keep-alive comments meanwhile, and an error as an error event."""
    job = asyncio.ensure_future(work)
    try:
        await asyncio.wait({job}, timeout=ctx.settings.keepalive_s)
    except asyncio.CancelledError:
        job.cancel()
        raise
    if job.done():
        result = job.result()  # raises ApiError: answered with its status
        return StreamingResponse(
            events(result), media_type="text/event-stream", headers={**SSE_HEADERS, **headers(result)}
        )

    async def stream() -> AsyncIterator[bytes]:
        try:
            while not job.done():
                await asyncio.wait({job}, timeout=ctx.settings.keepalive_s)
                if not job.done():
                    yield KEEPALIVE
            try:
                result = job.result()
            except ApiError as exc:
                yield event(exc.body())
                return
            async for ev in events(result):
                yield ev
        finally:
            if not job.done():
                job.cancel()
                await asyncio.gather(job, return_exceptions=True)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


async def _iterate(events: Iterator[bytes]) -> AsyncIterator[bytes]:
    for ev in events:
        yield ev


def _fastest_headers(winner: OpenStream) -> dict[str, str]:
    return {"X-Swarm-Strategy": "fastest", "X-Swarm-Winner": winner.instance}

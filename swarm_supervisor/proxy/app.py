"""The proxy app: ``create_app(pool, settings)`` builds a Starlette app whose lifespan owns the one
shared upstream HTTP client.

    GET  /v1/models             the swarm's model id and its aliases, per-slot context, fallback
    GET  /v1/models/{model}     one of those entries, or 404 model_not_found
    POST /v1/chat/completions   fan-out, vote, answer (or stream the winner)
    POST /v1/completions        the same for plain completions
    GET  /health                200 while at least one instance is ready, else 503 (no key needed)
    GET  /metrics               Prometheus text: the proxy's metrics and the instances' own
    GET  /swarm/status          what `swarm ps` shows
    GET  /openapi.json          the OpenAPI 3.1 document of these endpoints (from the pydantic models)
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .context import Context
from .cors import cors_middleware
from .errors import ApiError, error_body
from .metrics import CONTENT_TYPE, ProxyMetrics
from .request_path import RequestPath
from .served import fallback_headers, model_entries, not_found
from .settings import ProxySettings
from .upstreams import UpstreamPool

log = logging.getLogger(__name__)

MODEL_PATH = "/v1/models/{model}"
#: paths anyone may read even when the proxy has an API key (load balancers, `swarm ps`)
OPEN_PATHS = frozenset({"/health"})
_ENDPOINTS = frozenset(
    {
        "/v1/models",
        "/v1/chat/completions",
        "/v1/completions",
        "/health",
        "/metrics",
        "/swarm/status",
        "/openapi.json",
    }
)


class _Auth:
    """401 for every request without ``Authorization: Bearer <key>`` (except OPEN_PATHS)."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.expected = f"Bearer {key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                err = ApiError(
                    401,
                    "missing or wrong API key: send `Authorization: Bearer <proxy.api_key>`",
                    type="authentication_error",
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await err.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _Observe:
    """Requests by endpoint and status, and their duration to the last byte."""

    def __init__(self, app: ASGIApp, metrics: ProxyMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in _ENDPOINTS else MODEL_PATH if path.startswith("/v1/models/") else "other"
        start = time.perf_counter()
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)


def create_app(
    pool: UpstreamPool, settings: ProxySettings | None = None, *, load_at_start: bool = True
) -> Starlette:
    """The proxy over ``pool`` (which the supervisor keeps up to date). ``load_at_start``: load
    the request path (:mod:`.request_path`) when the app starts; False leaves that to whoever
    calls ``app.state.request_path.start()`` (the supervisor, once the instances are ready) or to
    the first request that needs it."""
    settings = settings or ProxySettings()
    ctx = Context(pool=pool, settings=settings, metrics=ProxyMetrics(pool))
    path = RequestPath(ctx)
    started = int(time.time())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if load_at_start:
            path.start()
        try:
            yield
        finally:
            await path.close()

    async def chat(request: Request) -> Response:
        response = await path.handle(request, "chat")
        response.headers.update(fallback_headers(pool))
        return response

    async def completions(request: Request) -> Response:
        response = await path.handle(request, "completion")
        response.headers.update(fallback_headers(pool))
        return response

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": model_entries(pool, settings, started)})

    async def model(request: Request) -> Response:
        name = request.path_params["model"]
        if not name:  # GET /v1/models/: no name, a trailing slash (_http_error names the path)
            raise HTTPException(404)
        for entry in model_entries(pool, settings, started):
            if entry["id"] == name:
                return JSONResponse(entry)
        raise not_found(name, pool, settings)

    async def health(request: Request) -> Response:
        ready = pool.ready() if path.error is None else []
        body = {
            "status": "ok" if ready else "unavailable",
            "model": pool.model_id,
            "ready": len(ready),
            "voters": pool.voters,
            "instances": dict(sorted(pool.states.items())),
            "fallback": pool.fallback,
        }
        if path.error is not None:
            body["error"] = f"the proxy cannot load its request handlers: {path.error}"
        headers = {} if ready else {"Retry-After": str(settings.retry_after_s)}
        return JSONResponse(body, status_code=200 if ready else 503, headers=headers)

    async def metrics(request: Request) -> Response:
        with contextlib.suppress(Exception):  # a failed load: the proxy's own metrics still
            await path.ready()  # the instances' metrics come through the upstream client
        text = await ctx.metrics.render(ctx.client, settings.metrics_timeout_s)
        return Response(text, media_type=CONTENT_TYPE)

    async def status(request: Request) -> Response:
        if pool.status is not None:
            return JSONResponse(pool.status)
        return JSONResponse(minimal_status(pool))

    async def openapi(request: Request) -> Response:
        from .openapi import openapi_document  # built on request: not at the start `swarm up` waits for

        return JSONResponse(openapi_document(settings))

    middleware = [cors_middleware(settings.cors_origins)] if settings.cors_origins else []
    middleware.append(Middleware(_Observe, metrics=ctx.metrics))
    if settings.api_key:
        middleware.append(Middleware(_Auth, key=settings.api_key))

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/models/{model:path}", model, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/swarm/status", status, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ],
        middleware=middleware,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _crash},
        lifespan=lifespan,
    )
    # a path with a trailing slash is a 404 that names the right path, as OpenAI and llama-server
    # answer it, not Starlette's redirect (a Location built from the client's Host header)
    app.router.redirect_slashes = False
    app.state.ctx = ctx
    app.state.request_path = path
    return app


def minimal_status(pool: UpstreamPool) -> dict[str, Any]:
    """/swarm/status when no supervisor published a status."""
    ready = {u.id for u in pool.ready()}
    instances = []
    for uid, u in sorted(pool.upstreams.items()):
        st = pool.stats.get(uid)
        instances.append(
            {
                "id": uid,
                "url": u.url,
                "slots": u.slots,
                "state": pool.states.get(uid, "unknown"),
                "ready": uid in ready,
                "requests": st.requests if st else 0,
                "errors": st.errors if st else 0,
                "avg_latency_s": st.avg_latency_s if st else None,
            }
        )
    return {
        "model": pool.model_id,
        "context": pool.context,
        "voters": pool.voters,
        "requests": pool.client_requests,
        "fallback": pool.fallback,
        "instances": instances,
    }


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if exc.status >= 500:  # the client sees a 5xx: the log says why
        log.warning("%s %s answered %d: %s", request.method, request.url.path, exc.status, exc.message)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
    path = request.url.path
    message = f"{request.method} {path}: {exc.detail}"
    if exc.status_code == 404 and path.endswith("/") and path.rstrip("/") in _ENDPOINTS:
        message += f"; the endpoint is {path.rstrip('/')}, without the trailing slash"
    return JSONResponse(error_body(message, type=kind), status_code=exc.status_code, headers=exc.headers)


async def _crash(request: Request, exc: Exception) -> Response:
    log.exception("proxy error on %s %s", request.method, request.url.path)
    body = error_body(f"internal proxy error: {type(exc).__name__}", type="server_error")
    return JSONResponse(body, status_code=500)

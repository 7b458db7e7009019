"""The request path (the handlers, the vote, the upstream client on aiohttp), loaded off the loop.

Those modules are most of the proxy's import time (about 0.35 s of one core's CPU: aiohttp alone
0.2 s, the vote and rapidfuzz 0.1 s). At ``swarm up`` that CPU competed with the models loading on
the same cores, while nothing needs it before the first completion request. So the app is built
and listening without them, and :meth:`RequestPath.start` loads them in a worker thread:

- the supervisor calls it as soon as the proxy listens where the models load onto GPUs or leave
  a core free, else once every instance is ready, so that on a CPU whose cores the instances take
  ``swarm up`` returns as soon as the models have loaded
  (:func:`~..swarm.daemon.request_path_beside_models`);
- an app used on its own (tests, ``bench/overhead.py``) starts it with its lifespan;
- a request that needs it first waits for it (``/health``, ``/v1/models`` and ``/swarm/status``
  answer meanwhile); after a failed load each such request gets a 500 that names the error, and
  ``/health`` a 503 with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from ..vocabulary import Endpoint
from .context import Context
from .errors import ApiError

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

Handle = Callable[[Context, Request, Endpoint], Awaitable[Response]]


def _import() -> tuple[ModuleType, ModuleType]:
    return (
        importlib.import_module("swarm_supervisor.proxy.handlers"),
        importlib.import_module("swarm_supervisor.proxy.client"),
    )


class RequestPath:
    """Loads the handlers and the upstream client once, then hands requests to them."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._task: asyncio.Task[None] | None = None
        self._handle: Handle | None = None
        self._session: aiohttp.ClientSession | None = None
        #: why the load failed ("ImportError: ..."), else None
        self.error: str | None = None

    @property
    def loaded(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        """Begin loading, in the running loop (once: later calls do nothing)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._load(), name="request-path")

    async def _load(self) -> None:
        t0 = time.perf_counter()
        try:
            handlers, client = await asyncio.to_thread(_import)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("the proxy cannot load its request handlers: %s", self.error)
            raise
        self._session = client.new_session()
        self.ctx.client = client.UpstreamClient(self._session, self.ctx.pool)
        self._handle = handlers.handle
        log.info("request path loaded in %.2f s", time.perf_counter() - t0)

    async def ready(self) -> None:
        """Return once loaded (starting the load if nobody has); raises what the load raised."""
        self.start()
        assert self._task is not None
        # shielded: a request that is cancelled while it waits leaves the load running for the next
        await asyncio.shield(self._task)

    async def handle(self, request: Request, kind: Endpoint) -> Response:
        if self._handle is None:
            try:
                await self.ready()
            except Exception as exc:
                why = self.error or exc
                message = f"the proxy cannot load its request handlers ({why}): see supervisor.log"
                raise ApiError(500, message, type="server_error") from exc
            assert self._handle is not None
        return await self._handle(self.ctx, request, kind)

    async def close(self) -> None:
        """Close the upstream client (after a load still under way, which a thread cannot cancel)."""
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        self.ctx.client = None
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def request_path_of(app: Any) -> RequestPath | None:
    """The :class:`RequestPath` of a proxy app (:func:`~.app.create_app`), else None."""
    return getattr(getattr(app, "state", None), "request_path", None)

"""Serve the proxy with uvicorn (httptools) inside an event loop that is already running.

The supervisor runs the proxy and its health loop in one process and one loop::

    server = ProxyServer(create_app(pool, settings), host="127.0.0.1", port=0)
    await server.start()          # bound and serving; server.port is the real port
    ...
    await server.stop()

Standalone (``bench/overhead.py`` serves the proxy alone): :func:`run` blocks in a uvloop loop
until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from .guard import ServerLimits, guarded_protocol
from .request_path import request_path_of


def _limits_of(app: ASGIApp) -> ServerLimits:
    ctx = getattr(getattr(app, "state", None), "ctx", None)
    s = getattr(ctx, "settings", None)
    if s is None:
        return ServerLimits()
    return ServerLimits(s.max_header_bytes, s.max_connections, s.header_timeout_s)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host (the supervisor's loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ProxyServer:
    """uvicorn serving ``app`` in the current loop, on a socket bound before it starts."""

    def __init__(
        self,
        app: ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        limits: ServerLimits | None = None,
    ) -> None:
        """``limits``: header size, open connections, head deadline (guard.py); None: the
        app's own ``ProxySettings`` when it is a proxy app, else the defaults."""
        self.limits = limits or _limits_of(app)
        self.config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http=guarded_protocol(self.limits),
            ws="none",  # no WebSocket endpoint: and "auto" imports websockets (45 ms) at every start
            lifespan="on",
            log_level=log_level,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        self.host = host
        self.requested_port = port
        self.server = _Server(self.config)
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("ProxyServer.start() has not run")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind, start serving, and return once uvicorn has started (lifespan included).

        Raises OSError when the port is taken."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.requested_port))
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(False)
        self._sock = sock
        self._port = int(sock.getsockname()[1])
        self._task = asyncio.ensure_future(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self._task.done():
                self._task.result()  # startup failed: raise its error
                raise RuntimeError("the proxy server stopped during startup")
            await asyncio.sleep(0.01)

    def load_request_path(self) -> None:
        """Start loading a proxy app's request path (:mod:`.request_path`); nothing for other apps."""
        path = request_path_of(self.config.app)
        if path is not None:
            path.start()

    async def stop(self) -> None:
        """Graceful shutdown (open streams get ``timeout_graceful_shutdown`` seconds)."""
        if self._task is None:
            return
        self.server.should_exit = True
        try:
            await self._task
        finally:
            self._task = None
            if self._sock is not None:
                self._sock.close()

    async def __aenter__(self) -> ProxyServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve(app: ASGIApp, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``app`` until cancelled."""
    server = ProxyServer(app, host, port, log_level="info")
    await server.start()
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def run(app: ASGIApp, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Blocking: a uvloop event loop serving ``app`` (Ctrl-C stops it)."""
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(app, host, port))

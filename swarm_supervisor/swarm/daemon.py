"""The supervisor process: the proxy and the health loop in one event loop, wired here.

This is the one module of ``swarm/`` that imports the proxy: the supervisor reports what
becomes of each instance (:mod:`.events`) and :class:`PoolBridge` turns that into the proxy's
:class:`~swarm_supervisor.proxy.upstreams.UpstreamPool` (which upstreams take requests, the
status /swarm/status serves) and reads the proxy's request counts back for the run file.

``swarm up`` starts it detached (``python -m swarm_supervisor.swarm.boot NAME``, which spawns
the instances and then calls :func:`serve`), with stdout/stderr going to
``<state>/logs/NAME/supervisor.log``; it reads the spec ``swarm up`` left in
``<state>/runs/NAME.launch.json``. ``swarm up --foreground`` calls :func:`run_swarm`
in its own process instead. SIGTERM, SIGINT and SIGHUP stop everything cleanly; the run file is
removed after a clean stop and left (status ``failed``, with the reason) after a failed start,
for ``swarm up`` to report.

Start order: :mod:`.boot` spawns the instances before this module is imported; only then are the
supervisor and the proxy's listening part imported (starlette, uvicorn), the proxy bound, and
the instances waited for, so the imports overlap the models' loading. The launch spec's config
is read without pydantic (:class:`~.spec.ConfigView`); the request path (pydantic, aiohttp, the
vote) loads beside the models or after them (:func:`request_path_beside_models`). The pool comes
from the light :mod:`~swarm_supervisor.proxy.upstreams`, so no event of the start is lost
meanwhile.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ..bind import describe_bind_error
from ..errors import ProcessError, SwarmError
from ..proxy.upstreams import Upstream, UpstreamPool
from .events import Event, InstanceEvent, InstanceTraffic, Traffic
from .instance import Instance, State
from .runfile import RunFile
from .spec import SwarmSpec
from .supervisor import Supervisor
from .system import allowed_cpus, signal_group

if TYPE_CHECKING:
    from ..proxy.server import ProxyServer

log = logging.getLogger(__name__)

#: the run file is rewritten for request counts alone at most this often (the first change at once:
#: on the event loop's next turn)
TRAFFIC_SAVE_S = 0.1


class Throttle:
    """Call ``fn`` soon after a change (on the event loop's next turn), then at most once per
    ``interval_s`` while changes keep coming; the last change is always followed by a call.

    The proxy counts every answered request in the pool; the supervisor writes the run file (which
    `swarm ps` reads) once per health round and on every change of state. Without this, a request
    showed up in `swarm ps` only at the next round (``supervisor.health_interval_s``, 2 s); with a
    save per request, a busy proxy would rebuild the status hundreds of times a second.
    """

    def __init__(self, fn: Callable[[], None], interval_s: float = TRAFFIC_SAVE_S) -> None:
        self.fn = fn
        self.interval_s = interval_s
        self._last = float("-inf")
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self) -> None:
        if self._timer is not None:
            return  # a call is due already; it will see this change too
        loop = asyncio.get_running_loop()
        wait = self._last + self.interval_s - loop.time()
        # never inside the caller (a request's bookkeeping): on the loop's next turn, or later
        self._timer = loop.call_later(max(0.0, wait), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._last = asyncio.get_running_loop().time()
        self.fn()


class PoolBridge:
    """The supervisor's events into the proxy's pool; the proxy's counts back as :class:`Traffic`."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool

    def on_event(self, ev: Event) -> None:
        if not isinstance(ev, InstanceEvent):
            self.pool.status = dict(ev.status)
            return
        if ev.state == "removed":
            self.pool.remove(ev.id)
        else:
            self.pool.set_ready(Upstream(ev.id, ev.url, ev.slots, ev.voters), ev.ready, state=ev.state)
        if ev.restarts:
            self.pool.restarts[ev.id] = ev.restarts  # /metrics: swarm_instance_restarts

    def traffic(self) -> Traffic:
        per = {
            uid: InstanceTraffic(
                st.requests, st.errors, None if st.avg_latency_s is None else st.avg_latency_s * 1e3
            )
            for uid, st in self.pool.stats.items()
        }
        return Traffic(client_requests=self.pool.client_requests, instances=per)


def wire(spec: SwarmSpec, runfile: RunFile | None = None, **kw: Any) -> tuple[Supervisor, UpstreamPool]:
    """A supervisor for ``spec`` and the pool it keeps up to date (``kw``: :class:`Supervisor`'s)."""
    pool = UpstreamPool(
        model_id=spec.model_id, context=spec.context, api_key=spec.api_key, fallback=spec.fallback
    )
    bridge = PoolBridge(pool)
    sup = Supervisor(spec, runfile=runfile, on_event=bridge.on_event, traffic=bridge.traffic, **kw)
    pool.on_record = Throttle(sup.save)  # `swarm ps` counts a request once it is answered
    return sup, pool


async def run_swarm(
    spec: SwarmSpec,
    runfile: RunFile | None,
    *,
    on_up: Callable[[Supervisor], None] | None = None,
    spawned: dict[str, Instance] | None = None,
) -> int:
    """Serve until a signal; returns the exit code (0 after a clean stop, 1 after a failed start).
    ``spawned``: instances :mod:`.boot` already spawned, which the supervisor takes over."""
    sup, pool = wire(spec, runfile, spawned=spawned)
    loop = asyncio.get_running_loop()
    if sys.platform != "win32":
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, sup.request_stop, f"got {sig.name}")
    async with sup:
        try:
            await sup.spawn_ahead()  # they load their models while the proxy is imported
        except ProcessError as exc:
            log.error("%s", exc)
            return 1
        server = proxy_server(spec, pool)
        try:
            await server.start()
        except OSError as exc:
            sup.status = "failed"
            sup.reason = (
                f"the proxy cannot listen on {spec.proxy_host}:{spec.proxy_port}: "
                + describe_bind_error(exc, spec.proxy_host, spec.proxy_port)
            )
            log.error("%s", sup.reason)
            await sup.shutdown(final_status="failed")
            return 1
        sup.proxy_port = server.port
        if request_path_beside_models(spec):
            server.load_request_path()
        try:
            try:
                await sup.start()
            except ProcessError as exc:
                log.error("%s", exc)
                return 1
            if sup.stopping:
                log.info("stopped while starting")
                return 0
            server.load_request_path()  # (again: a no-op once it started) on a CPU without a spare core
            log.info(
                "swarm %s up: %s, %d instances ready (%d voters); this process's CPU so far %.3f s",
                spec.name,
                sup.base_url,
                sum(1 for i in sup.instances.values() if i.state == State.READY),
                pool.voters,
                time.process_time(),
            )
            if on_up is not None:
                on_up(sup)
            await sup.run()
        finally:
            await server.stop()
    if runfile is not None and sup.status == "stopped":
        with runfile.lock():
            runfile.remove()
    return 0


def request_path_beside_models(spec: SwarmSpec, cores: int | None = None) -> bool:
    """Whether the proxy loads its request path (proxy/request_path.py, about 0.3 s of one core)
    while the models load, or only once they are ready: beside them when they load onto GPUs or
    leave a core free (``cores``: the CPUs this process may use), after them on a CPU whose cores
    the instances' threads take, where it slowed their loading (docs/performance.md, start-up)."""
    if spec.instances and all(i.gpu_layers > 0 for i in spec.instances):
        return True
    if cores is None:
        cores = allowed_cpus() or os.cpu_count() or 1
    return cores > sum(i.threads for i in spec.instances)


def proxy_server(spec: SwarmSpec, pool: UpstreamPool) -> ProxyServer:
    """The proxy's server for ``pool``, not yet listening; the proxy's modules are imported here."""
    t0 = time.perf_counter()
    from ..proxy.app import create_app
    from ..proxy.server import ProxyServer
    from ..proxy.settings import ProxySettings

    settings = ProxySettings.from_config(spec.config.proxy, voters=spec.voters)
    app = create_app(pool, settings, load_at_start=False)
    server = ProxyServer(app, host=spec.proxy_host, port=spec.proxy_port)
    log.info("proxy loaded in %.2f s", time.perf_counter() - t0)
    return server


def run_until_done(coro: Coroutine[Any, Any, int]) -> int:
    """Run ``coro`` in a fresh event loop (uvloop where installed, as uvicorn prefers)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop (not on Windows)
        return asyncio.run(coro)
    return uvloop.run(coro)


def serve(rf: RunFile, launch_text: str, spawned: dict[str, Instance]) -> int:
    """The supervisor process after :mod:`.boot` spawned ``spawned``: read the spec, serve."""
    try:
        spec = SwarmSpec.from_json(launch_text, validate=False)  # no pydantic before all-ready
    except (ValueError, TypeError) as exc:
        log.error("cannot read the launch spec %s: %s", rf.launch_path, exc)
        for inst in spawned.values():  # spawned from the same text: nothing else will stop them
            if inst.pid is not None:
                signal_group(inst.pid, signal.SIGKILL)
        return 2
    try:
        return run_until_done(run_swarm(spec, rf, spawned=spawned, on_up=lambda _: gc.enable()))
    except SwarmError as exc:
        log.error("%s", exc)
        return 1

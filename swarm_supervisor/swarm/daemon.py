"""The supervisor process: the proxy and the health loop in one event loop.

``swarm up`` starts it detached (``python -m swarm_supervisor.swarm.daemon NAME``), with
stdout/stderr going to ``<state>/logs/NAME/supervisor.log``; it reads the spec ``swarm up``
left in ``<state>/runs/NAME.launch.json``. ``swarm up --foreground`` calls :func:`run_swarm`
in its own process instead. SIGTERM, SIGINT and SIGHUP stop everything cleanly; the run file is
removed after a clean stop and left (status ``failed``, with the reason) after a failed start,
for ``swarm up`` to report.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from ..bind import describe_bind_error
from ..errors import ProcessError, SwarmError
from ..proxy.app import create_app
from ..proxy.guard import raise_open_file_limit
from ..proxy.server import ProxyServer
from ..proxy.settings import ProxySettings
from ..proxy.upstreams import UpstreamPool
from .instance import State
from .runfile import RunFile
from .spec import SwarmSpec
from .supervisor import Supervisor

log = logging.getLogger(__name__)


async def run_swarm(
    spec: SwarmSpec,
    runfile: RunFile | None,
    *,
    on_up: Callable[[Supervisor], None] | None = None,
) -> int:
    """Serve until a signal; returns the exit code (0 after a clean stop, 1 after a failed start)."""
    pool = UpstreamPool(model_id=spec.model_id, context=spec.context, api_key=spec.api_key)
    sup = Supervisor(spec, pool, runfile=runfile)
    loop = asyncio.get_running_loop()
    if sys.platform != "win32":
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, sup.request_stop, f"got {sig.name}")
    settings = ProxySettings.from_config(spec.config.proxy, voters=spec.voters)
    server = ProxyServer(create_app(pool, settings), host=spec.proxy_host, port=spec.proxy_port)
    async with sup:
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
        try:
            try:
                await sup.start()
            except ProcessError as exc:
                log.error("%s", exc)
                return 1
            if sup.stopping:
                log.info("stopped while starting")
                return 0
            log.info(
                "swarm %s up: %s, %d instances ready (%d voters)",
                spec.name,
                sup.base_url,
                sum(1 for i in sup.instances.values() if i.state == State.READY),
                pool.voters,
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


def run_until_done(coro: Coroutine[Any, Any, int]) -> int:
    """Run ``coro`` in a fresh event loop (uvloop where installed, as uvicorn prefers)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop (not on Windows)
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m swarm_supervisor.swarm.daemon NAME", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per health probe
    log.info("open-file limit: %d", raise_open_file_limit())  # each client connection is a file
    rf = RunFile(args[0])
    try:
        spec = SwarmSpec.from_json(rf.launch_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError) as exc:
        log.error("cannot read the launch spec %s: %s", rf.launch_path, exc)
        return 2
    try:
        return run_until_done(run_swarm(spec, rf))
    except SwarmError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())

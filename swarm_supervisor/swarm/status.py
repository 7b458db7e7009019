"""What the supervisor reports: the record the run file holds, and the live status.

The record is written by :class:`~swarm_supervisor.swarm.supervisor.Supervisor` through its
:class:`~swarm_supervisor.swarm.writer.RunFileWriter`; ``status`` is ``degraded`` (with the
reason) while the health loop keeps failing. The request counts in it are the proxy's, read
through the supervisor's ``traffic`` callable. The live status (:func:`live_snapshot`) is the
record's JSON without the internal key, plus each live instance's memory: what the supervisor
publishes for /swarm/status (``swarm ps --json`` measures the same from the run file).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .events import InstanceTraffic, Traffic
from .health import rss_bytes
from .instance import Instance
from .record import InstanceRecord, ProcessRef, ProxyRecord, RunRecord
from .spec import SwarmSpec

if TYPE_CHECKING:  # pydantic: not on the supervisor's path to all-ready (tests/test_spec_view.py)
    from ..config import SupervisorConfig


class Reporting(Protocol):
    """What a record is made of: the parts of a running
    :class:`~swarm_supervisor.swarm.supervisor.Supervisor` this module reads (it does not import
    the supervisor, which imports this module)."""

    spec: SwarmSpec
    cfg: SupervisorConfig
    instances: dict[str, Instance]
    routable: set[str]
    status: str
    reason: str | None
    degraded: str | None
    started_at: float
    proxy_port: int | None
    traffic: Callable[[], Traffic]

    @property
    def base_url(self) -> str | None: ...


def build_record(sup: Reporting) -> RunRecord:
    """What the run file holds (no live measurements)."""
    traffic = sup.traffic()
    instances = []
    for inst in sup.instances.values():
        st = traffic.instances.get(inst.id) or InstanceTraffic()
        instances.append(
            InstanceRecord(
                id=inst.id,
                pid=inst.pid,
                create_time=inst.create_time,
                port=inst.port,
                state=str(inst.state),
                reason=inst.reason,
                restarts=inst.restarts,
                gpu=",".join(map(str, inst.cfg.visible_gpus)) or None,
                slots=inst.cfg.slots,
                voters=inst.cfg.voters or inst.cfg.slots,
                log=str(inst.cfg.log_path),
                started_at=inst.started_at,
                ready_at=inst.ready_at,
                requests=st.requests,
                errors=st.errors,
                avg_latency_ms=st.avg_latency_ms,
            )
        )
    sup_ctime = None
    with contextlib.suppress(Exception):
        import psutil

        sup_ctime = psutil.Process(os.getpid()).create_time()
    degraded = sup.degraded is not None and sup.status == "up"
    return RunRecord(
        name=sup.spec.name,
        status="degraded" if degraded else sup.status,
        reason=sup.degraded if degraded else sup.reason,
        base_url=sup.base_url,
        model=sup.spec.model_id,
        fallback=sup.spec.fallback,  # {"planned", "running", "why", "fix"} or None (docs/api.md)
        model_path=sup.spec.model_path,
        # the llama-server the instances run (`swarm models` will not remove it while this runs)
        binary=str(sup.spec.instances[0].binary) if sup.spec.instances else None,
        device=sup.spec.device,
        context=sup.spec.context,
        voters=sup.spec.voters,
        ready_voters=sum(
            max(1, min(i.cfg.voters or i.cfg.slots, i.cfg.slots))
            for i in sup.instances.values()
            if i.id in sup.routable
        ),
        concurrency=int(sup.spec.plan_summary.get("concurrency") or 1),
        requests=traffic.client_requests,  # client requests (an instance's: its share)
        supervisor=ProcessRef(os.getpid(), sup_ctime),
        # whether clients must send proxy.api_key (the key itself is never recorded), and the names
        # requests may send as `model` besides the model id (`swarm opencode` checks them)
        proxy=ProxyRecord(
            sup.spec.proxy_host,
            sup.proxy_port,
            requires_api_key=bool(sup.spec.config.proxy.api_key),
            aliases=tuple(sup.spec.config.proxy.aliases),
            accept_any_model=sup.spec.config.proxy.accept_any_model,
        ),
        internal_key=sup.spec.api_key,
        started_at=sup.started_at,
        stop_grace_s=sup.cfg.stop_grace_s,
        log_dir=sup.spec.log_dir,
        instances=tuple(instances),
    )


_LIVE = ("starting", "ready", "unhealthy")


def base_url(host: str, port: int | None) -> str | None:
    """The OpenAI base URL of a proxy on ``host:port`` (None before it listens).

    >>> base_url("::1", 8000)
    'http://[::1]:8000/v1'
    """
    if not port:
        return None
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{host}:{port}/v1"


def live_snapshot(rec: RunRecord, vram: dict[int, int] | None) -> dict[str, Any]:
    """What ``swarm ps --json`` and /swarm/status show: ``rec`` without the internal key, each
    live instance with its RSS and VRAM now."""
    out = rec.to_json()
    del out["internal_key"]
    for inst, shown in zip(rec.instances, out["instances"], strict=True):
        pid = inst.pid if inst.state in _LIVE else None
        shown["rss_bytes"] = rss_bytes(pid)
        shown["vram_bytes"] = None if vram is None or pid is None else vram.get(pid, 0)
    return out

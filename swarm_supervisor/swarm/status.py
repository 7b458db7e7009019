"""What the supervisor reports: the record the run file holds, and the live status.

The record is written by :class:`~swarm_supervisor.swarm.supervisor.Supervisor` through its
:class:`~swarm_supervisor.swarm.writer.RunFileWriter`; ``status`` is ``degraded`` (with the
reason) while the health loop keeps failing. The request counts in it are the proxy's, read
through the supervisor's ``traffic`` callable. The live status (:func:`live_snapshot`) is the
record without the internal key, plus each live instance's memory: what ``swarm ps --json`` and
/swarm/status show.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from .health import rss_bytes

if TYPE_CHECKING:
    from .supervisor import Supervisor


def build_record(sup: Supervisor) -> dict[str, Any]:
    """What the run file holds (no live measurements)."""
    traffic = sup.traffic()
    instances = []
    for inst in sup.instances.values():
        st = traffic.instances.get(inst.id)
        instances.append(
            {
                "id": inst.id,
                "pid": inst.pid,
                "pgid": inst.pid,  # each instance leads its own process group
                "create_time": inst.create_time,
                "port": inst.port,
                "state": str(inst.state),
                "reason": inst.reason,
                "restarts": inst.restarts,
                "gpu": ",".join(map(str, inst.cfg.visible_gpus)) or None,
                "slots": inst.cfg.slots,
                "voters": inst.cfg.voters or inst.cfg.slots,
                "log": str(inst.cfg.log_path),
                "started_at": inst.started_at,
                "ready_at": inst.ready_at,
                "requests": st.requests if st else 0,
                "errors": st.errors if st else 0,
                "avg_latency_ms": st.avg_latency_ms if st else None,
            }
        )
    sup_ctime = None
    with contextlib.suppress(Exception):
        import psutil

        sup_ctime = psutil.Process(os.getpid()).create_time()
    degraded = sup.degraded is not None and sup.status == "up"
    return {
        "version": 1,
        "name": sup.spec.name,
        "status": "degraded" if degraded else sup.status,
        "reason": sup.degraded if degraded else sup.reason,
        "base_url": sup.base_url,
        "model": sup.spec.model_id,
        "model_path": sup.spec.model_path,
        "device": sup.spec.device,
        "context": sup.spec.context,
        "voters": sup.spec.voters,
        "ready_voters": sum(
            max(1, min(i.cfg.voters or i.cfg.slots, i.cfg.slots))
            for i in sup.instances.values()
            if i.id in sup.routable
        ),
        "concurrency": int(sup.spec.plan_summary.get("concurrency") or 1),
        "requests": traffic.client_requests,  # client requests (an instance's: its share)
        "supervisor": {"pid": os.getpid(), "create_time": sup_ctime},
        "supervisor_pid": os.getpid(),
        "proxy": {
            "host": sup.spec.proxy_host,
            "port": sup.proxy_port,
            # whether clients must send proxy.api_key (the key itself is never recorded)
            "requires_api_key": bool(sup.spec.config.proxy.api_key),
        },
        "internal_key": sup.spec.api_key,
        "started_at": sup.started_at,
        "stop_grace_s": sup.cfg.stop_grace_s,  # what `swarm down` waits, whatever the config says now
        "log_dir": sup.spec.log_dir,
        "instances": instances,
    }


_LIVE = ("starting", "ready", "unhealthy")


def live_snapshot(rec: dict[str, Any], vram: dict[int, int] | None) -> dict[str, Any]:
    """``rec`` without the internal key, each live instance with its RSS and VRAM now (new dicts:
    ``rec`` itself may be on its way to disk)."""
    out = {k: v for k, v in rec.items() if k != "internal_key"}
    instances = []
    for inst in rec["instances"]:
        pid = inst["pid"] if inst["state"] in _LIVE else None
        vram_bytes = None if vram is None or pid is None else vram.get(pid, 0)
        instances.append({**inst, "rss_bytes": rss_bytes(pid), "vram_bytes": vram_bytes})
    out["instances"] = instances
    return out

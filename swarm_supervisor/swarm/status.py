"""The supervisor's record: what the run file holds, and what ``swarm ps`` reads back.

One plain dict (JSON), written by :class:`~swarm_supervisor.swarm.supervisor.Supervisor` through its
:class:`~swarm_supervisor.swarm.writer.RunFileWriter`; ``status`` is ``degraded`` (with the
reason) while the health loop keeps failing.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .supervisor import Supervisor


def build_record(sup: Supervisor) -> dict[str, Any]:
    """What the run file holds (no live measurements)."""
    instances = []
    for inst in sup.instances.values():
        st = sup.pool.stats.get(inst.id)
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
                "avg_latency_ms": None if st is None or st.avg_latency_s is None else st.avg_latency_s * 1e3,
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
        "ready_voters": sup.pool.voters,
        "concurrency": int(sup.spec.plan_summary.get("concurrency") or 1),
        "requests": sup.pool.client_requests,  # client requests (an instance's: its share)
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

"""What the supervisor reports, in types it owns; the daemon turns them into the proxy's pool.

The supervisor never imports the proxy. It calls one ``on_event`` callback on every change an
instance goes through, and publishes the swarm's status the same way; it reads the proxy's
request counts (for the run file) only through a ``traffic`` callable handed in::

    def on_event(ev: Event) -> None:
        if isinstance(ev, InstanceEvent):
            ...  # ev.id, ev.url, ev.state ("starting", "ready", ..., "removed"), ev.slots, ev.voters
        else:
            ...  # a StatusEvent: ev.status is what `swarm ps --json` and /swarm/status show

    sup = Supervisor(spec, on_event=on_event, traffic=lambda: Traffic(client_requests=3))

:mod:`swarm_supervisor.swarm.daemon` is the one listener that exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: what the proxy should know of an instance: "ready" ones take requests; "removed" ones are gone
RouteState = Literal["starting", "ready", "unhealthy", "stopping", "stopped", "failed", "removed"]


@dataclass(frozen=True)
class InstanceEvent:
    """One instance changed: where it listens, whether it takes requests, its size."""

    id: str  # "0", "1", ... as `swarm ps` shows it
    url: str  # "http://127.0.0.1:PORT"
    state: RouteState
    slots: int  # requests the process serves at once (--parallel)
    voters: int  # voters it answers for in one voted request (``n``); 0: all its slots
    restarts: int = 0  # times the supervisor restarted it so far

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def per_request(self) -> int:
        """How many of a vote's answers one request to this process asks for."""
        return max(1, min(self.voters or self.slots, self.slots))


@dataclass(frozen=True)
class StatusEvent:
    """The swarm's status, as ``swarm ps --json`` shows it (no internal key): published on every
    change of the run record and once per health round (memory readings change)."""

    status: Mapping[str, Any]


Event = InstanceEvent | StatusEvent
Listener = Callable[[Event], None]


@dataclass(frozen=True)
class InstanceTraffic:
    """Requests one instance answered, as the proxy counted them."""

    requests: int = 0
    errors: int = 0
    avg_latency_ms: float | None = None


@dataclass(frozen=True)
class Traffic:
    """What the proxy counted, for the run file: client requests and per instance id."""

    client_requests: int = 0
    instances: Mapping[str, InstanceTraffic] = field(default_factory=dict)


def no_traffic() -> Traffic:
    """The traffic of a supervisor without a proxy (tests): nothing counted."""
    return Traffic()

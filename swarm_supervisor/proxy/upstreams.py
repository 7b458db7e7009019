"""What the proxy knows of the instances: URLs, slots and readiness. Nothing about processes.

The background process (``swarm/daemon.py``) owns one :class:`UpstreamPool` and updates it from
the supervisor's events as instances become ready or die; the proxy reads it and counts requests
in it. Both run in the same event loop, so no lock is needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Upstream:
    """One llama-server the proxy may send requests to."""

    id: str  # "0", "1", ... as `swarm ps` shows it
    url: str  # "http://127.0.0.1:PORT"
    slots: int = 1  # requests this process can serve at once (--parallel)
    voters: int = 0  # voters it answers for in one voted request (``n``); 0: all its slots

    @property
    def per_request(self) -> int:
        """How many of the vote's answers one request to this process asks for."""
        return max(1, min(self.voters or self.slots, self.slots))


@dataclass
class UpstreamStats:
    """Requests one upstream has answered, as the proxy saw them (`swarm ps` shows them)."""

    requests: int = 0
    errors: int = 0
    total_seconds: float = 0.0

    @property
    def avg_latency_s(self) -> float | None:
        return self.total_seconds / self.requests if self.requests else None


@dataclass
class UpstreamPool:
    """The set of upstreams and which of them are ready.

    >>> pool = UpstreamPool(model_id="smollm2:135m:q4_1", context=8192)
    >>> pool.set_ready(Upstream("0", "http://127.0.0.1:9001"), True)
    >>> [u.id for u in pool.ready()]
    ['0']
    """

    model_id: str
    context: int
    api_key: str | None = None  # the swarm's internal key for the instances (Bearer)
    upstreams: dict[str, Upstream] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)  # id -> state name, for /health
    _ready: set[str] = field(default_factory=set)
    #: what `swarm ps --json` shows, as the supervisor last published it (each health round and
    #: on every change); /swarm/status serves it. None: no supervisor (tests, benchmarks)
    status: dict[str, Any] | None = None
    #: per upstream id: what the proxy recorded with :meth:`record` (kept across restarts)
    stats: dict[str, UpstreamStats] = field(default_factory=dict)
    #: id -> times the supervisor restarted it (the supervisor updates it; /metrics shows it)
    restarts: dict[str, int] = field(default_factory=dict)
    #: completion requests the proxy sent to the instances (each counts once, however many voters)
    client_requests: int = 0
    #: set when the model is a stand-in for the planned one: {"planned", "running", "why", "fix"}
    fallback: dict[str, str] | None = None
    #: the model's vocabulary size, once an instance said it (proxy/vocab.py); None: not known
    vocab: int | None = None
    #: an instance answered /v1/models without the size: the proxy does not ask again
    vocab_unreported: bool = False
    #: called after every :meth:`record` (the daemon brings the run file up to date with it, so
    #: `swarm ps` counts a request once it is answered); None: nobody listens
    on_record: Callable[[], None] | None = None

    def add(self, upstream: Upstream, state: str = "starting") -> None:
        self.upstreams[upstream.id] = upstream
        self.states[upstream.id] = state

    def set_ready(self, upstream: Upstream, ready: bool, state: str | None = None) -> None:
        self.upstreams[upstream.id] = upstream
        self.states[upstream.id] = state or ("ready" if ready else "unhealthy")
        if ready:
            self._ready.add(upstream.id)
        else:
            self._ready.discard(upstream.id)

    def remove(self, upstream_id: str) -> None:
        self.upstreams.pop(upstream_id, None)
        self.states.pop(upstream_id, None)
        self._ready.discard(upstream_id)

    def record(self, upstream_id: str, seconds: float, ok: bool = True) -> None:
        """The proxy calls this once per client request an upstream took part in (``ok=False``:
        none of its voters answered)."""
        st = self.stats.setdefault(upstream_id, UpstreamStats())
        if ok:
            st.requests += 1
            st.total_seconds += seconds
        else:
            st.errors += 1
        if self.on_record is not None:
            self.on_record()

    def ready(self) -> list[Upstream]:
        return [u for uid, u in sorted(self.upstreams.items()) if uid in self._ready]

    @property
    def concurrency(self) -> int:
        """Votes the ready processes can run at once: their slots over the voters they hold."""
        ready = self.ready()
        return min((u.slots // u.per_request for u in ready), default=1) or 1

    @property
    def voters(self) -> int:
        return sum(u.per_request for u in self.ready())

    @classmethod
    def from_urls(
        cls, urls: list[str], model_id: str = "swarm", context: int = 4096, slots: int = 1
    ) -> UpstreamPool:
        """A pool of already-running servers, all ready, each taking ``slots`` requests at once,
        one voter per request (tests, benchmarks)."""
        pool = cls(model_id=model_id, context=context)
        for i, url in enumerate(urls):
            pool.set_ready(Upstream(str(i), url.rstrip("/"), slots=slots, voters=1), True)
        return pool

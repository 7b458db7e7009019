"""Prometheus metrics of one proxy app (its own registry), plus the instances' own metrics.

The instances' llama-server metrics (``llamacpp:*``, served when started with ``--metrics``) are
fetched from each ready upstream at scrape time and re-exposed with an ``instance`` label.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from .upstreams import UpstreamPool

if TYPE_CHECKING:
    from .client import UpstreamClient  # aiohttp: loaded with the request path (request_path.py)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class _PoolCollector(Collector):
    """Per-instance health, read from the pool at scrape time."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        ready_ids = {u.id for u in self.pool.ready()}
        up = GaugeMetricFamily("swarm_instance_ready", "1 while the instance is ready", labels=["instance"])
        slots = GaugeMetricFamily(
            "swarm_instance_slots", "voters (slots) of the instance", labels=["instance"]
        )
        state = GaugeMetricFamily(
            "swarm_instance_state", "1 for the instance's current state", labels=["instance", "state"]
        )
        restarts = GaugeMetricFamily(
            "swarm_instance_restarts", "times the supervisor restarted the instance", labels=["instance"]
        )
        for uid, upstream in sorted(self.pool.upstreams.items()):
            up.add_metric([uid], 1.0 if uid in ready_ids else 0.0)
            slots.add_metric([uid], float(upstream.slots))
            state.add_metric([uid, self.pool.states.get(uid, "unknown")], 1.0)
            restarts.add_metric([uid], float(self.pool.restarts.get(uid, 0)))
        voters = GaugeMetricFamily("swarm_voters_ready", "voters (slots) on ready instances")
        voters.add_metric([], float(self.pool.voters))
        yield from (up, slots, state, restarts, voters)


class ProxyMetrics:
    """The proxy's counters and histograms, in a registry of its own (never the global one)."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "swarm_requests", "client requests by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "swarm_request_duration_seconds",
            "client request duration, to the last byte",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.agreement = Histogram(
            "swarm_vote_agreement",
            "share of the voters in the winning cluster",
            ["strategy"],
            buckets=(0.2, 0.34, 0.5, 0.67, 0.75, 0.9, 1.0),
            registry=r,
        )
        self.voters = Counter(
            "swarm_voter_results", "voter outcomes by instance", ["instance", "outcome"], registry=r
        )
        self.voter_latency = Histogram(
            "swarm_voter_latency_seconds",
            "time a voter took to answer",
            ["instance"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "swarm_tokens", "tokens counted by the voters' usage (every voter)", ["kind"], registry=r
        )
        self.shapes = Counter(
            "swarm_completion_requests",
            "valid completion requests by endpoint, streaming, stream mode and whether tools were sent",
            ["endpoint", "stream", "stream_mode", "tools"],
            registry=r,
        )
        self.waiting = Gauge(
            "swarm_requests_waiting",
            "voted requests waiting for room (all slots busy with other requests' voters)",
            registry=r,
        )
        r.register(_PoolCollector(pool))

    def observe_request(self, endpoint: str, stream_mode: str | None, tools: bool) -> None:
        """Count one valid request; ``stream_mode`` is None for a request that does not stream."""
        stream = "false" if stream_mode is None else "true"
        self.shapes.labels(endpoint, stream, stream_mode or "none", "true" if tools else "false").inc()

    def observe_usage(self, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        for kind in ("prompt_tokens", "completion_tokens"):
            value = usage.get(kind)
            if isinstance(value, int) and value > 0:
                self.tokens.labels(kind.removesuffix("_tokens")).inc(value)

    async def render(self, client: UpstreamClient | None, timeout_s: float) -> bytes:
        """The exposition text: the proxy's own metrics, then the instances' relabelled."""
        own = generate_latest(self.registry)
        if client is None:
            return own
        upstreams = self.pool.ready()
        texts = await asyncio.gather(*(client.get_text(u.url + "/metrics", timeout_s) for u in upstreams))
        families = relabel({u.id: t for u, t in zip(upstreams, texts, strict=True) if t})
        if not families:
            return own
        extra = CollectorRegistry(auto_describe=False)
        extra.register(_Static(families))
        return own + generate_latest(extra)


class _Static(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def relabel(texts: dict[str, str]) -> list[Metric]:
    """Merge the instances' exposition texts into families whose samples carry ``instance``."""
    merged: dict[str, Metric] = {}
    for instance, text in texts.items():
        try:
            families = list(text_string_to_metric_families(text))
        except ValueError:
            continue  # an instance that answers something else at /metrics is skipped
        for family in families:
            target = merged.get(family.name)
            if target is None:
                target = Metric(family.name, family.documentation, family.type, family.unit)
                merged[family.name] = target
            for s in family.samples:
                target.add_sample(
                    s.name, {**s.labels, "instance": instance}, s.value, s.timestamp, s.exemplar
                )
    return list(merged.values())

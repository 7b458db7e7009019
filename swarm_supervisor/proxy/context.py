"""What the request handlers share (:class:`Context`), light enough to build before they load.

The handlers, the vote and the upstream client (aiohttp) are most of the proxy's import time;
the app builds its :class:`Context` from this module alone and loads them later
(:mod:`.request_path`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .admission import Admission
from .errors import ApiError
from .metrics import ProxyMetrics
from .settings import ProxySettings
from .upstreams import UpstreamPool

if TYPE_CHECKING:
    from .client import UpstreamClient


@dataclass
class Context:
    """What the handlers share: the pool, the settings, the client (set once loaded), metrics."""

    pool: UpstreamPool
    settings: ProxySettings
    metrics: ProxyMetrics
    client: UpstreamClient | None = None
    admission: Admission | None = None  # set in __post_init__: votes the pool can run at once

    def __post_init__(self) -> None:
        if self.admission is None:
            self.admission = Admission(lambda: self.pool.concurrency)
        gate = self.admission
        self.metrics.waiting.set_function(lambda: gate.waiting)

    def upstream_client(self) -> UpstreamClient:
        if self.client is None:  # only when the app is used without its lifespan
            raise ApiError(503, "the proxy is starting", type="unavailable")
        return self.client

"""The memory guard's decision: when free system memory is under the floor, which instance to
stop (the newest, never the last one), at most once per cooldown so that the memory freed by one
stop shows before the next. The supervisor carries the stop out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from ..units import format_bytes
from .instance import Instance

log = logging.getLogger(__name__)


class MemoryGuard:
    def __init__(self, floor_bytes: int, cooldown_s: float, free_memory: Callable[[], int]) -> None:
        self.floor_bytes, self.cooldown_s, self.free_memory = floor_bytes, cooldown_s, free_memory
        self._at = -1e9
        self._warned = False

    def victim(self, live: Iterable[Instance]) -> tuple[Instance, str] | None:
        """The instance to stop now and why, or None (enough memory, cooling down, one left)."""
        free = self.free_memory()
        if free >= self.floor_bytes or time.monotonic() - self._at < self.cooldown_s:
            return None
        live = list(live)
        if len(live) <= 1:
            if not self._warned:
                log.warning("free memory %s is under %s, but one instance is left", format_bytes(free),
                            format_bytes(self.floor_bytes))  # fmt: skip
                self._warned = True
            return None
        newest = max(live, key=lambda i: (i.started_at or 0.0, int(i.id) if i.id.isdigit() else 0))
        self._at = time.monotonic()
        reason = (
            f"stopped by the memory guard: {format_bytes(free)} free, under "
            f"supervisor.min_free_memory_bytes ({format_bytes(self.floor_bytes)})"
        )
        log.warning("instance %s %s", newest.id, reason)
        return newest, reason

"""What the health loop measures and decides with: crash windows, backoff, memory.

Pure parts (:class:`CrashTracker`) take the time as an argument; the I/O parts (RSS through
psutil, VRAM through NVML, free memory) are small functions that return None when they cannot
know, never raise.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import psutil

log = logging.getLogger(__name__)


@dataclass
class CrashTracker:
    """Crashes of one instance: more than ``max_crashes`` within ``window_s`` means give up.

    >>> t = CrashTracker(max_crashes=2, window_s=60, backoff_s=1, backoff_max_s=30)
    >>> [t.record(now) for now in (0.0, 1.0)], t.backoff(), t.too_many()
    ([1, 2], 2.0, False)
    >>> t.record(2.0), t.too_many(), t.record(100.0)
    (3, True, 1)
    """

    max_crashes: int
    window_s: float
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    times: deque[float] = field(default_factory=deque)

    def record(self, now: float) -> int:
        """Note a crash at ``now``; returns how many fall within the window."""
        self.times.append(now)
        while self.times and now - self.times[0] > self.window_s:
            self.times.popleft()
        return len(self.times)

    def too_many(self) -> bool:
        return len(self.times) > self.max_crashes

    def backoff(self) -> float:
        """Seconds to wait before the next restart: doubles with each crash in the window."""
        n = max(len(self.times), 1)
        return float(min(self.backoff_s * 2 ** (n - 1), self.backoff_max_s))


def available_memory() -> int:
    """Memory the OS can give without swapping (psutil's ``available``)."""
    return int(psutil.virtual_memory().available)


def rss_bytes(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


class VramReader:
    """GPU memory per process through NVML; ``by_pid()`` is None where NVML is absent."""

    def __init__(self, enabled: bool = True) -> None:
        self._nvml: Any = None
        self._tried = not enabled  # a CPU swarm: no VRAM to read, and pynvml (30 ms) not imported

    def _init(self) -> Any:
        if not self._tried:
            self._tried = True
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml
            except Exception as exc:  # no library, no driver, no GPU: all mean "unknown"
                log.debug("NVML unavailable: %s", exc)
                self._nvml = None
        return self._nvml

    def by_pid(self) -> dict[int, int] | None:
        nvml = self._init()
        if nvml is None:
            return None
        used: dict[int, int] = {}
        try:
            for i in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    mem = proc.usedGpuMemory
                    if isinstance(mem, int):
                        used[int(proc.pid)] = used.get(int(proc.pid), 0) + mem
        except Exception as exc:
            log.debug("NVML query failed: %s", exc)
            return None
        return used

    def close(self) -> None:
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            self._nvml = None


def degraded_reason(rounds: int, last: str) -> str:
    """What `swarm ps` says when the health loop failed ``rounds`` rounds in a row."""
    return (
        f"the health loop failed {rounds} rounds in a row (last: {last}); instances are not "
        "checked or restarted meanwhile: see `swarm logs`, or `swarm down` and `swarm up`"
    )

"""Where the seconds of a command go, counted from the command's start (``swarm up --verbose``).

    tl = Timeline(command_started())
    ...; tl.mark("hardware detection")          # the time since the previous mark
    tl.add("instances ready", 0.8)              # a span measured elsewhere (the run file's clocks)
    tl.total()                                  # seconds since the command started
    tl.lines()                                  # ["  imports and config      0.31 s", ...]

The start is the process's creation time (the interpreter's start, before any import), so the
figures include what Python spends before ``swarm`` runs a line. A host process that calls the
command itself long after it started (tests through click's CliRunner) is timed from the call.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: a process older than this when the command begins is a host calling it (a test), not `swarm`
_HOSTED_AFTER_S = 30.0


def process_age_s(stat_text: str | None = None, boot_clock: float | None = None) -> float | None:
    """Seconds since this process was created, from ``/proc/self/stat`` (its start in clock ticks
    since boot) against the boot clock; None where there is no ``/proc``. (psutil's
    ``create_time()`` adds the boot time, which Linux gives in whole seconds: up to 1 s off.)"""
    try:
        text = Path("/proc/self/stat").read_text() if stat_text is None else stat_text
        ticks = int(text.rsplit(")", 1)[1].split()[19])  # field 22, starttime
        now = time.clock_gettime(time.CLOCK_BOOTTIME) if boot_clock is None else boot_clock
    except (OSError, IndexError, ValueError, AttributeError):
        return None
    return max(0.0, now - ticks / os.sysconf("SC_CLK_TCK"))


def command_started(invoked_at: float | None = None) -> float:
    """The wall-clock time the command started: the process's creation, or ``invoked_at`` (when
    the group ran) in a host process that has been running longer than a command could."""
    now = time.time()
    invoked = now if invoked_at is None else invoked_at
    age = process_age_s()
    if age is None:
        try:
            import psutil

            age = now - float(psutil.Process().create_time())
        except (ImportError, OSError, RuntimeError):  # no answer: time from the call
            return invoked
    created = now - age
    return created if 0 <= invoked - created < _HOSTED_AFTER_S else invoked


class Timeline:
    def __init__(self, started: float) -> None:
        self.started = started
        self._last = started
        self.spans: list[tuple[str, float]] = []

    def mark(self, label: str, at: float | None = None) -> float:
        """Record ``label`` as the time from the previous mark to ``at`` (now); returns it."""
        at = time.time() if at is None else at
        span = max(0.0, at - self._last)
        self.spans.append((label, span))
        self._last = max(self._last, at)
        return span

    def total(self, at: float | None = None) -> float:
        return (time.time() if at is None else at) - self.started

    def lines(self) -> list[str]:
        width = max((len(label) for label, _ in self.spans), default=0)
        out = [f"  {label:<{width}}  {span:6.2f} s" for label, span in self.spans]
        out.append(f"  {'in all':<{width}}  {sum(s for _, s in self.spans):6.2f} s")
        return out

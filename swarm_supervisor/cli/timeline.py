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

import time

#: a process older than this when the command begins is a host calling it (a test), not `swarm`
_HOSTED_AFTER_S = 30.0


def command_started(invoked_at: float | None = None) -> float:
    """The wall-clock time the command started: the process's creation time, or ``invoked_at``
    (when the group ran) in a host process that has been running longer than a command could."""
    now = time.time()
    invoked = now if invoked_at is None else invoked_at
    try:
        import psutil

        created = float(psutil.Process().create_time())
    except (ImportError, OSError, RuntimeError):  # no answer: time from the call
        return invoked
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

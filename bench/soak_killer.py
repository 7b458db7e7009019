"""The soak's monitor and killer (``python -m bench soak``): a :class:`Timeline` of the instances'
(state, pid) read from the run file every 50 ms, and the killer that SIGKILLs one ready
instance's llama-server (a pid of the swarm's own run file, checked by its create_time) at
random points.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench.swarm_home import SwarmHome, same_process


@dataclass
class Timeline:
    """The instances' (state, pid) by id as the run file said, from each change on."""

    changes: list[tuple[float, dict[str, tuple[str, int | None]]]] = field(default_factory=list)
    samples: int = 0

    def add(self, t: float, states: dict[str, tuple[str, int | None]]) -> None:
        self.samples += 1
        if not self.changes or self.changes[-1][1] != states:
            self.changes.append((t, states))

    def latest(self) -> dict[str, tuple[str, int | None]]:
        return self.changes[-1][1] if self.changes else {}

    def steady_ready(self, t0: float, t1: float) -> dict[str, int]:
        """Instances ready with the same pid over all of [t0, t1]: id -> pid."""
        before = [c for c in self.changes if c[0] <= t0]
        start = before[-1][1] if before else {}
        ok = {i: pid for i, (st, pid) in start.items() if st == "ready" and pid is not None}
        for t, states in self.changes:
            if t0 < t <= t1:
                ok = {i: pid for i, pid in ok.items() if states.get(i) == ("ready", pid)}
        return ok


@dataclass
class Kill:
    t: float
    instance: str
    pid: int
    wall: float = 0.0


def _states(rec: dict[str, Any]) -> dict[str, tuple[str, int | None]]:
    return {str(i.get("id")): (str(i.get("state")), i.get("pid")) for i in rec.get("instances") or []}


def monitor(home: SwarmHome, timeline: Timeline, stop: threading.Event, every_s: float = 0.05) -> None:
    while not stop.is_set():
        rec = home.record()
        if rec:
            timeline.add(time.monotonic(), _states(rec))
        stop.wait(every_s)


def all_ready(rec: dict[str, Any]) -> bool:
    insts = rec.get("instances") or []
    return bool(insts) and all(
        i.get("state") == "ready" and same_process(i.get("pid"), i.get("create_time")) for i in insts
    )


def kill_points(requests: int, kills: int, rng: random.Random) -> list[int]:
    """``kills`` request counts at random, one in each of ``kills`` equal parts of the middle 80 %
    of the run (so that each kill has time to be repaired before the next)."""
    lo, hi = requests // 10, max(requests // 10 + kills, requests * 9 // 10)
    width = (hi - lo) / kills
    return [int(lo + k * width + rng.uniform(0, width)) for k in range(kills)]


def killer(
    home: SwarmHome,
    kills: list[Kill],
    stop: threading.Event,
    rng: random.Random,
    *,
    every_s: float | None,
    at_counts: list[int],
    done_count: Any,
) -> None:
    """SIGKILL one ready instance (a pid of the run file, checked by create_time) at random
    intervals (``every_s`` on average) or when ``done_count()`` reaches each of ``at_counts``;
    only while every instance is ready, so each kill leaves the others to answer."""
    pending = sorted(at_counts)
    while not stop.is_set():
        if every_s is not None:
            if stop.wait(rng.uniform(0.5, 1.5) * every_s):
                return
        else:
            if not pending:
                return
            while done_count() < pending[0]:
                if stop.wait(0.02):
                    return
            pending.pop(0)
        while True:  # every instance ready, then one of them at random
            rec = home.record()
            if all_ready(rec):
                break
            if stop.wait(0.05):
                return
        victim = rng.choice(rec["instances"])
        pid, ctime = victim["pid"], victim.get("create_time")
        if not same_process(pid, ctime):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            kills.append(Kill(time.monotonic(), str(victim["id"]), pid, time.time()))


def wait_all_ready(home: SwarmHome, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all_ready(home.record()):
            return True
        time.sleep(0.1)
    return all_ready(home.record())

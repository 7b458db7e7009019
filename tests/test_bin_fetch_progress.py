"""The build's estimate (issue 17): steps done against the total, the time per step so far and
what it leaves; in a log a line every tenth and at least every 30 s, on a terminal bar columns."""

from __future__ import annotations

import io
import time

from rich.console import Console
from rich.progress import Progress as RichBar

from bin_fetch.progress import PlainProgress, StepEstimateColumn, estimate, format_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_estimate_from_the_steps_so_far() -> None:
    assert estimate(45, 272, 144.0) == "45 of 272 steps, 3.2 s per step so far, about 12 min 06 s left"
    assert estimate(0, 272, 10.0) == "0 of 272 steps, no estimate yet"
    assert estimate(50, 100, 100.0, "percent") == "50% of 100%, 2.0 s per 1% so far, about 1 min 40 s left"
    assert [format_seconds(x) for x in (5, 65, 3725)] == ["5 s", "1 min 05 s", "1 h 02 min"]


def test_a_log_gets_a_line_every_tenth_and_every_30_s() -> None:
    out = io.StringIO()
    clock = Clock()
    p = PlainProgress(Console(file=out, width=200), every_s=30.0, clock=clock, ticker=False)
    p.start("building llama-server", 200, "steps")
    clock.now += 10
    p.update(2)  # 1 %, 10 s: nothing yet
    clock.now += 21
    p.update(3)  # 31 s since the last line: one, with the estimate
    clock.now += 1
    p.update(4)  # 1 s later: nothing
    clock.now += 1
    p.update(20)  # a tenth: one
    clock.now += 5
    p.stop()
    lines = out.getvalue().splitlines()
    assert lines[0] == "building llama-server (200 steps) ..."
    assert lines[1] == (
        "building llama-server:   2% (3 of 200 steps, 10.3 s per step so far, "
        "about 33 min 56 s left; 31 s so far)"
    )
    assert lines[2].startswith("building llama-server:  10% (20 of 200 steps, 1.6 s per step so far")
    assert lines[3] == "building llama-server: done (20) in 38 s"
    assert len(lines) == 4


def test_a_long_silent_step_still_gets_a_line() -> None:
    """One compile step can take minutes without a line from ninja: the log still hears."""
    out = io.StringIO()
    p = PlainProgress(Console(file=out, width=200), every_s=0.2)
    p.start("building llama-server", 100, "steps")
    p.update(1)
    time.sleep(1.5)
    p.stop()
    ticks = [x for x in out.getvalue().splitlines() if "per step so far" in x]
    assert len(ticks) >= 2, out.getvalue()


def test_the_bar_shows_time_per_step_and_what_is_left() -> None:
    clock = Clock()
    bar = RichBar(console=Console(file=io.StringIO()), get_time=clock)
    task_id = bar.add_task("building", total=100)
    column = StepEstimateColumn("steps")
    task = bar.tasks[0]
    assert column.render(task).plain == "estimating ..."
    clock.now += 40
    bar.update(task_id, completed=20)
    assert column.render(task).plain == "2.0 s/step, ~2 min 40 s left"

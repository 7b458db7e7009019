"""The live quality benchmark's arithmetic: paired differences against greedy and their interval."""

from __future__ import annotations

import pytest

from bench.quality_score import bootstrap_diff, live_summary


def row(task: str, setting: str, ok: bool, repeat: int = 0) -> dict[str, object]:
    return {"task": task, "setting": setting, "ok": ok, "repeat": repeat, "latency_s": 1.0, "agreement": 0.6}


def test_paired_difference_per_task_over_runs() -> None:
    tasks = [f"s/{i}" for i in range(4)]
    rows = [row(t, "greedy", ok) for t, ok in zip(tasks, [True, True, False, False], strict=True)]
    # run 0 and run 1: the swarm solves task 2 once, loses task 0 once
    rows += [row("s/0", "none", True, 0), row("s/0", "none", False, 1)]
    rows += [row("s/1", "none", True, 0), row("s/1", "none", True, 1)]
    rows += [row("s/2", "none", True, 0), row("s/2", "none", False, 1)]
    rows += [row("s/3", "none", False, 0), row("s/3", "none", False, 1)]
    [s] = live_summary(rows, tasks, ["none"], ["s"])  # type: ignore[arg-type]
    assert s["greedy"] == 0.5 and s["pass"] == 0.5 and s["diff"] == 0.0
    assert s["runs"] == 2 and s["per_run"] == [0.75, 0.25] and s["tasks"] == 4
    assert s["lo"] <= 0.0 <= s["hi"]


def test_greedy_runs_are_averaged_per_task_before_the_difference() -> None:
    """One llama-server answering requests side by side is not deterministic: its runs differ, and
    the yardstick is their mean per task, not whichever run came last."""
    tasks = ["s/0", "s/1"]
    rows = [row("s/0", "greedy", True, 0), row("s/0", "greedy", False, 1)]
    rows += [row("s/1", "greedy", False, 0), row("s/1", "greedy", False, 1)]
    rows += [row("s/0", "none", True), row("s/1", "none", True)]
    [s] = live_summary(rows, tasks, ["none"], ["s"])  # type: ignore[arg-type]
    assert s["greedy"] == 0.25 and s["greedy_runs"] == 2 and s["greedy_per_run"] == [0.5, 0.0]
    assert s["pass"] == 1.0 and s["diff"] == 0.75


def test_bootstrap_interval_brackets_the_mean_and_shrinks_with_tasks() -> None:
    few = [1.0, 0.0, 0.0, 1.0, 0.0]
    many = few * 40
    lo, hi = bootstrap_diff(few)
    lo2, hi2 = bootstrap_diff(many)
    assert lo <= 0.4 <= hi and lo2 <= 0.4 <= hi2
    assert hi2 - lo2 < hi - lo
    assert bootstrap_diff([0.1] * 10) == pytest.approx((0.1, 0.1))

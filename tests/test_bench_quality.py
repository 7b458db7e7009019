"""The live quality benchmark's arithmetic: paired differences against greedy and their interval,
and runs of several results pooled (bench/quality_pooled.py)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import click
import pytest

from bench.quality_gen import program_for, program_key
from bench.quality_pooled import _pair, parse_arm, pooled
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


def _result(results: Path, data: Path, stem: str, rows: list[tuple[str, int, str, bool]]) -> None:
    """A `bench quality` result with two tasks of set "s": rows of (setting, repeat, task, passed);
    a passing answer returns a + b, a failing one a - b."""
    tasks = [
        {
            "task_id": f"S/{i}",
            "prompt": "def add(a, b):\n",
            "entry_point": "add",
            "test": "def check(f):\n    assert f(1, 2) == 3\n",
        }
        for i in range(2)
    ]
    with gzip.open(data / "s.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(t) + "\n" for t in tasks))
    (results / f"{stem}.json").write_text(json.dumps({"sets": "s"}))
    lines, passed = [], {}
    for setting, repeat, task, ok in rows:
        content = f"```python\ndef add(a, b):\n    return a {'+' if ok else '-'} b\n```"
        lines.append(
            json.dumps({"setting": setting, "repeat": repeat, "task": f"s/S/{task}", "content": content})
        )
        passed[program_key(program_for(tasks[0], content))] = ok
    text = "\n".join(lines) + "\n"
    if stem == "b":  # results kept in the repository are gzipped
        (results / f"{stem}.answers.jsonl.gz").write_bytes(gzip.compress(text.encode()))
    else:
        (results / f"{stem}.answers.jsonl").write_text(text)
    (results / f"{stem}.passed.json").write_text(json.dumps(passed))


def test_pooled_runs_from_several_results_against_every_greedy_run(tmp_path: Path) -> None:
    results, data = tmp_path / "results", tmp_path / "data"
    results.mkdir(), data.mkdir()
    # lease a: greedy solves task 0; the swarm both; its second run answered one task only
    a = [("greedy", 0, "0", True), ("greedy", 0, "1", False)]
    a += [("none", 0, "0", True), ("none", 0, "1", True), ("none", 1, "0", False)]
    _result(results, data, "a", a)
    # lease b: greedy solves nothing; the swarm task 1; at 0.8 nothing
    b = [("greedy", 0, "0", False), ("greedy", 0, "1", False), ("none", 0, "0", False)]
    b += [("none", 0, "1", True), ("0.8", 0, "0", False), ("0.8", 0, "1", False)]
    _result(results, data, "b", b)
    got = pooled(
        [parse_arm("new-default=a:none,b:none"), parse_arm("hot=b:0.8")],
        [("new-default", "hot")],
        results,
        data,
    )
    assert got["greedy_per_run"] == [0.5, 0.0]
    new, hot, pair = got["comparisons"]
    # the incomplete run 1 of lease a does not count: 2 runs, task 0 at 0.5, task 1 at 1.0
    assert (new["runs"], new["base_runs"], new["a"], new["b"]) == (2, 2, 0.75, 0.25)
    assert new["diff"] == 0.5 and new["lo"] <= 0.5 <= new["hi"]
    assert (hot["a"], hot["diff"]) == (0.0, -0.25)
    assert (pair["vs"], pair["diff"]) == ("hot", 0.75)
    with pytest.raises(click.UsageError, match="no result 'c'"):
        pooled([parse_arm("x=c:none")], [], results, data)


def test_pooled_arms_and_pairs_say_how_to_write_them() -> None:
    assert parse_arm("x=a:none, b:0.2") == ("x", [("a", "none"), ("b", "0.2")])
    for bad in ("x", "x=", "=a:none", "x=a", "x=a:"):
        with pytest.raises(click.BadParameter, match="NAME=STEM:SETTING"):
            parse_arm(bad)
    assert _pair("new-default-hot", {"new-default", "hot"}) == ("new-default", "hot")
    with pytest.raises(click.BadParameter, match="two arm names"):
        _pair("new-cold", {"new", "hot"})


def test_best_counts_a_task_any_voter_answered_right(tmp_path: Path) -> None:
    # SETTING/best: the most any choice among the collected answers could score (the vote's ceiling)
    results, data = tmp_path / "results", tmp_path / "data"
    results.mkdir(), data.mkdir()
    _result(results, data, "a", [("greedy", 0, "0", False), ("greedy", 0, "1", False)])
    right = "```python\ndef add(a, b):\n    return a + b\n```"
    wrong = "```python\ndef add(a, b):\n    return a - b\n```"
    rows = [json.loads(line) for line in (results / "a.answers.jsonl").read_text().splitlines()]
    # task 0: the vote chose a wrong answer while one voter had it right; task 1: nobody did
    for task, voters in (("0", [wrong, right, wrong]), ("1", [wrong, wrong])):
        candidates = [{"voter": f"0.{i}", "content": c} for i, c in enumerate(voters)]
        rows.append(
            {
                "setting": "none",
                "repeat": 0,
                "task": f"s/S/{task}",
                "content": wrong,
                "candidates": candidates,
            }
        )
    (results / "a.answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = pooled([parse_arm("vote=a:none"), parse_arm("best=a:none/best")], [("best", "vote")], results, data)
    vote, best, pair = got["comparisons"]
    assert (vote["a"], best["a"], pair["diff"]) == (0.0, 0.5, 0.5)
    # the voter's right answer was executed once and kept with the result's other programs
    assert True in json.loads((results / "a.passed.json").read_text()).values()

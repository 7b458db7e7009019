"""``python -m bench quality-pooled``: live quality runs from several result files (several
leases, several days) pooled, paired per task, against every greedy run among them.

One llama-server answering several requests at once is not deterministic, so one lease's greedy
run is a noisy yardstick; pooling every run of a setting and every greedy run gives the figure
that does not depend on which lease it came from. Each arm names the runs it pools, as
``STEM:SETTING`` pairs (``STEM`` names a ``bench/results/<STEM>.answers.jsonl``, or its ``.gz``,
written by ``python -m bench quality``; ``SETTING`` is one of its settings: ``none``, ``0.2``, ...):

    python -m bench quality-pooled \\
        --arm default=quality-live-h200-new:none,quality-live-h200-v8:none \\
        --arm earlier=quality-live-h200:none --vs default-earlier

``SETTING/best`` counts a task as passed when *any* answer the voters gave passes (the answers
the swarm collected, in the result's ``candidates``): the most that any way of choosing among
them could score, the vote's ceiling:

    python -m bench quality-pooled --arm vote=quality-live-cpu-final:none \
        --arm best=quality-live-cpu-final:none/best --vs best-vote

Only complete runs count (every task of the result's sets answered). The answers are scored
from each result's ``.passed.json`` (the programs ``bench quality`` executed); an answer missing
there is executed once and kept there, as ``bench quality`` does. Table and ``bench/results/<out>.json``.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import click

from bench.common import RESULTS, print_table, write_result
from bench.quality import DATA, read_answers
from bench.quality_gen import load_tasks, score
from bench.quality_score import GREEDY, bootstrap_diff

Run = dict[str, bool]  # task key -> passed
#: ``STEM:SETTING/best``: the best answer of each vote's voters, not the one the vote chose
BEST = "/best"


def parse_arm(text: str) -> tuple[str, list[tuple[str, str]]]:
    """``NAME=STEM:SETTING[,STEM:SETTING...]`` -> (NAME, [(STEM, SETTING), ...])."""
    name, sep, spec = text.partition("=")
    parts = [p.strip().rpartition(":") for p in spec.split(",") if p.strip()]
    if not sep or not name.strip() or not parts or any(not stem or not s for stem, _, s in parts):
        raise click.BadParameter(f"{text!r}: write NAME=STEM:SETTING[,STEM:SETTING...]", param_hint="--arm")
    return name.strip(), [(stem, setting) for stem, _, setting in parts]


class Results:
    """The runs of one ``bench quality`` result, scored: ``runs(setting)`` -> complete runs."""

    def __init__(self, stem: str, results: Path, data: Path) -> None:
        meta_path = results / f"{stem}.json"
        rows = read_answers(results / f"{stem}.answers.jsonl")
        if not rows or not meta_path.is_file():
            raise click.UsageError(
                f"no result {stem!r} in {results}: bench quality writes {stem}.json and "
                f"{stem}.answers.jsonl (or .answers.jsonl.gz)"
            )
        meta = json.loads(meta_path.read_text())
        self.tasks: dict[str, dict[str, Any]] = {}
        for set_name in str(meta["sets"]).split(","):
            for t in load_tasks(data / f"{set_name}.jsonl.gz"):
                self.tasks[f"{set_name}/{t['task_id']}"] = t
        self._rows = [r for r in rows if r["task"] in self.tasks]
        self._passed = results / f"{stem}.passed.json"
        score(self._rows, self.tasks, self._passed)
        self._by_run: dict[tuple[str, int], Run] = {}
        for r in self._rows:
            self._by_run.setdefault((r["setting"], int(r["repeat"])), {})[r["task"]] = r["ok"]

    def runs(self, setting: str) -> list[Run]:
        if setting.endswith(BEST) and not any(s == setting for s, _ in self._by_run):
            self._score_best(setting.removesuffix(BEST))
        return [
            run
            for (s, _), run in sorted(self._by_run.items())
            if s == setting and len(run) == len(self.tasks)
        ]

    def _score_best(self, setting: str) -> None:
        """``SETTING/best``: a task passes when any answer the voters gave passes, the most any
        choice among the answers the swarm collected could score (the vote's ceiling)."""
        picks = [r for r in self._rows if r["setting"] == setting]
        answers = [
            {"task": r["task"], "content": c.get("content") or "", "row": i}
            for i, r in enumerate(picks)
            for c in r.get("candidates") or []
        ]
        score(answers, self.tasks, self._passed)
        best = [r["ok"] for r in picks]
        for a in answers:
            best[a["row"]] = best[a["row"]] or a["ok"]
        for r, ok in zip(picks, best, strict=True):
            self._by_run.setdefault((setting + BEST, int(r["repeat"])), {})[r["task"]] = ok


def per_task(runs: list[Run]) -> dict[str, float]:
    """Each task's pass rate over ``runs`` (the tasks every run answered)."""
    tasks = set.intersection(*(set(r) for r in runs))
    return {t: statistics.mean(float(r[t]) for r in runs) for t in sorted(tasks)}


def compare(a: list[Run], b: list[Run]) -> dict[str, Any]:
    """``a`` minus ``b``, paired per task (each side's mean over its runs), with a 90% interval."""
    pa, pb = per_task(a), per_task(b)
    tasks = sorted(set(pa) & set(pb))
    diffs = [pa[t] - pb[t] for t in tasks]
    lo, hi = bootstrap_diff(diffs)
    return {
        "tasks": len(tasks),
        "a": round(statistics.mean(pa[t] for t in tasks), 4),
        "b": round(statistics.mean(pb[t] for t in tasks), 4),
        "diff": round(statistics.mean(diffs), 4),
        "lo": round(lo, 4),
        "hi": round(hi, 4),
    }


def pooled(
    arms: list[tuple[str, list[tuple[str, str]]]], vs: list[tuple[str, str]], results: Path, data: Path
) -> dict[str, Any]:
    """Every arm against greedy (every greedy run of every result named), and each ``vs`` pair."""
    stems = list(dict.fromkeys(stem for _, spec in arms for stem, _ in spec))
    loaded = {stem: Results(stem, results, data) for stem in stems}
    greedy = [run for stem in stems for run in loaded[stem].runs(GREEDY)]
    if not greedy:
        raise click.UsageError("no complete greedy run in the results named")
    runs: dict[str, list[Run]] = {}
    for name, spec in arms:
        runs[name] = [run for stem, setting in spec for run in loaded[stem].runs(setting)]
        if not runs[name]:
            raise click.UsageError(f"arm {name!r}: no complete run of {spec}")
    rows = []
    for name, spec in arms:
        row = {"arm": name, "vs": GREEDY, "runs": len(runs[name]), "base_runs": len(greedy)}
        row |= {"from": [f"{s}:{t}" for s, t in spec], "per_run": [_rate(r) for r in runs[name]]}
        rows.append(row | compare(runs[name], greedy))
    for a, b in vs:
        rows.append(
            {"arm": a, "vs": b, "runs": len(runs[a]), "base_runs": len(runs[b])} | compare(runs[a], runs[b])
        )
    return {"greedy_per_run": [_rate(r) for r in greedy], "greedy_from": stems, "comparisons": rows}


def _pair(text: str, names: set[str]) -> tuple[str, str]:
    """``A-B`` -> (A, B), where A and B are arm names (which may hold a ``-`` themselves)."""
    for i, ch in enumerate(text):
        if ch == "-" and text[:i] in names and text[i + 1 :] in names:
            return text[:i], text[i + 1 :]
    raise click.BadParameter(
        f"{text!r}: write A-B with two arm names ({', '.join(sorted(names))})", param_hint="--vs"
    )


def _rate(run: Run) -> float:
    return round(statistics.mean(float(v) for v in run.values()), 3)


@click.command("quality-pooled")
@click.option(
    "--arm", "arm_specs", multiple=True, required=True, help="NAME=STEM:SETTING[,STEM:SETTING...] (repeat)."
)
@click.option("--vs", "vs_specs", multiple=True, help="A-B: arm A against arm B, paired per task (repeat).")
@click.option(
    "--out", default="quality-pooled", show_default=True, help="Result name: bench/results/<out>.json."
)
def command(arm_specs: tuple[str, ...], vs_specs: tuple[str, ...], out: str) -> None:
    """Live quality runs of several results pooled, against every greedy run among them."""
    arms = [parse_arm(a) for a in arm_specs]
    names = {n for n, _ in arms}
    vs = [_pair(v, names) for v in vs_specs]
    got = pooled(arms, vs, RESULTS, DATA)
    print_table(
        "Live quality, pooled (pass rate; paired difference per task, 90% CI)",
        ["arm", "vs", "runs", "pass", "baseline", "difference [90% CI]"],
        [
            [c["arm"], c["vs"], f"{c['runs']} vs {c['base_runs']}", c["a"], c["b"],
             f"{c['diff']:+.3f} [{c['lo']:+.3f}, {c['hi']:+.3f}]"]
            for c in got["comparisons"]
        ],
    )  # fmt: skip
    click.echo(f"greedy runs: {' '.join(f'{x:.3f}' for x in got['greedy_per_run'])}")
    click.echo(f"wrote {write_result(out, {'arms': list(arm_specs), **got})}")

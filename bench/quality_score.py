"""Scoring the live answer-quality benchmark (bench/quality.py): pass rates, the paired
difference against one greedy instance with a bootstrap interval, and the plot."""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

GREEDY = "greedy"


def bootstrap_diff(
    diffs: Sequence[float], seed: int = 0, reps: int = 4000, level: float = 0.90
) -> tuple[float, float]:
    """A percentile bootstrap interval (over tasks) for the mean of ``diffs``."""
    if not diffs:
        return (0.0, 0.0)
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(reps))
    tail = (1 - level) / 2
    return means[int(tail * reps)], means[min(reps - 1, int((1 - tail) * reps))]


def live_summary(
    rows: list[dict[str, Any]], task_keys: list[str], settings: list[str], sets: list[str]
) -> list[dict[str, Any]]:
    """One entry per (set or "all", setting): the swarm's pass rate (every run), one greedy
    instance's on the same tasks, the paired difference per task (the task's mean over runs minus
    greedy's mean over its runs: one llama-server answering several requests at once is not
    deterministic) with its 90% interval, the pass rate of each run, agreement and latency."""
    greedy_rows: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["setting"] == GREEDY:
            greedy_rows.setdefault(r["task"], []).append(r)
    greedy = {t: statistics.mean(float(r["ok"]) for r in rs) for t, rs in greedy_rows.items()}
    greedy_latency = {t: statistics.mean(r["latency_s"] for r in rs) for t, rs in greedy_rows.items()}
    greedy_runs = sorted({r["repeat"] for rs in greedy_rows.values() for r in rs})
    out = []
    for set_name in [*sets, "all"] if len(sets) > 1 else sets:
        keys = [k for k in task_keys if set_name == "all" or k.startswith(set_name + "/")]
        for setting in settings:
            mine = [
                r for r in rows if r["setting"] == setting and r["task"] in greedy and r["task"] in set(keys)
            ]
            if not mine:
                continue
            by_task: dict[str, list[dict[str, Any]]] = {}
            for r in mine:
                by_task.setdefault(r["task"], []).append(r)
            diffs = [statistics.mean(float(r["ok"]) for r in rs) - greedy[t] for t, rs in by_task.items()]
            runs = sorted({r["repeat"] for r in mine})
            per_run = [
                round(statistics.mean(float(r["ok"]) for r in mine if r["repeat"] == k), 3) for k in runs
            ]
            lo, hi = bootstrap_diff(diffs)
            agreement = [r["agreement"] for r in mine if r.get("agreement") is not None]
            out.append(
                {
                    "set": set_name,
                    "setting": setting,
                    "tasks": len(by_task),
                    "runs": len(runs),
                    "pass": round(statistics.mean(float(r["ok"]) for r in mine), 4),
                    "greedy": round(statistics.mean(greedy[t] for t in by_task), 4),
                    "greedy_runs": len(greedy_runs),
                    "greedy_per_run": [
                        round(
                            statistics.mean(
                                float(r["ok"]) for t in by_task for r in greedy_rows[t] if r["repeat"] == k
                            ),
                            3,
                        )
                        for k in greedy_runs
                    ],
                    "diff": round(statistics.mean(diffs), 4),
                    "lo": round(lo, 4),
                    "hi": round(hi, 4),
                    "per_run": per_run,
                    "mean_agreement": round(statistics.mean(agreement), 3) if agreement else None,
                    "latency_s": round(statistics.mean(r["latency_s"] for r in mine), 3),
                    "greedy_latency_s": round(statistics.mean(greedy_latency[t] for t in by_task), 3),
                    "completion_tokens": sum(r.get("completion_tokens") or 0 for r in mine),
                }
            )
    return out


def plot_live(summary: list[dict[str, Any]], path: Path, title: str) -> Path:
    """The paired difference against greedy per setting, with its 90% interval, one panel per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(s["set"] for s in summary)) or ["(none)"]
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 4.2), squeeze=False, sharey=True)
    for ax, set_name in zip(axes[0], sets, strict=True):
        mine = [s for s in summary if s["set"] == set_name]
        x = list(range(len(mine)))
        ax.axhline(0, color="black", linewidth=1)
        ax.errorbar(
            x,
            [s["diff"] for s in mine],
            yerr=[[s["diff"] - s["lo"] for s in mine], [s["hi"] - s["diff"] for s in mine]],
            fmt="o",
            capsize=5,
        )
        for xi, s in zip(x, mine, strict=True):
            ax.annotate(
                f"{s['pass']:.2f}\nvs {s['greedy']:.2f}", (xi, s["hi"]), ha="center", va="bottom", fontsize=8
            )
        ax.set_xlim(-0.6, len(mine) - 0.4)
        ax.margins(y=0.25)
        ax.set_xticks(x, [("T not sent" if s["setting"] == "none" else f"T={s['setting']}") for s in mine])
        ax.set_title(f"{set_name} ({mine[0]['tasks'] if mine else 0} tasks)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("swarm minus one greedy instance (pass rate, 90% CI)")
    fig.suptitle(f"Live answer quality: {title}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

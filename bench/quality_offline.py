"""``python -m bench quality-offline``: pickers simulated over the candidate pool (bench/quality_pool.py).

For each task, ``--draws`` random swarms are drawn from the pool (the same draws for every
picker): a *mix* says which temperatures the N voters sample at ("g" is one greedy voter).
A picker's score on a task is the share of its draws whose winner passes; its difference
against one instance decoding greedily is paired per task, with a 90% bootstrap interval over
tasks. Pickers are chosen on ``--choose`` (micro2-dev) and checked on ``--check`` (micro-dev),
so the check set was not tuned on.

Early stopping is simulated with the voters decoding side by side at one speed: answers arrive
shortest first, and a voter cancelled at the moment the vote is settled has spent as many tokens
as the answer that settled it.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from bench.common import REPO, RESULTS, print_table, write_result
from bench.quality_pickers import PICKERS, Pick, TaskPool, clusters_of, task_pools
from bench.quality_pool import POOL, load_pool
from swarm_supervisor.consensus.vote import settled


def parse_mix(mix: str) -> list[float]:
    """'g+4x0.8' -> [0.0, 0.8, 0.8, 0.8, 0.8]."""
    out: list[float] = []
    for part in mix.split("+"):
        if part == "g":
            out.append(0.0)
        elif "x" in part:
            k, t = part.split("x")
            out += [float(t)] * int(k)
        else:
            out.append(float(part))
    return out


def draws(tp: TaskPool, temps: list[float], count: int, rng: random.Random) -> list[list[int]]:
    """``count`` swarms: answer indices, one per voter, samples without replacement per temperature."""
    index = {id(a): i for i, a in enumerate(tp.answers)}
    need: dict[float, int] = {}
    for t in temps:
        need[t] = need.get(t, 0) + 1
    out = []
    for _ in range(count):
        idx: list[int] = []
        for t, k in need.items():
            if t == 0.0:
                idx += [0] * k  # greedy is deterministic: k greedy voters give the same answer
            else:
                idx += [index[id(a)] for a in rng.sample(tp.by_temp[t], k)]
        rng.shuffle(idx)
        out.append(idx)
    return out


def paired(
    values: Sequence[float], greedy: Sequence[float], rng: random.Random, reps: int = 2000
) -> dict[str, float]:
    """Mean, and the mean paired difference against greedy with a 90% bootstrap interval over tasks."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    d = v - np.asarray(greedy, dtype=float)
    gen = np.random.default_rng(rng.randrange(2**32))
    boot = d[gen.integers(0, len(d), size=(reps, len(d)))].mean(axis=1)
    lo, hi = np.quantile(boot, [0.05, 0.95])
    return {
        "pass": round(float(v.mean()), 4),
        "diff": round(float(d.mean()), 4),
        "lo": round(float(lo), 4),
        "hi": round(float(hi), 4),
    }


def stop_early(tp: TaskPool, idx: list[int], pick: Pick, margin: int | None) -> tuple[int, int, int, int]:
    """(winner, answers used, tokens spent, tokens of the full vote) when answers arrive shortest
    first and the vote stops once `settled` (cut-off and dropped answers do not count)."""
    tokens = [tp.answers[i].tokens for i in idx]
    order = [idx[p] for p in sorted(range(len(idx)), key=lambda p: tokens[p])]
    n = len(order)
    for m in range(1, n + 1):
        arrived = order[:m]
        keep = [i for i in arrived if not tp.problem[i] and tp.answers[i].cand.finish_reason != "length"]
        sizes = [len(g) for g in clusters_of(tp, keep)] if keep else []
        if m == n or settled(sizes, n - m, margin):
            t_stop = tp.answers[order[m - 1]].tokens
            spent = sum(min(tp.answers[i].tokens, t_stop) for i in order)
            return pick(tp, arrived), m, spent, sum(tokens)
    raise AssertionError("unreachable")


MIXES: dict[int, list[str]] = {
    2: ["2x0.8", "g+0.5", "g+0.8"],
    3: ["3x0.8", "3x0.5", "g+2x0.2", "g+2x0.5", "g+2x0.8", "g+0.5+0.8"],
    5: [
        "5x0.2", "5x0.5", "5x0.8",
        "g+4x0.2", "g+4x0.5", "g+4x0.8",
        "g+2x0.2+2x0.5", "g+2x0.5+2x0.8", "g+0.2+0.5+2x0.8", "g+2x0.2+2x0.8",
    ],
    8: ["8x0.8", "g+7x0.5", "g+7x0.8", "g+2x0.2+2x0.5+3x0.8"],
}  # fmt: skip


MARGINS: tuple[int | None, ...] = (None, 1, 2, 3)


#: the pickers the markdown summary shows
SUMMARY = (
    "quality",
    "+ties and within by mean logprob",
    "+ties and within by self-certainty",
    "max mean logprob (no vote)",
    "one voter",
    "any of N",
)


def evaluate(
    tps: list[TaskPool],
    mix: str,
    pickers: dict[str, Pick],
    count: int,
    seed: int,
    margins: Sequence[int | None] = (),
) -> dict[str, Any]:
    temps = parse_mix(mix)
    rng = random.Random(f"{seed}/{mix}")
    greedy = [float(tp.greedy.ok) for tp in tps]
    per: dict[str, list[float]] = {name: [] for name in pickers}
    extra: dict[str, list[float]] = {"one voter": [], "any of N": []}
    stops: dict[str, dict[str, list[float]]] = {}
    for tp in tps:
        ds = draws(tp, temps, count, rng)
        for name, pick in pickers.items():
            per[name].append(statistics.mean(float(tp.answers[pick(tp, d)].ok) for d in ds))
        extra["one voter"].append(statistics.mean(float(tp.answers[d[0]].ok) for d in ds))
        extra["any of N"].append(statistics.mean(float(any(tp.answers[i].ok for i in d)) for d in ds))
        for margin in margins:
            for name, pick in pickers.items():
                acc = stops.setdefault(f"{name} | margin {margin}", {"ok": [], "used": [], "spent": []})
                runs = [stop_early(tp, d, pick, margin) for d in ds]
                acc["ok"].append(statistics.mean(float(tp.answers[w].ok) for w, _, _, _ in runs))
                acc["used"].append(statistics.mean(u for _, u, _, _ in runs))
                acc["spent"].append(sum(s for _, _, s, _ in runs) / max(1, sum(f for _, _, _, f in runs)))
    out: dict[str, Any] = {"greedy": round(statistics.mean(greedy), 4), "pickers": {}, "early": {}}
    brng = random.Random(seed)
    for name, vals in {**per, **extra}.items():
        out["pickers"][name] = paired(vals, greedy, brng)
    for name, acc in stops.items():
        out["early"][name] = {
            **paired(acc["ok"], greedy, brng),
            "answers_used": round(statistics.mean(acc["used"]), 2),
            "tokens_spent": round(statistics.mean(acc["spent"]), 3),
        }
    return out


def _ci(r: dict[str, float]) -> str:
    return f"{r['diff']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]"


@click.command("quality-offline")
@click.option("--choose", default="micro2-dev", show_default=True, help="Set the picker is chosen on.")
@click.option("--check", default="micro-dev", show_default=True, help="Held-out set it is checked on.")
@click.option("--draws", "count", default=40, show_default=True, help="Random swarms per task and mix.")
@click.option("--sizes", default="2,3,5,8", show_default=True)
@click.option("--early-pickers", default="+ties and within by mean logprob,quality", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--pool",
    "pool_paths",
    type=click.Path(path_type=Path),
    multiple=True,
    default=[POOL, RESULTS / "quality-pool-micro-dev.json.gz"],
    show_default=True,
)
def command(
    choose: str,
    check: str,
    count: int,
    sizes: str,
    early_pickers: str,
    seed: int,
    pool_paths: tuple[Path, ...],
) -> None:
    """Simulate pickers over the pool: pass rate and paired difference against greedy."""
    pool: dict[str, Any] = {"sets": {}, "answers": {}, "passed": {}}
    for path in pool_paths:
        one = load_pool(path)
        for part in ("sets", "answers", "passed"):
            pool[part].update(one[part])
    early = {k: PICKERS[k] for k in early_pickers.split(",") if k}
    results: dict[str, Any] = {}
    for name in (choose, check):
        tps = task_pools(pool, name)
        click.echo(f"{name}: {len(tps)} tasks, greedy {statistics.mean(float(t.greedy.ok) for t in tps):.3f}")
        results[name] = {"tasks": len(tps), "mixes": {}}
        for n in (int(x) for x in sizes.split(",")):
            for mix in MIXES.get(n, []):
                need = parse_mix(mix)
                if any(len(tp.by_temp.get(t, [])) < need.count(t) for tp in tps for t in set(need) if t):
                    continue  # the pool has too few samples at some temperature for this mix
                res = evaluate(tps, mix, PICKERS, count, seed)
                if early:
                    res["early"] = evaluate(tps, mix, early, count, seed, MARGINS)["early"]
                results[name]["mixes"][mix] = res
                rows = [[k, v["pass"], _ci(v)] for k, v in res["pickers"].items()]
                rows += [
                    [k, v["pass"], _ci(v) + f" used {v['answers_used']} tok {v['tokens_spent']}"]
                    for k, v in res.get("early", {}).items()
                ]
                print_table(
                    f"{name} {mix} (greedy {res['greedy']:.3f})",
                    ["picker", "pass", "vs greedy [90% CI]"],
                    rows,
                )
    out = write_result(
        "quality-offline", {"pools": [p.name for p in pool_paths], "draws": count, "results": results}
    )
    click.echo(f"wrote {out.relative_to(REPO)}")
    md = out.with_suffix(".md")
    md.write_text(markdown(results, SUMMARY, early=next(iter(early), None)) + "\n", encoding="utf-8")
    click.echo(f"wrote {md.relative_to(REPO)}")


def markdown(results: dict[str, Any], pickers: Sequence[str], early: str | None = None) -> str:
    """A markdown table per set: one row per mix, a column per picker (difference against
    greedy [90% CI]); with ``early``, that picker's figures at each margin."""
    out = []
    for name, res in results.items():
        out.append(f"\n{name} ({res['tasks']} tasks)\n")
        out.append("| voters | greedy | " + " | ".join(pickers) + " |")
        out.append("| --- | --- |" + " --- |" * len(pickers))
        for mix, r in res["mixes"].items():
            cells = [f"{r['pickers'][p]['pass']:.3f} ({_ci(r['pickers'][p])})" for p in pickers]
            out.append(f"| {mix} | {r['greedy']:.3f} | " + " | ".join(cells) + " |")
        if early:
            out.append(f"\n{name}, early stopping ({early})\n")
            out.append("| voters | margin | pass (vs greedy [90% CI]) | answers used | tokens spent |")
            out.append("| --- | --- | --- | --- | --- |")
            for mix, r in res["mixes"].items():
                for key, e in r.get("early", {}).items():
                    if key.startswith(early + " | margin"):
                        margin = key.rsplit(" ", 1)[1]
                        out.append(
                            f"| {mix} | {margin} | {e['pass']:.3f} ({_ci(e)}) | {e['answers_used']} "
                            f"| {e['tokens_spent']:.0%} |"
                        )
    return "\n".join(out)

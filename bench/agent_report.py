"""The figures, tables and plot of ``python -m bench agent`` (pure functions of its result rows)."""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.common import print_table

TARGETS = ("swarm", "baseline")


def _q(xs: list[float], p: int) -> float | None:
    """The ``p``-th percentile (inclusive method), None for no data."""
    if not xs:
        return None
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[p - 1] if 0 < p < 100 else None


def _spread(xs: list[float]) -> dict[str, float | None]:
    return {
        "median": _q(xs, 50),
        "p10": _q(xs, 10),
        "p90": _q(xs, 90),
        "min": min(xs) if xs else None,
        "max": max(xs) if xs else None,
        "n": len(xs),
    }


def _both_ok(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if all(r[t]["ok"] for t in TARGETS)]


def per_session(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sums over each (repeat, session) of the turns both targets answered."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for r in _both_ok(rows):
        groups.setdefault((r["repeat"], r["session"]), []).append(r)
    out = []
    for (rep, name), rs in groups.items():
        d: dict[str, Any] = {
            "repeat": rep,
            "session": name,
            "turns": len(rs),
            "prompt_tokens_first": rs[0]["prompt_tokens"],
            "prompt_tokens_last": rs[-1]["prompt_tokens"],
        }
        for t in TARGETS:
            d[f"{t}_answer_s"] = sum(r[t]["answer_s"] for r in rs)
            d[f"{t}_ttfb_s"] = sum(r[t]["ttfb_s"] or r[t]["answer_s"] for r in rs)
            d[f"{t}_evaluated"] = sum(r[t]["evaluated_prompt_tokens"] for r in rs)
            d[f"{t}_answer_tokens"] = sum(r[t]["answer_tokens"] or 0 for r in rs)
        d["ratio"] = d["swarm_answer_s"] / d["baseline_answer_s"]
        d["evaluated_ratio"] = (
            d["swarm_evaluated"] / d["baseline_evaluated"] if d["baseline_evaluated"] else None
        )
        out.append(d)
    return out


def rates(rows: list[dict[str, Any]], multi: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Answers/s and p50/p95 per M and target; M = 1 from phase 1 (each target's turns back to back)."""
    out = []
    for t in TARGETS:
        ok = [r[t]["answer_s"] for r in rows if r[t]["ok"]]
        if ok:
            out.append(
                {
                    "m": 1,
                    "target": t,
                    "answers": len(ok),
                    "wall_s": sum(ok),
                    "answers_per_s": len(ok) / sum(ok),
                    "p50_s": _q(ok, 50),
                    "p95_s": _q(ok, 95),
                }
            )
    for g in multi:
        out.append({k: g[k] for k in ("m", "target", "answers", "wall_s", "answers_per_s", "p50_s", "p95_s")})
    by = {(x["m"], x["target"]): x for x in out}
    for x in out:
        other = by.get((x["m"], "baseline"))
        x["per_s_swarm_over_baseline"] = (
            by[(x["m"], "swarm")]["answers_per_s"] / other["answers_per_s"]
            if x["target"] == "swarm" and other and other["answers_per_s"]
            else None
        )
    return sorted(out, key=lambda x: (x["m"], x["target"] != "swarm"))


def summarise(
    rows: list[dict[str, Any]], multi: list[dict[str, Any]], concurrency: list[int]
) -> dict[str, Any]:
    ok = _both_ok(rows)
    sessions = per_session(rows)
    tot = {t: sum(r[t]["answer_s"] for r in ok) for t in TARGETS}
    ev = {t: sum(r[t]["evaluated_prompt_tokens"] for r in ok) for t in TARGETS}
    ttfb = [
        r["swarm"]["ttfb_s"] / r["baseline"]["ttfb_s"]
        for r in ok
        if r["swarm"]["ttfb_s"] and r["baseline"]["ttfb_s"]
    ]
    return {
        "turns_measured": len(rows),
        "turns_both_ok": len(ok),
        "errors": {
            t: [f"{r['session']}#{r['turn']}: {r[t]['error']}" for r in rows if not r[t]["ok"]]
            for t in TARGETS
        },
        "ratio_whole_run": tot["swarm"] / tot["baseline"] if tot["baseline"] else None,
        "ratio_per_session": _spread([s["ratio"] for s in sessions]),
        "ratio_per_turn": _spread([r["swarm"]["answer_s"] / r["baseline"]["answer_s"] for r in ok]),
        "ttfb_ratio_per_turn": _spread(ttfb),
        "evaluated_prompt_tokens": ev,
        "evaluated_ratio": ev["swarm"] / ev["baseline"] if ev["baseline"] else None,
        "answer_s_total": tot,
        "per_session": sessions,
        "rates": rates(rows, multi),
        "concurrency": concurrency,
    }


def _f(x: float | None, fmt: str = ".2f") -> str:
    return "-" if x is None else format(x, fmt)


def print_tables(data: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(width=180)
    s = data["summary"]
    sw = data["swarm"]
    print_table(
        f"Agent sessions turn by turn (M = 1): swarm of {sw['voters']} voters ({sw['processes']} processes) "
        f"vs one llama-server alone; {sw['context']} tokens a slot",
        [
            "rep",
            "session",
            "turns",
            "prompt tok",
            "swarm s",
            "alone s",
            "swarm/alone",
            "swarm TTFB s",
            "alone TTFB s",
            "eval tok swarm",
            "eval tok alone",
            "eval ratio",
            "answer tok swarm/alone",
        ],
        [
            (
                x["repeat"],
                x["session"],
                x["turns"],
                f"{x['prompt_tokens_first']}-{x['prompt_tokens_last']}",
                x["swarm_answer_s"],
                x["baseline_answer_s"],
                x["ratio"],
                x["swarm_ttfb_s"],
                x["baseline_ttfb_s"],
                int(x["swarm_evaluated"]),
                int(x["baseline_evaluated"]),
                _f(x["evaluated_ratio"]),
                f"{x['swarm_answer_tokens']}/{x['baseline_answer_tokens']}",
            )
            for x in s["per_session"]
        ],
        console=console,
    )
    print_table(
        "Sessions at once: answers/s and seconds a turn",
        ["M", "target", "answers", "wall s", "answers/s", "p50 s", "p95 s", "swarm/alone answers/s"],
        [
            (
                x["m"],
                x["target"],
                x["answers"],
                x["wall_s"],
                x["answers_per_s"],
                _f(x["p50_s"]),
                _f(x["p95_s"]),
                _f(x["per_s_swarm_over_baseline"]),
            )
            for x in s["rates"]
        ],
        console=console,
    )
    ps, pt = s["ratio_per_session"], s["ratio_per_turn"]
    console.print(
        f"time to the answer, swarm / alone: whole run {_f(s['ratio_whole_run'])}; per session median "
        f"{_f(ps['median'])} (min {_f(ps['min'])}, max {_f(ps['max'])}, n {ps['n']}); per turn median "
        f"{_f(pt['median'])} (p10 {_f(pt['p10'])}, p90 {_f(pt['p90'])}); "
        f"prompt tokens evaluated, swarm / alone: {_f(s['evaluated_ratio'])}; "
        f"dropped turns: {len(data['dropped'])}"
    )


def plot(data: dict[str, Any], path: Path) -> Path | None:
    """Two panels: seconds a turn against its prompt tokens (M = 1); answers/s against M. None
    where matplotlib is not installed (e.g. a bare GPU machine): the JSON has everything."""
    try:
        import matplotlib
    except ImportError:
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5))
    colours = {"swarm": "tab:red", "baseline": "tab:blue"}
    labels = {"swarm": f"swarm ({data['swarm']['voters']} voters)", "baseline": "one llama-server alone"}
    for t in TARGETS:
        pts = [(r["prompt_tokens"], r[t]["answer_s"]) for r in data["turns"] if r[t]["ok"]]
        if pts:
            a.scatter(*zip(*pts, strict=True), s=18, color=colours[t], label=labels[t], alpha=0.8)
    a.set_xlabel("prompt tokens of the turn")
    a.set_ylabel("seconds to the whole answer")
    a.set_title("M = 1: each turn of each session")
    a.legend()
    rates = data["summary"]["rates"]
    ms = sorted({x["m"] for x in rates})
    width = 0.38
    for k, t in enumerate(TARGETS):
        ys = [next((x["answers_per_s"] for x in rates if x["m"] == m and x["target"] == t), 0.0) for m in ms]
        b.bar([i + (k - 0.5) * width for i in range(len(ms))], ys, width, color=colours[t], label=labels[t])
    b.set_xticks(range(len(ms)), [str(m) for m in ms])
    b.set_xlabel("M sessions at once")
    b.set_ylabel("answers / s")
    b.set_title("throughput")
    b.legend()
    fig.suptitle(
        f"opencode sessions replayed: {Path(data['settings']['model']).name}, "
        f"{os.cpu_count()} cores (a shared machine: read the ratios)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

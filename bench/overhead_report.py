"""What ``python -m bench overhead`` concludes: the aims (added p50 by N, req/s at 16 clients,
LiteLLM's added p50 against ours), the summary of the runs against them, the progress line and
the plot in docs/performance.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

#: the issue's aims: added p50 (ms) by N; req/s at 16 clients by N; LiteLLM's added p50 / ours
AIM_P50_MS = {1: 0.6, 4: 1.5}


AIM_RPS_16 = {1: 3000.0, 4: 1500.0}


AIM_LITELLM_RATIO = 20.0


def progress(r: dict[str, Any]) -> None:
    click.echo(
        f"  {r['target']:8} N={r['voters']} c={r['concurrency']:<3} added p50 {r['added_p50_ms']:.3f} ms, "
        f"{r['proxy']['rps']:.0f} req/s ({r['rps_ratio']:.2f} of direct)",
        err=True,
    )


def _find(runs: list[dict[str, Any]], proxy: str, n: int, c: int) -> dict[str, Any] | None:
    return next((r for r in runs if (r["target"], r["voters"], r["concurrency"]) == (proxy, n, c)), None)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The aims, each checked against this run's figures."""
    verdicts: list[str] = []
    for n, aim in AIM_P50_MS.items():
        r = _find(runs, "swarm", n, 1)
        if r:
            ok = "met" if r["added_p50_ms"] <= aim else "MISSED"
            verdicts.append(f"N={n}, 1 client: added p50 {r['added_p50_ms']:.3f} ms (aim <= {aim}): {ok}")
    for n, aim_rps in AIM_RPS_16.items():
        r = _find(runs, "swarm", n, 16)
        if r:
            rps = r["proxy"]["rps"]
            ok = "met" if rps >= aim_rps else "MISSED"
            verdicts.append(
                f"N={n}, 16 clients: {rps:.0f} req/s, {r['rps_ratio']:.2f} of direct "
                f"{r['direct']['rps']:.0f} (aim >= {aim_rps:.0f}): {ok}"
            )
    ratios: dict[str, float] = {}
    for r in runs:
        if r["target"] != "litellm":
            continue
        ours = _find(runs, "swarm", r["voters"], r["concurrency"])
        if ours and ours["added_p50_ms"] > 0:
            key = f"N={r['voters']},c={r['concurrency']}"
            ratios[key] = r["added_p50_ms"] / ours["added_p50_ms"]
    for key, ratio in ratios.items():
        ok = "met" if ratio >= AIM_LITELLM_RATIO else "MISSED"
        verdicts.append(
            f"{key}: LiteLLM adds {ratio:.1f}x our added p50 (aim >= {AIM_LITELLM_RATIO:.0f}x): {ok}"
        )
    return {"verdicts": verdicts, "litellm_over_swarm_added_p50": ratios}


def plot(runs: list[dict[str, Any]], path: Path) -> Path:
    """Added p50 latency against N, one line per concurrency, for each proxy (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    concs = sorted({r["concurrency"] for r in runs})
    colors = dict(zip(concs, ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"], strict=False))
    for proxy, style, label in (("swarm", "-o", "Local Swarm"), ("litellm", "--s", "LiteLLM")):
        for c in concs:
            pts = sorted(
                (r["voters"], r["added_p50_ms"])
                for r in runs
                if r["target"] == proxy and r["concurrency"] == c
            )
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, [max(y, 0.01) for y in ys], style, color=colors[c], label=f"{label}, {c} clients")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sorted({r["voters"] for r in runs}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("voters N (requests the proxy sends upstream per client request; LiteLLM: deployments)")
    ax.set_ylabel("added p50 latency, ms (log)")
    ax.set_title("Proxy overhead vs a constant-latency upstream (same-run baseline)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

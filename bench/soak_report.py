"""What the soak's numbers mean (``python -m bench soak``): which failed requests were *lost* (some
instance was ready with the same pid for the whole request and not killed under it) and which
could not have been answered, latency by kind, and the problems that fail the run.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.soak_clients import Outcome
from bench.soak_killer import Kill, Timeline

RSS_LIMIT_PCT = 5.0


def classify(outcomes: list[Outcome], timeline: Timeline, kills: list[Kill]) -> dict[str, Any]:
    """Failures, and which of them were lost (some instance could have answered); each failure
    with the instances ready when it started and the kills during it."""
    killed: dict[int, float] = {k.pid: k.t for k in kills}
    failures: dict[str, int] = {}
    lost: list[dict[str, Any]] = []
    unavoidable: list[dict[str, Any]] = []
    for o in outcomes:
        if o.ok:
            continue
        failures[o.why or "?"] = failures.get(o.why or "?", 0) + 1
        steady = timeline.steady_ready(o.t0, o.t1)
        could = [i for i, pid in steady.items() if pid not in killed or killed[pid] > o.t1]
        at_start = sorted(timeline.steady_ready(o.t0, o.t0))
        during = [f"{k.instance} at +{k.t - o.t0:.3f} s" for k in kills if o.t0 - 2.0 <= k.t <= o.t1]
        entry = {
            "kind": o.kind,
            "why": o.why,
            "detail": o.detail,
            "at": round(o.wall, 3),
            "took_s": round(o.t1 - o.t0, 3),
            "ready_at_start": at_start,
            "kills_near": during,
        }
        if could:
            lost.append({**entry, "ready_throughout": could})
        else:
            unavoidable.append(entry)
    return {"failures": failures, "lost": lost, "unavoidable": unavoidable}


def latency_ms(outcomes: list[Outcome]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kinds = sorted({o.kind for o in outcomes})
    for kind in [*kinds, "all"]:
        lat = sorted(o.t1 - o.t0 for o in outcomes if o.ok and (kind == "all" or o.kind == kind))
        if lat:
            out[kind] = {
                "n": len(lat),
                "p50": round(1e3 * statistics.median(lat), 1),
                "p99": round(1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
                "max": round(1e3 * lat[-1], 1),
            }
    return out


def problems(r: dict[str, Any]) -> list[str]:
    out = []
    if r["lost"]:
        out.append(f"{r['lost']} requests lost that a ready instance could have answered: {r['failures']}")
    if not r["ok"]:
        out.append("no request succeeded")
    if r["requests_sent"] < r["settings"]["requests"]:
        out.append(
            f"the time cap stopped the run after {r['requests_sent']} of {r['settings']['requests']} requests"
        )
    if not r["all_back"]:
        out.append(f"not every instance is back to ready: {r['instances_after']}")
    short = [i["id"] for i in r["instances_after"] if i["restarts"] < i["killed"]]
    if short:
        out.append(f"instances {short} show fewer restarts than kills")
    if r["settings"]["kills_asked"] and r["kills"] < r["settings"]["kills_asked"]:
        out.append(f"{r['kills']} kills of {r['settings']['kills_asked']} asked")
    growth = r["supervisor_process"]["rss_growth_pct"]
    if growth > RSS_LIMIT_PCT:
        out.append(f"the proxy/supervisor RSS grew {growth}% (> {RSS_LIMIT_PCT}%)")
    if r.get("down_rc"):
        out.append(f"swarm down exited {r['down_rc']}")
    return out

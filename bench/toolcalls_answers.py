"""How ``python -m bench toolcalls`` sorts an answer (a valid tool call, an invalid one, a call
leaked into the text, text, empty, an error; per voter from the swarm's report) and sums the
shares of each category for one instance and for the swarm.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from swarm_supervisor.consensus import Candidate, Toolbox, prepare

CATEGORIES = ("call", "invalid_call", "leaked_call", "leaked_invalid", "text", "empty", "error")


def classify(message: dict[str, Any], box: Toolbox) -> str:
    """The category (module docstring) of one assistant message."""
    content = message.get("content")
    cand = Candidate("x", content if isinstance(content, str) else None, message.get("tool_calls") or None)
    prep = prepare([cand], box)
    return _category(cand.kind, bool(prep.dropped), 0 in prep.recovered)


def _category(kind: str, dropped: bool, recovered: bool) -> str:
    if kind == "tool_calls":
        return "invalid_call" if dropped else "call"
    if kind == "none":
        return "empty"
    if recovered:
        return "leaked_call"
    return "leaked_invalid" if dropped else "text"


def voter_categories(swarm: dict[str, Any]) -> list[tuple[str, str]]:
    """(voter id, category or "no_answer") for every voter in a ``swarm`` extension."""
    dropped = {d["voter"]: d["reason"] for d in swarm.get("dropped") or []}
    recovered = swarm.get("recovered") or {}
    out: list[tuple[str, str]] = []
    for v in swarm.get("voters") or []:
        kind = v.get("answer")
        if kind is None:
            out.append((v["id"], "no_answer"))
            continue
        reason = dropped.get(v["id"], "")
        out.append((v["id"], _category(kind, reason.startswith("invalid tool call"), v["id"] in recovered)))
    return out


def shares(categories: list[str]) -> dict[str, Any]:
    counts = Counter(categories)
    n = len(categories)
    out: dict[str, Any] = {"n": n}
    for c in (*CATEGORIES, "no_answer"):
        if counts.get(c) or c in CATEGORIES:
            out[c] = round(counts.get(c, 0) / n, 3) if n else None
    return out


def summarize(single: list[dict[str, Any]], swarm: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Shares per answerer: one instance, the swarm's answer, each voter, all voters together
    (voters without an answer are left out of their shares and counted as ``no_answer``)."""
    rows: dict[str, dict[str, Any]] = {}
    if single:
        rows["one instance"] = shares([r["category"] for r in single])
    if swarm:
        rows["swarm (answer)"] = shares([r["category"] for r in swarm])
        by_voter: dict[str, list[str]] = {}
        for r in swarm:
            for vid, cat in r.get("voters") or []:
                by_voter.setdefault(vid, []).append(cat)
        answered = [c for cats in by_voter.values() for c in cats if c != "no_answer"]
        rows["voters (all answers)"] = shares(answered)
        for vid in sorted(by_voter):
            cats = by_voter[vid]
            row = shares([c for c in cats if c != "no_answer"])
            row["no_answer"] = cats.count("no_answer")
            rows[f"voter {vid}"] = row
    return rows

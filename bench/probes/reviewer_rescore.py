"""Re-score a live quality run's kept candidates with a *reviewer* score (Coder-Reviewer
reranking, Zhang et al. 2022): how likely the model finds the task's own description given a
candidate's code, log p(docstring | code), next to the vote and the voters' own log-probability.

llama-server returns no log-probabilities for prompt tokens, so the description is made the
answer: a GBNF grammar that allows only its exact text forces the tokens, and ``n_probs`` reports
each one's log-probability under the model before sampling. The candidate's docstrings are taken
out first (a copied docstring would be read straight back). Nothing is executed in the scoring;
pass/fail comes from the run's kept results (missing programs run sandboxed, as in the benchmark).

    python -m bench.probes.reviewer_rescore [ANSWERS_JSONL]   # the cached llama-server and SmolLM2
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import statistics
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import RESULTS
from bench.quality import DATA
from bench.quality_gen import load_tasks, passes, program_for, program_key, start_server, stop_server
from bench.topology import find_binary, find_model
from swarm_supervisor.consensus.code import code_blocks

ANSWERS = RESULTS / "quality-live-h200.answers.jsonl"
SCORES = Path("/tmp/reviewer-scores.json")  # resumable scratch, not a result
PROMPT = "```python\n{code}\n```\n\nIn one sentence, what the function above does:\n"


def strip_docstrings(content: str) -> str | None:
    """The answer's Python without docstrings (``ast.unparse``), or None when it has none that parses."""
    py = [b.body for b in code_blocks(content) if b.is_python]
    if not py:
        return None
    try:
        tree = ast.parse("\n".join(py))
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module):
            body = node.body
            first = body[0].value if body and isinstance(body[0], ast.Expr) else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def description(task: dict[str, Any]) -> str:
    found = re.search(r'"""(.*?)"""', task["prompt"], re.S)
    return found.group(1).strip() if found else str(task["prompt"])


def literal_grammar(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'root ::= "{escaped}"'


async def _score_all(url: str, todo: dict[str, tuple[str, str]], cache: Path) -> dict[str, float]:
    """Every program's reviewer score; kept in ``cache`` as it goes (a stopped run resumes)."""
    out: dict[str, float] = json.loads(cache.read_text()) if cache.exists() else {}
    gate = asyncio.Semaphore(4)
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:

        async def one(key: str, code: str, target: str) -> None:
            body = {"prompt": PROMPT.format(code=code), "grammar": literal_grammar(target), "n_predict": 256,
                    "temperature": 0, "n_probs": 1, "cache_prompt": True}  # fmt: skip
            async with gate:
                got = (await client.post("/completion", json=body)).json()
            out[key] = sum(p["logprob"] for p in got.get("completion_probabilities", []))

        left = [(k, v) for k, v in todo.items() if k not in out]
        for i in range(0, len(left), 40):
            await asyncio.gather(*(one(k, code, target) for k, (code, target) in left[i : i + 40]))
            cache.write_text(json.dumps(out))
            print(f"{min(i + 40, len(left))} of {len(left)} scored", flush=True)
    return {k: out[k] for k in todo}


def _picks(
    r: dict[str, Any],
    cands: list[dict[str, Any]],
    anchor: dict[str, Any] | None,
    passed: dict[str, bool],
    greedy: bool,
) -> dict[str, bool]:
    """Whether each picker's choice among one vote's scored candidates passes; where no candidate
    could be scored (none parses), the vote's own answer stands."""
    vote = passed[r["program"]]

    def best(key: Callable[[dict[str, Any]], float]) -> bool:
        return passed[max(cands, key=key)["program"]] if cands else vote

    def unless(d: float) -> bool:
        if anchor is None or not cands:
            return vote
        top = max(cands, key=lambda c: c["review"])
        return passed[(top if top["review"] > anchor["review"] + d else anchor)["program"]]

    return {
        "one greedy instance": greedy,
        "the live vote": vote,
        "max reviewer": best(lambda c: c["review"]),
        "max coder + reviewer/10": best(lambda c: float(c.get("mean_logprob") or -9.0) + c["review"] / 10),
        **{f"anchor unless reviewer +{d}": unless(d) for d in (0.5, 1.0, 2.0)},
        "any candidate (ceiling)": any(passed[c["program"]] for c in r["candidates"]),
    }


def main(path: Path) -> None:
    tasks = {}
    for name in ("micro-dev", "micro2-dev"):
        for t in load_tasks(DATA / f"{name}.jsonl.gz"):
            tasks[f"{name}/{t['task_id']}"] = t
    rows = [json.loads(line) for line in path.open()]
    passed_path = path.with_name(path.name.replace(".answers.jsonl", ".passed.json"))
    passed: dict[str, bool] = json.loads(passed_path.read_text()) if passed_path.exists() else {}
    programs: dict[str, str | None] = {}
    todo: dict[str, tuple[str, str]] = {}
    for r in rows:
        r["program"] = program_key(program_for(tasks[r["task"]], r["content"] or ""))
        programs.setdefault(r["program"], program_for(tasks[r["task"]], r["content"] or ""))
        for c in r.get("candidates") or []:
            prog = program_for(tasks[r["task"]], c["content"] or "")
            c["program"] = program_key(prog)
            if c["program"] not in passed:
                programs[c["program"]] = prog
            code = strip_docstrings(c["content"] or "")
            c["review_key"] = None if code is None else f"{r['task']}\0{code}"
            if code is not None:
                todo[f"{r['task']}\0{code}"] = (code, description(tasks[r["task"]]))
    programs = {k: v for k, v in programs.items() if k not in passed}
    with ThreadPoolExecutor(2) as ex:
        for key, ok in zip(programs, ex.map(passes, programs.values()), strict=True):
            passed[key] = ok
    server = start_server(find_binary(None), find_model(None), 2, 8192, Path(tempfile.mkdtemp()), parallel=4)
    try:
        print(f"scoring {len(todo)} distinct programs", flush=True)
        review = asyncio.run(_score_all(server.url, todo, SCORES))
    finally:
        stop_server(server)
    greedy = {r["task"]: passed[r["program"]] for r in rows if r["setting"] == "greedy"}
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))

    for r in rows:
        if r["setting"] == "greedy":
            continue
        cands = [c for c in r.get("candidates") or [] if c["review_key"] in review]
        for c in cands:
            c["review"] = review[c["review_key"]]
        anchor = next((c for c in cands if c["temperature"] == 0.0), None)
        picks = _picks(r, cands, anchor, passed, greedy[r["task"]])
        for name, picked in picks.items():
            scores[name][r["task"].split("/")[0]].append(float(picked))
            scores[name]["all"].append(float(picked))
    rng = np.random.default_rng(1)
    table: dict[str, dict[str, dict[str, float]]] = {}
    print(f"{'picker':34s} {'micro-dev':>24s} {'micro2-dev':>24s} {'all':>24s}")
    for name, by in scores.items():
        cells = []
        for part in ("micro-dev", "micro2-dev", "all"):
            v, g = np.array(by[part]), np.array(scores["one greedy instance"][part])
            d = v - g
            lo, hi = np.quantile(d[rng.integers(0, len(d), (2000, len(d)))].mean(axis=1), [0.05, 0.95])
            got = {"pass": v.mean(), "diff": d.mean(), "lo": lo, "hi": hi}
            table.setdefault(name, {})[part] = {k: round(float(x), 4) for k, x in got.items()}
            cells.append(f"{v.mean():.3f} {d.mean():+.3f} [{lo:+.3f},{hi:+.3f}]")
        print(f"{name:34s} " + " ".join(f"{c:>24s}" for c in cells))
    out = RESULTS / "quality-reviewer-rescore.json"
    summary = {
        "answers": path.name,
        "votes": len(scores["the live vote"]["all"]),
        "distinct_programs_scored": len(review),
        "review_sum_median": statistics.median(review.values()),
        "pickers": table,
    }
    out.write_text(json.dumps(summary, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ANSWERS)

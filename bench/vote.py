"""``python -m bench vote``: what the vote costs on the request path.

Consensus over N = 2..8 answers of about 0.5, 2 and 8 KB of real Python (top-level functions and
classes taken from the standard library, each voter's copy lightly edited: renamed names,
changed constants, one outlier from another module), median microseconds per strategy. The
baseline measured in the same run is what the proxy pays anyway: ``json.loads`` of the N
upstream response bodies.
"""

from __future__ import annotations

import ast
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import click

from bench.common import print_table, write_result
from swarm_supervisor.consensus import STRATEGIES, Candidate, vote

SIZES = (512, 2048, 8192)
_STDLIB = (
    "json/decoder.py",
    "textwrap.py",
    "argparse.py",
    "difflib.py",
    "csv.py",
    "heapq.py",
    "shlex.py",
    "fractions.py",
    "statistics.py",
    "string.py",
    "calendar.py",
    "ipaddress.py",
)


def _snippets(size: int) -> list[str]:
    """Runs of consecutive top-level definitions from stdlib modules, each about ``size`` bytes."""
    root = Path(json.__file__).resolve().parent.parent
    out: list[str] = []
    for rel in _STDLIB:
        path = root / rel
        if not path.is_file():
            continue
        src = path.read_text(encoding="utf-8")
        lines = src.splitlines(keepends=True)
        nodes = [n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
        chunk = ""
        for node in nodes:
            start = node.lineno - 1 - len(node.decorator_list)
            text = "".join(lines[start : node.end_lineno])
            if len(text) > size * 1.3:
                continue
            chunk += text + "\n"
            if len(chunk) >= size * 0.9:
                out.append(chunk[: int(size * 1.3)] if len(chunk) > size * 1.3 else chunk)
                chunk = ""
    return [s for s in out if _parses(s)]


def _parses(src: str) -> bool:
    try:
        ast.parse(src)
    except SyntaxError:
        return False
    return True


def _mutate(src: str, rng: random.Random) -> str:
    """A voter's copy: a few identifiers renamed, a few constants changed (still parses)."""
    names = sorted(set(re.findall(r"\b([a-z_][a-z0-9_]{2,})\s*=", src)))
    for name in rng.sample(names, min(len(names), rng.randint(0, 3))):
        src = re.sub(rf"\b{name}\b", name + "_x", src)
    return re.sub(r"\b(\d+)\b", lambda m: str(int(m.group(1)) + 1) if rng.random() < 0.2 else m.group(1), src)


def _answers(pool: list[str], n: int, rng: random.Random) -> list[Candidate]:
    base, other = rng.sample(pool, 2)
    out = []
    for i in range(n):
        src = other if (i == n - 1 and n > 2) else _mutate(base, rng)
        text = f"Here is the code:\n\n```python\n{src}```\n\nIt handles the edge cases."
        out.append(Candidate(f"v{i}", text, latency_s=rng.uniform(0.5, 2.0)))
    return out


def _body(c: Candidate) -> bytes:
    message = {"role": "assistant", "content": c.content}
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
            "usage": {"prompt_tokens": 80, "completion_tokens": 500, "total_tokens": 580},
        }
    ).encode()


def _median_us(fn: Any, sets: list[Any], reps: int) -> float:
    times = []
    for r in range(reps):
        arg = sets[r % len(sets)]
        t0 = time.perf_counter_ns()
        fn(arg)
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1000


@click.command("vote")
@click.option("--reps", default=300, show_default=True, help="Votes timed per case (fewer at 8 KB).")
@click.option("--max-voters", default=8, show_default=True)
def command(reps: int, max_voters: int) -> None:
    """Vote cost: median microseconds per vote, by strategy, answer size and N."""
    rng = random.Random(7)
    rows: list[list[Any]] = []
    cases: list[dict[str, Any]] = []
    for size in SIZES:
        pool = _snippets(size)
        if len(pool) < 2:
            raise click.ClickException(f"not enough stdlib snippets of {size} B on this Python")
        r = max(30, reps // (size // 512))
        for n in range(2, max_voters + 1):
            sets = [_answers(pool, n, rng) for _ in range(20)]
            bodies = [[_body(c) for c in s] for s in sets]
            base = _median_us(lambda bs: [json.loads(b) for b in bs], bodies, r)
            mean_kb = statistics.mean(len(c.content or "") for s in sets for c in s) / 1024
            case: dict[str, Any] = {"size_b": size, "mean_answer_kb": round(mean_kb, 2), "n": n,
                                    "json_decode_us": round(base, 1), "strategies": {}}  # fmt: skip
            row: list[Any] = [f"{size / 1024:g} KB", n, round(base, 1)]
            for strategy in STRATEGIES:
                us = _median_us(lambda s, st=strategy: vote(s, st), sets, r)
                case["strategies"][strategy] = {
                    "median_us": round(us, 1),
                    "vs_json_decode": round(us / base, 2),
                }
                row.append(round(us, 1))
            cases.append(case)
            rows.append(row)
    cols = ["answer", "N", "json.loads (µs)"] + [f"{s} (µs)" for s in STRATEGIES]
    print_table("Vote cost: median microseconds per vote", cols, rows)
    two_kb_8 = next((c for c in cases if c["size_b"] == 2048 and c["n"] == 8), None)
    summary = {}
    if two_kb_8:
        summary = {s: two_kb_8["strategies"][s]["median_us"] for s in STRATEGIES}
        click.echo(f"8 answers of 2 KB: {summary} µs (aim: under 1000)")
    path = write_result("vote", {"python": sys.version.split()[0], "reps": reps, "aim_us_8x2kb": 1000,
                                 "summary_8x2kb_us": summary, "cases": cases})  # fmt: skip
    click.echo(f"wrote {path}")

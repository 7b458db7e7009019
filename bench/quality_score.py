"""Scoring the answer-quality benchmark offline: every strategy over the same cached candidates.

For each temperature T and swarm size N, ``subsets`` random swarms of N samples are drawn per
task (the same draws for every strategy); a strategy's pass@1 is the mean over tasks of the
share of swarms whose winner passes the task's tests. "with greedy voter" swarms are one
greedy (T = 0) answer plus N - 1 samples: the proxy's proposed ``greedy_voter`` option.
"""

from __future__ import annotations

import ast
import random
import re
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.quality_gen import user_message
from swarm_supervisor.consensus import Candidate, quality_problems, requested_functions, tokenize, vote
from swarm_supervisor.consensus.cluster import cluster_vote
from swarm_supervisor.consensus.code import parse_python, python_source

Pick = Callable[[list[Candidate], str], int]


class _AstCanonical(ast.NodeTransformer):
    """The AST ablation: bound names renamed, docstrings and annotations removed."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def _bind(self, name: str) -> str:
        return self.names.setdefault(name, f"_v{len(self.names)}")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        b = node.body
        if (
            b
            and isinstance(b[0], ast.Expr)
            and isinstance(b[0].value, ast.Constant)
            and isinstance(b[0].value.value, str)
        ):
            node.body = b[1:] or [ast.Pass()]
        node.returns = None
        return self.generic_visit(node)

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg, node.annotation = self._bind(node.arg), None
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if isinstance(node.ctx, ast.Store | ast.Del):
            node.id = self._bind(node.id)
        elif node.id in self.names:
            node.id = self.names[node.id]
        return node


_DUMP = re.compile(r"\w+|'(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\"|[^\w\s,()\[\]]")


def _ast_tokens(content: str, wanted: set[str]) -> list[str] | None:
    tree = parse_python(python_source(content))
    if tree is None:
        return None
    node: ast.AST = tree
    for n in ast.walk(tree):
        if isinstance(n, ast.FunctionDef) and n.name in wanted:
            node = n
    return _DUMP.findall(ast.dump(_AstCanonical().visit(node), annotate_fields=False))


def _winner(cands: list[Candidate], keep: list[int], toks: dict[int, list[str]], threshold: float) -> int:
    return cluster_vote(cands, keep, threshold, toks)[2]


def _filtered(cands: list[Candidate], prompt: str) -> list[int]:
    gone = {d.index for d in quality_problems(cands, prompt)}
    return [i for i in range(len(cands)) if i not in gone] or list(range(len(cands)))


def filters_text(threshold: float = 0.85) -> Pick:
    """Ablation: quality's filters, then similarity on the whole text (the first version)."""

    def pick(cands: list[Candidate], prompt: str) -> int:
        keep = _filtered(cands, prompt)
        return _winner(cands, keep, {i: tokenize(cands[i].content or "") for i in keep}, threshold)

    return pick


def filters_ast(threshold: float = 0.85) -> Pick:
    """Ablation: quality's filters, then similarity on the normalized AST (ast.dump tokens)."""

    def pick(cands: list[Candidate], prompt: str) -> int:
        keep = _filtered(cands, prompt)
        wanted = requested_functions(prompt)
        toks = {
            i: _ast_tokens(cands[i].content or "", wanted) or tokenize(cands[i].content or "") for i in keep
        }
        return _winner(cands, keep, toks, threshold)

    return pick


#: strategy label -> (pick, also scored with a greedy voter)
def strategies() -> dict[str, tuple[Pick, bool]]:
    return {
        "fastest": (lambda c, p: vote(c, "fastest").winner, False),
        "similarity": (lambda c, p: vote(c, "similarity").winner, True),
        "quality": (lambda c, p: vote(c, "quality", prompt=p).winner, True),
        "ablation: filters + text similarity": (filters_text(), False),
        "ablation: filters + AST similarity": (filters_ast(), False),
    }


def _candidate(rec: dict[str, Any], i: int) -> Candidate:
    return Candidate(
        f"v{i}", rec["content"], None, rec.get("finish_reason"), rec["latency_s"], rec.get("usage")
    )


def score(
    tasks: list[dict[str, Any]],
    cands: dict[str, list[dict[str, Any]]],
    passed: dict[str, bool],
    temps: list[float],
    sizes: list[int],
    subsets: int,
    rng: random.Random,
) -> list[dict[str, Any]]:
    """One row per (temperature, N): greedy, one sample, any-of-N and each strategy's pass@1."""
    picks = strategies()
    rows: list[dict[str, Any]] = []
    greedy_pass = {}
    for task in tasks:
        g = [r for r in cands[task["task_id"]] if r["temperature"] == 0.0]
        greedy_pass[task["task_id"]] = bool(g) and passed[g[0]["program"]]
    for temp in temps:
        for n in sizes:
            acc: dict[str, list[float]] = {}

            def add(key: str, value: float, acc: dict[str, list[float]] = acc) -> None:
                acc.setdefault(key, []).append(value)

            for task in tasks:
                tid = task["task_id"]
                prompt = user_message(task)
                samples = sorted(
                    (r for r in cands[tid] if r["temperature"] == temp), key=lambda r: r["sample"]
                )
                greedy = [r for r in cands[tid] if r["temperature"] == 0.0][:1]
                ok = [passed[r["program"]] for r in samples]
                add("greedy", float(greedy_pass[tid]))
                add("one sample", statistics.mean(ok))
                draws = [rng.sample(range(len(samples)), n) for _ in range(subsets)]
                per: dict[str, list[float]] = {}
                for draw in draws:
                    plain = [samples[i] for i in draw]
                    with_greedy = greedy + [samples[i] for i in draw[: n - 1]]
                    for label, recs in (("", plain), ("+greedy voter: ", with_greedy)):
                        swarm = [_candidate(r, i) for i, r in enumerate(recs)]
                        good = [passed[r["program"]] for r in recs]
                        per.setdefault(label + "any-of-N", []).append(float(any(good)))
                        for name, (pick, also_greedy) in picks.items():
                            if label and not also_greedy:
                                continue
                            per.setdefault(label + name, []).append(float(good[pick(swarm, prompt)]))
                for key, vals in per.items():
                    add(key, statistics.mean(vals))
            rows.append(
                {
                    "temperature": temp,
                    "n": n,
                    "pass_at_1": {k: round(statistics.mean(v), 4) for k, v in acc.items()},
                }
            )
    return rows


def summary_rows(results: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Strategies as rows, (T, N) as columns."""
    keys = list(results[0]["pass_at_1"])
    cols = ["pass@1", *(f"T={r['temperature']} N={r['n']}" for r in results)]
    rows = [[k, *(r["pass_at_1"][k] for r in results)] for k in keys]
    return cols, rows


def plot_results(results: list[dict[str, Any]], path: Path, title: str) -> Path:
    """pass@1 of each strategy (lines) against one instance's greedy pass@1 (dashed), by T and N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(results[0]["pass_at_1"])
    x = list(range(len(results)))
    fig, ax = plt.subplots(figsize=(10, 5.5))
    groups: dict[float, list[int]] = {}
    for i, r in enumerate(results):
        groups.setdefault(r["temperature"], []).append(i)

    def draw(k: str, *args: Any, **kw: Any) -> None:
        for n, idx in enumerate(groups.values()):  # one segment per temperature
            ax.plot(idx, [results[i]["pass_at_1"][k] for i in idx], *args, **kw)
            if n == 0:
                kw = {**kw, "label": None}
                if "color" not in kw:
                    kw["color"] = ax.get_lines()[-1].get_color()

    for k in keys:
        if k == "greedy":
            draw(k, "--", color="black", linewidth=2, label="one instance, greedy (T=0)")
        elif "any-of-N" in k:
            draw(k, ":", color="#999999", label=k + " (ceiling)")
        elif k == "one sample":
            draw(k, "-", color="#bbbbbb", linewidth=3, label="one instance, one sample")
        else:
            style = "s-" if k.startswith("+greedy") else ("o-" if not k.startswith("ablation") else "^--")
            draw(k, style, label=k, linewidth=2.5 if k in ("quality", "+greedy voter: quality") else 1.2)
    ax.set_xticks(x, [f"T={r['temperature']}\nN={r['n']}" for r in results])
    ax.set_ylabel("pass@1")
    ax.set_title(f"Answer quality by strategy: {title}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7.5, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

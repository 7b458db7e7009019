"""``python -m bench cli``: how fast the ``swarm`` commands answer (issue 17: ``--version`` < 0.3 s,
``ps`` < 0.4 s, ``plan`` < 0.6 s, medians, warm cache).

Each command runs as a user runs it, ``python -m swarm_supervisor ...`` in a fresh process, in an
isolated ``SWARM_HOME``, with byte-code caching on (``PYTHONDONTWRITEBYTECODE`` removed: an
installed package has its ``.pyc`` files). ``ps`` answers "no swarm is running"; ``plan --model
PATH.gguf`` reads the model's metadata once, in the unmeasured warm-up, and from the memo after.
``--compare DIR`` times another checkout too (say, an older commit unpacked with ``git archive``),
interleaved with this one round by round, so both see the same load on a shared machine. Besides
the wall time, the CPU time (user + system) of each run is recorded: it varies less with load.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from bench.common import REPO, print_table, write_result

TARGETS_S = {"--version": 0.3, "ps": 0.4, "plan": 0.6}


def commands(model: Path | None) -> dict[str, list[str]]:
    plan = ["plan", "--model", str(model)] if model is not None else ["plan"]
    return {"--version": ["--version"], "ps": ["ps"], "plan": plan}


def timed(repo: Path, args: list[str], home: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of ``python -m swarm_supervisor ARGS`` run from ``repo``."""
    env = {**os.environ, "PYTHONPATH": str(repo), "SWARM_HOME": str(home), "COLUMNS": "120"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as a user runs it: compiled once, by the warm-up
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "swarm_supervisor", *args],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


@click.command("cli")
@click.option("--rounds", default=7, show_default=True, help="Timed runs of each command (after a warm-up).")
@click.option(
    "--model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Time `swarm plan --model PATH.gguf` (default: `swarm plan`, the catalogue's choice).",
)
@click.option(
    "--compare",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Another checkout to time the same way, interleaved (e.g. the commit before a change).",
)
def command(rounds: int, model: Path | None, compare: Path | None) -> None:
    """Median seconds for `swarm --version`, `swarm ps` and `swarm plan` to answer."""
    trees = {"this": REPO} | ({"compare": compare.resolve()} if compare else {})
    cmds = commands(model)
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {(t, c): [] for t in trees for c in cmds}
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        homes = {t: Path(tmp) / t for t in trees}
        for tree, repo in trees.items():  # warm-up: the page cache, and the store's memo of --model
            for args in cmds.values():
                timed(repo, args, homes[tree])
        for i in range(rounds):
            order = list(trees) if i % 2 == 0 else list(reversed(trees))
            for name, args in cmds.items():
                for tree in order:
                    samples[(tree, name)].append(timed(trees[tree], args, homes[tree]))
    rows: list[list[Any]] = []
    results: list[dict[str, Any]] = []
    for (tree, name), runs in samples.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        target = TARGETS_S[name]
        met = "yes" if wall < target else "no"
        rows.append([tree, " ".join(["swarm", *cmds[name]]), wall, cpu, target, met])
        results.append(
            {
                "tree": str(trees[tree]),
                "which": tree,
                "command": ["swarm", *cmds[name]],
                "median_wall_s": round(wall, 4),
                "median_cpu_s": round(cpu, 4),
                "wall_s": [round(w, 4) for w, _ in runs],
                "cpu_s": [round(c, 4) for _, c in runs],
                "target_s": target,
            }
        )
    print_table(
        f"swarm commands, medians of {rounds} runs",
        ["tree", "command", "wall s", "cpu s", "target s", "met"],
        rows,
    )
    load = os.getloadavg()
    path = write_result("cli", {"rounds": rounds, "load_average": load, "results": results})
    click.echo(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; wrote {path}")

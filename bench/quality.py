"""``python -m bench quality``: does the swarm answer better than one instance?

Generates candidates once with real llama-server processes (cached, gzipped JSON under
bench/results/), executes each distinct program once in a sandboxed subprocess (benchmark only),
then scores every strategy offline over the same candidates: one instance greedy, one sample,
the swarm's pass@1 per strategy and any-of-N, for N = 3 and 5 at each temperature.
"""

from __future__ import annotations

import json
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click

from bench.common import REPO, RESULTS, print_table, write_result
from bench.quality_gen import (
    Job,
    generate,
    load_tasks,
    passes,
    program_for,
    program_key,
    start_server,
    stop_server,
)

DATA = REPO.parent / "shared" / "data"
GREEDY = 0.0


def _cache_path(tasks: Path) -> Path:
    stem = tasks.name.removesuffix(".gz").removesuffix(".jsonl")
    return RESULTS / f"quality.candidates.{stem}.json.gz"


def _load_cache(path: Path) -> dict[str, Any]:
    import gzip

    if path.is_file():
        with gzip.open(path, "rt", encoding="utf-8") as f:
            data: dict[str, Any] = json.load(f)
            return data
    return {"candidates": {}, "passed": {}}


def _save_cache(path: Path, cache: dict[str, Any]) -> None:
    import gzip

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        json.dump(cache, f, separators=(",", ":"), sort_keys=True)
    tmp.replace(path)


def _jobs(tasks: list[dict[str, Any]], temps: list[float], samples: int, have: dict[str, Any]) -> list[Job]:
    jobs: list[Job] = []
    for t_i, task in enumerate(tasks):
        done = {(c["temperature"], c["sample"]) for c in have.get(task["task_id"], [])}
        plan = [(GREEDY, 0)] + [(t, s) for t in temps for s in range(samples)]
        for temp, s in plan:
            if (temp, s) not in done:
                seed = 1000 * t_i + 100 * int(temp * 10) + s
                jobs.append(Job(task["task_id"], temp, s, seed))
    return jobs


def _env_path(value: str | None, env: str) -> Path | None:
    raw = value or os.environ.get(env)
    return Path(raw) if raw else None


@click.command("quality")
@click.option(
    "--tasks",
    "tasks_path",
    type=click.Path(path_type=Path),
    default=DATA / "micro-dev.jsonl.gz",
    show_default=True,
    help="Task set in HumanEval format (.jsonl.gz).",
)
@click.option("--llama-server", "binary", help="llama-server binary (default: $SWARM_TEST_LLAMA_SERVER).")
@click.option("--model", help="GGUF model (default: $SWARM_TEST_MODEL).")
@click.option("--samples", default=10, show_default=True, help="Samples per task and temperature.")
@click.option("--temperatures", default="0.2,0.5,0.8", show_default=True)
@click.option("--voters", default="3,5", show_default=True, help="Swarm sizes N to score.")
@click.option("--servers", default=2, show_default=True, help="llama-server processes for generation.")
@click.option("--threads", default=1, show_default=True, help="Threads per llama-server.")
@click.option("--max-tokens", default=384, show_default=True)
@click.option("--subsets", default=200, show_default=True, help="Random swarms drawn per task, T and N.")
@click.option("--regenerate", is_flag=True, help="Drop the cached candidates and generate again.")
@click.option("--generate-only", is_flag=True, help="Generate and execute candidates, do not score.")
@click.option("--plot/--no-plot", default=True, show_default=True, help="Write bench/results/quality.png.")
def command(
    tasks_path: Path,
    binary: str | None,
    model: str | None,
    samples: int,
    temperatures: str,
    voters: str,
    servers: int,
    threads: int,
    max_tokens: int,
    subsets: int,
    regenerate: bool,
    generate_only: bool,
    plot: bool,
) -> None:
    """Answer quality: pass@1 of one instance (greedy, one sample) against the swarm's vote."""
    temps = [float(t) for t in temperatures.split(",")]
    sizes = [int(n) for n in voters.split(",")]
    tasks = load_tasks(tasks_path)
    by_id = {t["task_id"]: t for t in tasks}
    cache_path = _cache_path(tasks_path)
    cache = {"candidates": {}, "passed": {}} if regenerate else _load_cache(cache_path)
    cands: dict[str, list[dict[str, Any]]] = cache["candidates"]
    jobs = _jobs(tasks, temps, samples, cands)
    if jobs:
        bin_path = _env_path(binary, "SWARM_TEST_LLAMA_SERVER")
        model_path = _env_path(model, "SWARM_TEST_MODEL")
        if not (bin_path and bin_path.is_file() and model_path and model_path.is_file()):
            raise click.ClickException(
                f"{len(jobs)} candidates to generate: give --llama-server and --model "
                "(or set SWARM_TEST_LLAMA_SERVER and SWARM_TEST_MODEL)"
            )
        cache["model"] = model_path.name
        cache["max_tokens"] = max_tokens
        click.echo(f"generating {len(jobs)} candidates on {servers} llama-server(s) of {model_path.name}")
        logdir = RESULTS / ".logs"
        logdir.mkdir(parents=True, exist_ok=True)
        started = []
        count = [0]

        def on_result(job: Job, rec: dict[str, Any]) -> None:
            cands.setdefault(job.task_id, []).append(rec)
            count[0] += 1
            if count[0] % 25 == 0:
                _save_cache(cache_path, cache)
                click.echo(f"  {count[0]}/{len(jobs)}")

        try:
            for _ in range(servers):
                started.append(start_server(bin_path, model_path, threads, 4096, logdir))
            generate(started, by_id, jobs, max_tokens, on_result)
        finally:
            for s in started:
                stop_server(s)
            _save_cache(cache_path, cache)

    # execute each distinct program once (benchmark only; sandboxed subprocess with a timeout)
    passed: dict[str, bool] = cache["passed"]
    todo: dict[str, str | None] = {}
    for task_id, recs in cands.items():
        for rec in recs:
            prog = program_for(by_id[task_id], rec["content"])
            key = program_key(prog)
            rec["program"] = key
            if key not in passed:
                todo[key] = prog
    if todo:
        click.echo(f"executing {len(todo)} distinct programs")
        with ThreadPoolExecutor(max_workers=2) as pool:
            for key, ok in zip(todo, pool.map(passes, todo.values()), strict=True):
                passed[key] = ok
        _save_cache(cache_path, cache)

    if generate_only:
        return
    from bench.quality_score import score, summary_rows

    rng = random.Random(0)
    results = score(tasks, cands, passed, temps, sizes, subsets, rng)
    cols, rows = summary_rows(results)
    print_table(f"Answer quality on {tasks_path.name} (pass@1)", cols, rows)
    out = write_result(
        "quality",
        {
            "tasks": tasks_path.name,
            "n_tasks": len(tasks),
            "model": cache.get("model"),
            "samples_per_temperature": samples,
            "max_tokens": cache.get("max_tokens"),
            "subsets": subsets,
            "results": results,
        },
    )
    click.echo(f"wrote {out.relative_to(REPO)}")
    if plot:
        from bench.quality_score import plot_results

        png = plot_results(results, RESULTS / "quality.png", tasks_path.name)
        click.echo(f"wrote {png.relative_to(REPO)}")

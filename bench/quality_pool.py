"""``python -m bench quality-pool``: a pool of candidate answers for designing the picker offline.

One llama-server (``--parallel 8``) answers every task of the dev sets greedily (T = 0) and with
``--samples`` samples at each of ``--temperatures``, each temperature as ONE request with
``n = samples`` (the prompt is evaluated once), with ``logprobs`` and ``top_logprobs``. Every
distinct program is executed once in a sandboxed subprocess (bench/quality_gen.passes). The
pool is a gzipped JSON under bench/results/ (resumable: tasks already in it are skipped);
bench/quality_offline.py simulates pickers over it.
"""

from __future__ import annotations

import gzip
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
import httpx

from bench.common import REPO, RESULTS, exit_on_sigterm
from bench.quality_gen import (
    load_tasks,
    passes,
    program_for,
    program_key,
    start_server,
    stop_server,
    user_message,
)
from swarm_supervisor.proxy.confidence import logprob_fields

DATA = REPO.parent / "shared" / "data"
POOL = RESULTS / "quality-pool.json.gz"
TOP_K = 5


def load_pool(path: Path = POOL) -> dict[str, Any]:
    if path.is_file():
        with gzip.open(path, "rt", encoding="utf-8") as f:
            data: dict[str, Any] = json.load(f)
            return data
    return {"sets": {}, "answers": {}, "passed": {}}


def save_pool(pool: dict[str, Any], path: Path = POOL) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        json.dump(pool, f, separators=(",", ":"), sort_keys=True)
    tmp.replace(path)


def _records(data: dict[str, Any], temperature: float, seed: int, latency: float) -> list[dict[str, Any]]:
    out = []
    for choice in sorted(data["choices"], key=lambda c: c.get("index", 0)):
        fields = logprob_fields(choice)
        lps = fields.get("token_logprobs", ())
        tops = fields.get("top_logprobs", ())
        out.append(
            {
                "temperature": temperature,
                "index": choice.get("index", 0),
                "seed": seed,
                "content": (choice.get("message") or {}).get("content") or "",
                "finish_reason": choice.get("finish_reason"),
                "latency_s": round(latency, 3),
                "tokens": len(lps),
                "lp": [round(x, 3) for x in lps],
                "top": [[round(x, 2) for x in row[:TOP_K]] for row in tops],
            }
        )
    return out


def _ask(
    client: httpx.Client, task: dict[str, Any], temperature: float, n: int, seed: int, max_tokens: int
) -> list[dict[str, Any]]:
    body = {
        "messages": [{"role": "user", "content": user_message(task)}],
        "temperature": temperature,
        "seed": seed,
        "n": n,
        "max_tokens": max_tokens,
        "logprobs": True,
        "top_logprobs": TOP_K,
        "cache_prompt": False,
    }
    t0 = time.perf_counter()
    r = client.post("/v1/chat/completions", json=body)
    r.raise_for_status()
    return _records(r.json(), temperature, seed, time.perf_counter() - t0)


def execute(pool: dict[str, Any]) -> None:
    """Run each distinct program of the pool once (sandboxed subprocess with a timeout)."""
    by_key = {}
    for name in pool["sets"]:
        for t in load_tasks(DATA / f"{name}.jsonl.gz"):
            by_key[f"{name}/{t['task_id']}"] = t
    run: dict[str, str | None] = {}
    for key, recs in pool["answers"].items():
        for rec in recs:
            prog = program_for(by_key[key], rec["content"])
            rec["program"] = program_key(prog)
            if rec["program"] not in pool["passed"]:
                run[rec["program"]] = prog
    click.echo(f"executing {len(run)} distinct programs")
    with ThreadPoolExecutor(max_workers=2) as ex:
        for k, ok in zip(run, ex.map(passes, run.values()), strict=True):
            pool["passed"][k] = ok


@click.command("quality-pool")
@click.option(
    "--sets", default="micro2-dev,micro-dev", show_default=True, help="Task sets under ../shared/data."
)
@click.option("--llama-server", "binary", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--model", type=click.Path(path_type=Path, exists=True), required=True)
@click.option(
    "--samples",
    default=8,
    show_default=True,
    help="Samples per task and temperature (one request, n = samples).",
)
@click.option("--temperatures", default="0.2,0.5,0.8", show_default=True)
@click.option("--threads", default=2, show_default=True)
@click.option("--ngl", default=0, show_default=True, help="-ngl (999: all on the GPU).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=POOL,
    show_default="bench/results/quality-pool.json.gz",
    help="The pool file (resumed if it exists).",
)
@click.option("--max-tokens", default=384, show_default=True)
@click.option("--limit", default=0, help="Only the first LIMIT tasks of each set (0: all).")
@click.option("--at-once", default=2, show_default=True, help="Tasks generated side by side (one batch).")
@click.option(
    "--no-generate", is_flag=True, help="Only execute what the pool holds (after an interrupted run)."
)
def command(
    binary: Path,
    model: Path,
    sets: str,
    samples: int,
    temperatures: str,
    threads: int,
    ngl: int,
    out: Path,
    max_tokens: int,
    limit: int,
    at_once: int,
    no_generate: bool,
) -> None:
    """Generate (and execute) the offline candidate pool."""
    temps = [float(t) for t in temperatures.split(",")]
    pool = load_pool(out)
    pool.update({"model": model.name, "max_tokens": max_tokens, "samples": samples, "top_k": TOP_K})
    todo: list[tuple[str, dict[str, Any]]] = []
    for name in sets.split(","):
        tasks = load_tasks(DATA / f"{name}.jsonl.gz")
        tasks = tasks[:limit] if limit else tasks
        pool["sets"][name] = [t["task_id"] for t in tasks]
        todo += [(name, t) for t in tasks if f"{name}/{t['task_id']}" not in pool["answers"]]
    if no_generate:
        pool["sets"] = {
            n: [t for t in ids if f"{n}/{t}" in pool["answers"]] for n, ids in pool["sets"].items()
        }
        todo = []
    click.echo(f"{len(todo)} tasks to generate")
    logdir = RESULTS / ".logs"
    logdir.mkdir(parents=True, exist_ok=True)
    if todo:
        per_task = 1 + samples * len(temps)
        slots = per_task * at_once
        extra = ["-ngl", str(ngl)] if ngl else []
        exit_on_sigterm()  # a timeout stops the server on the way out
        server = start_server(binary, model, threads, 512 * slots, logdir, parallel=slots, extra=extra)
        t_start = time.perf_counter()
        done = [0]

        def one(i: int, name: str, task: dict[str, Any], client: httpx.Client) -> None:
            # the task's requests go together: one batch of 1 + samples x temperatures sequences
            asks = [(0.0, 1, 7)] + [(t, samples, 100_000 * (k + 1) + 1000 * i) for k, t in enumerate(temps)]
            with ThreadPoolExecutor(len(asks)) as ex:
                parts = list(ex.map(lambda a: _ask(client, task, a[0], a[1], a[2], max_tokens), asks))
            pool["answers"][f"{name}/{task['task_id']}"] = [r for part in parts for r in part]
            done[0] += 1
            if done[0] % 10 == 0:
                save_pool(pool, out)
                click.echo(f"  {done[0]}/{len(todo)} tasks, {time.perf_counter() - t_start:.0f} s")

        try:
            with httpx.Client(base_url=server.url, timeout=1800) as client, ThreadPoolExecutor(at_once) as ex:
                futures = [ex.submit(one, i, name, task, client) for i, (name, task) in enumerate(todo)]
                for f in futures:
                    f.result()
        finally:
            stop_server(server)
            save_pool(pool, out)
    execute(pool)
    save_pool(pool, out)
    click.echo(f"wrote {out}")

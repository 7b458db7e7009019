"""``python -m bench quality``: does the swarm answer better than one instance? Measured LIVE.

    python -m bench quality --model smollm2:135m --instances 5 --concurrency 4
    python -m bench quality --model ./m.gguf --instances 5 --llama-server ./llama-server \\
        --up-arg=--topology --up-arg=slots --bare-arg=-ngl --bare-arg=999 --repeats 3

``swarm up`` starts the swarm as a user would (an isolated SWARM_HOME, the flags passed
through), and one bare llama-server of the same binary and model answers every task greedily
(temperature 0) beside it. Every task of ``--sets`` goes through the swarm's
OpenAI endpoint for each setting (``none``: no temperature sent, as opencode does; or a
temperature), ``--repeats`` times with fresh voter seeds (no seed is sent), ``--concurrency``
at a time. Answers are executed in a sandboxed subprocess with a timeout (quality_gen.passes;
never in the proxy). Per setting: the pass rate and its paired difference against greedy per
task, with a 90% bootstrap interval over tasks; a table, JSON and a plot.

Resumable: every answer is appended to ``bench/results/quality-live<tag>.answers.jsonl`` as it
comes; a rerun with the same tag skips what is there (``--fresh`` starts over).
"""

from __future__ import annotations

import gzip
import json
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
import httpx

from bench.common import REPO, RESULTS, exit_on_sigterm, print_table, write_result
from bench.quality_gen import (
    load_tasks,
    score,
    start_server,
    stop_server,
    user_message,
)
from bench.quality_score import live_summary, plot_live
from bench.swarm_home import SwarmHome, instance_argvs
from bench.topology import find_binary

DATA = REPO.parent / "shared" / "data"
GREEDY = "greedy"


def read_answers(path: Path) -> list[dict[str, Any]]:
    """The rows of an answers file, or of its gzipped copy (``<path>.gz``: results kept in the
    repository are compressed); a line cut off by a crash is skipped."""
    packed = path.with_name(path.name + ".gz")
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    elif packed.is_file():
        text = gzip.decompress(packed.read_bytes()).decode("utf-8")
    else:
        return []
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


class Answers:
    """The answers so far: a JSON-lines file, appended under a lock, read back on resume."""

    def __init__(self, path: Path, fresh: bool) -> None:
        self.path = path
        self.lock = threading.Lock()
        if fresh and path.exists():
            path.unlink()
        self.rows: dict[str, dict[str, Any]] = {row["key"]: row for row in read_answers(path)}

    def add(self, row: dict[str, Any]) -> None:
        with self.lock:
            self.rows[row["key"]] = row
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row, separators=(",", ":")) + "\n")


#: what the answers file keeps of each voter's answer (the ``swarm.candidates`` of docs/api.md)
CANDIDATE_KEYS = ("voter", "temperature", "cluster", "content", "finish_reason", "mean_logprob")


def ask(
    client: httpx.Client, url: str, task: dict[str, Any], setting: str, max_tokens: int, key: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": user_message(task)}],
        "max_tokens": max_tokens,
    }
    if setting == GREEDY:
        body.update(temperature=0.0, seed=1)
    elif setting != "none":
        body["temperature"] = float(setting)
    if setting != GREEDY:  # the swarm: every voter's answer too, for re-scoring other pickers
        body["swarm_candidates"] = True
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    t0 = time.perf_counter()
    last: Exception | None = None
    for attempt in range(3):  # a 503 while an instance restarts: try again
        try:
            r = client.post(url, json=body, headers=headers)
            if r.status_code == 200:
                data = r.json()
                choice = data["choices"][0]
                swarm = data.get("swarm") or {}
                usage_total = swarm.get("usage_total") or data.get("usage") or {}
                return {
                    "content": (choice.get("message") or {}).get("content") or "",
                    "finish_reason": choice.get("finish_reason"),
                    "latency_s": round(time.perf_counter() - t0, 3),
                    "agreement": swarm.get("agreement"),
                    "votes": sum(1 for v in swarm.get("voters", []) if v.get("ok")) if swarm else None,
                    "voters": len(swarm.get("voters", [])) if swarm else None,
                    "completion_tokens": usage_total.get("completion_tokens"),
                    "candidates": [
                        {k: c.get(k) for k in CANDIDATE_KEYS} for c in swarm.get("candidates") or []
                    ],
                }
            last = RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
        except httpx.HTTPError as err:
            last = err
        time.sleep(2.0 * (attempt + 1))
    raise RuntimeError(f"{url}: {last}")


def _run_jobs(
    jobs: list[tuple[str, str, int, dict[str, Any]]],
    url: str,
    key: str | None,
    answers: Answers,
    concurrency: int,
    max_tokens: int,
    timeout_s: float,
) -> None:
    if not jobs:
        return
    done = [0]
    t0 = time.perf_counter()

    def one(job: tuple[str, str, int, dict[str, Any]], client: httpx.Client) -> None:
        row_key, setting, repeat, task = job
        rec = ask(client, url, task, setting, max_tokens, key)
        answers.add({"key": row_key, "setting": setting, "repeat": repeat, "task": task["_key"], **rec})
        with answers.lock:
            done[0] += 1
            if done[0] % 25 == 0 or done[0] == len(jobs):
                click.echo(f"  {done[0]}/{len(jobs)} answers, {time.perf_counter() - t0:.0f} s")

    with httpx.Client(timeout=timeout_s) as client, ThreadPoolExecutor(concurrency) as ex:
        for f in [ex.submit(one, j, client) for j in jobs]:
            f.result()


def _instance(record: dict[str, Any]) -> tuple[Path, Path, int]:
    """The model, binary and threads (0: llama-server's default) the swarm's first instance runs."""
    argv = instance_argvs(record)[0]

    def flag(*names: str) -> str | None:
        for name in names:
            if name in argv:
                return argv[argv.index(name) + 1]
        return None

    threads = flag("--threads", "-t")
    return Path(flag("-m", "--model") or ""), Path(argv[0]), int(threads) if threads else 0


def _greedy_cell(s: dict[str, Any]) -> str:
    """Greedy's pass rate, and each run's where it ran more than once."""
    if s["greedy_runs"] < 2:
        return str(s["greedy"])
    return f"{s['greedy']} ({' '.join(map(str, s['greedy_per_run']))})"


@click.command("quality")
@click.option("--model", required=True, help="What `swarm up --model` takes (a catalogue id or a GGUF path).")
@click.option("--instances", default=5, show_default=True, help="Voters: `swarm up --instances`.")
@click.option("--llama-server", "binary", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option(
    "--up-arg",
    "up_args",
    multiple=True,
    help="More flags for `swarm up` (repeat: --up-arg=--context --up-arg=4096).",
)
@click.option(
    "--bare-arg",
    "bare_args",
    multiple=True,
    help="More flags for the bare greedy llama-server (e.g. --bare-arg=-ngl --bare-arg=999).",
)
@click.option(
    "--sets",
    default="micro-dev,micro2-dev",
    show_default=True,
    help="Task sets under ../shared/data (humaneval-dev-0-81 too).",
)
@click.option(
    "--settings",
    default="none,0.2,0.5,0.8",
    show_default=True,
    help="none (no temperature sent) and/or temperatures.",
)
@click.option(
    "--repeats", default=3, show_default=True, help="Runs per setting, each with fresh voter seeds."
)
@click.option(
    "--concurrency",
    default=4,
    show_default=True,
    help="Requests in flight at once (to the swarm and to the bare server).",
)
@click.option(
    "--greedy-repeats",
    default=1,
    show_default=True,
    help="Runs of the greedy baseline: one llama-server answering several requests at once is not "
    "deterministic, so its mean over runs is the fairer yardstick.",
)
@click.option("--max-tokens", default=384, show_default=True)
@click.option("--limit", default=0, help="Only the first LIMIT tasks of each set (0: all).")
@click.option(
    "--strategy",
    type=click.Choice(["similarity", "quality", "fastest"]),
    help="Passed to `swarm up` (default: the swarm's default).",
)
@click.option("--tag", default="", help="Suffix of the result files: quality-live<TAG>.json.")
@click.option("--fresh", is_flag=True, help="Forget the answers of an earlier run with this tag.")
@click.option(
    "--timeout", "timeout_s", default=600.0, show_default=True, help="Seconds one request may take."
)
def command(
    model: str, instances: int, binary: Path | None, up_args: tuple[str, ...], bare_args: tuple[str, ...],
    sets: str, settings: str, repeats: int, concurrency: int, greedy_repeats: int, max_tokens: int,
    limit: int, strategy: str | None, tag: str, fresh: bool, timeout_s: float,
) -> None:  # fmt: skip
    """Answer quality, live: the swarm against one bare llama-server decoding greedily."""
    # a SIGTERM (timeout, kill) unwinds like Ctrl-C, so the swarm and the bare server are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tasks: list[dict[str, Any]] = []
    for name in sets.split(","):
        got = load_tasks(DATA / f"{name}.jsonl.gz")
        for t in got[:limit] if limit else got:
            tasks.append({**t, "_key": f"{name}/{t['task_id']}", "_set": name})
    wanted = settings.split(",")
    for s in wanted:
        if s != "none":
            float(s)  # a clear error for a typo
    stem = f"quality-live{tag}"
    answers = Answers(RESULTS / f"{stem}.answers.jsonl", fresh)
    jobs_swarm = [(f"{s}/{r}/{t['_key']}", s, r, t) for s in wanted for r in range(repeats) for t in tasks]
    jobs_swarm = [j for j in jobs_swarm if j[0] not in answers.rows]
    jobs_greedy = [(f"{GREEDY}/{r}/{t['_key']}", GREEDY, r, t) for r in range(greedy_repeats) for t in tasks]
    jobs_greedy = [j for j in jobs_greedy if j[0] not in answers.rows]
    click.echo(f"{len(tasks)} tasks; {len(jobs_swarm)} swarm and {len(jobs_greedy)} greedy answers to get")

    swarm_info: dict[str, Any] = {}
    if jobs_swarm or jobs_greedy:
        # a timeout's SIGTERM unwinds through the finally below: no swarm or server left running
        exit_on_sigterm()
        root = Path(tempfile.mkdtemp(prefix="swarm-quality-"))
        home = SwarmHome(root, proxy={"request_timeout_s": timeout_s, "port": 0})
        # the cached build, never a fresh one in the isolated home (a silent 6-16 minute build)
        argv = ["--model", model, "--instances", str(instances), "--port", "0", *up_args]
        argv += ["--llama-server", str(find_binary(str(binary) if binary else None))]
        if strategy:
            argv += ["--strategy", strategy]
        bare = None
        try:
            took = home.up(*argv, timeout_s=1800)
            status = home.ps()
            url = str(status["base_url"]).rstrip("/") + "/chat/completions"
            rec = home.record()
            key = None  # the proxy of an isolated home has no key of its own (loopback only)
            # the bare server runs like one of the swarm's processes (same binary, model, threads)
            model_path, bin_path, threads = _instance(rec)
            swarm_info = {
                "up_s": round(took, 1),
                "argv": argv,
                "model_path": str(model_path),
                "binary": str(bin_path),
            }
            click.echo(f"swarm up in {took:.1f} s at {url}")
            logdir = RESULTS / ".logs"
            logdir.mkdir(parents=True, exist_ok=True)
            if jobs_greedy:
                bare = start_server(
                    bin_path,
                    model_path,
                    threads,
                    2048 * concurrency,
                    logdir,
                    parallel=concurrency,
                    extra=list(bare_args),
                )
                click.echo(f"greedy: {len(jobs_greedy)} answers from the bare llama-server")
                _run_jobs(
                    jobs_greedy,
                    bare.url + "/v1/chat/completions",
                    None,
                    answers,
                    concurrency,
                    max_tokens,
                    timeout_s,
                )
                stop_server(bare)
                bare = None
            click.echo(f"swarm: {len(jobs_swarm)} answers")
            _run_jobs(jobs_swarm, url, key, answers, concurrency, max_tokens, timeout_s)
        finally:
            if bare is not None:
                stop_server(bare)
            home.remove()

    # execute each distinct program once (benchmark only: sandboxed subprocess with a timeout)
    by_key = {t["_key"]: t for t in tasks}
    rows = [
        r
        for r in answers.rows.values()
        if r["task"] in by_key and (r["setting"] in wanted or r["setting"] == GREEDY)
    ]
    score(rows, by_key, RESULTS / f"{stem}.passed.json")

    summary = live_summary(rows, [t["_key"] for t in tasks], wanted, [s for s in sets.split(",")])
    table = [
        [s["set"], s["setting"], s["runs"], s["pass"],
         _greedy_cell(s),
         f"{s['diff']:+.3f} [{s['lo']:+.3f}, {s['hi']:+.3f}]",
         " ".join(f"{x:.2f}" for x in s["per_run"]), s["mean_agreement"],
         s["latency_s"], s["greedy_latency_s"]]
        for s in summary
    ]  # fmt: skip
    print_table(
        f"Live answer quality: {model} x {instances} "
        "(pass rate; paired difference vs one greedy instance, 90% CI)",
        [
            "set",
            "setting",
            "runs",
            "swarm",
            "greedy",
            "swarm - greedy [90% CI]",
            "per run",
            "agreement",
            "s/answer",
            "greedy s",
        ],
        table,
    )
    out = write_result(
        stem,
        {"model": model, "instances": instances, "sets": sets, "settings": wanted, "repeats": repeats,
         "concurrency": concurrency, "max_tokens": max_tokens, "limit": limit, "strategy": strategy,
         "swarm": swarm_info, "summary": summary},
    )  # fmt: skip
    click.echo(f"wrote {out.relative_to(REPO)}")
    png = plot_live(summary, RESULTS / f"{stem}.png", f"{model} x {instances}")
    click.echo(f"wrote {png.relative_to(REPO)}")

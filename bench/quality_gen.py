"""Generating and executing candidates for the answer-quality benchmark (bench/quality.py).

Candidate code runs ONLY here, in a subprocess with a timeout and memory limit, never in the
proxy. Generation starts real llama-server processes of the given model on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import queue
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import stop_group
from swarm_supervisor.consensus.code import code_blocks

USER_TEMPLATE = (
    "Complete the following Python function. Answer with the whole function in one ```python code block.\n\n"
    "```python\n{prompt}```"
)


def load_tasks(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def user_message(task: dict[str, Any]) -> str:
    return USER_TEMPLATE.format(prompt=task["prompt"])


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    binary: Path,
    model: Path,
    threads: int,
    ctx: int,
    logdir: Path,
    *,
    parallel: int = 1,
    extra: list[str] | None = None,
) -> Server:
    """One llama-server on a free loopback port, ready (threads 0: llama-server's default)."""
    port = _free_port()
    log = logdir / f"llama-{port}.log"
    argv = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-c", str(ctx),
            "--parallel", str(parallel), "--alias", "bench"]  # fmt: skip
    if threads > 0:
        argv += ["--threads", str(threads)]
    argv += extra or []
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(proc, port, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"llama-server exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_server(server)
    raise RuntimeError(f"llama-server on port {port} not ready after 120 s; see {log}")


def stop_server(server: Server) -> None:
    stop_group(server.proc, 5.0)


# --------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class Job:
    task_id: str
    temperature: float
    sample: int  # 0.. per (task, temperature)
    seed: int


def generate(
    servers: list[Server],
    tasks: dict[str, dict[str, Any]],
    jobs: list[Job],
    max_tokens: int,
    on_result: Callable[[Job, dict[str, Any]], None],
) -> None:
    """Run ``jobs`` over ``servers`` (one request at a time each) and call ``on_result`` with
    ``{temperature, seed, sample, content, finish_reason, latency_s, usage}`` (under a lock)."""
    todo: queue.Queue[Job] = queue.Queue()
    for j in jobs:
        todo.put(j)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(server: Server) -> None:
        with httpx.Client(base_url=server.url, timeout=300) as client:
            while not errors:
                try:
                    job = todo.get_nowait()
                except queue.Empty:
                    return
                body = {
                    "messages": [{"role": "user", "content": user_message(tasks[job.task_id])}],
                    "temperature": job.temperature,
                    "seed": job.seed,
                    "max_tokens": max_tokens,
                    "logprobs": True,  # the model's confidence: a signal the vote may use
                    "top_logprobs": 1,
                }
                t0 = time.perf_counter()
                try:
                    r = client.post("/v1/chat/completions", json=body)
                    r.raise_for_status()
                except httpx.HTTPError as err:
                    errors.append(err)
                    return
                latency = time.perf_counter() - t0
                data = r.json()
                choice = data["choices"][0]
                lps = [t["logprob"] for t in ((choice.get("logprobs") or {}).get("content") or [])]
                rec = {
                    "temperature": job.temperature,
                    "seed": job.seed,
                    "sample": job.sample,
                    "content": choice["message"].get("content") or "",
                    "finish_reason": choice.get("finish_reason"),
                    "latency_s": round(latency, 4),
                    "usage": data.get("usage"),
                    "logprob_mean": round(sum(lps) / len(lps), 4) if lps else None,
                    "logprob_min": round(min(lps), 4) if lps else None,
                }
                with lock:
                    on_result(job, rec)

    threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"generation failed: {errors[0]}")


# --------------------------------------------------------------------------- execution


def program_for(task: dict[str, Any], answer: str) -> str | None:
    """The test program for one answer: its Python (or the prompt plus the answer as a body
    when it does not define the entry point), the task's test, and the check call."""
    code = "\n".join(b.body for b in code_blocks(answer) if b.is_python or b.lang in ("", "python"))
    if not code.strip():
        return None
    entry = task["entry_point"]
    prompt = task["prompt"]
    head = "\n".join(ln for ln in prompt.splitlines() if ln.startswith(("import ", "from ")))
    if f"def {entry}" not in code:
        code = prompt + code
    return f"{head}\n{code}\n\n{task['test']}\n\ncheck({entry})\n"


def _limits() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    resource.setrlimit(resource.RLIMIT_CPU, (10, 10))
    os.setsid()


def passes(program: str | None, timeout_s: float = 10.0) -> bool:
    """Run ``program`` in a fresh, isolated Python (``-I``) in a temporary folder; True on exit 0."""
    if program is None:
        return False
    with tempfile.TemporaryDirectory(prefix="swarm-bench-") as tmp:
        path = Path(tmp) / "candidate.py"
        path.write_text(program, encoding="utf-8")
        try:
            res = subprocess.run(
                [sys.executable, "-I", str(path)],
                cwd=tmp,
                capture_output=True,
                timeout=timeout_s,
                preexec_fn=_limits,
                env={"PATH": "/usr/bin:/bin"},
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return False
        return res.returncode == 0


def program_key(program: str | None) -> str:
    return hashlib.sha256((program or "").encode()).hexdigest()[:20]


def score(rows: list[dict[str, Any]], tasks: dict[str, dict[str, Any]], cache_path: Path) -> None:
    """Set ``ok`` on each row (an answer to ``tasks[row["task"]]``): whether its program passes the
    task's test. Each distinct program runs once, ever: the results are kept in ``cache_path``
    (a result's ``.passed.json``), and only programs missing there run, two at a time."""
    passed: dict[str, bool] = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    todo: dict[str, str | None] = {}
    for r in rows:
        program = program_for(tasks[r["task"]], r["content"])
        r["program"] = program_key(program)
        if r["program"] not in passed:
            todo[r["program"]] = program
    if todo:
        print(f"executing {len(todo)} distinct programs", flush=True)
        with ThreadPoolExecutor(2) as ex:
            for k, ok in zip(todo, ex.map(passes, todo.values()), strict=True):
                passed[k] = ok
        cache_path.write_text(json.dumps(passed))
    for r in rows:
        r["ok"] = passed[r["program"]]

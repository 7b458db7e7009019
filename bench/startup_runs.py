"""The two ways ``python -m bench startup`` starts N instances, each timed: :func:`through_swarm`
(``swarm up`` in an isolated home, split by the run file's clocks) and :func:`by_hand` (the
same argv spawned directly until every ``/health`` answers 200); and :func:`first_token`, one
streamed request timed to its first content token and to ``[DONE]``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import click

from bench.swarm_home import SwarmHome, instance_argvs

PROMPT = "Write a Python function that adds two numbers."


#: where the seconds of ``swarm up`` go (see :func:`through_swarm`)
#: the command's start to the first instance's spawn (the CLI's work; the supervisor process starts
#: beside it), the spawn to the last instance ready, then until the command returned
SPLIT = ("before_first_spawn_s", "spawn_to_all_ready_s", "ready_to_return_s")


def first_token(url: str, key: str | None, max_tokens: int, timeout_s: float = 300.0) -> dict[str, float]:
    """One streamed chat request to ``url`` (…/chat/completions): seconds to the first content (or
    tool-call) delta and to ``[DONE]``."""
    import json

    import httpx

    body = {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "stream": True,
        "temperature": 0.0,
        "seed": 1,
    }
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    t0 = time.perf_counter()
    first: float | None = None
    done = False
    with (
        httpx.Client(timeout=timeout_s, trust_env=False) as client,
        client.stream("POST", url, json=body, headers=headers) as resp,
    ):
        if resp.status_code != 200:
            resp.read()
            raise click.ClickException(f"{url}: HTTP {resp.status_code}: {resp.text[:300]}")
        for line in resp.iter_lines():
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                done = True
                break
            if first is None:
                chunk = json.loads(payload)
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if delta.get("content") or delta.get("tool_calls"):
                        first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    if not done:
        raise click.ClickException(f"{url}: the stream ended without [DONE]")
    return {"first_token_s": first if first is not None else total, "answer_s": total}


def _with_port(argv: list[str], port: int, key_file: Path) -> list[str]:
    out = list(argv)
    out[out.index("--port") + 1] = str(port)
    if "--api-key-file" in out:
        out[out.index("--api-key-file") + 1] = str(key_file)
    return out


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def by_hand(
    argvs: list[list[str]], key: str, key_file: Path, logdir: Path, max_tokens: int
) -> dict[str, float]:
    """Spawn every argv at once (fresh loopback ports), time until all /health are 200, then the
    first token from the first one; stop them all (TERM, then KILL, by process group)."""
    import httpx

    from swarm_supervisor.swarm.system import free_port

    ports = [free_port() for _ in argvs]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        t0 = time.perf_counter()
        for i, (argv, port) in enumerate(zip(argvs, ports, strict=True)):
            with (logdir / f"hand-{port}-{i}.log").open("ab") as log:
                procs.append(
                    subprocess.Popen(
                        _with_port(argv, port, key_file),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
        waiting = set(range(len(procs)))
        deadline = time.monotonic() + 120
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while waiting:
                for i in sorted(waiting):
                    if procs[i].poll() is not None:
                        raise click.ClickException(
                            f"by hand: {argvs[i][:3]} exited with {procs[i].returncode}"
                        )
                    try:
                        if client.get(f"http://127.0.0.1:{ports[i]}/health").status_code == 200:
                            waiting.discard(i)
                    except httpx.HTTPError:
                        pass
                if waiting:
                    if time.monotonic() > deadline:
                        raise click.ClickException("by hand: not ready within 120 s")
                    time.sleep(0.02)
        ready = time.perf_counter() - t0
        tok = first_token(f"http://127.0.0.1:{ports[0]}/v1/chat/completions", key, max_tokens)
        return {"ready_s": ready, **tok}
    finally:
        _stop(procs)


def through_swarm(
    home: SwarmHome, up_args: list[str], max_tokens: int, keep: dict[str, Any] | None = None
) -> dict[str, float]:
    """``swarm up`` in ``home``, the first token through the proxy, ``swarm down``. ``keep`` (when
    given) receives the instances' argv and the internal key. Where the seconds of ``swarm up``
    went comes from the run file's clocks: the command's start to the first instance's spawn
    (the CLI's work and, beside it, the supervisor process's start), the instances' spawn to the
    last ready, and the last ready to the command's return."""
    from swarm_supervisor.swarm.system import free_port

    wall0 = time.time()
    up_s = home.up(*up_args, "--port", str(free_port()))
    wall1 = time.time()
    try:
        rec = home.record()
        insts = rec.get("instances") or []
        if keep is not None:
            keep["argvs"] = instance_argvs(rec)
            keep["key"] = home.key_path().read_text(encoding="utf-8").strip()
            keep["processes"] = len(insts)
            keep["slots"] = [i.get("slots") for i in insts]
        spawned = min(i["started_at"] for i in insts)
        ready = max(i["ready_at"] for i in insts)
        split = {
            "before_first_spawn_s": spawned - wall0,
            "spawn_to_all_ready_s": ready - spawned,
            "ready_to_return_s": wall1 - ready,
        }
        # 1 when it started from its remembered launch (swarm/relaunch.py): a planned start writes
        # the record anew, a start from it leaves it as it was
        records = list((home.root / "cache" / "launch").glob("*.json"))
        split["from_record"] = float(bool(records) and all(p.stat().st_mtime < wall0 for p in records))
        tok = first_token(f"{rec['base_url']}/chat/completions", None, max_tokens)
    finally:
        t0 = time.perf_counter()
        down = home.down()
        down_s = time.perf_counter() - t0
    if down.returncode != 0:
        raise click.ClickException(f"swarm down failed: {down.stderr[-1000:]}")
    return {"up_s": up_s, **tok, "down_s": down_s, **split}

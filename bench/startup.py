"""``python -m bench startup``: how long ``swarm up`` takes to all-ready on the embedded SmolLM2 model,
against starting the same llama-servers by hand, and the time to the first token once ready.

For each N (``--voters``, default 2 and 4) and each topology (``--topology processes`` and the
plan's default; where the plan refuses one, e.g. 4 processes on 2 cores, that is recorded), in
rounds that alternate the order of the two (``--rounds``, default 3; a first, unmeasured round
warms the page cache and records the argv):

- swarm: ``swarm up --model <gguf> --instances N [--topology T] --llama-server <bin> --port P``
  in an isolated ``SWARM_HOME`` (its own config, cache and state; one for the whole run, so that
  from the second ``up`` on the model file's check is remembered, as in a user's cache), timed
  from spawn to the command's return (it returns once every instance is ready), and split by the
  run file's clocks into the CLI's part, the supervisor's and the instances'; then one streamed
  chat request through the proxy: seconds to the first content token and to ``[DONE]``; then
  ``swarm down``.
- by hand: the argv the swarm's instances ran with (read from ``/proc/PID/cmdline`` while it was
  up; only the ports and the key file's path changed) spawned directly, timed until every
  ``/health`` answers 200; then the same streamed request straight to one of them; stopped.

The figures are medians and the ratio swarm / by hand. ``swarm up`` should be all-ready within
30 s (the supervisor issue's target). Through the proxy with two or more voters the stream is
in ``consensus`` mode: the first token leaves only once the voters' answers are in and voted
on, so its first token comes at about the time a single server finishes the whole answer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from bench.common import print_table, write_result
from bench.swarm_home import ContentionWatch, SwarmHome, instance_argvs, pytest_pids, wait_for_quiet

PROMPT = "Write a Python function that adds two numbers."
TARGET_S = 30.0
#: where the seconds of ``swarm up`` go (see :func:`through_swarm`)
SPLIT = ("cli_before_supervisor_s", "supervisor_before_spawn_s", "spawn_to_all_ready_s", "ready_to_return_s")


# --------------------------------------------------------------------------- the request


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


# --------------------------------------------------------------------------- by hand


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


# --------------------------------------------------------------------------- through the swarm


def through_swarm(
    home: SwarmHome, up_args: list[str], max_tokens: int, keep: dict[str, Any] | None = None
) -> dict[str, float]:
    """``swarm up`` in ``home``, the first token through the proxy, ``swarm down``. ``keep`` (when
    given) receives the instances' argv and the internal key. Where the seconds of ``swarm up``
    went comes from the run file's clocks: the CLI before it launched the supervisor, the
    supervisor before it spawned the first instance, the instances' spawn to the last ready, and
    the last ready to the command's return."""
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
            "cli_before_supervisor_s": rec["started_at"] - wall0,
            "supervisor_before_spawn_s": spawned - rec["started_at"],
            "spawn_to_all_ready_s": ready - spawned,
            "ready_to_return_s": wall1 - ready,
        }
        tok = first_token(f"{rec['base_url']}/chat/completions", None, max_tokens)
    finally:
        t0 = time.perf_counter()
        down = home.down()
        down_s = time.perf_counter() - t0
    if down.returncode != 0:
        raise click.ClickException(f"swarm down failed: {down.stderr[-1000:]}")
    return {"up_s": up_s, **tok, "down_s": down_s, **split}


# --------------------------------------------------------------------------- the command


def _cpu() -> list[int]:
    """The machine's CPU time counters (/proc/stat: user nice system idle iowait irq softirq steal)."""
    with open("/proc/stat", encoding="ascii") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def _busy_since(before: list[int]) -> dict[str, float]:
    """Of the CPU time since ``before``: the share not idle, and the share stolen by the host."""
    delta = [b - a for a, b in zip(before, _cpu(), strict=True)]
    total = sum(delta) or 1
    return {
        "cpu_busy_pct": round(100 * (total - delta[3]) / total, 1),
        "steal_pct": round(100 * delta[7] / total, 1),
    }


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _refusal(n: int, topology: str | None, model: Path) -> str | None:
    """The plan's error for this N and topology on this machine, or None when it accepts it."""
    from bench.topology import plan_for
    from swarm_supervisor.errors import SwarmError

    try:
        plan_for(n, topology, model, 8192)
    except SwarmError as exc:
        return str(exc)
    return None


@click.command("startup")
@click.option(
    "--voters", "voters_s", default="2,4", show_default=True, help="N to measure (comma-separated)."
)
@click.option("--rounds", default=3, show_default=True, help="Measured rounds (median), after one warm-up.")
@click.option("--max-tokens", default=16, show_default=True, help="Tokens of the first-token request.")
@click.option("--context", type=int, default=None, help="Tokens per slot (default: the plan's).")
@click.option("--llama-server", "binary_s", help="llama-server (default: the cached one).")
@click.option("--model", "model_s", help="GGUF (default: the embedded SmolLM2).")
@click.option("--no-wait", is_flag=True, help="Do not wait for a running test suite to finish.")
@click.option("--out", default="startup", show_default=True, help="Result name: bench/results/<out>.json.")
def command(voters_s: str, rounds: int, max_tokens: int, context: int | None, binary_s: str | None,
            model_s: str | None, no_wait: bool, out: str) -> None:  # fmt: skip
    """`swarm up` to all-ready vs the same llama-servers started by hand; time to first token."""
    from bench.topology import find_binary, find_model

    binary, model = find_binary(binary_s), find_model(model_s)
    contention = {"waited_s": 0.0, "note": "--no-wait"} if no_wait else wait_for_quiet(echo=click.echo)
    voters = [int(x) for x in voters_s.split(",") if x.strip()]
    shapes: list[tuple[int, str, list[str]]] = []
    refused: list[dict[str, Any]] = []
    for n in voters:
        for topo in ("processes", None):
            why = _refusal(n, topo, model)
            label = topo or "default"
            if why is not None:
                refused.append({"voters": n, "topology": label, "plan_refused": why})
                click.echo(f"N={n} {label}: the plan refuses it: {why}", err=True)
                continue
            args = ["--model", str(model), "--instances", str(n), "--llama-server", str(binary)]
            if topo:
                args += ["--topology", topo]
            if context:
                args += ["--context", str(context)]
            shapes.append((n, label, args))

    runs: dict[tuple[int, str], dict[str, Any]] = {
        (n, label): {"swarm": [], "hand": [], "info": {}} for n, label, _ in shapes
    }
    with contextlib.ExitStack() as stack:
        base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-startup-")))
        logdir = base / "logs"
        logdir.mkdir()
        key_file = base / "hand.key"
        home = stack.enter_context(SwarmHome(base / "home"))
        watch = stack.enter_context(ContentionWatch())
        for r in range(-1, rounds):  # round -1: the warm-up, which also records the argv
            for n, label, args in shapes:
                run = runs[(n, label)]
                info = run["info"]
                order = ("swarm", "hand") if r % 2 == 0 else ("hand", "swarm")
                if r < 0:
                    order = ("swarm", "hand")
                for which in order:
                    cpu0 = _cpu()
                    if which == "swarm":
                        got = through_swarm(home, args, max_tokens, info if r < 0 else None)
                    else:
                        key_file.write_text(info["key"] + "\n", encoding="utf-8")
                        key_file.chmod(0o600)
                        got = by_hand(info["argvs"], info["key"], key_file, logdir, max_tokens)
                    got.update(_busy_since(cpu0))
                    got["pytest_running"] = bool(pytest_pids())
                    if r < 0:
                        info.setdefault("warmup", {})[which] = got
                    else:
                        run[which].append(got)
                    click.echo(
                        f"  N={n} {label:9} {'warm-up' if r < 0 else f'round {r}'} {which:5}: "
                        + ", ".join(f"{k} {v:.2f}" for k, v in got.items()),
                        err=True,
                    )

    results = []
    for n, label, args in shapes:
        run = runs[(n, label)]
        sw, hd = run["swarm"], run["hand"]
        med = {
            "swarm_up_s": _median([x["up_s"] for x in sw]),
            "hand_ready_s": _median([x["ready_s"] for x in hd]),
            "swarm_first_token_s": _median([x["first_token_s"] for x in sw]),
            "hand_first_token_s": _median([x["first_token_s"] for x in hd]),
            "swarm_answer_s": _median([x["answer_s"] for x in sw]),
            "hand_answer_s": _median([x["answer_s"] for x in hd]),
            "swarm_down_s": _median([x["down_s"] for x in sw]),
        }
        split = {k: _median([x[k] for x in sw]) for k in SPLIT}
        every_up = [x["up_s"] for x in sw] + [run["info"]["warmup"]["swarm"]["up_s"]]
        results.append(
            {
                "voters": n,
                "topology": label,
                "swarm_up_args": " ".join(["swarm", "up", *args, "--port", "P"]),
                "processes": run["info"]["processes"],
                "slots_per_process": run["info"]["slots"],
                "argv": [" ".join(a) for a in run["info"]["argvs"]],
                "swarm": sw,
                "hand": hd,
                "warmup": run["info"]["warmup"],
                "median": med,
                "swarm_up_split_median_s": split,
                "up_over_hand": med["swarm_up_s"] / med["hand_ready_s"],
                "first_token_swarm_over_hand": med["swarm_first_token_s"] / med["hand_first_token_s"],
                "answer_swarm_over_hand": med["swarm_answer_s"] / med["hand_answer_s"],
                "slowest_up_s": max(every_up),
                "all_ready_within_30s": max(every_up) < TARGET_S,
            }
        )

    rows = [
        (
            r["voters"],
            r["topology"],
            f"{r['processes']} x {r['slots_per_process'][0]}",
            r["median"]["swarm_up_s"],
            r["median"]["hand_ready_s"],
            r["up_over_hand"],
            r["median"]["swarm_first_token_s"],
            r["median"]["hand_first_token_s"],
            r["first_token_swarm_over_hand"],
            r["slowest_up_s"],
            "yes" if r["all_ready_within_30s"] else "NO",
        )
        for r in results
    ]
    print_table(
        f"Start-up on this machine ({os.cpu_count()} cores), {model.name}, medians of {rounds}",
        [
            "N",
            "topology",
            "procs x slots",
            "swarm up s",
            "by hand s",
            "swarm / hand",
            "TTFT swarm s",
            "TTFT hand s",
            "TTFT ratio",
            "slowest up s",
            "< 30 s",
        ],
        rows,
        console=Console(width=160),
    )
    print_table(
        "Where the seconds of `swarm up` go (medians)",
        [
            "N",
            "topology",
            "CLI before supervisor",
            "supervisor before spawn",
            "spawn to all ready",
            "ready to return",
            "swarm up",
            "by hand",
        ],
        [
            (
                r["voters"],
                r["topology"],
                *r["swarm_up_split_median_s"].values(),
                r["median"]["swarm_up_s"],
                r["median"]["hand_ready_s"],
            )
            for r in results
        ],
        console=Console(width=160),
    )
    for r in refused:
        click.echo(
            f"N={r['voters']} {r['topology']}: not measured, the plan refuses it ({r['plan_refused']})"
        )
    within = all(r["all_ready_within_30s"] for r in results)
    click.echo(
        f"swarm up reached all-ready within {TARGET_S:.0f} s in every run: {'yes' if within else 'NO'} "
        f"(slowest {max(r['slowest_up_s'] for r in results):.1f} s)"
    )
    data = {
        "method": __doc__.split("\n\n", 1)[1].strip() if __doc__ else "",
        "settings": {
            "voters": voters,
            "rounds": rounds,
            "max_tokens": max_tokens,
            "context": context,
            "model": str(model),
            "binary": str(binary),
            "target_s": TARGET_S,
        },
        "contention": {**contention, **watch.summary(), "load_average_after": os.getloadavg()},
        "all_ready_within_30s": within,
        "results": results,
        "refused": refused,
    }
    click.echo(f"wrote {write_result(out, data)}")

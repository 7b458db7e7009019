"""Where a voted agent turn's time goes inside llama-server: one answer against ``n`` answers
from one process, and ``n`` answers split over several processes, on the recorded opencode turns.

Each arm is a set of llama-server processes of the same model (``--parallel`` slots each); a turn
is sent once to warm the prompt cache (not counted), then ``ROUNDS`` times, interleaved across
arms, as ``n = k`` requests (one per process, ``k`` = voters / processes, sent at once). The
figures are llama-server's own ``timings`` (prompt and decode milliseconds, decode ms/token) and
the wall time, medians over turns and rounds, and the ratio to one answer from one process.

    python -m bench.probes.decode_split --binary B --model M [--ngl 999] [--voters 8] [--out F]
"""

from __future__ import annotations

import gzip
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
import httpx

from bench.quality_gen import Server, start_server, stop_server

SESSIONS = Path(__file__).resolve().parents[1] / "data" / "agent"


def _without_tools(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("tools", "tool_choice", "parallel_tool_calls")}


#: the same turn asked otherwise, of one answer and of the voters in one process: where does a
#: decoding step of n sequences go? (sampling on the host, the chat/tool-call parser, the GPU)
VARIANTS = {
    "lean sampling": lambda b: {**b, "samplers": ["top_k", "temperature"]},  # the chain cut to two
    "greedy": lambda b: {**b, "temperature": 0.0},  # argmax: next to no sampling work
    "no tools": _without_tools,  # no tool-call grammar or parser (a shorter prompt, cached too)
}


def _turn_bodies(max_turns: int, max_tokens: int) -> list[dict[str, Any]]:
    bodies = []
    for path in sorted(SESSIONS.glob("*.json.gz"))[:2]:
        with gzip.open(path) as f:
            turns = json.load(f)["turns"][:max_turns]
        for t in turns:
            body = dict(t["body"])
            body.pop("stream_options", None)
            body.update(stream=False, max_tokens=max_tokens)
            bodies.append(body)
    return bodies


def _ask(url: str, body: dict[str, Any], n: int) -> dict[str, float]:
    t0 = time.perf_counter()
    got = httpx.post(f"{url}/v1/chat/completions", json={**body, "n": n}, timeout=600).json()
    wall = time.perf_counter() - t0
    tm = got.get("timings") or {}
    return {
        "wall_s": wall,
        "prompt_ms": float(tm.get("prompt_ms", 0.0)),
        "predicted_ms": float(tm.get("predicted_ms", 0.0)),
        "predicted_n": float(tm.get("predicted_n", 0.0)),
        "choices": float(len(got.get("choices") or [])),
    }


@click.command()
@click.option("--binary", required=True)
@click.option("--model", required=True)
@click.option("--ngl", default=999, show_default=True)
@click.option("--threads", type=int, help="llama-server --threads (default: its own).")
@click.option("--voters", default=8, show_default=True)
@click.option("--rounds", default=3, show_default=True)
@click.option("--max-turns", default=4, show_default=True)
@click.option("--max-tokens", default=64, show_default=True)
@click.option("--splits", default="1,2,4", show_default=True, help="Processes the voters are split over.")
@click.option("--out", type=click.Path(path_type=Path))
def main(
    binary: str,
    model: str,
    ngl: int,
    threads: int | None,
    voters: int,
    rounds: int,
    max_turns: int,
    max_tokens: int,
    splits: str,
    out: Path | None,
) -> None:
    bodies = _turn_bodies(max_turns, max_tokens)
    arms: dict[str, tuple[int, int]] = {"one answer": (1, 1)}  # (processes, n per process)
    for p in (int(s) for s in splits.split(",")):
        arms[f"{voters} voters in {p} process{'es' if p > 1 else ''}"] = (p, voters // p)
    one = f"{voters} voters in 1 process"
    servers: dict[str, list[Server]] = {}
    logs = Path(tempfile.mkdtemp(prefix="decode-split-"))
    rows: dict[str, list[dict[str, float]]] = {a: [] for a in arms}
    try:
        for arm, (procs, k) in arms.items():
            servers[arm] = [
                start_server(Path(binary), Path(model), threads or 0, max(1, k) * 16384, logs,
                             parallel=max(1, k), extra=["-ngl", str(ngl), "--metrics"])
                for _ in range(procs)
            ]  # fmt: skip
        shared: dict[str, str] = {}  # a variant's arm -> the arm whose servers it asks
        for base_arm in ("one answer", one):
            for name in VARIANTS if base_arm in servers else ():
                arm = f"{base_arm}, {name}"
                arms[arm], servers[arm], rows[arm], shared[arm] = (
                    arms[base_arm],
                    servers[base_arm],
                    [],
                    base_arm,
                )
        with ThreadPoolExecutor(16) as pool:
            for i, body in enumerate(bodies):
                for r in range(rounds + 1):
                    order = list(arms) if (i + r) % 2 == 0 else list(reversed(arms))
                    for arm in order:
                        procs, k = arms[arm]
                        b = VARIANTS[arm.split(", ")[1]](body) if arm in shared else body
                        t0 = time.perf_counter()
                        got = list(pool.map(lambda s, b=b, n=k: _ask(s.url, b, n), servers[arm]))
                        wall = time.perf_counter() - t0
                        if r == 0:
                            continue  # warms the prompt cache of every process
                        rows[arm].append({
                            "turn": i, "wall_s": wall,
                            "prompt_ms": max(g["prompt_ms"] for g in got),
                            "predicted_ms": max(g["predicted_ms"] for g in got),
                            "ms_per_token": max(g["predicted_ms"] / max(1.0, g["predicted_n"]) for g in got),
                            "choices": sum(g["choices"] for g in got),
                        })  # fmt: skip
                print(f"turn {i} done", flush=True)
    finally:
        for arm, started in servers.items():
            if arm not in shared:  # a variant asks its base arm's servers
                for server in started:
                    stop_server(server)
    base = statistics.median(r["wall_s"] for r in rows["one answer"])
    summary = {}
    head = ("arm", "wall s", "x one", "decode ms/tok", "prompt ms", "answers")
    print(f"{head[0]:38s} {head[1]:>8s} {head[2]:>6s} {head[3]:>14s} {head[4]:>10s} {head[5]:>8s}")
    for arm, rs in rows.items():
        wall = statistics.median(r["wall_s"] for r in rs)
        summary[arm] = {
            "wall_s": round(wall, 4),
            "over_one_answer": round(wall / base, 3),
            "ms_per_token": round(statistics.median(r["ms_per_token"] for r in rs), 3),
            "prompt_ms": round(statistics.median(r["prompt_ms"] for r in rs), 2),
            "answers": statistics.median(r["choices"] for r in rs),
        }
        s = summary[arm]
        print(f"{arm:38s} {wall:8.3f} {s['over_one_answer']:6.2f} {s['ms_per_token']:14.2f} "
              f"{s['prompt_ms']:10.1f} {s['answers']:8.0f}")  # fmt: skip
    if out:
        out.write_text(json.dumps({"arms": arms, "summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

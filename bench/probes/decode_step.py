"""What one decoding step of k voters costs inside llama-server, and what changes it: one answer
against ``n = k`` answers from one process, with the KV pool shared (``--kv-unified``, what the
swarm passes) or per slot, with CUDA graphs off, with flash attention off.

The recorded opencode turns (first ``--max-turns`` of two sessions) are sent to every arm in turn,
interleaved, after one warming pass (the prompt cached, as a follow-up turn is). Figures are
llama-server's own ``timings``: decode ms per token and prompt ms, medians, and the wall time
against one answer.

    python -m bench.probes.decode_step --binary B --model M [--arms ...] [--out F]
    python -m bench.probes.decode_step --url http://127.0.0.1:PORT --n 8   # ask a running server
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from bench.probes.decode_split import _ask, _turn_bodies
from bench.quality_gen import Server, start_server, stop_server

#: the sampler chains tried: llama-server's default order (top_k sorts the whole vocabulary
#: for every sequence at every step), min_p moved first (one pass over the vocabulary, then the
#: rest on the few tokens left), and min_p with temperature alone
DEFAULT_CHAIN = ["penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature"]
MIN_P_FIRST = ["min_p", "penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "xtc", "temperature"]
MIN_P_TEMP = ["min_p", "temperature"]

#: name -> (n answers, slots, extra llama-server flags, environment, fields added to the body)
ARMS: dict[str, tuple[int, int, list[str], dict[str, str], dict[str, Any]]] = {
    "1 answer": (1, 1, [], {}, {}),
    "1 answer, no CUDA graphs": (1, 1, [], {"GGML_CUDA_DISABLE_GRAPHS": "1"}, {}),
    "2 voters, shared KV": (2, 2, ["--kv-unified"], {}, {}),
    "3 voters, shared KV": (3, 3, ["--kv-unified"], {}, {}),
    "4 voters, shared KV": (4, 4, ["--kv-unified"], {}, {}),
    "8 voters, shared KV": (8, 8, ["--kv-unified"], {}, {}),
    "8 voters, KV per slot": (8, 8, [], {}, {}),
    "8 voters, shared KV, no CUDA graphs": (8, 8, ["--kv-unified"], {"GGML_CUDA_DISABLE_GRAPHS": "1"}, {}),
    "8 voters, shared KV, flash attention off": (8, 8, ["--kv-unified", "-fa", "off"], {}, {}),
    "1 answer, min_p first": (1, 1, [], {}, {"samplers": MIN_P_FIRST}),
    "3 voters, shared KV, min_p first": (3, 3, ["--kv-unified"], {}, {"samplers": MIN_P_FIRST}),
    "8 voters, shared KV, min_p first": (8, 8, ["--kv-unified"], {}, {"samplers": MIN_P_FIRST}),
    "8 voters, shared KV, min_p and temperature": (
        8,
        8,
        ["--kv-unified"],
        {},
        {"samplers": MIN_P_TEMP},
    ),
    "8 voters, shared KV, greedy": (8, 8, ["--kv-unified"], {}, {"temperature": 0.0}),
    "1 answer, top_k 1": (1, 1, [], {}, {"top_k": 1}),
    "3 voters, shared KV, top_k 1": (3, 3, ["--kv-unified"], {}, {"top_k": 1}),
    "8 voters, shared KV, top_k 1": (8, 8, ["--kv-unified"], {}, {"top_k": 1}),
    "1 answer, sampling on the GPU": (1, 1, ["--backend-sampling"], {}, {}),
    "3 voters, shared KV, sampling on the GPU": (3, 3, ["--kv-unified", "--backend-sampling"], {}, {}),
    "8 voters, shared KV, sampling on the GPU": (8, 8, ["--kv-unified", "--backend-sampling"], {}, {}),
}


def _start(binary: str, model: str, ngl: int, slots: int, extra: list[str], env: dict[str, str],
           logs: Path) -> Server:  # fmt: skip
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the child inherits it; put back at once
    try:
        return start_server(Path(binary), Path(model), 0, slots * 16384, logs, parallel=slots,
                            extra=["-ngl", str(ngl), "--metrics", *extra])  # fmt: skip
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _table(rows: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    base = statistics.median(r["wall_s"] for r in next(iter(rows.values())))
    step1 = statistics.median(r["ms_per_token"] for r in next(iter(rows.values())))
    summary = {}
    print(f"{'arm':42s} {'wall s':>7s} {'x one':>6s} {'ms/step':>8s} {'x step':>7s} {'prompt ms':>10s}")
    for arm, rs in rows.items():
        wall = statistics.median(r["wall_s"] for r in rs)
        step = statistics.median(r["ms_per_token"] for r in rs)
        summary[arm] = {
            "wall_s": round(wall, 4),
            "over_one_answer": round(wall / base, 3),
            "ms_per_step": round(step, 3),
            "step_over_one": round(step / step1, 3),
            "prompt_ms": round(statistics.median(r["prompt_ms"] for r in rs), 2),
            "answers": statistics.median(r["choices"] for r in rs),
        }
        s = summary[arm]
        print(f"{arm:42s} {wall:7.3f} {s['over_one_answer']:6.2f} {step:8.2f} {s['step_over_one']:7.2f} "
              f"{s['prompt_ms']:10.1f}")  # fmt: skip
    return summary


@click.command()
@click.option("--binary")
@click.option("--model")
@click.option("--url", help="Only ask this running server (n answers, every turn, --rounds times).")
@click.option("--n", "n_answers", default=8, show_default=True, help="With --url: answers a request.")
@click.option("--ngl", default=999, show_default=True)
@click.option("--arms", default=";".join(ARMS), show_default=True)
@click.option("--rounds", default=3, show_default=True)
@click.option("--max-turns", default=4, show_default=True)
@click.option("--max-tokens", default=64, show_default=True)
@click.option("--out", type=click.Path(path_type=Path))
def main(binary: str | None, model: str | None, url: str | None, n_answers: int, ngl: int, arms: str,
         rounds: int, max_turns: int, max_tokens: int, out: Path | None) -> None:  # fmt: skip
    bodies = _turn_bodies(max_turns, max_tokens)
    if url:
        for _ in range(rounds):
            for body in bodies:
                print(json.dumps(_ask(url, body, n_answers)), flush=True)
        return
    if not (binary and model):
        raise click.UsageError("give --binary and --model, or --url")
    chosen = [a for a in arms.split(";") if a]
    unknown = [a for a in chosen if a not in ARMS]
    if unknown:
        raise click.UsageError(f"unknown arms {unknown}; known: {list(ARMS)}")
    logs = Path(tempfile.mkdtemp(prefix="decode-step-"))
    servers: dict[str, Server] = {}
    rows: dict[str, list[dict[str, Any]]] = {a: [] for a in chosen}
    try:
        for arm in chosen:
            _, slots, extra, env, _ = ARMS[arm]
            servers[arm] = _start(binary, model, ngl, slots, extra, env, logs)
        for i, body in enumerate(bodies):
            for r in range(rounds + 1):
                for arm in chosen if (i + r) % 2 == 0 else reversed(chosen):
                    got = _ask(servers[arm].url, {**body, **ARMS[arm][4]}, ARMS[arm][0])
                    if r:  # the first pass warms the prompt cache
                        got["ms_per_token"] = got["predicted_ms"] / max(1.0, got["predicted_n"])
                        rows[arm].append({"turn": i, **got})
            print(f"turn {i} done", flush=True)
    finally:
        for server in servers.values():
            stop_server(server)
    summary = _table(rows)
    if out:
        got = {"arms": {a: [*ARMS[a][:3], ARMS[a][4]] for a in chosen}, "summary": summary, "rows": rows}
        out.write_text(json.dumps({**got, "at": time.strftime("%Y-%m-%d %H:%M")}, indent=1))


if __name__ == "__main__":
    main()

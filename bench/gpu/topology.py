"""N llama-server processes vs one process with N slots, on one GPU: generated tokens/s, time to
the last of N answers (what a full vote waits for) and GPU memory. Standalone (httpx only), so it
runs on a bare GPU machine:

    python bench/gpu/topology.py --server llama-server --model stub-q4_k_m.gguf --n 2 4 8 \
        --out topology.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import httpx


def gpu_used_mib() -> int:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(int(x) for x in out.split())


def start(
    server: str, model: str, port: int, slots: int, ctx: int, log: Path, extra: list[str]
) -> subprocess.Popen[bytes]:
    argv = [
        server,
        "-m",
        model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-ngl",
        "999",
        "-c",
        str(ctx * slots),
        "--parallel",
        str(slots),
        "--no-webui",
        *extra,
    ]
    return subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


async def wait_ready(port: int, deadline: float = 120) -> float:
    t0 = time.perf_counter()
    async with httpx.AsyncClient() as c:
        while time.perf_counter() - t0 < deadline:
            try:
                if (await c.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"port {port} not ready")


async def one(c: httpx.AsyncClient, port: int, tokens: int, seed: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    r = await c.post(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": "Write a Python function that sorts a list."}],
            "max_tokens": tokens,
            "ignore_eos": True,
            "temperature": 0.8,
            "seed": seed,
        },
        timeout=300,
    )
    r.raise_for_status()
    return int(r.json()["usage"]["completion_tokens"]), time.perf_counter() - t0


async def round_(ports: list[int], n: int, tokens: int) -> dict[str, float]:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64)) as c:
        await asyncio.gather(*(one(c, ports[i % len(ports)], 16, i) for i in range(n)))  # warm-up
        best: dict[str, float] | None = None
        for _ in range(2):
            t0 = time.perf_counter()
            res = await asyncio.gather(*(one(c, ports[i % len(ports)], tokens, 100 + i) for i in range(n)))
            wall = time.perf_counter() - t0
            cur = {"tok_s": sum(r[0] for r in res) / wall, "vote_latency_s": max(r[1] for r in res)}
            if best is None or cur["tok_s"] > best["tok_s"]:
                best = cur
        assert best is not None
        return best


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def case(a: argparse.Namespace, mode: str, n: int) -> dict[str, object]:
    base = gpu_used_mib()
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    t0 = time.perf_counter()
    try:
        count, slots = (n, 1) if mode == "processes" else (1, n)
        for i in range(count):  # one after another on the same GPU
            port = a.port + i
            procs.append(
                start(a.server, a.model, port, slots, a.ctx, Path(a.logs) / f"{mode}-{n}-{i}.log", a.extra)
            )
            ports.append(port)
            await wait_ready(port)
        ready_s = time.perf_counter() - t0
        mem = gpu_used_mib() - base
        r = await round_(ports, n, a.tokens)
        return {
            "mode": mode,
            "n": n,
            "ready_s": round(ready_s, 2),
            "gpu_mib": mem,
            **{k: round(v, 2) for k, v in r.items()},
        }
    finally:
        stop(procs)
        time.sleep(1)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--ctx", type=int, default=4096, help="tokens per slot")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--port", type=int, default=18100)
    ap.add_argument("--logs", default="/tmp/topology-logs")
    ap.add_argument("--out", required=True)
    ap.add_argument("--extra", nargs="*", default=[])
    a = ap.parse_args()
    os.makedirs(a.logs, exist_ok=True)
    rows = []
    for n in a.n:
        for mode in ("processes", "slots"):
            row = await case(a, mode, n)
            print(json.dumps(row), flush=True)
            rows.append(row)
    Path(a.out).write_text(
        json.dumps(
            {"model": Path(a.model).name, "ctx_per_slot": a.ctx, "tokens": a.tokens, "rows": rows}, indent=1
        )
    )


if __name__ == "__main__":
    asyncio.run(main())

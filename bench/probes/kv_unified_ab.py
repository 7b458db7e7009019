"""A/B spot check of llama-server's shared KV pool: two servers of ``--parallel 3``, one with
``--kv-unified``, each asked for ``n = 3`` answers of 32 tokens to the first turn of a recorded
opencode session (2,224 tokens of SmolLM2; cached after the first request), interleaved.

    python bench/probes/kv_unified_ab.py [PAIRS]   # the cached llama-server, the embedded SmolLM2
"""

from __future__ import annotations

import gzip
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.topology import find_binary, find_model
from swarm_supervisor.swarm.system import free_port

SESSIONS = Path(__file__).resolve().parents[1] / "data" / "agent"


def main(pairs: int) -> None:
    with gzip.open(sorted(SESSIONS.glob("*.json.gz"))[0]) as f:
        body = dict(json.load(f)["turns"][0]["body"])
    body.pop("stream_options", None)
    body.update(stream=False, max_tokens=32, n=3, temperature=0.8)
    binary, model = find_binary(None), find_model(None)
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        for arm in ("split", "unified"):
            port = free_port()
            argv = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
                    "-c", str(3 * 8192), "--parallel", "3", "--threads", "1"]  # fmt: skip
            argv += ["--kv-unified"] if arm == "unified" else []
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            servers[arm] = (proc, f"http://127.0.0.1:{port}")
        for _, url in servers.values():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
        times: dict[str, list[float]] = {"split": [], "unified": []}
        for r in range(pairs + 1):  # round 0 evaluates the prompt and is not counted
            for arm in ("split", "unified") if r % 2 == 0 else ("unified", "split"):
                t0 = time.perf_counter()
                got = httpx.post(f"{servers[arm][1]}/v1/chat/completions", json=body, timeout=900).json()
                took = time.perf_counter() - t0
                if r:
                    times[arm].append(took)
                print(r, arm, f"{took:.2f} s", len(got.get("choices", [])), "answers", flush=True)
        ratios = [u / s for u, s in zip(times["unified"], times["split"], strict=True)]
        print(f"unified / split per pair: median {statistics.median(ratios):.2f}, "
              f"range {min(ratios):.2f}-{max(ratios):.2f} over {len(ratios)} pairs")  # fmt: skip
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)

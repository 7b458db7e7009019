"""Can a process's shared KV pool be smaller than ``slots x context``? One llama-server of
``--parallel 3`` with ``--kv-unified --kv-unified-per-slot 2048``, three voted requests in a row
(``n = 3``, 512 tokens each, ``ignore_eos``), each a different conversation of 1,362 tokens:

    python bench/probes/kv_pool_size.py 3072 2560 6144   # pool sizes (-c) to try, the embedded SmolLM2

3072 cells is what one vote uses (the prompt plus one answer in the parent's slot, 512 more for
each of the two other answers, whose prompt cells are shared); 6144 is ``slots x context``, what
the plan allocates. Each line: the pool, the request, its status and how many answers came back.
"""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from bench.topology import find_binary, find_model
from swarm_supervisor.swarm.system import free_port


def _wait(url: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not become healthy")


def try_pool(pool: int) -> list[tuple[int, int]]:
    """(status, answers) of three voted requests, each a new conversation, to one server."""
    port = free_port()
    argv = [str(find_binary(None)), "-m", str(find_model(None)), "--host", "127.0.0.1", "--port", str(port),
            "-c", str(pool), "--parallel", "3", "--kv-unified", "--kv-unified-per-slot", "2048",
            "--threads", "2"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    got = []
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(url)
        for tag in ("item", "thing", "entry"):
            words = " ".join(f"{tag}{i}" for i in range(360))
            body = {"messages": [{"role": "user", "content": f"Repeat: {words}"}], "n": 3, "max_tokens": 512,
                    "ignore_eos": True, "temperature": 0.8}  # fmt: skip
            r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=900)
            answers = len(r.json().get("choices", [])) if r.status_code == 200 else 0
            print(f"pool {pool}: {tag} -> {r.status_code}, {answers} answers", flush=True)
            got.append((r.status_code, answers))
    finally:
        proc.terminate()
        proc.wait()
    return got


if __name__ == "__main__":
    for size in [int(a) for a in sys.argv[1:]] or [3072, 6144]:
        try_pool(size)

"""Can a process's shared KV pool be smaller than ``slots x context``? One llama-server of
``--parallel 3`` with ``--kv-unified --kv-unified-per-slot 2048``, three voted requests in a row
(``n = 3``, 512 tokens each, ``ignore_eos``), each a different conversation of 1,362 tokens:

    python bench/probes/kv_pool_size.py 3072 2560 6144   # pool sizes (-c) to try, the embedded SmolLM2

3072 cells is what one vote uses (the prompt plus one answer in the parent's slot, 512 more for
each of the two other answers, whose prompt cells are shared); 6144 is ``slots x context``, what
the plan allocates. Each line: the pool, the request, its status and how many answers came back.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx

from bench.quality_gen import start_server, stop_server
from bench.topology import find_binary, find_model


def try_pool(pool: int) -> list[tuple[int, int]]:
    """(status, answers) of three voted requests, each a new conversation, to one server."""
    got = []
    with tempfile.TemporaryDirectory() as logs:
        server = start_server(find_binary(None), find_model(None), 2, pool, Path(logs), parallel=3,
                              extra=["--kv-unified", "--kv-unified-per-slot", "2048"])  # fmt: skip
        try:
            for tag in ("item", "thing", "entry"):
                words = " ".join(f"{tag}{i}" for i in range(360))
                body = {"messages": [{"role": "user", "content": f"Repeat: {words}"}], "n": 3,
                        "max_tokens": 512, "ignore_eos": True, "temperature": 0.8}  # fmt: skip
                r = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=900)
                answers = len(r.json().get("choices", [])) if r.status_code == 200 else 0
                print(f"pool {pool}: {tag} -> {r.status_code}, {answers} answers", flush=True)
                got.append((r.status_code, answers))
        finally:
            stop_server(server)
    return got


if __name__ == "__main__":
    for size in [int(a) for a in sys.argv[1:]] or [3072, 6144]:
        try_pool(size)

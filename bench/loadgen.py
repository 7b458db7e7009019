"""The overhead benchmark's load client, in a process of its own, loopback only.

    python -m bench.loadgen --url URL --concurrency 16 --seconds 3 [--warmup 0.5]

``concurrency`` aiohttp clients on keep-alive connections, each sending the next request when its
answer is read; prints one JSON line: requests, errors, seconds, latencies (ms). The upstream it
is measured against is ``python -m testkit.llama.fast``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

#: what the load client sends: a small chat request, as a coding client would (no `model`: the
#: proxy answers with the one it serves, whatever it is called)
REQUEST: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "You are a helpful coding assistant."},
        {"role": "user", "content": "Write a Python function add(a, b) that returns the sum."},
    ],
    "max_tokens": 64,
    "temperature": 0.7,
}


async def load(
    url: str, concurrency: int, seconds: float, warmup: float, headers: dict[str, str]
) -> dict[str, Any]:
    """Closed-loop load: ``concurrency`` workers for ``warmup`` + ``seconds``; latencies of the
    requests that started after the warm-up and finished before the end."""
    import aiohttp

    body = json.dumps(REQUEST).encode()
    hdrs = {"Content-Type": "application/json", **headers}
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    lat: list[float] = []
    errors = 0
    sent = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors, sent
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                sent += 1
                try:
                    async with session.post(url, data=body, headers=hdrs) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except aiohttp.ClientError:
                    ok = False
                t1 = time.perf_counter()
                if t0 >= measure_from and t1 <= stop_at:
                    if ok:
                        lat.append((t1 - t0) * 1000.0)
                    else:
                        errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"requests": len(lat), "sent": sent, "errors": errors, "seconds": seconds, "latencies_ms": lat}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--header", action="append", default=[], help="NAME: VALUE")
    args = parser.parse_args(argv)
    import uvloop

    headers = dict(h.split(": ", 1) for h in args.header)
    result = uvloop.run(load(args.url, args.concurrency, args.seconds, args.warmup, headers))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

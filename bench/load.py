"""``python -m bench load``: many concurrent streaming clients against the proxy, bounded in count
and time, loopback only; the proxy runs as its own process so that its memory (RSS) and open file
descriptors can be read with psutil before, during and after.

    python -m bench load                        256 clients, 180 s, over 3 fake upstreams
    python -m bench load --duration 20          the CI version
    python -m bench load --real --clients 8     over real llama-server instances (SmolLM2)

Writes ``bench/results/load.json`` (``--out`` changes the name). The fakes, the proxy and the
real instances run as children started by ``testkit.spawn``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from testkit.spawn import Child, fake_swarm, real_swarm

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


# --------------------------------------------------------------------------- measuring


def process_usage(pid: int) -> dict[str, int]:
    """RSS bytes and open file descriptors of ``pid``."""
    import psutil

    p = psutil.Process(pid)
    return {"rss": int(p.memory_info().rss), "fds": p.num_fds()}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


@dataclass
class Tally:
    """What the clients saw."""

    latencies: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    started: int = 0

    def fail(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


CHAT = {"model": "bench", "messages": [{"role": "user", "content": "Write add(a, b) in Python."}]}


async def one_stream(session: Any, url: str, body: dict[str, Any], tally: Tally) -> None:
    """One streamed chat request read to ``[DONE]``; a failure is anything else."""
    import aiohttp

    tally.started += 1
    t0 = time.perf_counter()
    try:
        async with session.post(f"{url}/v1/chat/completions", json=body) as resp:
            if resp.status != 200:
                tally.fail(f"HTTP {resp.status}")
                await resp.read()
                return
            done = False
            async for line in resp.content:
                if line.strip() == b"data: [DONE]":
                    done = True
                elif line.startswith(b"data:") and b'"error"' in line[:20]:
                    tally.fail("error event")
                    return
            if not done:
                tally.fail("no [DONE]")
                return
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally.fail(type(exc).__name__)
        return
    tally.latencies.append(time.perf_counter() - t0)


async def drive(url: str, clients: int, duration_s: float, max_requests: int, body: dict[str, Any],
                timeout_s: float = 120.0, tally: Tally | None = None) -> tuple[Tally, float]:  # fmt: skip
    """``clients`` loops of streamed requests until ``duration_s`` passed or ``max_requests`` started."""
    import aiohttp

    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        raise click.UsageError(f"the load generator only talks to loopback addresses, not {host}")
    tally = tally or Tally()
    end = time.monotonic() + duration_s
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client() -> None:
            while time.monotonic() < end and tally.started < max_requests:
                await one_stream(session, url, body, tally)

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    return tally, elapsed


def sample_during(pid: int, stop: threading.Event, peaks: dict[str, int]) -> None:
    while not stop.wait(0.5):
        with contextlib.suppress(Exception):
            u = process_usage(pid)
            for k, v in u.items():
                peaks[k] = max(peaks.get(k, 0), v)


def settle(pid: int, target_fds: int, wait_s: float = 45.0) -> dict[str, int]:
    """Usage once idle: waits (up to ``wait_s``) for the idle upstream connections to close."""
    deadline = time.monotonic() + wait_s
    usage = process_usage(pid)
    while usage["fds"] > target_fds and time.monotonic() < deadline:
        time.sleep(1)
        usage = process_usage(pid)
    return usage


def run_load(proxy: Child, clients: int, duration_s: float, max_requests: int, body: dict[str, Any],
             warmup_s: float, settle_s: float) -> dict[str, Any]:  # fmt: skip
    """Cold usage, a warm-up at full concurrency, idle usage (the baseline), the run, idle usage."""
    cold = process_usage(proxy.pid)
    asyncio.run(drive(proxy.url, clients, warmup_s, max_requests, body))
    gc.collect()
    base = settle(proxy.pid, cold["fds"], settle_s)
    peaks: dict[str, int] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=sample_during, args=(proxy.pid, stop, peaks), daemon=True)
    sampler.start()
    try:
        tally, elapsed = asyncio.run(drive(proxy.url, clients, duration_s, max_requests, body))
    finally:
        stop.set()
        sampler.join()
    after = settle(proxy.pid, base["fds"], settle_s)
    lat = tally.latencies
    return {
        "clients": clients,
        "duration_s": round(elapsed, 1),
        "requests": tally.started,
        "ok": tally.ok,
        "failed": tally.failed,
        "failures": tally.failures,
        "requests_per_s": round(tally.ok / elapsed, 1) if elapsed else None,
        "latency_ms": {
            name: round(v * 1000, 1) if v is not None else None
            for name, v in (
                ("p50", percentile(lat, 50)),
                ("p99", percentile(lat, 99)),
                ("max", max(lat, default=None)),
            )
        },
        "proxy": {
            "cold": cold,
            "baseline": base,
            "peak": peaks,
            "after": after,
            "rss_growth_pct": round(100 * (after["rss"] - base["rss"]) / base["rss"], 2),
            "fds_delta": after["fds"] - base["fds"],
        },
    }


def check(result: dict[str, Any], rss_tolerance_pct: float = 5.0, fd_slack: int = 2) -> list[str]:
    """What the run got wrong (empty: zero failures, memory and fds back to their level)."""
    problems = []
    if result["failed"]:
        problems.append(f"{result['failed']} failed requests: {result['failures']}")
    if result["ok"] == 0:
        problems.append("no request succeeded")
    proxy = result["proxy"]
    if proxy["rss_growth_pct"] > rss_tolerance_pct:
        problems.append(f"proxy RSS grew {proxy['rss_growth_pct']}% (> {rss_tolerance_pct}%)")
    if proxy["fds_delta"] > fd_slack:
        problems.append(f"proxy holds {proxy['fds_delta']} more file descriptors than before")
    return problems


def _real_paths() -> tuple[Path, Path]:
    binary = os.environ.get("SWARM_TEST_LLAMA_SERVER")
    model = os.environ.get("SWARM_TEST_MODEL")
    if not binary or not model:
        import bin_fetch
        from swarm_supervisor.config import load_catalogue
        from swarm_supervisor.paths import dirs
        from swarm_supervisor.store.embedded import embedded_path

        found = bin_fetch.find_cached(dirs().bin)
        binary = binary or (str(found.path) if found else "")
        model = model or str(embedded_path(load_catalogue().find("smollm2", "135m"), "q4_1", dirs().models))
    if not binary or not Path(binary).is_file() or not Path(model).is_file():
        raise click.UsageError("--real needs llama-server and SmolLM2: run `make setup` or set SWARM_TEST_*")
    return Path(binary), Path(model)


@click.command("load")
@click.option("--clients", default=256, show_default=True, help="Concurrent streaming clients.")
@click.option("--duration", default=180.0, show_default=True, help="Seconds of load after the warm-up.")
@click.option("--max-requests", default=1_000_000, show_default=True, help="Stop after this many requests.")
@click.option("--upstreams", default=3, show_default=True, help="Fake upstreams (or real instances).")
@click.option(
    "--piece-delay", default=0.01, show_default=True, help="Fake upstreams: seconds between chunks."
)
@click.option("--real", is_flag=True, help="Real llama-server instances of SmolLM2 instead of fakes.")
@click.option("--max-tokens", default=16, show_default=True, help="--real: tokens per answer.")
@click.option("--warmup", default=10.0, show_default=True, help="Seconds of warm-up before the baseline.")
@click.option("--out", default="load", show_default=True, help="Result name: bench/results/<out>.json.")
def command(clients: int, duration: float, max_requests: int, upstreams: int, piece_delay: float, real: bool,
            max_tokens: int, warmup: float, out: str) -> None:  # fmt: skip
    """Many concurrent streaming clients against the proxy (loopback only, bounded in count and time)."""
    from bench.common import write_result

    body: dict[str, Any] = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    if real:
        binary, model = _real_paths()
        body["max_tokens"] = max_tokens
        ctx = real_swarm(binary, model, upstreams, max_tokens)
    else:
        ctx = fake_swarm(upstreams, piece_delay)
    with ctx as proxy:
        result = run_load(proxy, clients, duration, max_requests, body, warmup, settle_s=45.0)
    result["upstreams"] = {"kind": "llama-server SmolLM2-135M" if real else "fake", "count": upstreams}
    if not real:
        result["upstreams"]["piece_delay_s"] = piece_delay
    problems = check(result)
    result["problems"] = problems
    existing: dict[str, Any] = {}
    path = REPO / "bench" / "results" / f"{out}.json"
    if path.is_file():
        with contextlib.suppress(ValueError):
            existing = json.loads(path.read_text()).get("runs", {})
    existing["real" if real else "fake"] = result
    written = write_result(out, {"runs": existing})
    lat, px = result["latency_ms"], result["proxy"]
    click.echo(
        f"{result['ok']} ok, {result['failed']} failed in {result['duration_s']} s: "
        f"{result['requests_per_s']} req/s, p50 {lat['p50']} ms, p99 {lat['p99']} ms; "
        f"proxy RSS {px['baseline']['rss'] >> 20} -> {px['after']['rss'] >> 20} MiB, "
        f"fds {px['baseline']['fds']} -> {px['after']['fds']}  ({written})"
    )
    if problems:
        raise click.ClickException("; ".join(problems))


if __name__ == "__main__":
    command.main(sys.argv[1:])

"""``python -m bench load``: many concurrent streaming clients against the proxy, bounded in count
and time, loopback only; the proxy runs as its own process so that its memory (RSS) and open file
descriptors can be read with psutil before, during and after.

    python -m bench load                        256 clients, 180 s, over 3 fake upstreams
    python -m bench load --duration 20          the CI version
    python -m bench load --real --clients 8     over real llama-server instances (SmolLM2)

Writes ``bench/results/load.json`` (``--out`` changes the name). The helpers here also serve the
fuzz and soak runs: :func:`spawn_fakes`, :func:`spawn_proxy`, :func:`spawn_llama` start child
processes that print their URL and stop on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
INTERNAL_KEY = "bench-internal-key"


# --------------------------------------------------------------------------- child processes


@dataclass
class Child:
    """A child process that printed ``URL ...`` on its first line; stopped with SIGTERM, then SIGKILL."""

    proc: subprocess.Popen[bytes]
    urls: list[str]
    log: Path | None = None

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, grace_s: float = 10.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _spawn(argv: list[str], timeout_s: float = 30.0, log: Path | None = None) -> Child:
    err = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
    )
    if log:
        err.close()  # type: ignore[union-attr]
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            Child(proc, []).stop(1)
            raise RuntimeError(f"{argv[:4]} did not start (exit {proc.returncode}); log: {log}")
        if sel.select(left):
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                continue
            line += chunk
    sel.close()
    words = line.decode().split()
    assert words[0] == "URL", line
    return Child(proc, words[1:], log)


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.load", *args]


def spawn_fakes(count: int = 3, *, content: str = "def add(a, b):\n    return a + b\n", pieces: int = 8,
                piece_delay_s: float = 0.0, latency_s: float = 0.0) -> Child:  # fmt: skip
    """``count`` fake llama-servers (tests/fakes/upstream.py) in one child process."""
    return _spawn(
        _python("_fakes", str(count), json.dumps(content), str(pieces), str(piece_delay_s), str(latency_s))
    )


def spawn_proxy(urls: list[str], **settings: Any) -> Child:
    """The proxy (create_app + ProxyServer on uvloop) over ``urls``, in a child process.
    ``settings`` are ProxySettings fields; ``internal_key`` sets the pool's key for the instances,
    ``slots`` the requests each upstream takes at once (the proxy's admission gate lets that many
    votes run together: a fake answers any number, one real llama-server its ``--parallel``)."""
    return _spawn(_python("_proxy", json.dumps({"urls": urls, **settings})))


def spawn_llama(binary: Path, model: Path, *, slots: int = 1, context: int = 1024, n_predict: int = 16,
                threads: int = 1, log: Path | None = None, key: str = INTERNAL_KEY) -> Child:  # fmt: skip
    """One real llama-server on a free loopback port, with the internal key; URL once /health is 200."""
    return _spawn(
        _python(
            "_llama", str(binary), str(model), str(slots), str(context), str(n_predict), str(threads), key
        ),
        timeout_s=120,
        log=log,
    )


def _wait_for_signal() -> None:
    got = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: got.set())
    while not got.wait(0.5):
        pass


def _serve_fakes(count: int, content: str, pieces: int, delay: float, latency: float) -> None:
    sys.path.insert(0, str(REPO))
    from tests.fakes.upstream import Behaviour, fake_upstreams

    behaviours = [
        Behaviour(content, stream_pieces=pieces, piece_delay_s=delay, latency_s=latency) for _ in range(count)
    ]
    with fake_upstreams(*behaviours) as fakes:
        print("URL", *[f.url for f in fakes], flush=True)
        _wait_for_signal()


def _serve_proxy(spec: dict[str, Any]) -> None:
    import uvloop

    from swarm_supervisor.proxy.app import create_app
    from swarm_supervisor.proxy.server import ProxyServer
    from swarm_supervisor.proxy.settings import ProxySettings
    from swarm_supervisor.proxy.upstreams import UpstreamPool

    urls = spec.pop("urls")
    key = spec.pop("internal_key", None)
    host = spec.pop("host", "127.0.0.1")
    pool = UpstreamPool.from_urls(urls, model_id="bench", slots=int(spec.pop("slots", 1)))
    pool.api_key = key

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with ProxyServer(create_app(pool, ProxySettings(**spec)), host=host) as server:
            print("URL", server.url, flush=True)
            await stop.wait()

    uvloop.run(main())


def _serve_llama(
    binary: str, model: str, slots: int, context: int, n_predict: int, threads: int, key: str
) -> None:
    import httpx

    from swarm_supervisor.swarm.system import free_port

    port = free_port()
    argv = [binary, "-m", model, "--host", "127.0.0.1", "--port", str(port), "-c", str(context * slots)]
    argv += ["--parallel", str(slots), "--threads", str(threads), "-n", str(n_predict), "-ngl", "0"]
    argv += ["--api-key", key, "--metrics"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)  # stderr: our log
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 100
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"llama-server exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("llama-server did not become ready")
        time.sleep(0.2)
    print("URL", url, flush=True)
    try:
        _wait_for_signal()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


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


#: what a fake upstream declares it serves at once (it has no limit; above any --clients used)
FAKE_SLOTS = 4096


@contextlib.contextmanager
def fake_swarm(upstreams: int, piece_delay_s: float) -> Iterator[Child]:
    fakes = spawn_fakes(upstreams, pieces=8, piece_delay_s=piece_delay_s)
    try:
        # a fake serves any number of requests at once: declare it, or the gate queues every vote
        proxy = spawn_proxy(fakes.urls, stream_mode="consensus", request_timeout_s=120.0, slots=FAKE_SLOTS)
        try:
            yield proxy
        finally:
            proxy.stop()
    finally:
        fakes.stop()


@contextlib.contextmanager
def real_swarm(
    binary: Path, model: Path, instances: int, n_predict: int, context: int = 1024
) -> Iterator[Child]:
    """``instances`` real llama-servers (one slot, one thread each) and the proxy over them."""
    llamas: list[Child] = []
    try:
        for _ in range(instances):
            llamas.append(spawn_llama(binary, model, n_predict=n_predict, context=context))
        proxy = spawn_proxy([c.url for c in llamas], internal_key=INTERNAL_KEY, request_timeout_s=300.0)
        try:
            yield proxy
        finally:
            proxy.stop()
    finally:
        for c in llamas:
            c.stop()


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


def _child_main(argv: list[str]) -> None:
    role, *args = argv
    if role == "_fakes":
        _serve_fakes(int(args[0]), json.loads(args[1]), int(args[2]), float(args[3]), float(args[4]))
    elif role == "_proxy":
        _serve_proxy(json.loads(args[0]))
    elif role == "_llama":
        _serve_llama(args[0], args[1], int(args[2]), int(args[3]), int(args[4]), int(args[5]), args[6])
    else:
        command.main(argv)


if __name__ == "__main__":
    _child_main(sys.argv[1:])

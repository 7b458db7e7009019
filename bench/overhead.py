"""``python -m bench overhead``: what the proxy adds to a request, against the same upstream hit
directly, and the same through LiteLLM's proxy.

Every process runs on loopback in its own process: the fake upstream
(``testkit/llama/fast.py``: a constant-latency llama-server stand-in, one process with N slots),
the project's proxy (``create_app`` served by uvicorn with uvloop + httptools, as ``swarm up``
serves it), LiteLLM's proxy (``litellm --config``, simple-shuffle over N deployments of the
same upstream, in its own venv ``bench/.venv-litellm``): both in ``overhead_proxies.py``; and
the aiohttp load client (``bench/loadgen.py``). The aims and the plot: ``overhead_report.py``.

For each proxy (and each N) and each concurrency, the client first measures the upstream
directly, then through the proxy, for the same number of seconds: the added p50/p99 and the
requests/s ratio are against that adjacent baseline. With N voters the project's proxy sends N
requests upstream for every client request (the vote); LiteLLM sends one (it balances).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import click
import psutil

from bench.common import REPO, RESULTS, print_table, write_result
from bench.overhead_proxies import (
    litellm_bin,
    litellm_config,
    litellm_env,
    litellm_version,
    swarm_proxy_argv,
)
from bench.overhead_report import AIM_LITELLM_RATIO, AIM_P50_MS, AIM_RPS_16, plot, progress, summarise


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers 200 (or fail after ``timeout_s``)."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise click.ClickException(f"{proc.args!r} exited with {proc.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise click.ClickException(f"{url} did not answer within {timeout_s:.0f} s")


@contextmanager
def process(
    argv: list[str],
    health: str,
    timeout_s: float = 30.0,
    log: Path | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv`` (cwd = the repo), wait for ``health``, and stop it (SIGTERM, then SIGKILL)."""
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_http(health, timeout_s, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


def run_load(url: str, concurrency: int, seconds: float, warmup: float) -> dict[str, Any]:
    """The load client in its own process; latencies summarised."""
    argv = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--url",
        url,
        "--concurrency",
        str(concurrency),
        "--seconds",
        str(seconds),
        "--warmup",
        str(warmup),
    ]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=True)
    raw = json.loads(done.stdout)
    lat = sorted(raw["latencies_ms"])
    if not lat:
        raise click.ClickException(f"no request to {url} succeeded ({raw['errors']} errors)")
    return {
        "requests": raw["requests"],
        "sent": raw["sent"],
        "errors": raw["errors"],
        "rps": raw["requests"] / raw["seconds"],
        "p50_ms": statistics.median(lat),
        "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "mean_ms": statistics.fmean(lat),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its children (LiteLLM may fork workers)."""
    proc = psutil.Process(pid)
    total = sum(proc.cpu_times()[:2])
    for child in proc.children(recursive=True):
        with suppress(psutil.NoSuchProcess):
            total += sum(child.cpu_times()[:2])
    return float(total)


def measure_pair(
    direct_url: str, proxy_url: str, proxy_pid: int, concurrency: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """The upstream directly, then through the proxy, at the same concurrency and duration."""
    base = run_load(direct_url, concurrency, seconds, warmup)
    cpu0 = cpu_seconds(proxy_pid)
    via = run_load(proxy_url, concurrency, seconds, warmup)
    cpu = cpu_seconds(proxy_pid) - cpu0
    return {
        "concurrency": concurrency,
        "direct": base,
        "proxy": via,
        "added_p50_ms": via["p50_ms"] - base["p50_ms"],
        "added_p99_ms": via["p99_ms"] - base["p99_ms"],
        "p50_ratio": via["p50_ms"] / base["p50_ms"],
        "rps_ratio": via["rps"] / base["rps"],
        "proxy_cpu_ms_per_request": 1000.0 * cpu / max(1, via["sent"]),
    }


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


@click.command("overhead")
@click.option("--voters", "voters_s", default="1,2,4,8", show_default=True, help="N to measure.")
@click.option("--concurrency", "conc_s", default="1,16,64", show_default=True, help="Clients at once.")
@click.option("--seconds", default=3.0, show_default=True, help="Measured seconds per run.")
@click.option("--warmup", default=0.5, show_default=True, help="Unmeasured seconds before each run.")
@click.option("--delay-ms", default=0.0, show_default=True, help="The fake upstream's answer delay.")
@click.option(
    "--litellm",
    "litellm_mode",
    type=click.Choice(["auto", "skip", "require"]),
    default="auto",
    show_default=True,
    help="auto: install LiteLLM into bench/.venv-litellm if missing.",
)
@click.option(
    "--litellm-voters",
    "litellm_s",
    default="1,4",
    show_default=True,
    help="Deployments behind LiteLLM (it sends one request each time, whatever N).",
)
def command(
    voters_s: str,
    conc_s: str,
    seconds: float,
    warmup: float,
    delay_ms: float,
    litellm_mode: str,
    litellm_s: str,
) -> None:
    """Proxy overhead vs the upstream hit directly, at N voters and several concurrencies."""
    voters, concs = _ints(voters_s), _ints(conc_s)
    load_before = os.getloadavg()
    exe = litellm_bin(litellm_mode if litellm_mode != "require" else "")
    up_port = free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    direct = f"{upstream}/v1/chat/completions"
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        up_argv = [
            sys.executable,
            "-m",
            "testkit.llama.fast",
            "--port",
            str(up_port),
            "--delay-ms",
            str(delay_ms),
        ]
        with process(up_argv, f"{upstream}/health"):
            for n in voters:
                port = free_port()
                with process(swarm_proxy_argv(upstream, n, port), f"http://127.0.0.1:{port}/health") as p:
                    for c in concs:
                        r = measure_pair(
                            direct, f"http://127.0.0.1:{port}/v1/chat/completions", p.pid, c, seconds, warmup
                        )
                        runs.append({"target": "swarm", "voters": n, **r})
                        progress(runs[-1])
            for n in _ints(litellm_s) if exe else []:
                port = free_port()
                cfg = Path(tmp) / f"litellm-{n}.yaml"
                litellm_config(upstream, n, cfg)
                argv = [
                    str(exe),
                    "--config",
                    str(cfg),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--num_workers",
                    "1",
                ]
                log = Path(tmp) / f"litellm-{n}.log"
                health = f"http://127.0.0.1:{port}/health/liveliness"
                try:
                    with process(argv, health, timeout_s=120, log=log, env=litellm_env()) as p:
                        for c in concs:
                            r = measure_pair(
                                direct,
                                f"http://127.0.0.1:{port}/v1/chat/completions",
                                p.pid,
                                c,
                                seconds,
                                warmup,
                            )
                            runs.append({"target": "litellm", "voters": n, **r})
                            progress(runs[-1])
                except click.ClickException:
                    click.echo(log.read_text(errors="replace")[-3000:], err=True)
                    raise
    summary = summarise(runs)
    data = {
        "method": __doc__.split("\n\n", 1)[1].strip() if __doc__ else "",
        "settings": {
            "seconds": seconds,
            "warmup": warmup,
            "delay_ms": delay_ms,
            "voters": voters,
            "concurrency": concs,
            "upstream": "one fake upstream process with N slots",
        },
        "litellm_version": litellm_version() if exe else None,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "aims": {"added_p50_ms": AIM_P50_MS, "rps_at_16": AIM_RPS_16, "litellm_ratio": AIM_LITELLM_RATIO},
        "summary": summary,
        "runs": runs,
    }
    rows = [
        (
            r["target"],
            r["voters"],
            r["concurrency"],
            r["direct"]["p50_ms"],
            r["added_p50_ms"],
            r["added_p99_ms"],
            r["p50_ratio"],
            r["direct"]["rps"],
            r["proxy"]["rps"],
            r["rps_ratio"],
            r["proxy_cpu_ms_per_request"],
        )
        for r in runs
    ]
    print_table(
        "Proxy overhead (added = through the proxy minus straight to the upstream, same run)",
        [
            "proxy",
            "N",
            "clients",
            "direct p50 ms",
            "added p50 ms",
            "added p99 ms",
            "p50 ratio",
            "direct req/s",
            "proxy req/s",
            "req/s ratio",
            "proxy CPU ms/req",
        ],
        rows,
    )
    for line in summary["verdicts"]:
        click.echo(line)
    path = write_result("overhead", data)
    click.echo(f"wrote {path}")
    png = plot(runs, RESULTS / "overhead.png")
    click.echo(f"wrote {png}")

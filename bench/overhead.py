"""``python -m bench overhead``: what the proxy adds to a request, against the same upstream hit
directly, and the same through LiteLLM's proxy.

Every process runs on loopback in its own process: the fake upstream
(``testkit/llama/fast.py``: a constant-latency llama-server stand-in, one process with N slots),
the project's proxy (``create_app`` served by uvicorn with uvloop + httptools, as ``swarm up``
serves it), LiteLLM's proxy (``litellm --config``, simple-shuffle over N deployments of the
same upstream, in its own venv ``bench/.venv-litellm``), and the aiohttp load client (``bench/loadgen.py``).

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

LITELLM_VENV = Path(__file__).resolve().parent / ".venv-litellm"
#: the issue's aims: added p50 (ms) by N; req/s at 16 clients by N; LiteLLM's added p50 / ours
AIM_P50_MS = {1: 0.6, 4: 1.5}
AIM_RPS_16 = {1: 3000.0, 4: 1500.0}
AIM_LITELLM_RATIO = 20.0


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


# --------------------------------------------------------------------------- the proxies


def swarm_proxy_argv(upstream: str, voters: int, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.overhead",
        "--upstream",
        upstream,
        "--voters",
        str(voters),
        "--port",
        str(port),
    ]


def serve_swarm_proxy(upstream: str, voters: int, port: int) -> None:
    """The project's proxy over one upstream with ``voters`` slots, as ``swarm up`` builds it."""
    from swarm_supervisor.config import ProxyConfig
    from swarm_supervisor.proxy.app import create_app
    from swarm_supervisor.proxy.server import run
    from swarm_supervisor.proxy.settings import ProxySettings
    from swarm_supervisor.proxy.upstreams import Upstream, UpstreamPool

    pool = UpstreamPool(model_id="swarm", context=4096)
    pool.set_ready(Upstream("0", upstream, slots=voters), True)
    run(create_app(pool, ProxySettings.from_config(ProxyConfig(), voters=voters)), "127.0.0.1", port)


def litellm_bin(mode: str) -> Path | None:
    """LiteLLM's ``litellm`` command in its own venv; ``auto`` installs it there when missing."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if mode == "skip":
        return None
    if exe.is_file():
        return exe
    if mode != "auto":
        raise click.ClickException(f"{exe} is missing: run with --litellm auto to install it")
    click.echo(f"installing litellm[proxy] into {LITELLM_VENV} (once) ...", err=True)
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True)
    return exe


def litellm_version() -> str | None:
    py = LITELLM_VENV / "bin" / "python"
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    done = subprocess.run([str(py), "-c", code], capture_output=True, text=True)
    return done.stdout.strip() or None


def litellm_config(upstream: str, voters: int, path: Path) -> None:
    """N deployments of the same upstream under one model name, simple-shuffle routing."""
    lines = ["model_list:"]
    for i in range(voters):
        lines += [
            "  - model_name: swarm",
            "    litellm_params:",
            f"      model: openai/fake-{i}",
            f"      api_base: {upstream}/v1",
            "      api_key: none",
        ]
    lines += [
        "router_settings:",
        "  routing_strategy: simple-shuffle",
        "litellm_settings:",
        "  telemetry: false",
        "  drop_params: true",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def litellm_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY": "False",
            "LITELLM_LOG": "ERROR",
            "DISABLE_ADMIN_UI": "True",
            # loopback only, and the swarm's proxy is measured without a key too: no auth on either
            "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
        }
    )
    return env


# --------------------------------------------------------------------------- the command


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
                        _progress(runs[-1])
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
                            _progress(runs[-1])
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


def _progress(r: dict[str, Any]) -> None:
    click.echo(
        f"  {r['target']:8} N={r['voters']} c={r['concurrency']:<3} added p50 {r['added_p50_ms']:.3f} ms, "
        f"{r['proxy']['rps']:.0f} req/s ({r['rps_ratio']:.2f} of direct)",
        err=True,
    )


def _find(runs: list[dict[str, Any]], proxy: str, n: int, c: int) -> dict[str, Any] | None:
    return next((r for r in runs if (r["target"], r["voters"], r["concurrency"]) == (proxy, n, c)), None)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The aims, each checked against this run's figures."""
    verdicts: list[str] = []
    for n, aim in AIM_P50_MS.items():
        r = _find(runs, "swarm", n, 1)
        if r:
            ok = "met" if r["added_p50_ms"] <= aim else "MISSED"
            verdicts.append(f"N={n}, 1 client: added p50 {r['added_p50_ms']:.3f} ms (aim <= {aim}): {ok}")
    for n, aim_rps in AIM_RPS_16.items():
        r = _find(runs, "swarm", n, 16)
        if r:
            rps = r["proxy"]["rps"]
            ok = "met" if rps >= aim_rps else "MISSED"
            verdicts.append(
                f"N={n}, 16 clients: {rps:.0f} req/s, {r['rps_ratio']:.2f} of direct "
                f"{r['direct']['rps']:.0f} (aim >= {aim_rps:.0f}): {ok}"
            )
    ratios: dict[str, float] = {}
    for r in runs:
        if r["target"] != "litellm":
            continue
        ours = _find(runs, "swarm", r["voters"], r["concurrency"])
        if ours and ours["added_p50_ms"] > 0:
            key = f"N={r['voters']},c={r['concurrency']}"
            ratios[key] = r["added_p50_ms"] / ours["added_p50_ms"]
    for key, ratio in ratios.items():
        ok = "met" if ratio >= AIM_LITELLM_RATIO else "MISSED"
        verdicts.append(
            f"{key}: LiteLLM adds {ratio:.1f}x our added p50 (aim >= {AIM_LITELLM_RATIO:.0f}x): {ok}"
        )
    return {"verdicts": verdicts, "litellm_over_swarm_added_p50": ratios}


def plot(runs: list[dict[str, Any]], path: Path) -> Path:
    """Added p50 latency against N, one line per concurrency, for each proxy (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    concs = sorted({r["concurrency"] for r in runs})
    colors = dict(zip(concs, ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"], strict=False))
    for proxy, style, label in (("swarm", "-o", "Local Swarm"), ("litellm", "--s", "LiteLLM")):
        for c in concs:
            pts = sorted(
                (r["voters"], r["added_p50_ms"])
                for r in runs
                if r["target"] == proxy and r["concurrency"] == c
            )
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, [max(y, 0.01) for y in ys], style, color=colors[c], label=f"{label}, {c} clients")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sorted({r["voters"] for r in runs}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("voters N (requests the proxy sends upstream per client request; LiteLLM: deployments)")
    ax.set_ylabel("added p50 latency, ms (log)")
    ax.set_title("Proxy overhead vs a constant-latency upstream (same-run baseline)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m bench.overhead", description="serve the proxy under test"
    )
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--voters", type=int, default=1)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve_swarm_proxy(args.upstream, args.voters, args.port)

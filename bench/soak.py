"""``python -m bench soak``: a long run of mixed requests (plain, streamed, tool-calling) through a
real swarm while its instances are killed at random; nothing that a ready instance could have
answered may be lost, every killed instance must come back, and the proxy must not grow.

    python -m bench soak                            10,000 requests over 2 real SmolLM2 processes
    python -m bench soak --fake                     the same over testkit/llama/server.py
    python -m bench soak --requests 300 --kills 2   the CI size (tests/test_bench_soak.py, with --fake)

The clients are in ``soak_clients.py``, the monitor and killer in ``soak_killer.py``, what the
numbers mean in ``soak_report.py``; this module runs them and is the command.

Method. ``swarm up --model <SmolLM2 gguf> --instances N --topology processes --llama-server B``
in an isolated ``SWARM_HOME`` (the real CLI and the real supervisor, which restarts what dies),
with a config that checks health every 0.5 s, restarts after 0.2-1 s and does not give up on an
instance that is killed often (``max_crashes`` high: the soak kills on purpose). After a warm-up
the supervisor process (it runs the proxy too) has its RSS read with psutil. Then a bounded
client loop (``--requests`` in all, ``--concurrency`` at once, a time cap; loopback only) sends
plain, streamed and tool-calling chat requests in turn (a ``tools`` array and ``tool_choice``;
the tiny model need not call the tool: only the status and the shape are checked), while a
killer sends SIGKILL to one instance's llama-server (a pid of the swarm's own run file, checked
by its create_time) once every instance is ready, at random intervals (``--kill-every`` seconds
on average, or ``--kills K`` spread at random over the request count). A monitor reads the run
file every 50 ms for the instances' states.

A failed request is *lost* when some instance was ready (by the run file, with the same pid) for
the whole time the request took and was not killed before it ended: that instance could have
answered it. Failures with no such instance (the only ready one was killed under it) are counted
apart. Afterwards every instance must be ready again in ``swarm ps --json`` with at least as
many restarts as it was killed, and the supervisor's RSS (after the run and a short idle) must
be within 5 % of its RSS after the warm-up. ``swarm down`` runs in any case.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from bench.common import REPO, print_table, write_result
from bench.soak_clients import Outcome, client_loop
from bench.soak_killer import Kill, Timeline, kill_points, killer, monitor, wait_all_ready
from bench.soak_report import classify, latency_ms, problems
from bench.swarm_home import ContentionWatch, SwarmHome, wait_for_quiet
from testkit.llama import FAKE_LLAMA_SERVER

FAKE = FAKE_LLAMA_SERVER


#: the soak's own supervisor settings: fast health checks and restarts; killing is on purpose,
#: so the crash-loop detector must not give up on an instance
SUPERVISOR = {
    "health_interval_s": 0.5,
    "restart_backoff_s": 0.2,
    "restart_backoff_max_s": 1.0,
    "max_crashes": 100_000,
    "crash_window_s": 300.0,
    "stop_grace_s": 5.0,
    "min_free_memory_bytes": 0,
}


def rss(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


def num_fds(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).num_fds())


def run_soak(
    *,
    root: Path,
    model: Path,
    binary: Path,
    fake: bool,
    requests: int,
    concurrency: int,
    instances: int = 2,
    max_tokens: int = 8,
    kill_every_s: float | None = None,
    kills: int | None = None,
    warmup: int = 0,
    time_cap_s: float = 3600.0,
    rate: float | None = None,
    timeout_s: float = 120.0,
    context: int = 1024,
    seed: int = 1,
    echo: Any = None,
) -> dict[str, Any]:
    """The soak (see the module's doc); returns the result with its ``problems`` (empty: passed).
    ``swarm down`` runs whatever happens."""
    say = echo or (lambda _msg: None)
    rng = random.Random(seed)
    home = SwarmHome(root, supervisor=SUPERVISOR, proxy={"request_timeout_s": timeout_s, "port": 0})
    up_args = ["--model", str(model), "--instances", str(instances), "--topology", "processes"]
    up_args += ["--context", str(context), "--llama-server", str(binary), "--port", "0"]
    timeline = Timeline()
    kill_log: list[Kill] = []
    outcomes: list[Outcome] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    result: dict[str, Any] = {}
    try:
        up_s = home.up(*up_args)
        status0 = home.ps()
        url = status0["base_url"]
        sup_pid = int(status0["supervisor_pid"])
        say(f"swarm up in {up_s:.1f} s: {url}, supervisor pid {sup_pid}")
        warm: list[Outcome] = []
        if warmup:
            asyncio.run(client_loop(url, warmup, concurrency, max_tokens, time_cap_s, timeout_s, warm))
        time.sleep(2.0)  # idle: connections settle before the baseline
        rss0, fds0 = rss(sup_pid), num_fds(sup_pid)
        say(f"warm-up: {sum(o.ok for o in warm)}/{len(warm)} ok; supervisor RSS {rss0 / 2**20:.1f} MiB")

        threads.append(threading.Thread(target=monitor, args=(home, timeline, stop), daemon=True))
        at_counts = kill_points(requests, kills, rng) if kills else []
        threads.append(
            threading.Thread(
                target=killer,
                args=(home, kill_log, stop, rng),
                kwargs={
                    "every_s": None if kills else kill_every_s,
                    "at_counts": at_counts,
                    "done_count": lambda: len(outcomes),
                },
                daemon=True,
            )
        )
        peak = {"rss": rss0}

        def sample() -> None:
            while not stop.wait(1.0):
                with contextlib.suppress(Exception):
                    peak["rss"] = max(peak["rss"], rss(sup_pid))

        threads.append(threading.Thread(target=sample, daemon=True))
        for t in threads:
            t.start()
        elapsed = asyncio.run(
            client_loop(url, requests, concurrency, max_tokens, time_cap_s, timeout_s, outcomes, warmup, rate)
        )
        stop.set()
        for t in threads:
            t.join(10)
        back = wait_all_ready(home, 120.0)
        time.sleep(2.0)
        rss1, fds1 = rss(sup_pid), num_fds(sup_pid)
        status1 = home.ps()

        classes = classify(outcomes, timeline, kill_log)
        kills_by: dict[str, int] = {}
        for k in kill_log:
            kills_by[k.instance] = kills_by.get(k.instance, 0) + 1
        insts = [
            {
                "id": i["id"],
                "state": i["state"],
                "alive": i["alive"],
                "restarts": i["restarts"],
                "killed": kills_by.get(str(i["id"]), 0),
                "pid": i["pid"],
                # the proxy's count of this instance's voter calls, and of those that failed
                # (a kill that hit calls in flight shows here, not as a failed request)
                "voter_calls": i.get("requests"),
                "voter_errors": i.get("errors"),
            }
            for i in status1["instances"]
        ]
        ok = sum(o.ok for o in outcomes)
        growth = 100.0 * (rss1 - rss0) / rss0
        result = {
            "upstreams": "fake (testkit/llama/server.py)" if fake else "llama-server, SmolLM2-135M",
            "settings": {
                "requests": requests,
                "concurrency": concurrency,
                "instances": instances,
                "topology": "processes",
                "max_tokens": max_tokens,
                "context": context,
                "kill_every_s": None if kills else kill_every_s,
                "kills_asked": kills,
                "warmup_requests": warmup,
                "time_cap_s": time_cap_s,
                "rate_per_s": rate,
                "request_timeout_s": timeout_s,
                "seed": seed,
                "supervisor_config": SUPERVISOR,
                "swarm_up_args": " ".join(["swarm", "up", *up_args]),
            },
            "swarm_up_s": round(up_s, 2),
            "duration_s": round(elapsed, 1),
            "requests_sent": len(outcomes),
            "ok": ok,
            "failed": len(outcomes) - ok,
            "by_kind": {
                k: sum(1 for o in outcomes if o.kind == k) for k in sorted({o.kind for o in outcomes})
            },
            "failures": classes["failures"],
            "failed_no_ready_instance": len(classes["unavoidable"]),
            "failed_no_ready_instance_detail": classes["unavoidable"][:50],
            "lost": len(classes["lost"]),
            "lost_detail": classes["lost"][:50],
            "requests_per_s": round(ok / elapsed, 2) if elapsed else None,
            "latency_ms": latency_ms(outcomes),
            "kills": len(kill_log),
            "kills_by_instance": kills_by,
            "kill_log": [{"at": round(k.wall, 3), "instance": k.instance, "pid": k.pid} for k in kill_log],
            "restarts": sum(i["restarts"] for i in insts),
            "voter_errors": sum(i["voter_errors"] or 0 for i in insts),
            "instances_after": insts,
            "all_back": back and all(i["state"] == "ready" and i["alive"] for i in insts),
            "monitor_samples": timeline.samples,
            "warmup": {"requests": len(warm), "ok": sum(o.ok for o in warm)},
            "supervisor_process": {
                "pid": sup_pid,
                "rss_start": rss0,
                "rss_peak": peak["rss"],
                "rss_end": rss1,
                "rss_growth_pct": round(growth, 2),
                "fds_start": fds0,
                "fds_end": fds1,
            },
        }
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        down = home.down() if home.run_path.is_file() else None
        home.ensure_down()
        if down is not None:
            result["down_rc"] = down.returncode
    result["problems"] = problems(result)
    return result


@click.command("soak")
@click.option("--requests", default=10_000, show_default=True, help="Requests in all (after the warm-up).")
@click.option("--concurrency", default=4, show_default=True, help="Requests in flight at once.")
@click.option("--instances", default=2, show_default=True, help="Instances (one process each).")
@click.option(
    "--kill-every", default=None, type=float, help="Mean seconds between kills [real: 10, fake: 2]."
)
@click.option(
    "--kills", default=None, type=int, help="Exactly this many kills, spread over the request count."
)
@click.option("--max-tokens", default=8, show_default=True, help="Tokens per answer.")
@click.option(
    "--warmup", default=None, type=int, help="Warm-up requests before the RSS baseline [real 60, fake 300]."
)
@click.option(
    "--time-cap", default=3600.0, show_default=True, help="Seconds the client loop may take at most."
)
@click.option(
    "--rate", default=None, type=float, help="At most this many requests a second (default: no cap)."
)
@click.option("--fake", is_flag=True, help="testkit/llama/server.py instead of llama-server.")
@click.option("--llama-server", "binary_s", help="llama-server (default: the cached one).")
@click.option("--model", "model_s", help="GGUF (default: the embedded SmolLM2).")
@click.option("--seed", default=1, show_default=True, help="Seed of the killer's choices.")
@click.option("--no-wait", is_flag=True, help="Do not wait for a running test suite to finish.")
@click.option("--out", default="soak", show_default=True, help="Result name: bench/results/<out>.json.")
def command(
    requests: int,
    concurrency: int,
    instances: int,
    kill_every: float | None,
    kills: int | None,
    max_tokens: int,
    warmup: int | None,
    time_cap: float,
    rate: float | None,
    fake: bool,
    binary_s: str | None,
    model_s: str | None,
    seed: int,
    no_wait: bool,
    out: str,
) -> None:
    """Mixed requests through `swarm up` while instances are SIGKILLed: nothing lost, all back, no growth."""
    from bench.topology import find_binary, find_model

    model = find_model(model_s)
    binary = FAKE if fake else find_binary(binary_s)
    contention = {"waited_s": 0.0, "note": "--no-wait"} if no_wait else wait_for_quiet(echo=click.echo)
    if kill_every is None:
        kill_every = 2.0 if fake else 10.0
    if warmup is None:
        warmup = 300 if fake else 60
    root = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    with ContentionWatch() as watch:
        result = run_soak(
            root=root / "home",
            model=model,
            binary=binary,
            fake=fake,
            requests=requests,
            concurrency=concurrency,
            instances=instances,
            max_tokens=max_tokens,
            kill_every_s=kill_every,
            kills=kills,
            warmup=warmup,
            time_cap_s=time_cap,
            rate=rate,
            timeout_s=30.0 if fake else 120.0,
            seed=seed,
            echo=click.echo,
        )
    result["contention"] = {**contention, **watch.summary(), "load_average_after": os.getloadavg()}
    if result["problems"]:
        click.echo(f"kept the swarm's home with its logs: {root}", err=True)
    else:
        shutil.rmtree(root, ignore_errors=True)
    px = result["supervisor_process"]
    print_table(
        f"Soak: {result['upstreams']}, {result['settings']['instances']} processes, {os.cpu_count()} cores",
        [
            "requests",
            "ok",
            "failed",
            "no ready instance",
            "lost",
            "kills",
            "restarts",
            "all back",
            "req/s",
            "p50 ms",
            "p99 ms",
            "RSS start MiB",
            "RSS end MiB",
            "RSS growth %",
        ],
        [
            (
                result["requests_sent"],
                result["ok"],
                result["failed"],
                result["failed_no_ready_instance"],
                result["lost"],
                result["kills"],
                result["restarts"],
                "yes" if result["all_back"] else "NO",
                result["requests_per_s"] or 0.0,
                result["latency_ms"].get("all", {}).get("p50", 0.0),
                result["latency_ms"].get("all", {}).get("p99", 0.0),
                px["rss_start"] / 2**20,
                px["rss_end"] / 2**20,
                px["rss_growth_pct"],
            )
        ],
        console=Console(width=180),
    )
    if result["failures"]:
        click.echo(f"failures: {result['failures']}")
    path = REPO / "bench" / "results" / f"{out}.json"
    runs: dict[str, Any] = {}
    if path.is_file():
        with contextlib.suppress(ValueError):
            runs = json.loads(path.read_text()).get("runs", {})
    runs["fake" if fake else "real"] = result
    method = (__doc__ or "").split("\n\n", 2)[-1].strip()
    click.echo(f"wrote {write_result(out, {'method': method, 'runs': runs})}")
    if result["problems"]:
        raise click.ClickException("; ".join(result["problems"]))

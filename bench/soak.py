"""``python -m bench soak``: a long run of mixed requests (plain, streamed, tool-calling) through a
real swarm while its instances are killed at random; nothing that a ready instance could have
answered may be lost, every killed instance must come back, and the proxy must not grow.

    python -m bench soak                            10,000 requests over 2 real SmolLM2 processes
    python -m bench soak --fake                     the same over testkit/llama/server.py
    python -m bench soak --requests 300 --kills 2   the CI size (tests/test_soak.py, with --fake)

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
import signal
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from rich.console import Console

from bench.common import REPO, print_table, write_result
from bench.swarm_home import ContentionWatch, SwarmHome, same_process, wait_for_quiet
from testkit.llama import FAKE_LLAMA_SERVER

FAKE = FAKE_LLAMA_SERVER
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
RSS_LIMIT_PCT = 5.0

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

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "The city's name."}},
                "required": ["city"],
            },
        },
    }
]
KINDS = ("plain", "stream", "tools")


def body_for(i: int, max_tokens: int) -> tuple[str, dict[str, Any]]:
    """Request ``i`` of the mix: plain, streamed, tool-calling (streamed and plain in turn)."""
    kind = KINDS[i % len(KINDS)]
    body: dict[str, Any] = {"model": "swarm", "max_tokens": max_tokens, "temperature": 0.7}
    if kind == "tools":
        body["messages"] = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
        body["tools"] = TOOLS
        body["tool_choice"] = "auto"
        stream = (i // len(KINDS)) % 2 == 0
    else:
        body["messages"] = [{"role": "user", "content": "Write add(a, b) in Python."}]
        stream = kind == "stream"
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return kind + (" (stream)" if kind == "tools" and stream else ""), body


# --------------------------------------------------------------------------- what the clients saw


@dataclass
class Outcome:
    kind: str
    t0: float
    t1: float
    ok: bool
    why: str | None = None
    detail: str | None = None  # the error's message, for a failure
    wall: float = 0.0  # time.time() at the start, to line it up with the logs


class BadShape(Exception):
    pass


def _check_message(data: Any) -> None:
    if not isinstance(data, dict) or not data.get("choices"):
        raise BadShape("no choices")
    choice = data["choices"][0]
    msg = choice.get("message")
    if not isinstance(msg, dict) or msg.get("role") != "assistant":
        raise BadShape("no assistant message")
    if choice.get("finish_reason") not in ("stop", "length", "tool_calls"):
        raise BadShape(f"finish_reason {choice.get('finish_reason')!r}")
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") or {}
        if not isinstance(fn.get("name"), str) or not isinstance(fn.get("arguments"), str):
            raise BadShape("a tool call without a name or arguments")
    if not isinstance(data.get("usage"), dict):
        raise BadShape("no usage")


async def _check_stream(resp: Any) -> None:
    if not resp.headers.get("Content-Type", "").startswith("text/event-stream"):
        raise BadShape(f"content-type {resp.headers.get('Content-Type')!r}")
    done = usage = finished = False
    chunks = 0
    async for raw in resp.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            done = True
            break
        try:
            chunk = json.loads(payload)
        except ValueError:
            raise BadShape("an event is not JSON") from None
        if "error" in chunk:
            code = (chunk["error"] or {}).get("code") if isinstance(chunk["error"], dict) else None
            raise BadShape(f"error event {code}")
        chunks += 1
        usage = usage or isinstance(chunk.get("usage"), dict)
        for choice in chunk.get("choices") or []:
            finished = finished or choice.get("finish_reason") in ("stop", "length", "tool_calls")
            for call in (choice.get("delta") or {}).get("tool_calls") or []:
                if not isinstance(call.get("index"), int):
                    raise BadShape("a tool-call delta without an index")
    if not done:
        raise BadShape("no [DONE]")
    if not chunks or not finished:
        raise BadShape("no finish_reason")
    if not usage:
        raise BadShape("no usage chunk")


async def one_request(session: Any, url: str, kind: str, body: dict[str, Any]) -> Outcome:
    import aiohttp

    t0, wall = time.monotonic(), time.time()
    why: str | None = None
    detail: str | None = None
    try:
        async with session.post(f"{url}/chat/completions", json=body) as resp:
            if resp.status != 200:
                text = await resp.read()
                code = None
                with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
                    err = json.loads(text)["error"]
                    code, detail = err.get("code"), str(err.get("message"))[:400]
                why = f"HTTP {resp.status} {code or ''}".strip()
            elif body.get("stream"):
                await _check_stream(resp)
            else:
                _check_message(await resp.json())
    except BadShape as exc:
        why = f"shape: {exc}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        why = type(exc).__name__
    return Outcome(kind, t0, time.monotonic(), why is None, why, detail, wall)


async def client_loop(
    url: str,
    count: int,
    concurrency: int,
    max_tokens: int,
    cap_s: float,
    timeout_s: float,
    outcomes: list[Outcome],
    start_index: int = 0,
    rate: float | None = None,
) -> float:
    """``count`` requests, ``concurrency`` at a time (and at most ``rate`` a second when given),
    until done or ``cap_s`` passed; seconds taken."""
    import aiohttp

    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        raise click.UsageError(f"the soak only talks to loopback addresses, not {host}")
    begin = time.monotonic()
    end = begin + cap_s
    next_i = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
    ) as s:

        async def worker() -> None:
            nonlocal next_i
            while next_i < count and time.monotonic() < end:
                i = next_i
                next_i += 1
                if rate:
                    await asyncio.sleep(max(0.0, begin + i / rate - time.monotonic()))
                kind, body = body_for(start_index + i, max_tokens)
                outcomes.append(await one_request(s, url, kind, body))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - t0


# --------------------------------------------------------------------------- monitor and killer


@dataclass
class Timeline:
    """The instances' (state, pid) by id as the run file said, from each change on."""

    changes: list[tuple[float, dict[str, tuple[str, int | None]]]] = field(default_factory=list)
    samples: int = 0

    def add(self, t: float, states: dict[str, tuple[str, int | None]]) -> None:
        self.samples += 1
        if not self.changes or self.changes[-1][1] != states:
            self.changes.append((t, states))

    def latest(self) -> dict[str, tuple[str, int | None]]:
        return self.changes[-1][1] if self.changes else {}

    def steady_ready(self, t0: float, t1: float) -> dict[str, int]:
        """Instances ready with the same pid over all of [t0, t1]: id -> pid."""
        before = [c for c in self.changes if c[0] <= t0]
        start = before[-1][1] if before else {}
        ok = {i: pid for i, (st, pid) in start.items() if st == "ready" and pid is not None}
        for t, states in self.changes:
            if t0 < t <= t1:
                ok = {i: pid for i, pid in ok.items() if states.get(i) == ("ready", pid)}
        return ok


@dataclass
class Kill:
    t: float
    instance: str
    pid: int
    wall: float = 0.0


def _states(rec: dict[str, Any]) -> dict[str, tuple[str, int | None]]:
    return {str(i.get("id")): (str(i.get("state")), i.get("pid")) for i in rec.get("instances") or []}


def monitor(home: SwarmHome, timeline: Timeline, stop: threading.Event, every_s: float = 0.05) -> None:
    while not stop.is_set():
        rec = home.record()
        if rec:
            timeline.add(time.monotonic(), _states(rec))
        stop.wait(every_s)


def all_ready(rec: dict[str, Any]) -> bool:
    insts = rec.get("instances") or []
    return bool(insts) and all(
        i.get("state") == "ready" and same_process(i.get("pid"), i.get("create_time")) for i in insts
    )


def kill_points(requests: int, kills: int, rng: random.Random) -> list[int]:
    """``kills`` request counts at random, one in each of ``kills`` equal parts of the middle 80 %
    of the run (so that each kill has time to be repaired before the next)."""
    lo, hi = requests // 10, max(requests // 10 + kills, requests * 9 // 10)
    width = (hi - lo) / kills
    return [int(lo + k * width + rng.uniform(0, width)) for k in range(kills)]


def killer(
    home: SwarmHome,
    kills: list[Kill],
    stop: threading.Event,
    rng: random.Random,
    *,
    every_s: float | None,
    at_counts: list[int],
    done_count: Any,
) -> None:
    """SIGKILL one ready instance (a pid of the run file, checked by create_time) at random
    intervals (``every_s`` on average) or when ``done_count()`` reaches each of ``at_counts``;
    only while every instance is ready, so each kill leaves the others to answer."""
    pending = sorted(at_counts)
    while not stop.is_set():
        if every_s is not None:
            if stop.wait(rng.uniform(0.5, 1.5) * every_s):
                return
        else:
            if not pending:
                return
            while done_count() < pending[0]:
                if stop.wait(0.02):
                    return
            pending.pop(0)
        while True:  # every instance ready, then one of them at random
            rec = home.record()
            if all_ready(rec):
                break
            if stop.wait(0.05):
                return
        victim = rng.choice(rec["instances"])
        pid, ctime = victim["pid"], victim.get("create_time")
        if not same_process(pid, ctime):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            kills.append(Kill(time.monotonic(), str(victim["id"]), pid, time.time()))


# --------------------------------------------------------------------------- the run


def rss(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


def num_fds(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).num_fds())


def wait_all_ready(home: SwarmHome, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all_ready(home.record()):
            return True
        time.sleep(0.1)
    return all_ready(home.record())


def classify(outcomes: list[Outcome], timeline: Timeline, kills: list[Kill]) -> dict[str, Any]:
    """Failures, and which of them were lost (some instance could have answered); each failure
    with the instances ready when it started and the kills during it."""
    killed: dict[int, float] = {k.pid: k.t for k in kills}
    failures: dict[str, int] = {}
    lost: list[dict[str, Any]] = []
    unavoidable: list[dict[str, Any]] = []
    for o in outcomes:
        if o.ok:
            continue
        failures[o.why or "?"] = failures.get(o.why or "?", 0) + 1
        steady = timeline.steady_ready(o.t0, o.t1)
        could = [i for i, pid in steady.items() if pid not in killed or killed[pid] > o.t1]
        at_start = sorted(timeline.steady_ready(o.t0, o.t0))
        during = [f"{k.instance} at +{k.t - o.t0:.3f} s" for k in kills if o.t0 - 2.0 <= k.t <= o.t1]
        entry = {
            "kind": o.kind,
            "why": o.why,
            "detail": o.detail,
            "at": round(o.wall, 3),
            "took_s": round(o.t1 - o.t0, 3),
            "ready_at_start": at_start,
            "kills_near": during,
        }
        if could:
            lost.append({**entry, "ready_throughout": could})
        else:
            unavoidable.append(entry)
    return {"failures": failures, "lost": lost, "unavoidable": unavoidable}


def latency_ms(outcomes: list[Outcome]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kinds = sorted({o.kind for o in outcomes})
    for kind in [*kinds, "all"]:
        lat = sorted(o.t1 - o.t0 for o in outcomes if o.ok and (kind == "all" or o.kind == kind))
        if lat:
            out[kind] = {
                "n": len(lat),
                "p50": round(1e3 * statistics.median(lat), 1),
                "p99": round(1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
                "max": round(1e3 * lat[-1], 1),
            }
    return out


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


def problems(r: dict[str, Any]) -> list[str]:
    out = []
    if r["lost"]:
        out.append(f"{r['lost']} requests lost that a ready instance could have answered: {r['failures']}")
    if not r["ok"]:
        out.append("no request succeeded")
    if r["requests_sent"] < r["settings"]["requests"]:
        out.append(
            f"the time cap stopped the run after {r['requests_sent']} of {r['settings']['requests']} requests"
        )
    if not r["all_back"]:
        out.append(f"not every instance is back to ready: {r['instances_after']}")
    short = [i["id"] for i in r["instances_after"] if i["restarts"] < i["killed"]]
    if short:
        out.append(f"instances {short} show fewer restarts than kills")
    if r["settings"]["kills_asked"] and r["kills"] < r["settings"]["kills_asked"]:
        out.append(f"{r['kills']} kills of {r['settings']['kills_asked']} asked")
    growth = r["supervisor_process"]["rss_growth_pct"]
    if growth > RSS_LIMIT_PCT:
        out.append(f"the proxy/supervisor RSS grew {growth}% (> {RSS_LIMIT_PCT}%)")
    if r.get("down_rc"):
        out.append(f"swarm down exited {r['down_rc']}")
    return out


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

"""``python -m bench topology``: on this machine, N llama-server processes with the cores split
between them, against one llama-server with ``--parallel N``, for N voters generating at once.

Both topologies use the argv the project builds (``swarm_supervisor.swarm.argv.llama_server_argv``
from the plan's ``instance_configs``) with the embedded SmolLM2 model. Both sets of processes are
started first; then rounds alternate between them (so both see the same drift of a shared
machine): N concurrent chat requests of ``--max-tokens`` tokens with ``ignore_eos``, total
generated tokens / wall time. The figure reported is the ratio processes / slots. The plan's own
choice (``make_plan`` with ``--instances N`` on this machine's ``detect()``) must be the faster.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from bench.common import print_table, stop_group, write_result

PROMPT = "Write a Python function that parses a CSV line with quoted fields, with a docstring and tests."


# --------------------------------------------------------------------------- binary, model, servers


def find_binary(given: str | None) -> Path:
    """``--llama-server``, ``$SWARM_TEST_LLAMA_SERVER``, else the one ``make setup`` cached."""
    raw = given or os.environ.get("SWARM_TEST_LLAMA_SERVER")
    if raw:
        return Path(raw)
    import bin_fetch
    from swarm_supervisor.paths import dirs

    found = bin_fetch.find_cached(dirs().bin)
    if found is None:
        raise click.ClickException("no llama-server in the cache: run `make setup` or pass --llama-server")
    return found.path


def find_model(given: str | None) -> Path:
    """``--model``, ``$SWARM_TEST_MODEL``, else the embedded SmolLM2 that ``make setup`` installed."""
    raw = given or os.environ.get("SWARM_TEST_MODEL")
    if raw:
        return Path(raw)
    from swarm_supervisor.config import load_catalogue
    from swarm_supervisor.paths import dirs
    from swarm_supervisor.store.embedded import embedded_path

    path = embedded_path(load_catalogue().find("smollm2", "135m"), "q4_1", dirs().models)
    if path is None or not Path(path).is_file():
        raise click.ClickException("SmolLM2 is not installed: run `make setup` or pass --model")
    return Path(path)


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    argv: list[str]


def wait_health(
    url: str, proc: subprocess.Popen[bytes] | None, timeout_s: float = 120.0, poll_s: float = 0.02
) -> float:
    """Poll ``url``/health until 200; return the monotonic time it first answered 200."""
    import httpx

    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise click.ClickException(f"{proc.args!r} exited with {proc.returncode}")
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return time.monotonic()
            except httpx.HTTPError:
                pass
            time.sleep(poll_s)
    raise click.ClickException(f"{url} was not ready within {timeout_s:.0f} s")


def spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@contextmanager
def servers(argvs: list[list[str]], logdir: Path) -> Iterator[list[Server]]:
    """Start every argv (each has its own ``--port``), wait until all are ready, stop them after."""
    procs: list[Server] = []
    try:
        for i, argv in enumerate(argvs):
            port = argv[argv.index("--port") + 1]
            procs.append(
                Server(spawn(argv, logdir / f"llama-{port}-{i}.log"), f"http://127.0.0.1:{port}", argv)
            )
        for s in procs:
            wait_health(s.url, s.proc)
        yield procs
    finally:
        for s in procs:
            stop_group(s.proc)


# --------------------------------------------------------------------------- the plan's argv


def plan_for(n: int, topology: str | None, model: Path, context: int) -> Any:
    """``make_plan`` with ``--instances n`` (and ``--topology``) on this machine, default config."""
    from swarm_supervisor.config import Config, load_catalogue
    from swarm_supervisor.hardware import detect
    from swarm_supervisor.plan import PlanOverrides, make_plan
    from swarm_supervisor.store.gguf_check import check_gguf

    overrides = PlanOverrides(
        model=str(model),
        instances=n,
        context=context,
        topology=topology,  # type: ignore[arg-type]
        facts=check_gguf(model).facts,
    )
    return make_plan(detect(), load_catalogue(), Config(), overrides)


def argvs_for(plan: Any, binary: Path, model: Path, logdir: Path) -> list[list[str]]:
    from swarm_supervisor.swarm.argv import llama_server_argv
    from swarm_supervisor.swarm.spec import instance_configs
    from swarm_supervisor.swarm.system import free_port

    cfgs = instance_configs(plan, binary=binary, model_path=model, log_dir=logdir, api_key_file=None)
    return [llama_server_argv(cfg, free_port()) for cfg in cfgs]


def processes_plan(n: int, model: Path, context: int) -> tuple[Any, str | None]:
    """N processes of one slot with the cores split; where the plan refuses (more processes than
    cores), the same argv with one thread each, as a user starting them by hand would get."""
    from swarm_supervisor.errors import SwarmError
    from swarm_supervisor.hardware import detect
    from swarm_supervisor.plan import Placement

    try:
        return plan_for(n, "processes", model, context), None
    except SwarmError as exc:
        base = plan_for(n, "slots", model, context)
        cores = detect().physical_cores
        placements = tuple(Placement(instance=i, gpu=None) for i in range(n))
        plan = replace(
            base,
            topology="processes",
            processes=n,
            slots=1,
            threads=max(1, cores // n),
            placements=placements,
        )
        return plan, str(exc)


# --------------------------------------------------------------------------- the load


async def generate(urls: list[str], max_tokens: int, seed: int) -> tuple[int, float]:
    """One request per URL (a URL twice: two requests to it), all at once; (tokens, seconds)."""
    import httpx

    async with httpx.AsyncClient(timeout=600) as client:

        async def one(url: str, k: int) -> int:
            body = {
                "messages": [{"role": "user", "content": PROMPT}],
                "max_tokens": max_tokens,
                "ignore_eos": True,
                "temperature": 0.8,
                "seed": seed + k,
                "cache_prompt": False,
            }
            r = await client.post(f"{url}/v1/chat/completions", json=body)
            r.raise_for_status()
            return int(r.json()["usage"]["completion_tokens"])

        start = time.perf_counter()
        tokens = await asyncio.gather(*(one(u, k) for k, u in enumerate(urls)))
        return sum(tokens), time.perf_counter() - start


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


@click.command("topology")
@click.option("--voters", "voters_s", default="2,4", show_default=True, help="N to measure.")
@click.option("--max-tokens", default=128, show_default=True, help="Tokens each request generates.")
@click.option("--rounds", default=3, show_default=True, help="Alternating rounds per topology (median).")
@click.option("--context", default=2048, show_default=True, help="Tokens per slot.")
@click.option("--llama-server", "binary_s", help="llama-server (default: the cached one, see docs/pull.md).")
@click.option("--model", "model_s", help="GGUF (default: the embedded SmolLM2 from `make setup`).")
def command(
    voters_s: str, max_tokens: int, rounds: int, context: int, binary_s: str | None, model_s: str | None
) -> None:
    """N processes (cores split) vs one process with --parallel N: total tokens/s, and the plan's pick."""
    import tempfile

    binary, model = find_binary(binary_s), find_model(model_s)
    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        logdir = Path(tmp)
        for n in _ints(voters_s):
            chosen = plan_for(n, None, model, context)
            slots = plan_for(n, "slots", model, context)
            procs, refused = processes_plan(n, model, context)
            shapes = {"slots": slots, "processes": procs}
            rates: dict[str, list[float]] = {"slots": [], "processes": []}
            with ExitStack() as stack:
                running = {
                    k: stack.enter_context(servers(argvs_for(p, binary, model, logdir), logdir))
                    for k, p in shapes.items()
                }
                urls = {k: [s.url for s in v] * (n // len(v)) for k, v in running.items()}
                for k in urls:  # warm-up: first requests pay for page-ins
                    asyncio.run(generate(urls[k], 8, 1))
                for r in range(rounds):
                    order = ("slots", "processes") if r % 2 == 0 else ("processes", "slots")
                    for k in order:
                        tokens, secs = asyncio.run(generate(urls[k], max_tokens, 1000 * r))
                        rates[k].append(tokens / secs)
                        click.echo(f"  N={n} {k:9} round {r}: {tokens} tokens in {secs:.2f} s", err=True)
            med = {k: statistics.median(v) for k, v in rates.items()}
            faster = max(med, key=lambda k: med[k])
            results.append(
                {
                    "voters": n,
                    "slots": {
                        "argv": " ".join(argvs_for(slots, binary, model, logdir)[0]),
                        "processes": slots.processes,
                        "threads": slots.threads,
                        "tokens_per_s": rates["slots"],
                        "median_tokens_per_s": med["slots"],
                    },
                    "processes": {
                        "argv": " ".join(argvs_for(procs, binary, model, logdir)[0]),
                        "processes": procs.processes,
                        "threads": procs.threads,
                        "plan_refused": refused,
                        "tokens_per_s": rates["processes"],
                        "median_tokens_per_s": med["processes"],
                    },
                    "processes_over_slots": med["processes"] / med["slots"],
                    "plan_choice": chosen.topology,
                    "faster": faster,
                    "plan_is_faster": chosen.topology == faster,
                    "plan_reasons": [r for r in chosen.reasons if r.startswith("topology")],
                }
            )
    rows = [
        (
            r["voters"],
            f"{r['processes']['processes']} x {r['processes']['threads']} threads",
            f"1 x {r['slots']['threads']} threads, --parallel {r['voters']}",
            r["processes"]["median_tokens_per_s"],
            r["slots"]["median_tokens_per_s"],
            r["processes_over_slots"],
            r["plan_choice"],
            "yes" if r["plan_is_faster"] else "NO",
        )
        for r in results
    ]
    print_table(
        f"Topology on this CPU ({os.cpu_count()} cores), SmolLM2-135M, {max_tokens} tokens per voter",
        [
            "N",
            "processes",
            "one process",
            "processes tok/s",
            "slots tok/s",
            "processes / slots",
            "plan picks",
            "plan = faster",
        ],
        rows,
    )
    data = {
        "method": __doc__.split("\n\n", 1)[1].strip() if __doc__ else "",
        "settings": {
            "max_tokens": max_tokens,
            "rounds": rounds,
            "context": context,
            "model": model.name,
            "binary": str(binary),
        },
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "results": results,
    }
    click.echo(f"wrote {write_result('topology', data)}")

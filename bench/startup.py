"""``python -m bench startup``: how long ``swarm up`` takes to all-ready on the embedded SmolLM2 model,
against starting the same llama-servers by hand, and the time to the first token once ready.

For each N (``--voters``, default 2 and 4) and each topology (``--topology processes`` and the
plan's default; where the plan refuses one, e.g. 4 processes on 2 cores, that is recorded), in
rounds that alternate the order of the two (``--rounds``, default 3; a first, unmeasured round
warms the page cache and records the argv):

- swarm: ``swarm up --model <gguf> --instances N [--topology T] --llama-server <bin> --port P``
  in an isolated ``SWARM_HOME`` (its own config, cache and state; one for the whole run, so that
  from the second ``up`` on the model file's check is remembered, as in a user's cache, and the
  same command starts from its remembered launch, which each run's ``from_record`` says; byte-code
  caching on, as for an installed package: ``PYTHONDONTWRITEBYTECODE`` is removed), timed
  from spawn to the command's return (it returns once every instance is ready), and split by the
  run file's clocks into the part before the first instance's spawn, the instances' load and the
  rest; then one streamed chat request through the proxy: seconds to the first content token and
  to ``[DONE]``; then ``swarm down``.
- by hand: the argv the swarm's instances ran with (read from ``/proc/PID/cmdline`` while it was
  up; only the ports and the key file's path changed) spawned directly, timed until every
  ``/health`` answers 200; then the same streamed request straight to one of them; stopped.

The figures are medians and the ratio swarm / by hand. ``swarm up`` should be all-ready within
30 s (the supervisor issue's target). Through the proxy with two or more voters the stream is
in ``consensus`` mode: the first token leaves only once the voters' answers are in and voted
on, so its first token comes at about the time a single server finishes the whole answer.
"start to token" adds the two: from the command's start to the first token, the wait of a script
that starts the swarm and asks at once (work the proxy leaves until after all-ready counts there).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from bench.common import print_table, write_result
from bench.startup_runs import SPLIT, by_hand, through_swarm
from bench.swarm_home import ContentionWatch, SwarmHome, pytest_pids, wait_for_quiet

TARGET_S = 30.0


def _cpu() -> list[int]:
    """The machine's CPU time counters (/proc/stat: user nice system idle iowait irq softirq steal)."""
    with open("/proc/stat", encoding="ascii") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def _busy_since(before: list[int]) -> dict[str, float]:
    """Of the CPU time since ``before``: the share not idle, and the share stolen by the host."""
    delta = [b - a for a, b in zip(before, _cpu(), strict=True)]
    total = sum(delta) or 1
    return {
        "cpu_busy_pct": round(100 * (total - delta[3]) / total, 1),
        "steal_pct": round(100 * delta[7] / total, 1),
    }


def _spread(xs: list[float]) -> dict[str, float]:
    """Median, lowest and highest of ``xs``."""
    return {"median": _median(xs), "min": min(xs), "max": max(xs)}


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _refusal(n: int, topology: str | None, model: Path) -> str | None:
    """The plan's error for this N and topology on this machine, or None when it accepts it."""
    from bench.topology import plan_for
    from swarm_supervisor.errors import SwarmError

    try:
        plan_for(n, topology, model, 8192)
    except SwarmError as exc:
        return str(exc)
    return None


@click.command("startup")
@click.option(
    "--voters", "voters_s", default="2,4", show_default=True, help="N to measure (comma-separated)."
)
@click.option("--rounds", default=3, show_default=True, help="Measured rounds (median), after one warm-up.")
@click.option("--max-tokens", default=16, show_default=True, help="Tokens of the first-token request.")
@click.option("--context", type=int, default=None, help="Tokens per slot (default: the plan's).")
@click.option("--llama-server", "binary_s", help="llama-server (default: the cached one).")
@click.option("--model", "model_s", help="GGUF (default: the embedded SmolLM2).")
@click.option("--no-wait", is_flag=True, help="Do not wait for a running test suite to finish.")
@click.option("--out", default="startup", show_default=True, help="Result name: bench/results/<out>.json.")
def command(voters_s: str, rounds: int, max_tokens: int, context: int | None, binary_s: str | None,
            model_s: str | None, no_wait: bool, out: str) -> None:  # fmt: skip
    """`swarm up` to all-ready vs the same llama-servers started by hand; time to first token."""
    from bench.topology import find_binary, find_model

    binary, model = find_binary(binary_s), find_model(model_s)
    contention = {"waited_s": 0.0, "note": "--no-wait"} if no_wait else wait_for_quiet(echo=click.echo)
    voters = [int(x) for x in voters_s.split(",") if x.strip()]
    shapes: list[tuple[int, str, list[str]]] = []
    refused: list[dict[str, Any]] = []
    for n in voters:
        for topo in ("processes", None):
            why = _refusal(n, topo, model)
            label = topo or "default"
            if why is not None:
                refused.append({"voters": n, "topology": label, "plan_refused": why})
                click.echo(f"N={n} {label}: the plan refuses it: {why}", err=True)
                continue
            args = ["--model", str(model), "--instances", str(n), "--llama-server", str(binary)]
            if topo:
                args += ["--topology", topo]
            if context:
                args += ["--context", str(context)]
            shapes.append((n, label, args))

    runs: dict[tuple[int, str], dict[str, Any]] = {
        (n, label): {"swarm": [], "hand": [], "info": {}} for n, label, _ in shapes
    }
    with contextlib.ExitStack() as stack:
        base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-startup-")))
        logdir = base / "logs"
        logdir.mkdir()
        key_file = base / "hand.key"
        home = stack.enter_context(SwarmHome(base / "home"))
        # as a user runs it: the package's byte code compiled once (by the warm-up) and kept, as
        # an installed package has its .pyc files (bench cli does the same); with
        # PYTHONDONTWRITEBYTECODE every `swarm up` compiled some 60 modules again, 0.1-0.2 s of CPU
        home.env.pop("PYTHONDONTWRITEBYTECODE", None)
        watch = stack.enter_context(ContentionWatch())
        for r in range(-1, rounds):  # round -1: the warm-up, which also records the argv
            for n, label, args in shapes:
                run = runs[(n, label)]
                info = run["info"]
                order = ("swarm", "hand") if r % 2 == 0 else ("hand", "swarm")
                if r < 0:
                    order = ("swarm", "hand")
                for which in order:
                    cpu0 = _cpu()
                    if which == "swarm":
                        got = through_swarm(home, args, max_tokens, info if r < 0 else None)
                    else:
                        key_file.write_text(info["key"] + "\n", encoding="utf-8")
                        key_file.chmod(0o600)
                        got = by_hand(info["argvs"], info["key"], key_file, logdir, max_tokens)
                    got.update(_busy_since(cpu0))
                    got["pytest_running"] = bool(pytest_pids())
                    if r < 0:
                        info.setdefault("warmup", {})[which] = got
                    else:
                        run[which].append(got)
                    click.echo(
                        f"  N={n} {label:9} {'warm-up' if r < 0 else f'round {r}'} {which:5}: "
                        + ", ".join(f"{k} {v:.2f}" for k, v in got.items()),
                        err=True,
                    )

    results = []
    for n, label, args in shapes:
        run = runs[(n, label)]
        sw, hd = run["swarm"], run["hand"]
        med = {
            "swarm_up_s": _median([x["up_s"] for x in sw]),
            "hand_ready_s": _median([x["ready_s"] for x in hd]),
            "swarm_first_token_s": _median([x["first_token_s"] for x in sw]),
            "hand_first_token_s": _median([x["first_token_s"] for x in hd]),
            "swarm_answer_s": _median([x["answer_s"] for x in sw]),
            "hand_answer_s": _median([x["answer_s"] for x in hd]),
            "swarm_down_s": _median([x["down_s"] for x in sw]),
            # from the command's start to the first token: what a script that starts the swarm and
            # asks at once waits (work deferred past all-ready shows up here, not in up_s)
            "swarm_start_to_token_s": _median([x["up_s"] + x["first_token_s"] for x in sw]),
            "hand_start_to_token_s": _median([x["ready_s"] + x["first_token_s"] for x in hd]),
        }
        split = {k: _median([x[k] for x in sw]) for k in SPLIT}
        every_up = [x["up_s"] for x in sw] + [run["info"]["warmup"]["swarm"]["up_s"]]
        results.append(
            {
                "voters": n,
                "topology": label,
                "swarm_up_args": " ".join(["swarm", "up", *args, "--port", "P"]),
                "processes": run["info"]["processes"],
                "slots_per_process": run["info"]["slots"],
                "argv": [" ".join(a) for a in run["info"]["argvs"]],
                "swarm": sw,
                "hand": hd,
                "warmup": run["info"]["warmup"],
                "median": med,
                "swarm_up_split_median_s": split,
                "up_over_hand": med["swarm_up_s"] / med["hand_ready_s"],
                # the same ratio round by round (each round's two starts ran back to back)
                "up_over_hand_per_round": _spread(
                    [x["up_s"] / y["ready_s"] for x, y in zip(sw, hd, strict=True)]
                ),
                "first_token_swarm_over_hand": med["swarm_first_token_s"] / med["hand_first_token_s"],
                "answer_swarm_over_hand": med["swarm_answer_s"] / med["hand_answer_s"],
                "start_to_token_swarm_over_hand": (
                    med["swarm_start_to_token_s"] / med["hand_start_to_token_s"]
                ),
                "measured_from_record": sum(int(x.get("from_record", 0)) for x in sw),
                "slowest_up_s": max(every_up),
                "all_ready_within_30s": max(every_up) < TARGET_S,
            }
        )

    rows = [
        (
            r["voters"],
            r["topology"],
            f"{r['processes']} x {r['slots_per_process'][0]}",
            r["median"]["swarm_up_s"],
            r["median"]["hand_ready_s"],
            r["up_over_hand"],
            "{median:.2f} ({min:.2f}-{max:.2f})".format(**r["up_over_hand_per_round"]),
            r["median"]["swarm_first_token_s"],
            r["median"]["hand_first_token_s"],
            r["first_token_swarm_over_hand"],
            r["start_to_token_swarm_over_hand"],
            r["slowest_up_s"],
            "yes" if r["all_ready_within_30s"] else "NO",
        )
        for r in results
    ]
    print_table(
        f"Start-up on this machine ({os.cpu_count()} cores), {model.name}, medians of {rounds}",
        [
            "N",
            "topology",
            "procs x slots",
            "swarm up s",
            "by hand s",
            "swarm / hand",
            "per round",
            "TTFT swarm s",
            "TTFT hand s",
            "TTFT ratio",
            "start to token ratio",
            "slowest up s",
            "< 30 s",
        ],
        rows,
        console=Console(width=200),
    )
    print_table(
        "Where the seconds of `swarm up` go (medians)",
        [
            "N",
            "topology",
            "start to first spawn",
            "spawn to all ready",
            "ready to return",
            "swarm up",
            "by hand",
        ],
        [
            (
                r["voters"],
                r["topology"],
                *r["swarm_up_split_median_s"].values(),
                r["median"]["swarm_up_s"],
                r["median"]["hand_ready_s"],
            )
            for r in results
        ],
        console=Console(width=160),
    )
    for r in refused:
        click.echo(
            f"N={r['voters']} {r['topology']}: not measured, the plan refuses it ({r['plan_refused']})"
        )
    within = all(r["all_ready_within_30s"] for r in results)
    click.echo(
        f"swarm up reached all-ready within {TARGET_S:.0f} s in every run: {'yes' if within else 'NO'} "
        f"(slowest {max(r['slowest_up_s'] for r in results):.1f} s)"
    )
    data = {
        "method": __doc__.split("\n\n", 1)[1].strip() if __doc__ else "",
        "settings": {
            "voters": voters,
            "rounds": rounds,
            "max_tokens": max_tokens,
            "context": context,
            "model": str(model),
            "binary": str(binary),
            "target_s": TARGET_S,
        },
        "contention": {**contention, **watch.summary(), "load_average_after": os.getloadavg()},
        "all_ready_within_30s": within,
        "results": results,
        "refused": refused,
    }
    click.echo(f"wrote {write_result(out, data)}")

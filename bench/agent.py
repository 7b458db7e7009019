"""``python -m bench agent``: a coding agent's real turns through the swarm, against one llama-server
of the same model and binary answering alone, in the same run.

The sessions are opencode 1.18.33 request bodies (``bench/data/agent/*.json.gz``, recorded by
``bench/agent_capture.py``): each turn is the whole conversation so far (system prompt, 10 tool
schemas, tool results), growing from about 2k tokens. Every run sends the same prompts: the
recorded conversation, never the model's own answers. Turns that would not fit a slot's context
(counted with the server's own template and tokenizer) or ``--max-prompt-tokens`` are dropped.

- the swarm: ``swarm up --model M [--instances N] --llama-server B [--swarm-arg ...]`` in an
  isolated ``SWARM_HOME``, as a user starts it;
- the baseline: ``llama-server -m M -c <the swarm's context per slot> -np 1 --threads <all cores>
  -ngl <--ngl> --metrics`` (``cache_prompt`` on, llama-server's default): what a user would
  otherwise run.

Phase 1 (M = 1): each session turn by turn, the two targets interleaved turn by turn (which one
goes first alternates). Per turn: seconds to the first ``data:`` event (keep-alive comments do
not count) and to ``[DONE]``, answer tokens (the usage chunk), and the prompt tokens the servers
evaluated (the delta of ``llamacpp:prompt_tokens_total`` over the instances' ``/metrics``, which
the proxy's ``/metrics`` re-exposes per instance). Phase 2 (M > 1): M different sessions at once,
each turn by turn, against one target then the other: answers/s and p50/p95 seconds a turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path

import click

from bench.agent_phases import Target, fit_sessions, phase_m, phase_one
from bench.agent_replay import (
    DEFAULT_GLOB,
    baseline_argv,
    baseline_server,
    load_sessions,
)
from bench.agent_report import plot, print_tables, summarise
from bench.common import RESULTS, exit_on_sigterm, write_result
from bench.swarm_home import ContentionWatch, SwarmHome, cpu_busy_pct, instance_argvs


def _ints(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: give comma-separated numbers, e.g. 1,2,4") from None
    if not out or min(out) < 1:
        raise click.BadParameter(f"{text!r}: give comma-separated numbers of at least 1")
    return out


@click.command("agent")
@click.option(
    "--sessions",
    "pattern",
    default=DEFAULT_GLOB,
    show_default="bench/data/agent/*.json.gz",
    help="Glob of session files.",
)
@click.option("--max-turns", type=click.IntRange(min=1), help="At most this many turns of each session.")
@click.option("--max-prompt-tokens", type=click.IntRange(min=1), help="Drop turns with longer prompts.")
@click.option(
    "--max-tokens",
    default=256,
    show_default=True,
    type=click.IntRange(min=0),
    help="Cap each answer (0: as recorded, opencode's limit.output).",
)
@click.option("--concurrency", "conc_s", default="1,2,4", show_default=True, help="M sessions at once.")
@click.option("--repeats", default=1, show_default=True, type=click.IntRange(min=1), help="Phase 1 repeats.")
@click.option("--model", "model_s", help="GGUF path (default: the embedded SmolLM2).")
@click.option("--instances", type=click.IntRange(min=1), help="Voters (swarm up --instances).")
@click.option(
    "--swarm-arg", "swarm_args", multiple=True, help="Passed to swarm up, e.g. --swarm-arg=--topology=slots."
)
@click.option(
    "--llama-arg",
    "llama_args",
    multiple=True,
    help="For each instance (binary.extra_args), e.g. --llama-arg=--kv-unified.",
)
@click.option("--llama-server", "binary_s", help="llama-server (default: the cached one).")
@click.option("--ngl", default=0, show_default=True, help="-ngl of the baseline llama-server.")
@click.option("--baseline-threads", type=click.IntRange(min=1), help="Default: every core.")
@click.option(
    "--baseline-context", type=click.IntRange(min=512), help="Default: the swarm's context per slot."
)
@click.option(
    "--time-budget",
    "time_budget_s",
    type=click.FloatRange(min=1),
    help="Seconds: start no turn (and no M phase) after this; what ran is reported.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("agent"),
    show_default=True,
    help="NAME: bench/results/NAME.json and .png; or a path ending in .json.",
)
def command(
    pattern: str,
    max_turns: int | None,
    max_prompt_tokens: int | None,
    max_tokens: int,
    conc_s: str,
    repeats: int,
    model_s: str | None,
    instances: int | None,
    swarm_args: tuple[str, ...],
    llama_args: tuple[str, ...],
    binary_s: str | None,
    ngl: int,
    baseline_threads: int | None,
    baseline_context: int | None,
    time_budget_s: float | None,
    out: Path,
) -> None:
    """Replay opencode sessions through the swarm and one llama-server alone, interleaved."""
    from bench.topology import find_binary, find_model
    from swarm_supervisor.swarm.system import free_port

    concurrency = _ints(conc_s)
    sessions = load_sessions(pattern)
    binary, model = find_binary(binary_s), find_model(model_s)
    for what, p in (("--llama-server", binary), ("--model", model)):
        if not p.is_file():
            raise click.ClickException(f"{what} {p}: no such file")
    busy_at_start = cpu_busy_pct(2.0)
    exit_on_sigterm()  # stop the swarm and the baseline on the way out
    up_args = ["--model", str(model), "--llama-server", str(binary), "--port", str(free_port())]
    if instances:
        up_args += ["--instances", str(instances)]
    up_args += list(swarm_args)
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-agent-")))
        home = stack.enter_context(
            SwarmHome(
                root / "home",
                supervisor={"health_interval_s": 1.0},
                binary={"extra_args": list(llama_args)},
            )
        )
        click.echo(f"swarm up {' '.join(up_args)}", err=True)
        up_s = home.up(*up_args, timeout_s=600)
        rec = home.record()
        context = int(rec["context"])
        swarm = {
            "up_s": up_s,
            "context": context,
            "voters": rec.get("voters"),
            "model": rec.get("model"),
            "argv": [" ".join(a) for a in instance_argvs(rec)],
            "processes": len(rec.get("instances") or []),
            "slots_per_process": [i.get("slots") for i in rec.get("instances") or []],
            "swarm_up": " ".join(["swarm", "up", *up_args]),
            "llama_args": list(llama_args),
        }
        bl_argv = baseline_argv(
            binary,
            model,
            free_port(),
            baseline_context or context,
            ngl,
            baseline_threads or os.cpu_count() or 1,
        )
        bl = stack.enter_context(baseline_server(bl_argv, root / "baseline.log"))
        fitted, dropped = fit_sessions(
            sessions,
            bl.url,
            context=min(context, baseline_context or context),
            max_tokens=max_tokens or 4096,
            max_prompt=max_prompt_tokens,
            max_turns=max_turns,
        )
        if not fitted:
            raise click.ClickException(
                f"no turn fits {context} tokens of context: pass --swarm-arg=--context=N"
            )
        targets = [
            Target(
                "swarm",
                rec["base_url"].removesuffix("/v1"),
                f"{rec['base_url']}/chat/completions",
                str(rec["model"]),
            ),
            Target("baseline", bl.url, f"{bl.url}/v1/chat/completions", "baseline"),
        ]
        n_turns = sum(len(f["turns"]) for f in fitted)
        click.echo(
            f"{len(fitted)} sessions, {n_turns} turns fit {context} tokens; dropped {len(dropped)}", err=True
        )
        watch = stack.enter_context(ContentionWatch())
        deadline = time.monotonic() + (time_budget_s or float("inf"))
        echo = lambda s: click.echo(s, err=True)  # noqa: E731
        rows = asyncio.run(phase_one(targets, fitted, repeats, max_tokens, deadline, echo))
        multi = []
        for k, m in enumerate(x for x in concurrency if x > 1 and time.monotonic() < deadline):
            for t in targets if k % 2 == 0 else targets[::-1]:
                got = asyncio.run(phase_m(t, fitted, m, max_tokens))
                click.echo(f"  M={m} {t.name}: {got['answers']} answers in {got['wall_s']:.1f} s", err=True)
                multi.append(got)
        contention = {
            "cpu_busy_pct_before": busy_at_start,
            **watch.summary(),
            "load_average_after": os.getloadavg(),
        }
    summary = summarise(rows, multi, concurrency)
    data = {
        "method": (__doc__ or "").split("\n\n", 1)[1].strip(),
        "settings": {
            "sessions": pattern,
            "max_turns": max_turns,
            "max_prompt_tokens": max_prompt_tokens,
            "max_tokens": max_tokens,
            "time_budget_s": time_budget_s,
            "stopped_by_time_budget": len(rows) < sum(len(f["turns"]) for f in fitted) * repeats,
            "concurrency": concurrency,
            "repeats": repeats,
            "model": str(model),
            "binary": str(binary),
            "instances": instances,
            "swarm_args": list(swarm_args),
            "ngl": ngl,
        },
        "swarm": swarm,
        "baseline": {"argv": " ".join(bl_argv)},
        "contention": contention,
        "sessions": [
            {
                "name": f["session"].name,
                "source": f["session"].source,
                "turns": len(f["turns"]),
                "prompt_tokens": [t["prompt_tokens"] for t in f["turns"]],
                "counted_by": f["turns"][0]["counted_by"],
            }
            for f in fitted
        ],
        "dropped": dropped,
        "summary": summary,
        "turns": rows,
        "concurrency": multi,
    }
    print_tables(data)
    where, name = (
        (out.parent, out.name.removesuffix(".json")) if out.suffix == ".json" else (RESULTS, str(out))
    )
    path = write_result(name, data, where)
    png = plot(data, where / f"{name}.png")
    click.echo(f"wrote {path}" + (f" and {png}" if png else " (no matplotlib: no plot)"))

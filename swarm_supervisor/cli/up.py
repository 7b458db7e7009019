"""``swarm up``: plan, fetch, start the instances and the proxy; return once all are ready."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import IMPORTED_AT
from ..binary import find_binary
from ..config import Config
from ..errors import PlanError, RunFileDamaged, SwarmStateError
from ..hardware import detect
from ..plan import Plan
from ..plan.guard import voter_excess
from ..store import resolve_model
from ..swarm.launcher import (
    build_spec,
    check_port,
    claim_foreground,
    exposure_warning,
    extra_args_for,
    start_detached,
    wait_until_up,
)
from ..swarm.prestart import META_KEY, Prestarted
from ..swarm.runfile import RunFile, ensure_not_running, live_status
from .app import Ctx, pass_ctx
from .next_steps import next_steps, swarm_command
from .options import PlanChoices, run_plan_options
from .planning import plan_for
from .timeline import Timeline, command_started

if TYPE_CHECKING:
    from rich.table import Table

    from ..hardware import HardwareProfile
    from ..swarm.record import RunRecord
    from ..swarm.supervisor import Supervisor


def _plan_table(plan: Plan) -> Table:
    from rich.table import Table  # imported once the instances are spawned, like all output's

    from .plan import plan_rows

    table = Table(title="Starting", title_justify="left", show_header=False, show_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in plan_rows(plan):
        table.add_row(label, value)
    return table


def _with_strategy(config: Config, strategy: str | None) -> Config:
    if strategy is None:
        return config
    return config.model_copy(update={"proxy": config.proxy.model_copy(update={"strategy": strategy})})


@click.command("up")
@run_plan_options
@click.option("--name", default="default", show_default=True, help="Run another swarm beside the first.")
@click.option("--host", default=None, help="Address the proxy listens on. Default: proxy.host (127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Proxy port (0: any free one).")
@click.option("--foreground", is_flag=True, help="Stay in the terminal; Ctrl-C stops everything.")
@click.option(
    "--llama-server",
    "llama_server",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Use this llama-server (else $SWARM_LLAMA_SERVER, else binary.llama_server, else search).",
)
@click.option("--no-fallback", is_flag=True, help="Fail instead of using the embedded model when offline.")
@click.option(
    "--strategy", type=click.Choice(["similarity", "quality", "fastest"]), help="How the proxy picks answers."
)
@click.option(
    "--if-not-running",
    "if_not_running",
    is_flag=True,
    help="When this swarm already runs, say so and exit 0 (what `make up` uses).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Start even more voters than this machine runs usefully (the refusal says why).",
)
@click.option(
    "--verbose",
    "timings",
    is_flag=True,
    help="Say where the time went, from the command's start to all-ready.",
)
@pass_ctx
def command(
    ctx: Ctx,
    plan_choices: PlanChoices,
    name: str,
    host: str | None,
    port: int | None,
    foreground: bool,
    llama_server: Path | None,
    no_fallback: bool,
    strategy: str | None,
    if_not_running: bool,
    force: bool,
    timings: bool,
) -> None:
    """Start the swarm: the planned llama-server instances and the OpenAI-compatible proxy.

    Returns once every instance is ready and prints the base URL (`swarm ps` shows it again).

    \b
    swarm up                                  the best plan for this machine
    swarm up --model smollm2:135m --instances 3
    swarm up --model ./my-model.gguf --port 8001 --name second
    swarm up --verbose                        and where the seconds went
    """
    tl = Timeline(command_started(ctx.invoked_at))
    if tl.started <= IMPORTED_AT:  # a `swarm` process (not a host calling the command)
        tl.mark("Python start", IMPORTED_AT)
    tl.mark("imports (click, rich, pydantic, plan, store)")
    if plan_choices.what_if:
        raise PlanError(
            "--gpu-memory, --ram, --apple-silicon and --cpu-only are what-if flags of `swarm plan`; "
            "`swarm up` runs on the hardware it finds"
        )
    rf = RunFile(name, ctx.dirs)
    running = None
    with rf.lock():  # fail early, before any download
        try:
            ensure_not_running(rf)
        except RunFileDamaged:
            raise
        except SwarmStateError:
            if not if_not_running:
                raise
            running = rf.peek()
    if running is not None:  # the same end as a fresh start's (what a second `make up` shows)
        ctx.console.print(f"Swarm {name!r} is already running.", highlight=False)
        ctx.console.print()
        for line in next_steps(live_status(running), swarm_command()):
            ctx.console.print(line, highlight=False, markup=False, soft_wrap=True)
        return
    config = _with_strategy(ctx.config, strategy)
    catalogue = ctx.catalogue
    host = host or config.proxy.host
    port = config.proxy.port if port is None else port
    check_port(host, port)
    exposed = exposure_warning(host, config.proxy.api_key)
    if exposed:
        ctx.warn(exposed)

    tl.mark("config and port check")
    hw = detect()
    tl.mark("hardware detection")
    planned = plan_for(config, plan_choices, catalogue=catalogue, dirs=ctx.dirs, detect_fn=lambda: hw)
    tl.mark("model file's GGUF facts" if planned.overrides.facts else "plan inputs")
    plan = planned.plan
    tl.mark("plan")
    _guard(plan, hw, config, force, ctx)  # before any download
    model = resolve_model(
        plan, catalogue, ctx.dirs, allow_fallback=not no_fallback, fallback=planned.fallback
    )
    if model.plan is not None and model.plan != plan:
        plan = model.plan
        _guard(plan, hw, config, force, ctx)
    tl.mark("weights: find and check")
    if model.warning:
        ctx.warn(model.warning)
    for warning in plan.warnings:
        ctx.warn(warning)
    binary = find_binary(config, ctx.dirs, hw, flag=llama_server)
    tl.mark("llama-server: find and version")
    gpu_vendor = hw.discrete_gpus[0].vendor if plan.device == "gpu" and hw.discrete_gpus else None
    spec = build_spec(
        rf,
        plan,
        binary=binary.path,
        model_path=model.path,
        config=config,
        host=host,
        port=port,
        backend=binary.server,
        gpu_vendor=gpu_vendor,
        extra_args=extra_args_for(plan, catalogue, config),
        shared_kv=binary.shares_kv,
        cache_ram=binary.cache_ram,
        fallback=model.fallback.as_dict() if model.fallback else None,
    )
    prestarted: Prestarted | None = click.get_current_context().meta.get(META_KEY)
    if foreground:
        # the supervisor and the proxy run in this process; in the background they run in their own
        from ..swarm.daemon import run_swarm, run_until_done

        if prestarted is not None:
            prestarted.close()  # not needed: let it go now
        ctx.console.print(_plan_table(plan))
        ctx.console.print()

        claim_foreground(rf, spec)

        def on_up(sup: Supervisor) -> None:
            _print_up(ctx, sup.snapshot(), took_s=tl.total())
            ctx.console.print("Ctrl-C stops the swarm.")

        code = run_until_done(run_swarm(spec, rf, on_up=on_up))
        with rf.lock():
            rec = rf.peek()
            if rec is not None and rec.status == "failed":
                ctx.err.print(f"[bold red]error:[/] {rec.reason}", highlight=False)
            rf.remove()
        sys.exit(code)

    spawned = time.time()
    proc = start_detached(rf, spec, prestarted)
    ctx.console.print(_plan_table(plan))  # the instances load meanwhile
    ctx.console.print()
    timeout = config.supervisor.ready_timeout_s * max(plan.processes, 1) + 30.0
    try:
        with ctx.console.status(f"starting {len(spec.instances)} instance(s) of {plan.model_id} ..."):
            rec = wait_until_up(rf, proc, timeout)
    except KeyboardInterrupt:
        from ..swarm.teardown import teardown

        ctx.err.print("interrupted: stopping what was started")
        teardown(rf, config.supervisor.stop_grace_s)
        sys.exit(130)
    done = time.time()
    if timings or ctx.verbose:
        _supervisor_spans(tl, spawned, done, rec)
        ctx.console.print("Where the time went (from the command's start):", highlight=False)
        for line in tl.lines():
            ctx.console.print(line, highlight=False)
        ctx.console.print()
    _print_up(ctx, live_status(rec), took_s=tl.total(done))


def _guard(plan: Plan, hw: HardwareProfile, config: Config, force: bool, ctx: Ctx) -> None:
    """Refuse more voters than the machine runs usefully (:func:`voter_excess`), unless --force."""
    problem = voter_excess(plan, hw, config)
    if problem is None:
        return
    if not force:
        raise PlanError(problem)
    ctx.warn(f"--force: {problem}")


def _supervisor_spans(tl: Timeline, spawned: float, done: float, rec: RunRecord) -> None:
    """The run file's clocks: the supervisor's start until its first instance was spawned, the
    instances' start until the last was ready, and the rest until `swarm up` saw it."""
    tl.mark("spec and run file", spawned)
    started = [i.started_at for i in rec.instances if i.started_at is not None]
    ready = [i.ready_at for i in rec.instances if i.ready_at is not None]
    if started and ready:
        tl.mark("supervisor start (to the first spawn)", min(started))
        tl.mark("instances ready (spawn to the last ready)", max(ready))
        tl.mark("until `swarm up` saw it", done)
    else:
        tl.mark("supervisor and instances", done)


def _print_up(ctx: Ctx, status: dict[str, Any], took_s: float | None = None) -> None:
    from ..render import render_status

    ctx.console.print(render_status(status, time.time(), ctx.console.width))
    ctx.console.print()
    for line in next_steps(status, swarm_command(), took_s=took_s):
        style = "bold yellow" if line.startswith(("NOTE:", "To get the planned")) else None
        ctx.console.print(line, highlight=False, markup=False, style=style, soft_wrap=True)

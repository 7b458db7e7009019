"""``swarm up``: plan, fetch, start the instances and the proxy; return once all are ready."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from ..binary import find_binary
from ..config import Config
from ..errors import PlanError, RunFileDamaged, SwarmStateError
from ..plan import Plan
from ..render import render_status
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
from ..swarm.runfile import RunFile, ensure_not_running, live_status
from ..swarm.teardown import teardown
from .app import Ctx, pass_ctx
from .options import PlanChoices, plan_options
from .plan import plan_rows
from .planning import plan_for

if TYPE_CHECKING:
    from ..swarm.supervisor import Supervisor


def _plan_table(plan: Plan) -> Table:
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
@plan_options
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
) -> None:
    """Start the swarm: the planned llama-server instances and the OpenAI-compatible proxy.

    Returns once every instance is ready and prints the base URL (`swarm ps` shows it again).

    \b
    swarm up                                  the best plan for this machine
    swarm up --model smollm2:135m --instances 3
    swarm up --model ./my-model.gguf --port 8001 --name second
    """
    if plan_choices.what_if:
        raise PlanError(
            "--gpu-memory, --ram, --apple-silicon and --cpu-only are what-if flags of `swarm plan`; "
            "`swarm up` runs on the hardware it finds"
        )
    rf = RunFile(name, ctx.dirs)
    with rf.lock():  # fail early, before any download
        try:
            ensure_not_running(rf)
        except RunFileDamaged:
            raise
        except SwarmStateError:
            if not if_not_running:
                raise
            flag = "" if name == "default" else f" --name {name}"
            ctx.console.print(
                f"Swarm {name!r} is already running: `swarm ps{flag}` shows it.", highlight=False
            )
            return
    config = _with_strategy(ctx.config, strategy)
    host = host or config.proxy.host
    port = config.proxy.port if port is None else port
    check_port(host, port)
    exposed = exposure_warning(host, config.proxy.api_key)
    if exposed:
        ctx.warn(exposed)

    planned = plan_for(config, plan_choices, catalogue=ctx.catalogue, dirs=ctx.dirs)
    hw, plan = planned.hardware, planned.plan
    model = resolve_model(
        plan, ctx.catalogue, ctx.dirs, allow_fallback=not no_fallback, fallback=planned.fallback
    )
    if model.plan is not None:
        plan = model.plan
    if model.warning:
        ctx.warn(model.warning)
    for warning in plan.warnings:
        ctx.warn(warning)
    binary = find_binary(config, ctx.dirs, hw, flag=llama_server)
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
        extra_args=extra_args_for(plan, ctx.catalogue, config),
        shared_kv=binary.shares_kv,
        fallback=model.fallback.as_dict() if model.fallback else None,
    )
    ctx.console.print(_plan_table(plan))
    ctx.console.print()

    if foreground:
        # the supervisor and the proxy run in this process; in the background they run in their own
        from ..swarm.daemon import run_swarm, run_until_done

        claim_foreground(rf, spec)

        def on_up(sup: Supervisor) -> None:
            _print_up(ctx, sup.snapshot())
            ctx.console.print("Ctrl-C stops the swarm.")

        code = run_until_done(run_swarm(spec, rf, on_up=on_up))
        with rf.lock():
            rec = rf.peek()
            if rec is not None and rec.status == "failed":
                ctx.err.print(f"[bold red]error:[/] {rec.reason}", highlight=False)
            rf.remove()
        sys.exit(code)

    started = time.monotonic()
    proc = start_detached(rf, spec)
    timeout = config.supervisor.ready_timeout_s * max(plan.processes, 1) + 30.0
    try:
        with ctx.console.status(f"starting {len(spec.instances)} instance(s) of {plan.model_id} ..."):
            rec = wait_until_up(rf, proc, timeout)
    except KeyboardInterrupt:
        ctx.err.print("interrupted: stopping what was started")
        teardown(rf, config.supervisor.stop_grace_s)
        sys.exit(130)
    took = time.monotonic() - started
    _print_up(ctx, live_status(rec))
    ctx.console.print(
        f"All ready in {took:.1f} s. Stop with `swarm down{'' if name == 'default' else ' --name ' + name}`."
    )


def _print_up(ctx: Ctx, status: dict[str, Any]) -> None:
    ctx.console.print(render_status(status, time.time()))
    ctx.console.print()
    ctx.console.print(f"[bold]Base URL:[/] {status.get('base_url')}", highlight=False)

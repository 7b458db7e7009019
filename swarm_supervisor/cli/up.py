"""``swarm up``: plan, fetch, start the instances and the proxy; return once all are ready."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import IMPORTED_AT
from ..binary import find_binary
from ..config import Config, default_catalogue_path
from ..errors import PlanError, RunFileDamaged, SwarmStateError
from ..hardware import detect
from ..plan import Plan
from ..plan.guard import voter_excess
from ..plan.select import busy_warnings
from ..store import resolve_model
from ..swarm.launcher import (
    build_spec,
    check_port,
    claim_foreground,
    exposure_warning,
    extra_args_for,
    start_detached,
)
from ..swarm.prestart import META_KEY, Prestarted
from ..swarm.runfile import RunFile, ensure_not_running, live_status
from . import quick
from .app import Ctx, pass_ctx
from .next_steps import next_steps, swarm_command
from .options import PlanChoices, run_plan_options
from .planning import plan_for
from .timeline import Timeline, command_started
from .up_screen import print_plan, print_timeline, print_up, wait_shown

if TYPE_CHECKING:
    from ..hardware import HardwareProfile
    from ..store.resolve import LocalModel
    from ..swarm.spec import SwarmSpec
    from ..swarm.supervisor import Supervisor


def _rows(plan: Plan) -> list[tuple[str, str]]:
    from .plan import plan_rows  # with rich: imported once the instances are spawned

    return [(str(a), str(b)) for a, b in plan_rows(plan)]


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
    warned: list[str] = []  # what a remembered launch shows again (quick.py)
    exposed = exposure_warning(host, config.proxy.api_key)
    if exposed:
        ctx.warn(exposed)
        warned.append(exposed)

    tl.mark("config and port check")
    hw = detect()
    tl.mark("hardware detection")
    planned = plan_for(config, plan_choices, catalogue=catalogue, dirs=ctx.dirs, detect_fn=lambda: hw)
    tl.mark("model file's GGUF facts" if planned.overrides.facts else "plan inputs")
    plan = planned.plan
    tl.mark("plan")
    warned += _guard(plan, hw, config, force, ctx)  # before any download
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
        print_plan(ctx.console, _rows(plan))

        claim_foreground(rf, spec)

        def on_up(sup: Supervisor) -> None:
            print_up(ctx.console, sup.snapshot(), took_s=tl.total())
            ctx.console.print("Ctrl-C stops the swarm.")

        code = run_until_done(run_swarm(spec, rf, on_up=on_up))
        with rf.lock():
            rec = rf.peek()
            if rec is not None and rec.status == "failed":
                ctx.err.print(f"[bold red]error:[/] {rec.reason}", highlight=False)
            rf.remove()
        sys.exit(code)

    spawned = time.time()
    missed = quick.missed()  # the key of this command's inputs, when it runs as `swarm up` itself
    proc = start_detached(rf, spec, prestarted)
    print_plan(ctx.console, _rows(plan))  # the instances load meanwhile
    timeout = config.supervisor.ready_timeout_s * max(plan.processes, 1) + 30.0
    what = f"starting {len(spec.instances)} instance(s) of {plan.model_id} ..."
    rec = wait_shown(
        ctx.console, ctx.err, rf, proc, timeout_s=timeout, what=what, grace_s=config.supervisor.stop_grace_s
    )
    done = time.time()
    # a clean start is remembered, with the warnings it gave that depend on nothing but its inputs
    # (not one about memory busy now: RAM is checked again, VRAM cannot be cheaply); a fallback's
    # too, for a while (relaunch.FALLBACK_VALID_S) and until the planned model is downloaded
    busy = busy_warnings(hw, plan)
    if missed is not None and not busy and (model.fallback is not None or not model.warning):
        warned += [model.warning] if model.warning else []
        warned += list(plan.warnings)
        _remember(ctx, missed.key, spec, plan, model, binary.path, llama_server, timeout, warned)
    if timings or ctx.verbose:
        tl.mark("spec and run file", spawned)
        print_timeline(ctx.console, tl, done, rec)
    print_up(ctx.console, live_status(rec), took_s=tl.total(done))


def _remember(
    ctx: Ctx,
    key: dict[str, Any],
    spec: SwarmSpec,
    plan: Plan,
    model: LocalModel,
    binary: Path,
    flag: Path | None,
    timeout_s: float,
    warned: list[str],
) -> None:
    """Remember this clean start for the next `swarm up` of the same inputs (swarm/relaunch.py):
    the files it was made from, where the binary was searched for when none was given, and for a
    fallback the cache files a download of the planned model would write."""
    import os

    from ..binary import explicit_binary
    from ..store.resolve import download_markers
    from ..swarm.relaunch import FALLBACK_VALID_S, deps_of, remember, stat_sig

    searched: list[Path] = []
    if explicit_binary(flag, ctx.config) is None:  # bin_fetch looked on PATH and in the cache
        searched = [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
        searched += [ctx.dirs.bin, ctx.dirs.bin / "llama-server"]
    deps = deps_of(
        config_file=ctx.config_path or ctx.dirs.config_file,
        catalogue_file=ctx.catalogue_path or default_catalogue_path(),
        model_files=model.parts or (model.path,),
        binary=binary,
        searched=searched,
    )
    valid_s = None
    if model.fallback is not None:  # until the planned model is downloaded, and for a while only
        markers = download_markers(model.fallback.planned, ctx.catalogue, ctx.dirs)
        deps += [(str(p), stat_sig(p)) for p in markers]
        valid_s = FALLBACK_VALID_S
    with contextlib.suppress(OSError):  # a cache we cannot write costs only the next start's time
        remember(
            ctx.dirs,
            key,
            launch_json=spec.to_json(),
            deps=deps,
            plan_rows=_rows(plan),
            warnings=warned,
            memory_bytes=plan.memory.total_bytes,
            ready_timeout_s=timeout_s,
            valid_s=valid_s,
        )


def _guard(plan: Plan, hw: HardwareProfile, config: Config, force: bool, ctx: Ctx) -> list[str]:
    """Refuse more voters than the machine runs usefully (:func:`voter_excess`), unless --force;
    the warning given, if any."""
    problem = voter_excess(plan, hw, config)
    if problem is None:
        return []
    if not force:
        raise PlanError(problem)
    ctx.warn(f"--force: {problem}")
    return [f"--force: {problem}"]

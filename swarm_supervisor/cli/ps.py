"""``swarm ps``: the instances of a running swarm, their state and memory."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import click

from ..errors import SwarmStateError
from ..render import render_status
from ..swarm.runfile import RunFile, is_stale, live_status
from .app import Ctx, pass_ctx

if TYPE_CHECKING:
    from ..swarm.record import RunRecord


@click.command("ps")
@click.option("--name", default="default", show_default=True, help="Which swarm.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def command(ctx: Ctx, name: str, as_json: bool) -> None:
    """Show the swarm: base URL, model (and whether it is the embedded stand-in), totals, and per
    instance its pid, port, state, GPU, memory, VRAM, uptime, requests, average latency and
    restarts. Works from any shell.

    Memory is PSS where the OS has it (shared pages, such as the model's weights mapped by every
    instance, counted once), else USS or RSS; the header says which. Under 100 columns the
    table takes a narrow layout."""
    rf = RunFile(name, ctx.dirs)
    with rf.lock():
        rec = rf.read()  # a damaged file raises RunFileDamaged (with how to recover): never removed
        if rec is not None and is_stale(rec):
            rf.remove()
            raise SwarmStateError(
                f"swarm {name!r} is not running (its supervisor and instances are gone; "
                "removed the stale run file). Start it with `swarm up`"
            )
    if rec is None:
        raise SwarmStateError(f"no swarm named {name!r} is running; start one with `swarm up`")
    status = live_status(rec, _vram_by_pid(rec))
    if as_json:
        click.echo(json.dumps(status, indent=2))
        return
    ctx.console.print(render_status(status, time.time(), ctx.console.width))
    if not status["supervisor_alive"]:
        ctx.warn(
            f"the supervisor (pid {status.get('supervisor_pid')}) is gone; nothing restarts the instances. "
            f"`swarm down{'' if name == 'default' else ' --name ' + name}` stops what is left"
        )


def _vram_by_pid(rec: RunRecord) -> dict[int, int] | None:
    """GPU memory per pid through NVML, asked only when an instance runs on a GPU (loading NVML
    costs a CPU swarm's `ps` some 30-50 ms, for a column of dashes)."""
    if not any(i.gpu for i in rec.instances):
        return None
    from ..swarm.health import VramReader

    vram = VramReader()
    try:
        return vram.by_pid()
    finally:
        vram.close()

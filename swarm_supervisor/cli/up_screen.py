"""What ``swarm up`` shows from the plan table on, and its wait for all-ready: one way for the full
start (up.py) and a remembered launch (quick.py). rich is imported here, once the instances are
spawned (they load meanwhile).

    print_plan(console, rows)                   # the "Starting" table
    rec = wait_shown(console, err, rf, proc, timeout_s=..., what=..., grace_s=...)
    print_up(console, live_status(rec), took_s=tl.total())
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..swarm.launcher import wait_until_up
from .next_steps import next_steps, swarm_command

if TYPE_CHECKING:
    from rich.console import Console

    from ..swarm.record import RunRecord
    from ..swarm.runfile import RunFile
    from .timeline import Timeline


def print_warning(err: Console, message: str) -> None:
    from rich.markup import escape

    err.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False)


def print_plan(console: Console, rows: Iterable[tuple[str, str]]) -> None:
    from rich.table import Table

    table = Table(title="Starting", title_justify="left", show_header=False, show_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
    console.print()


def wait_shown(
    console: Console,
    err: Console,
    rf: RunFile,
    proc: subprocess.Popen[bytes],
    *,
    timeout_s: float,
    what: str,
    grace_s: float,
) -> RunRecord:
    """Wait for the run file to say ``up`` under a spinner; Ctrl-C stops what was started (exit 130)."""
    from ..render import render_status  # noqa: F401  (loaded while the models load, used after)

    try:
        with console.status(what):
            return wait_until_up(rf, proc, timeout_s)
    except KeyboardInterrupt:
        from ..swarm.teardown import teardown

        err.print("interrupted: stopping what was started")
        teardown(rf, grace_s)
        sys.exit(130)


def print_timeline(console: Console, tl: Timeline, done: float, rec: RunRecord) -> None:
    """``--verbose``: the run file's clocks after the CLI's own marks: the supervisor's start until
    its first instance was spawned, the instances' start until the last was ready, and the rest."""
    started = [i.started_at for i in rec.instances if i.started_at is not None]
    ready = [i.ready_at for i in rec.instances if i.ready_at is not None]
    if started and ready:
        tl.mark("supervisor start (to the first spawn)", min(started))
        tl.mark("instances ready (spawn to the last ready)", max(ready))
        tl.mark("until `swarm up` saw it", done)
    else:
        tl.mark("supervisor and instances", done)
    console.print("Where the time went (from the command's start):", highlight=False)
    for line in tl.lines():
        console.print(line, highlight=False)
    console.print()


def print_up(console: Console, status: dict[str, Any], took_s: float | None = None) -> None:
    from ..render import render_status

    console.print(render_status(status, time.time(), console.width))
    console.print()
    for line in next_steps(status, swarm_command(), took_s=took_s):
        style = "bold yellow" if line.startswith(("NOTE:", "To get the planned")) else None
        console.print(line, highlight=False, markup=False, style=style, soft_wrap=True)

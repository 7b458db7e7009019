"""``swarm logs``: an instance's log (or the supervisor's)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..errors import SwarmStateError
from ..swarm.runfile import RunFile
from ..swarm.system import log_tail
from .app import Ctx, pass_ctx


def log_path(rf: RunFile, instance: str) -> Path:
    if instance == "supervisor":
        return rf.log_dir / "supervisor.log"
    return rf.log_dir / f"instance-{instance}.log"


def follow(path: Path) -> None:
    """Print what is appended to ``path`` until Ctrl-C (copes with rotation and truncation)."""
    pos = path.stat().st_size if path.exists() else 0
    inode = path.stat().st_ino if path.exists() else None
    while True:
        time.sleep(0.25)
        if not path.exists():
            continue
        st = path.stat()
        if st.st_ino != inode or st.st_size < pos:  # rotated or truncated: start from the top
            inode, pos = st.st_ino, 0
        if st.st_size > pos:
            with path.open("rb") as fh:
                fh.seek(pos)
                chunk = fh.read()
            pos += len(chunk)
            click.echo(chunk.decode("utf-8", errors="replace"), nl=False)


@click.command("logs")
@click.argument("instance", default="supervisor")
@click.option("--name", default="default", show_default=True, help="Which swarm.")
@click.option("-f", "--follow", "follow_", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option(
    "-n", "--lines", default=50, show_default=True, type=click.IntRange(min=0), help="Last N lines."
)
@pass_ctx
def command(ctx: Ctx, instance: str, name: str, follow_: bool, lines: int) -> None:
    """Show the log of INSTANCE (an id as `swarm ps` shows it, e.g. 0) or of the supervisor.

    Logs stay after `swarm down`; each instance keeps 3 rotated old logs (instance-0.log.1 ...)."""
    rf = RunFile(name, ctx.dirs)
    path = log_path(rf, instance)
    if not path.exists():
        have = sorted(p.name for p in rf.log_dir.glob("*.log")) if rf.log_dir.is_dir() else []
        raise SwarmStateError(
            f"no log {path}"
            + (f"; there are: {', '.join(have)}" if have else f" (no logs of swarm {name!r})")
        )
    if lines:
        click.echo(log_tail(path, lines))
    if follow_:
        try:
            follow(path)
        except KeyboardInterrupt:
            return

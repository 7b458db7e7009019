"""``swarm down``: stop a swarm, from any shell, also after its supervisor was killed."""

from __future__ import annotations

import click

from ..errors import NotRunningError
from ..swarm.runfile import RunFile, list_names
from ..swarm.teardown import teardown
from .app import Ctx, pass_ctx


@click.command("down")
@click.option("--name", default="default", show_default=True, help="Which swarm.")
@click.option("--all", "all_", is_flag=True, help="Stop every swarm of this user.")
@pass_ctx
def command(ctx: Ctx, name: str, all_: bool) -> None:
    """Stop the supervisor, the proxy and every instance (TERM, grace, KILL to each process group).

    Uses the run file alone (not the config file, which may have changed or broken since), so it
    works after the supervisor itself was killed; a pid that now belongs to another program is
    never signalled. Nothing to stop is not an error: it says so and exits 0, with or without
    --all (as `docker compose down` does)."""
    names = list_names(ctx.dirs) if all_ else [name]
    stopped = 0
    for n in names:
        try:
            lines = teardown(RunFile(n, ctx.dirs))  # the grace the swarm was started with
        except NotRunningError:
            continue  # gone between the listing and now, or never started
        for line in lines:
            ctx.console.print(f"  {line}", highlight=False)
        ctx.console.print(f"Swarm {n!r} is down.", highlight=False)
        stopped += 1
    if not stopped:
        what = "No swarm is running" if all_ else f"No swarm named {name!r} is running"
        ctx.console.print(f"{what}: nothing to stop.", highlight=False)

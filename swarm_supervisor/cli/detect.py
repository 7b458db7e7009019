"""``swarm detect``: what this machine has."""

from __future__ import annotations

import click

from .app import Ctx, pass_ctx


@click.command("detect")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def command(ctx: Ctx, as_json: bool) -> None:
    """Show CPU, RAM and GPUs (and the llama-server binary once one is known)."""
    raise NotImplementedError

"""``swarm opencode``: the opencode provider config of the running swarm, printed or merged in."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import opencode
from ..swarm.runfile import RunFile
from .app import Ctx, pass_ctx


@click.command("opencode")
@click.option("--name", default="default", show_default=True, help="Which swarm.")
@click.option(
    "--model-id",
    help="The model's name in opencode (models.ID, model = swarm/ID): the swarm's model id or one of "
    "its proxy.aliases. Default: the swarm's model id.",
)
@click.option("--write", is_flag=True, help="Merge it into ./opencode.json instead of printing it.")
@click.option(
    "--path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file --write merges into (implies --write). Default: ./opencode.json.",
)
@pass_ctx
def command(ctx: Ctx, name: str, model_id: str | None, write: bool, path: Path | None) -> None:
    """Print the opencode config for the running swarm (JSON), or merge it into opencode.json.

    The provider is `swarm` (@ai-sdk/openai-compatible at the swarm's base URL); its model gets
    limit.context = the context per slot and limit.output = a quarter of it. `--write` replaces
    only provider.swarm and `model` and keeps every other key and provider; a file that is not
    strict JSON (comments: JSONC) is refused and left untouched.

    \b
    swarm opencode                   print it
    swarm opencode --write           merge it into ./opencode.json
    swarm opencode --path ~/.config/opencode/opencode.json
    """
    if model_id is not None and not model_id.strip():
        raise click.BadParameter("must not be empty", param_hint="--model-id")
    ep = opencode.endpoint(RunFile(name, ctx.dirs), requires_key_default=bool(ctx.config.proxy.api_key))
    config = opencode.provider_config(ep, model_id)
    warnings = opencode.warnings_for(ep)
    if path is None and not write:
        click.echo(json.dumps(config, indent=2, ensure_ascii=False))
    else:
        target = path or Path("opencode.json")
        result = opencode.merge_into(target, config)
        for line in opencode.describe(target, result, config["model"]):
            ctx.console.print(line, highlight=False)
        warnings += result.warnings
    for warning in warnings:
        ctx.warn(warning)

"""The ``swarm`` click group and the context object every command receives."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from ..config import Catalogue, Config, load_catalogue, load_config
from ..errors import SwarmError
from ..paths import Dirs, dirs


class SwarmClickError(click.ClickException):
    """A :class:`SwarmError` shown as one line (no traceback), with the error's exit code."""

    def __init__(self, err: SwarmError) -> None:
        super().__init__(str(err))
        self.error = err
        setattr(self, "exit_code", err.exit_code)  # noqa: B010 (click declares it a ClassVar)

    def show(self, file: object = None) -> None:
        # soft_wrap: one line however narrow the terminal, so paths and commands stay copyable
        Console(stderr=True).print(
            f"[bold red]error:[/] {escape(self.format_message())}", highlight=False, soft_wrap=True
        )


class SwarmGroup(click.Group):
    """Turns every :class:`SwarmError` raised by a command into :class:`SwarmClickError`."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SwarmError as exc:
            raise SwarmClickError(exc) from None


@dataclass
class Ctx:
    """What commands share: where things live, the config and the catalogue (loaded on first use)."""

    config_path: Path | None = None
    catalogue_path: Path | None = None
    verbose: int = 0
    console: Console = field(default_factory=Console)
    err: Console = field(default_factory=lambda: Console(stderr=True))

    @cached_property
    def dirs(self) -> Dirs:
        return dirs()

    @cached_property
    def config(self) -> Config:
        if self.config_path is not None:
            return load_config(self.config_path, required=True)
        return load_config(self.dirs.config_file)

    @cached_property
    def catalogue(self) -> Catalogue:
        return load_catalogue(self.catalogue_path)

    def warn(self, message: str) -> None:
        self.err.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False)


pass_ctx = click.make_pass_decorator(Ctx)


@click.group(cls=SwarmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SWARM_CONFIG",
    help="Config file (TOML). Default: config.toml in the user's config dir (or $SWARM_HOME/config).",
)
@click.option(
    "--catalogue",
    "catalogue_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    hidden=True,
    help="Use another models.toml.",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="local-swarm", prog_name="swarm")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, catalogue_path: Path | None, verbose: int) -> None:
    """Local Swarm: a voting swarm of small coding models behind one OpenAI-compatible endpoint.

    \b
    swarm detect     what this machine has
    swarm plan       what would run here, and the memory arithmetic
    swarm pull       get llama-server and the model weights
    swarm up         start the swarm (returns once every instance is ready)
    swarm ps         the instances, their state and memory
    swarm logs       an instance's log (-f follows it)
    swarm down       stop everything
    swarm opencode   the opencode provider config for the swarm (--write: into opencode.json)
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_time=False, show_path=False)],
        force=True,
    )
    ctx.obj = Ctx(config_path=config_path, catalogue_path=catalogue_path, verbose=verbose)

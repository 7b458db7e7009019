"""The ``swarm`` click group and the context object every command receives.

Each command's module is imported only when that command runs (:class:`SwarmGroup`), and rich and
pydantic only when first used, so ``swarm --version`` or ``swarm ps`` does not pay for the proxy,
the plan or the downloads (``python -X importtime -m swarm_supervisor ps`` shows what one loads).
"""

from __future__ import annotations

import importlib
import time
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .. import __version__
from ..errors import SwarmError

if TYPE_CHECKING:
    import logging

    from rich.console import Console

    from ..config import Catalogue, Config
    from ..paths import Dirs

#: command name -> (the module of swarm_supervisor.cli that defines its ``command``, the one line
#: ``swarm --help`` shows for it without importing the module), in the order a user meets them
COMMANDS = {
    "detect": ("detect", "What this machine has: CPU, RAM, GPUs, the cached llama-server."),
    "plan": ("plan", "What would run here, and the memory sum that justifies it."),
    "pull": ("pull", "Get llama-server and the model's weights into the cache."),
    "up": ("up", "Start the swarm; returns once every instance is ready."),
    "ps": ("ps", "The running swarm: base URL, model, each instance's state and memory."),
    "logs": ("logs", "The supervisor's or an instance's log (-f follows it)."),
    "down": ("down", "Stop a swarm (--all: every swarm)."),
    "opencode": ("opencode", "The opencode provider config for the swarm (--write: into opencode.json)."),
    "models": ("models", "The cached weights and binaries, and who uses each (--rm NAME removes one)."),
}


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class SwarmClickError(click.ClickException):
    """A :class:`SwarmError` shown as one line (no traceback), with the error's exit code."""

    def __init__(self, err: SwarmError) -> None:
        super().__init__(str(err))
        self.error = err
        setattr(self, "exit_code", err.exit_code)  # noqa: B010 (click declares it a ClassVar)

    def show(self, file: object = None) -> None:
        # soft_wrap: one line however narrow the terminal, so paths and commands stay copyable
        _console(stderr=True).print(
            f"[bold red]error:[/] {_escape(self.format_message())}", highlight=False, soft_wrap=True
        )


class SwarmGroup(click.Group):
    """Imports a command's module when the command is used; turns every :class:`SwarmError`
    raised by a command into :class:`SwarmClickError`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *sorted(set(self.commands) - set(COMMANDS))]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "up":
            _prestart_supervisor(ctx)
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module = importlib.import_module(f"{__package__}.{COMMANDS[cmd_name][0]}")
            self.add_command(module.command, cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command once, with its line from :data:`COMMANDS` (no command module is imported)."""
        rows = [(name, COMMANDS[name][1]) for name in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SwarmError as exc:
            raise SwarmClickError(exc) from None


def _prestart_supervisor(ctx: click.Context) -> None:
    """``swarm up``: start its supervisor process before the command's modules are imported, so
    that the two Python starts overlap (swarm/prestart.py); it waits for the swarm's name, and
    exits on its own unless ``swarm up`` hands one over."""
    from ..swarm.prestart import META_KEY, Prestarted
    from .quick import missed

    if META_KEY in ctx.meta:
        return
    miss = missed()  # quick.py started it already, when its remembered launch did not fit
    pre = miss.prestarted if miss is not None else Prestarted.start()
    ctx.meta[META_KEY] = pre
    ctx.call_on_close(pre.close)


class Ctx:
    """What commands share: where things live, the config and the catalogue (loaded on first use).

    A plain class, not a dataclass: `swarm --version` should not pay for importing dataclasses
    (nor logging, nor the paths' platformdirs; each is imported where first used)."""

    def __init__(
        self, config_path: Path | None = None, catalogue_path: Path | None = None, verbose: int = 0
    ) -> None:
        self.config_path = config_path
        self.catalogue_path = catalogue_path
        self.verbose = verbose
        self.invoked_at = time.time()  # when the group ran (timeline.py)

    @cached_property
    def console(self) -> Console:
        return _console()

    @cached_property
    def err(self) -> Console:
        return _console(stderr=True)

    @cached_property
    def dirs(self) -> Dirs:
        from ..paths import dirs

        return dirs()

    @cached_property
    def config(self) -> Config:
        from ..config import load_config

        if self.config_path is not None:
            return load_config(self.config_path, required=True)
        return load_config(self.dirs.config_file)

    @cached_property
    def catalogue(self) -> Catalogue:
        from ..config import load_catalogue

        return load_catalogue(self.catalogue_path)

    def warn(self, message: str) -> None:
        self.err.print(f"[bold yellow]warning:[/] {_escape(message)}", highlight=False)


pass_ctx = click.make_pass_decorator(Ctx)


def _rich_on_first_record(level: int) -> logging.Handler:
    """rich's log handler, imported when the first record arrives (most runs log nothing)."""
    import logging

    class RichOnFirstRecord(logging.Handler):
        def __init__(self) -> None:
            super().__init__(level)
            self._inner: logging.Handler | None = None

        def emit(self, record: logging.LogRecord) -> None:
            if self._inner is None:
                from rich.logging import RichHandler

                self._inner = RichHandler(console=_console(stderr=True), show_time=False, show_path=False)
                self._inner.setFormatter(self.formatter)
            self._inner.emit(record)

    return RichOnFirstRecord()


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
@click.version_option(__version__, prog_name="swarm")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, catalogue_path: Path | None, verbose: int) -> None:
    """Local Swarm: a voting swarm of small coding models behind one OpenAI-compatible endpoint.

    `swarm COMMAND --help` shows what each command takes (docs/cli.md has them all).
    """
    import logging

    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[_rich_on_first_record(level)],
        force=True,
    )
    ctx.obj = Ctx(config_path=config_path, catalogue_path=catalogue_path, verbose=verbose)

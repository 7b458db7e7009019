"""``python -m bench SUBCOMMAND``: one module per subcommand (``bench/<name>.py`` exposing a
click ``command``); add yours to ``SUBCOMMANDS``."""

from __future__ import annotations

import importlib

import click

#: modules under bench/ that expose ``command``
SUBCOMMANDS: tuple[str, ...] = (
    "vote",
    "quality",
    "quality_pool",
    "quality_pooled",
    "quality_offline",
    "overhead",
    "topology",
    "load",
    "startup",
    "soak",
    "agent",
    "toolcalls",
    "cli",
)


@click.group()
def cli() -> None:
    """Local Swarm benchmarks: each prints a table and writes bench/results/<name>.json."""


for _name in SUBCOMMANDS:
    cli.add_command(importlib.import_module(f"bench.{_name}").command)

if __name__ == "__main__":
    cli()

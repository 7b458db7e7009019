"""``swarm``: the command line. A wiring file: each command lives in its own module."""

from __future__ import annotations

from . import detect, down, logs, opencode, plan, ps, pull, up
from .app import main

for _module in (detect, plan, pull, up, ps, down, logs, opencode):
    main.add_command(_module.command)

__all__ = ["main"]

"""``swarm``: the command line. A wiring file: each command lives in its own module, imported
when it runs (:data:`.app.COMMANDS`)."""

from __future__ import annotations

from .app import main

__all__ = ["main"]

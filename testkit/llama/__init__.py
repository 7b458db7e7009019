"""The fake llama-server: one surface (``surface.py``), three thin transports (``inprocess.py``,
``server.py``, ``fast.py``). Importing this package imports nothing beyond the standard library."""

from __future__ import annotations

from pathlib import Path

#: the fake as an executable llama-server (``swarm up --llama-server``, a Spec's binary)
FAKE_LLAMA_SERVER = Path(__file__).resolve().parent / "server.py"

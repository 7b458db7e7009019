"""Shared fixtures: isolated dirs, and the real llama-server binary and SmolLM2 model.

``make test`` runs ``swarm pull --model smollm2:135m`` first, which leaves both in the user's
cache; tests that isolate their state with ``SWARM_HOME`` still reuse that one build.
``SWARM_TEST_LLAMA_SERVER`` / ``SWARM_TEST_MODEL`` point elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _missing(what: str) -> None:
    msg = f"{what} not found: run `make setup` (or set the SWARM_TEST_* variable)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture
def swarm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty SWARM_HOME for this test: config, cache and state all under tmp_path."""
    home = tmp_path / "swarm-home"
    monkeypatch.setenv("SWARM_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def llama_server_bin() -> Path:
    env = os.environ.get("SWARM_TEST_LLAMA_SERVER")
    if env and Path(env).is_file():
        return Path(env)
    _missing("llama-server")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    env = os.environ.get("SWARM_TEST_MODEL")
    if env and Path(env).is_file():
        return Path(env)
    _missing("the SmolLM2 model")
    raise AssertionError("unreachable")

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


def _user_llama_server() -> Path | None:
    """The llama-server that ``make setup`` left in the user's cache (before SWARM_HOME moves)."""
    try:
        import bin_fetch
        from swarm_supervisor.paths import dirs

        found = bin_fetch.find_cached(dirs().bin)
        return found.path if found is not None else None
    except Exception:  # a broken cache shows up in bin_fetch's own tests, not here
        return None


_USER_LLAMA_SERVER = _user_llama_server()


@pytest.fixture(scope="session")
def llama_server_bin() -> Path:
    """A real llama-server: ``SWARM_TEST_LLAMA_SERVER``, else the one in the user's cache."""
    env = os.environ.get("SWARM_TEST_LLAMA_SERVER")
    if env and Path(env).is_file():
        return Path(env)
    if _USER_LLAMA_SERVER is not None:
        return _USER_LLAMA_SERVER
    _missing("llama-server")
    raise AssertionError("unreachable")


def _user_smollm2() -> Path | None:
    """Where ``swarm pull --model smollm2:135m`` (``make setup``) leaves SmolLM2 in the user's cache.

    Computed when this file is imported, before any test moves ``SWARM_HOME``.
    """
    try:
        from swarm_supervisor.config import load_catalogue
        from swarm_supervisor.paths import dirs
        from swarm_supervisor.store.embedded import embedded_path

        variant = load_catalogue().find("smollm2", "135m")
        return embedded_path(variant, "q4_1", dirs().models)
    except Exception:  # a broken catalogue shows up in its own tests, not here
        return None


_USER_SMOLLM2 = _user_smollm2()


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct Q4_1 file: ``SWARM_TEST_MODEL``, else the user's cache."""
    env = os.environ.get("SWARM_TEST_MODEL")
    if env and Path(env).is_file():
        return Path(env)
    if _USER_SMOLLM2 is not None and _USER_SMOLLM2.is_file():
        return _USER_SMOLLM2
    _missing("the SmolLM2 model")
    raise AssertionError("unreachable")


@pytest.fixture
def hub_unreachable(swarm_home: Path, smollm2_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No route to the Hugging Face hub (a port nobody listens on), and the embedded SmolLM2 cached
    where `swarm pull --model smollm2:135m` leaves it: what `swarm up` falls back to. Its path."""
    import socket

    from swarm_supervisor.config import load_catalogue
    from swarm_supervisor.paths import dirs
    from swarm_supervisor.store import embedded_path

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
    closed.close()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    seeded = embedded_path(load_catalogue().find("smollm2", "135m"), "q4_1", dirs().models)
    seeded.parent.mkdir(parents=True)
    seeded.symlink_to(smollm2_gguf)
    return seeded

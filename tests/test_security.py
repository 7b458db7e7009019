"""What the threat model (docs/security.md) promises: a warning when the endpoint is exposed without a
key, and private dirs for what is downloaded."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from swarm_supervisor.config import load_catalogue
from swarm_supervisor.paths import dirs
from swarm_supervisor.store import resolve_model
from swarm_supervisor.swarm.launcher import exposure_warning


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_key(host: str) -> None:
    assert exposure_warning(host, None) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "my-host.example"])
def test_another_address_without_a_key_warns_and_says_what_to_do(host: str) -> None:
    warning = exposure_warning(host, None)
    assert warning is not None and host in warning and "proxy.api_key" in warning


def test_another_address_with_a_key_is_quiet() -> None:
    assert exposure_warning("0.0.0.0", "s3cret") is None


def test_the_cache_dir_is_private_once_a_model_is_resolved(tmp_path: Path, smollm2_gguf: Path) -> None:
    d = dirs({"SWARM_HOME": str(tmp_path / "home")})
    resolve_model(smollm2_gguf, load_catalogue(), d)
    assert stat.S_IMODE(d.cache.stat().st_mode) == 0o700

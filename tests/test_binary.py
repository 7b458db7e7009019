"""Which llama-server a swarm runs: the flag, then SWARM_LLAMA_SERVER, then the config, then the
search; `swarm pull` and `swarm up` share it. Real executables (copies of the fake llama-server,
which answers --version like the real one), not mocks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bin_fetch.known import Known
from swarm_supervisor.binary import KNOWN_FILE, explicit_binary, find_binary
from swarm_supervisor.config import BinaryConfig, Config
from swarm_supervisor.errors import FetchError
from swarm_supervisor.hardware import detect
from swarm_supervisor.paths import dirs

FAKE = Path(__file__).parent / "fakes" / "fake_llama_server.py"


def _server(folder: Path) -> Path:
    folder.mkdir(parents=True)
    path = folder / "llama-server"
    shutil.copy2(FAKE, path)
    return path


@pytest.fixture
def three(tmp_path: Path) -> tuple[Path, Path, Path]:
    return _server(tmp_path / "flag"), _server(tmp_path / "env"), _server(tmp_path / "config")


def test_the_precedence_is_flag_then_environment_then_config(tmp_path: Path) -> None:
    cfg = Config(binary=BinaryConfig(llama_server="/from/config"))
    env = {"SWARM_LLAMA_SERVER": "/from/env"}
    assert explicit_binary(Path("/from/flag"), cfg, env) == Path("/from/flag")
    assert explicit_binary(None, cfg, env) == Path("/from/env")
    assert explicit_binary(None, cfg, {}) == Path("/from/config")
    assert explicit_binary(None, Config(), {}) is None


def test_find_binary_runs_the_one_the_precedence_names(
    swarm_home: Path, three: tuple[Path, Path, Path]
) -> None:
    flag, env_bin, cfg_bin = three
    cfg = Config(binary=BinaryConfig(llama_server=str(cfg_bin)))
    env = {"SWARM_LLAMA_SERVER": str(env_bin)}
    hw, d = detect(), dirs()
    got = find_binary(cfg, d, hw, flag=flag, env=env)
    assert (got.path, got.source, got.server) == (flag, "explicit", "llama.cpp")
    assert got.version.startswith("0.0.0-fake")
    assert find_binary(cfg, d, hw, env=env).path == env_bin
    assert find_binary(cfg, d, hw, env={}).path == cfg_bin
    # each answer is remembered in the cache, so the next `swarm up` does not run --version again
    assert Known(d.bin / KNOWN_FILE).get(cfg_bin, "version") == got.version


def test_a_configured_binary_that_does_not_run_is_an_error_that_names_it(
    swarm_home: Path, three: tuple[Path, Path, Path]
) -> None:
    _, env_bin, _ = three
    broken = env_bin.parent / "broken"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    cfg = Config(binary=BinaryConfig(llama_server=str(broken)))
    with pytest.raises(FetchError) as err:
        find_binary(cfg, dirs(), detect(), env={})
    assert str(broken) in str(err.value) and "binary.llama_server" in str(err.value)

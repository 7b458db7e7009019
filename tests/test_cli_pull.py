"""``swarm pull`` through CliRunner (fake hub, embedded fallback, --no-fallback) and as a real subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from swarm_supervisor.cli import main
from swarm_supervisor.config import load_catalogue
from swarm_supervisor.paths import dirs
from swarm_supervisor.store import embedded_path
from testkit.hub_server import HubServer, tiny_gguf

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def binary_env(monkeypatch: pytest.MonkeyPatch, llama_server_bin: Path) -> Path:
    monkeypatch.setenv("SWARM_LLAMA_SERVER", str(llama_server_bin))
    return llama_server_bin


@pytest.fixture
def seeded_smollm2(swarm_home: Path, smollm2_gguf: Path) -> Path:
    """The cache as an earlier `swarm pull --model smollm2:135m` leaves it (a link to the real file)."""
    target = embedded_path(load_catalogue().find("smollm2", "135m"), "q4_1", dirs().models)
    target.parent.mkdir(parents=True)
    target.symlink_to(smollm2_gguf)
    return target


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


@pytest.mark.llama
def test_pull_embedded_prints_where_both_are(binary_env: Path, seeded_smollm2: Path) -> None:
    code, out, _ = run("pull", "--model", "smollm2:135m", "--json")
    assert code == 0
    got = json.loads(out)
    assert got["llama_server"]["path"] == str(binary_env)
    assert got["llama_server"]["source"] == "explicit"
    assert got["llama_server"]["version"]
    assert got["model"]["path"] == str(seeded_smollm2)
    assert got["model"]["source"] == "embedded"
    assert got["model"]["ref"] == "smollm2:135m:q4_1"
    assert (got["model"]["n_layers"], got["model"]["n_kv_heads"], got["model"]["context"]) == (30, 3, 8192)
    assert got["model"]["warning"] is None
    code, out, _ = run("pull", "--model", "smollm2:135m")
    assert code == 0
    assert "llama-server" in out and "smollm2:135m:q4_1" in out and "embedded" in out
    assert f"model: {seeded_smollm2}" in out


@pytest.mark.llama
def test_unreachable_hub_falls_back_with_a_warning(
    binary_env: Path, seeded_smollm2: Path, no_hub: None
) -> None:
    code, out, err = run("pull", "--cpu-only", "--ram", "64GiB", "--json")
    assert code == 0
    got = json.loads(out)
    assert got["model"]["ref"] == "smollm2:135m:q4_1"
    planned = got["model"]["fallback_from"]
    assert planned and not planned.startswith("smollm2")
    text = " ".join(err.split())  # rich wraps long lines
    assert text.startswith(f"warning: would have run {planned} (")
    assert "the hub is unreachable" in text and "--model PATH.gguf" in text


@pytest.mark.llama
def test_no_fallback_fails_in_one_line(binary_env: Path, swarm_home: Path, no_hub: None) -> None:
    code, out, err = run("pull", "--cpu-only", "--ram", "64GiB", "--no-fallback")
    assert code == 1
    assert out == ""
    text = " ".join(err.split())
    assert text.startswith("error: the Hugging Face hub cannot be reached")
    assert "smollm2:135m:q4_1" in text
    assert "Traceback" not in err
    assert not (dirs().models / "pypi").exists()


@pytest.fixture
def tiny_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A fake hub serving one tiny GGUF, and a catalogue (models.toml) that lists it."""
    with HubServer() as hub:
        hub.publish("t/tiny", "tiny-q4_k_m.gguf", tiny_gguf(tmp_path / "t.gguf", n_layers=3).read_bytes())
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        shipped = (ROOT / "models.toml").read_text()
        tiny = (
            '[[models]]\nname = "tiny"\ndisplay = "Tiny"\n\n[[models.variants]]\nsize = "1b"\n'
            'params_b = 1.0\nn_layers = 4\nn_kv_heads = 2\nhead_dim = 8\ncontext = 2048\nrepo = "t/tiny"\n\n'
            '[models.variants.quants.q4_k_m]\nfiles = ["tiny-q4_k_m.gguf"]\nbytes = 30000\n\n'
        )
        cat = tmp_path / "models.toml"
        cat.write_text(tiny + shipped)
        yield cat


@pytest.mark.llama
def test_pull_from_the_hub_then_from_the_cache(binary_env: Path, swarm_home: Path, tiny_hub: Path) -> None:
    code, out, _ = run("--catalogue", str(tiny_hub), "pull", "--model", "tiny:1b:q4_k_m", "--json")
    assert code == 0, out
    got = json.loads(out)["model"]
    assert got["source"] == "hub"
    assert got["n_layers"] == 3
    assert Path(got["path"]).is_relative_to(dirs().models / "hub")
    code, out, _ = run("--catalogue", str(tiny_hub), "pull", "--model", "tiny:1b:q4_k_m", "--json")
    assert json.loads(out)["model"]["source"] == "cache"


def test_corrupt_local_model_is_refused_naming_it(swarm_home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model at all" * 10)
    code, _, err = run("pull", "--model", str(bad), "--llama-server", "/nonexistent")
    assert code != 0
    assert "bad.gguf" in " ".join(err.split())
    assert "Traceback" not in err


@pytest.mark.llama
def test_real_subprocess_twice(binary_env: Path, seeded_smollm2: Path) -> None:
    env = dict(os.environ)
    for _ in range(2):  # the second run is all cache
        proc = subprocess.run(
            [sys.executable, "-m", "swarm_supervisor", "pull", "--model", "smollm2:135m", "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout)
        assert got["model"]["path"] == str(seeded_smollm2)
        assert got["llama_server"]["path"] == str(binary_env)

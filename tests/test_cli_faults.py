"""`swarm up / ps / down` when things go wrong around them: a damaged run file, a lost race for a
name, odd names, a broken config, a module in the working directory, an address that cannot be
bound, `make up` twice. Separate processes, fake llama-servers, a tiny real GGUF for the plan."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from swarm_supervisor.errors import SwarmStateError
from swarm_supervisor.paths import dirs
from swarm_supervisor.swarm.runfile import RunFile, check_name, list_names
from swarm_supervisor.swarm.teardown import teardown
from testkit.hub_server import tiny_gguf
from testkit.llama import FAKE_LLAMA_SERVER

FAKE = FAKE_LLAMA_SERVER
REPO = Path(__file__).resolve().parent.parent


def swarm(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The CLI as the `swarm` console script runs it (``-P``: the working directory is not on sys.path)."""
    return subprocess.run(
        [sys.executable, "-P", "-m", "swarm_supervisor", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture
def home(swarm_home: Path, tmp_path: Path) -> Iterator[Path]:
    cfg = swarm_home / "config"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text(
        "[supervisor]\nhealth_interval_s = 0.3\nrestart_backoff_s = 0.2\nstop_grace_s = 2.0\n"
    )
    try:
        yield swarm_home
    finally:
        for name in list_names(dirs()):
            with contextlib.suppress(SwarmStateError):
                teardown(RunFile(name, dirs()), grace_s=2.0, heal_s=0.5)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return tiny_gguf(tmp_path / "tiny.gguf")


def up(model: Path, *extra: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    args = ["--model", str(model), "--instances", "2", "--llama-server", str(FAKE), "--port", "0"]
    return swarm("up", *args, *extra, cwd=cwd)


def ps_json(name: str = "default") -> dict[str, Any]:
    r = swarm("ps", "--json", "--name", name)
    assert r.returncode == 0, r.stderr
    data: dict[str, Any] = json.loads(r.stdout)
    return data


def chat(base_url: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}, timeout=30
    )


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_up_from_a_folder_with_a_module_named_like_the_standard_library(
    home: Path, model: Path, tmp_path: Path
) -> None:
    work = tmp_path / "project"
    work.mkdir()
    for module in ("inspect", "json", "asyncio", "logging"):
        (work / f"{module}.py").write_text(f"raise SystemExit('the user\\'s {module}.py was imported')\n")
    r = up(model, cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr
    assert chat(ps_json()["base_url"]).status_code == 200


def test_a_damaged_run_file_is_never_deleted_and_heals(home: Path, model: Path) -> None:
    assert up(model).returncode == 0
    rf = RunFile("default", dirs())
    base_url = ps_json()["base_url"]
    rf.path.write_text("{")
    r = swarm("ps")
    if r.returncode == 0:  # the supervisor was faster than `swarm ps`: it rewrote the file already
        assert "up" in r.stdout
    else:
        assert "damaged" in r.stderr and "nothing was deleted" in r.stderr, r.stderr
    assert rf.key_path.exists() and rf.launch_path.exists()
    deadline = time.monotonic() + 10
    while swarm("ps").returncode != 0:  # the supervisor writes it again
        assert time.monotonic() < deadline, "the run file was not rewritten"
        time.sleep(0.3)
    assert ps_json()["status"] == "up"
    assert chat(base_url).status_code == 200
    rf.path.unlink()  # deleted: back within a health round too
    deadline = time.monotonic() + 10
    while not rf.path.exists():
        assert time.monotonic() < deadline, "the deleted run file was not rewritten"
        time.sleep(0.1)
    assert swarm("down").returncode == 0


def test_down_finds_the_swarm_when_the_run_file_stays_damaged(home: Path, model: Path) -> None:
    assert up(model).returncode == 0
    status = ps_json()
    instances = [i["pid"] for i in status["instances"]]
    os.kill(status["supervisor_pid"], signal.SIGKILL)  # nothing will rewrite the file now
    rf = RunFile("default", dirs())
    rf.path.write_text("not json")
    r = swarm("ps")
    assert r.returncode != 0 and "damaged" in r.stderr
    assert rf.path.read_text() == "not json"  # ps never deletes what it cannot read
    down = swarm("down")
    assert down.returncode == 0, down.stderr
    assert "damaged" in down.stdout
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in instances):
        assert time.monotonic() < deadline, "instances survived `swarm down`"
        time.sleep(0.1)
    assert not rf.path.exists() and not rf.key_path.exists()


def test_the_loser_of_two_ups_never_touches_the_winners_key(home: Path, model: Path) -> None:
    from swarm_supervisor.cli.options import PlanChoices
    from swarm_supervisor.cli.planning import plan_for
    from swarm_supervisor.config import Config, load_catalogue
    from swarm_supervisor.swarm.launcher import build_spec, start_detached

    assert up(model).returncode == 0
    rf = RunFile("default", dirs())
    key, launch = rf.key_path.read_text(), rf.launch_path.read_text()
    # the second `swarm up` got past the early check before the first claimed the name
    choices = PlanChoices(model=str(model), instances=1)
    plan = plan_for(Config(), choices, catalogue=load_catalogue(), dirs=dirs()).plan
    spec = build_spec(rf, plan, binary=FAKE, model_path=model, config=Config(), host="127.0.0.1", port=0)
    with pytest.raises(SwarmStateError, match="already running"):
        start_detached(rf, spec)
    assert rf.key_path.read_text() == key
    assert rf.launch_path.read_text() == launch
    r = chat(ps_json()["base_url"])
    assert r.status_code == 200, r.text  # not 401 "Invalid API Key"


def test_names_that_would_reach_another_file_are_refused(home: Path) -> None:
    rf = RunFile("x", dirs())
    rf.ensure_dirs()
    rf.launch_path.write_text("{}")
    r = swarm("ps", "--name", "x.launch")
    assert r.returncode != 0 and "invalid swarm name" in r.stderr
    assert rf.launch_path.exists()
    for bad in ("x\n", "x.launch", ".hidden", "a/b", "../x", "x" * 65):
        with pytest.raises(SwarmStateError, match="invalid swarm name"):
            check_name(bad)
    assert check_name("second.swarm_1") == "second.swarm_1"


def test_ps_logs_and_down_work_with_a_broken_config(home: Path, model: Path) -> None:
    assert up(model).returncode == 0
    status = ps_json()
    (home / "config" / "config.toml").write_text("[plan]\ncontxt = 4096\n")
    assert swarm("plan").returncode == 2  # commands that use the config name the bad key
    assert swarm("ps").returncode == 0
    assert swarm("logs").returncode == 0
    down = swarm("down")
    assert down.returncode == 0, down.stderr
    for inst in status["instances"]:
        assert not _alive(inst["pid"])


def test_make_up_twice_leaves_the_running_swarm_alone(home: Path, model: Path) -> None:
    assert up(model).returncode == 0
    pid = ps_json()["supervisor_pid"]
    again = up(model, "--if-not-running")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    # and ends as a fresh start does: where it is and a request to try
    assert f"Base URL: {ps_json()['base_url']}" in again.stdout
    assert "curl -s " in again.stdout and " opencode --write" in again.stdout
    assert ps_json()["supervisor_pid"] == pid
    assert up(model).returncode == 1  # without the flag it is still an error
    recipe = subprocess.run(["make", "-n", "up", "SWARM=swarm"], cwd=REPO, capture_output=True, text=True)
    assert "swarm up --if-not-running" in recipe.stdout, recipe.stdout + recipe.stderr


def test_an_address_that_cannot_be_bound_is_named_with_its_real_cause(home: Path, model: Path) -> None:
    r = swarm("up", "--model", str(model), "--host", "192.0.2.1", "--port", "8123")
    assert r.returncode != 0
    assert "192.0.2.1 is not an address of this machine" in r.stderr, r.stderr
    assert "in use" not in r.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = swarm("up", "--model", str(model), "--port", str(port))
    assert r.returncode != 0 and f"port {port} on 127.0.0.1 is in use by another program" in r.stderr
    if socket.has_ipv6:
        try:
            with socket.socket(socket.AF_INET6) as s6:
                s6.bind(("::1", 0))
        except OSError:
            return
        r = up(model, "--host", "::1")
        assert r.returncode == 0, r.stderr
        assert chat(ps_json()["base_url"]).status_code == 200

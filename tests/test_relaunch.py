"""A remembered launch (swarm/relaunch.py, cli/quick.py): the second `swarm up` of the same command
starts the same instances without planning again, before the CLI loads the plan or pydantic;
a change of anything that decides the launch (the model file, the config, the binary, the
environment, the flags) plans again, and a remembered launch never starts what changed.

The swarms run the fake llama-server on a tiny real GGUF: what is checked is what the CLI
decides and hands the supervisor (the instances' argv), not the models.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from swarm_supervisor.cli.quick import _available_ram
from swarm_supervisor.paths import dirs
from swarm_supervisor.swarm import relaunch
from swarm_supervisor.swarm.runfile import RunFile
from testkit.hub_server import tiny_gguf
from testkit.llama import FAKE_LLAMA_SERVER
from tests.test_cli_up import configured_home
from tests.test_daemon_start import swarm_up_observed

#: what `swarm up --verbose` says when it started from its record
REMEMBERED = "remembered launch checked"


@pytest.fixture
def home(swarm_home: Path) -> Iterator[Path]:
    with configured_home(swarm_home, "stop_grace_s = 3.0\n") as h:
        yield h


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    """A copy of the fake llama-server that a test may change."""
    path = tmp_path / "bin" / "llama-server"
    path.parent.mkdir()
    shutil.copy2(FAKE_LLAMA_SERVER, path)
    return path


#: the copied fake llama-server finds ``testkit`` through this (beside its original it finds it by path)
REPO = Path(__file__).resolve().parents[1]


def swarm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "swarm_supervisor", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200", "PYTHONPATH": path, **(env or {})},
    )


def up(
    model: Path, binary: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    args = ["--model", str(model), "--instances", "2", "--topology", "processes"]
    return swarm("up", *args, "--llama-server", str(binary), "--port", "0", "--verbose", *extra, env=env)


def started(
    model: Path, binary: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[bool, list[str]]:
    """``swarm up`` (it must succeed), then ``swarm down``: whether it started from its record, and
    the argv of its first instance with the port taken out."""
    r = up(model, binary, *extra, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    rec = json.loads(RunFile("default", dirs()).path.read_text())
    argv = psutil.Process(rec["instances"][0]["pid"]).cmdline()
    argv[argv.index("--port") + 1] = "P"
    assert swarm("down").returncode == 0
    return REMEMBERED in r.stdout, argv


def test_the_same_command_starts_the_same_instances_from_its_record(
    home: Path, tmp_path: Path, fake: Path
) -> None:
    model = tiny_gguf(tmp_path / "tiny.gguf")
    first, argv = started(model, fake)
    assert not first  # nothing remembered yet: planned
    key_before = None
    r = up(model, fake)
    assert r.returncode == 0, r.stderr
    assert REMEMBERED in r.stdout
    assert "Starting" in r.stdout and "Base URL" in r.stdout  # the same screens as a planned start
    rec = RunFile("default", dirs()).read()
    assert rec is not None and rec.status == "up" and rec.base_url
    models = httpx.get(f"{rec.base_url}/models", timeout=10, trust_env=False)
    assert models.status_code == 200  # the proxy serves
    inst = psutil.Process(rec.instances[0].pid).cmdline()
    inst[inst.index("--port") + 1] = "P"
    assert inst == argv
    key_before = RunFile("default", dirs()).key_path.read_text()
    assert swarm("down").returncode == 0
    # the record holds no internal key; every start gets a new one
    for record in (dirs().cache / "launch").glob("*.json"):
        assert key_before.strip() not in record.read_text()
        assert json.loads(record.read_text())["launch"]["api_key"] == ""


def test_the_cli_spawns_from_its_record_before_it_loads_the_plan(
    home: Path, tmp_path: Path, fake: Path
) -> None:
    model = tiny_gguf(tmp_path / "tiny.gguf")
    args = ("--model", str(model), "--instances", "2", "--llama-server", str(fake), "--port", "0")
    heavy = (
        "pydantic",
        "swarm_supervisor.plan",
        "swarm_supervisor.config",
        "swarm_supervisor.store",
    )
    first, _ = swarm_up_observed(tmp_path, *args, watch=heavy)
    assert first.returncode == 0, first.stderr
    assert swarm("down").returncode == 0
    second, events = swarm_up_observed(tmp_path, *args, watch=heavy)
    assert second.returncode == 0, second.stderr
    cli = events[0]  # the CLI's first process start: the supervisor process
    assert "swarm_supervisor.swarm.boot" in cli["argv"], events
    assert cli["loaded"] == [], f"the CLI loaded {cli['loaded']} before it started the supervisor"
    # the supervisor spawns the instances from the record without pydantic loaded
    spawns = [e for e in events if str(fake) in e["argv"]]
    assert spawns, events
    assert all(e["loaded"] == [] for e in spawns), spawns


def test_what_runs_before_the_spawn_does_not_import_psutil() -> None:
    """The CLI's path to handing over a record and the supervisor's path to its spawn read process
    start times and free RAM from /proc; psutil (10-20 ms) comes later (the supervisor's preload
    thread may bring it in beside them while it waits for the name)."""
    code = (
        "import os, sys\n"
        "import swarm_supervisor.cli.quick, swarm_supervisor.swarm.relaunch\n"
        "import swarm_supervisor.swarm.launcher, swarm_supervisor.swarm.runfile\n"
        "import swarm_supervisor.swarm.boot\n"
        "from swarm_supervisor.swarm.system import create_time_of\n"
        "from swarm_supervisor.cli.quick import _available_ram\n"
        "create_time_of(os.getpid()); _available_ram()\n"
        "print('psutil' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("False" if Path("/proc/meminfo").is_file() else "True")


@pytest.mark.parametrize("change", ["model", "config", "binary", "env", "flag"])
def test_a_changed_input_plans_again(home: Path, tmp_path: Path, fake: Path, change: str) -> None:
    model = tiny_gguf(tmp_path / "tiny.gguf", context=2048)
    started(model, fake)
    again, argv = started(model, fake)
    assert again and argv[argv.index("-c") + 1] == "2048"
    env: dict[str, str] = {}
    extra: list[str] = []
    if change == "model":  # the same path, a model of another context
        tiny_gguf(model, context=1024)
    elif change == "config":
        (home / "config" / "config.toml").write_text(
            "[supervisor]\nstop_grace_s = 3.0\n[plan]\ncontext = 1024\n"
        )
    elif change == "binary":  # a new build over the old one
        fake.write_text(fake.read_text() + "\n# rebuilt\n")
    elif change == "env":
        env = {"CUDA_VISIBLE_DEVICES": "1"}
    else:
        extra = ["--context", "1024"]
    remembered, argv = started(model, fake, *extra, env=env)
    assert not remembered, f"a changed {change} started from the old record"
    if change in ("model", "config", "flag"):
        assert argv[argv.index("-c") + 1] == "1024"  # what changed is what runs
    assert started(model, fake, *extra, env=env)[0]  # and that start is remembered in turn


def test_a_running_swarm_is_reported_as_before(home: Path, tmp_path: Path, fake: Path) -> None:
    model = tiny_gguf(tmp_path / "tiny.gguf")
    started(model, fake)
    assert up(model, fake).returncode == 0
    r = up(model, fake)
    assert r.returncode != 0 and "already running" in r.stderr


# --------------------------------------------------------------------------- the record itself


def _remember(
    where: Any,
    key: dict[str, Any],
    dep: Path,
    device: str = "cpu",
    memory: int = 10,
    valid_s: float | None = None,
) -> None:
    launch = json.dumps(
        {
            "name": "default",
            "device": device,
            "api_key": "sk-secret",
            "instances": [],
            "model_id": "m",
            "model_path": "/m.gguf",
            "proxy_host": "127.0.0.1",
            "proxy_port": 0,
            "log_dir": "/logs",
        }
    )
    relaunch.remember(
        where,
        key,
        launch_json=launch,
        deps=[(str(dep), relaunch.stat_sig(dep))],
        plan_rows=[("Voters", "2")],
        warnings=["w"],
        memory_bytes=memory,
        ready_timeout_s=60.0,
        valid_s=valid_s,
    )


def test_a_record_is_recalled_only_while_its_key_and_files_are_unchanged(
    swarm_home: Path, tmp_path: Path
) -> None:
    where = dirs()
    dep = tmp_path / "model.gguf"
    dep.write_bytes(b"GGUF1")
    env = {"SWARM_HOME": str(swarm_home), "PATH": "/usr/bin", "TERM": "xterm"}
    key = relaunch.launch_key(["up", "--port", "8001"], env, "/here")
    _remember(where, key, dep)
    got = relaunch.recall(where, key)
    assert got is not None and got.launch["api_key"] == "" and got.plan_rows == [("Voters", "2")]
    # the proxy port and variables that decide nothing are not part of the key
    assert relaunch.recall(where, relaunch.launch_key(["up", "--port=9"], {**env, "TERM": "x"}, "/here"))
    for other in (
        relaunch.launch_key(["up", "--port", "8001", "--instances", "3"], env, "/here"),
        relaunch.launch_key(["up", "--port", "8001"], {**env, "SWARM_CONFIG": "/c.toml"}, "/here"),
        relaunch.launch_key(["up", "--port", "8001"], {**env, "PATH": "/opt/bin:/usr/bin"}, "/here"),
        relaunch.launch_key(["up", "--port", "8001"], env, "/elsewhere"),  # relative paths
    ):
        assert relaunch.recall(where, other) is None
    dep.write_bytes(b"GGUF22")  # another file at the same path
    assert relaunch.recall(where, key) is None
    dep.unlink()
    assert relaunch.recall(where, key) is None


def test_a_cpu_record_needs_the_ram_its_plan_counts_on(swarm_home: Path, tmp_path: Path) -> None:
    dep = tmp_path / "m"
    dep.write_bytes(b"x")
    key = relaunch.launch_key(["up"], {}, "/")
    _remember(dirs(), key, dep, memory=1000)
    assert relaunch.recall(dirs(), key, available_ram=1000) is not None
    assert relaunch.recall(dirs(), key, available_ram=999) is None  # the full start warns about it
    _remember(dirs(), key, dep, device="gpu", memory=1000)
    assert relaunch.recall(dirs(), key, available_ram=10) is not None  # VRAM is not RAM


def test_the_ram_a_record_is_checked_against_is_what_psutil_calls_available(tmp_path: Path) -> None:
    """The check reads the kernel's figure itself, so the start needs no psutil before its spawn."""
    if Path("/proc/meminfo").is_file():
        here = _available_ram()
        assert here is not None and abs(here - psutil.virtual_memory().available) < 256 << 20
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n")
    assert _available_ram(meminfo) == 8_000_000 * 1024
    meminfo.write_text("MemTotal:       16000000 kB\n")  # an old kernel: psutil works it out
    fallback = _available_ram(meminfo)
    assert fallback is not None and abs(fallback - psutil.virtual_memory().available) < 256 << 20


def test_a_damaged_record_is_a_miss(swarm_home: Path, tmp_path: Path) -> None:
    dep = tmp_path / "m"
    dep.write_bytes(b"x")
    key = relaunch.launch_key(["up"], {}, "/")
    _remember(dirs(), key, dep)
    path = relaunch.record_path(dirs(), key)
    good = json.loads(path.read_text())
    no_port = {**good, "launch": {k: v for k, v in good["launch"].items() if k != "proxy_port"}}
    for text in ("{", "[]", '{"key": 1}', json.dumps({**good, "deps": [[1]]}), json.dumps(no_port)):
        path.write_text(text)
        assert relaunch.recall(dirs(), key) is None


@pytest.mark.llama
def test_a_fallback_start_is_remembered_until_the_planned_model_is_pulled_or_a_while_passed(
    home: Path, hub_unreachable: Path
) -> None:
    """No hub: `swarm up` runs the embedded stand-in. The same command again starts from its record
    and still says, at the start and at the end, that this is the stand-in; a download of the
    planned model (its ref file written) or the record's age ends that, and the hub is asked again."""
    from swarm_supervisor.config import load_catalogue
    from swarm_supervisor.store.resolve import download_markers

    args = ("up", "--instances", "1", "--llama-server", str(FAKE_LLAMA_SERVER), "--port", "0", "--verbose")

    def start() -> subprocess.CompletedProcess[str]:
        r = swarm(*args)
        assert r.returncode == 0, r.stdout + r.stderr
        assert swarm("down").returncode == 0
        return r

    first = start()
    assert REMEMBERED not in first.stdout
    second = start()
    assert REMEMBERED in second.stdout
    planned = json.loads(next((home / "cache" / "launch").glob("*.json")).read_text())["launch"]["fallback"]
    assert planned["running"] == "smollm2:135m:q4_1"
    said = second.stdout + second.stderr
    assert "the hub is unreachable" in said and "the small embedded stand-in" in said

    # `swarm pull` of the planned model writes its ref file (here one with no files behind it: the
    # start falls back again, but it asked the hub first)
    (marker,) = download_markers(planned["planned"], load_catalogue(), dirs())
    marker.parent.mkdir(parents=True)
    marker.write_text("0" * 40)
    assert REMEMBERED not in start().stdout
    assert REMEMBERED in start().stdout  # remembered again, with the ref file as it is now

    # ten minutes later (relaunch.FALLBACK_VALID_S) the hub is asked again
    for path in (home / "cache" / "launch").glob("*.json"):
        data = json.loads(path.read_text())
        data["expires_at"] = data["expires_at"] - relaunch.FALLBACK_VALID_S - 1
        path.write_text(json.dumps(data))
    assert REMEMBERED not in start().stdout


def test_only_a_record_given_a_lifetime_expires(swarm_home: Path, tmp_path: Path) -> None:
    dep = tmp_path / "m"
    dep.write_bytes(b"x")
    key = relaunch.launch_key(["up"], {}, "/")
    _remember(dirs(), key, dep)  # a clean start
    assert json.loads(relaunch.record_path(dirs(), key).read_text())["expires_at"] is None
    assert relaunch.recall(dirs(), key) is not None
    _remember(dirs(), key, dep, valid_s=60.0)  # a fallback's
    assert relaunch.recall(dirs(), key) is not None
    _remember(dirs(), key, dep, valid_s=-1.0)  # ... once its time has passed
    assert relaunch.recall(dirs(), key) is None

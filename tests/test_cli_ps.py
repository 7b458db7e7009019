"""`swarm ps` and `swarm logs`: the pure rendering, and the commands on a run file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psutil
from click.testing import CliRunner
from rich.console import Console

from swarm_supervisor.cli import main
from swarm_supervisor.paths import dirs
from swarm_supervisor.render import format_duration, render_status, rows_from_status
from swarm_supervisor.swarm.record import RunRecord
from swarm_supervisor.swarm.runfile import RunFile

NOW = 1_800_000_000.0


def status(**over: Any) -> dict[str, Any]:
    me = psutil.Process()
    base: dict[str, Any] = {
        "name": "default",
        "status": "up",
        "base_url": "http://127.0.0.1:8000/v1",
        "model": "qwen2.5-coder:1.5b:q4_k_m",
        "voters": 3,
        "ready_voters": 2,
        "supervisor": {"pid": os.getpid(), "create_time": me.create_time()},
        "supervisor_pid": os.getpid(),
        "proxy": {"host": "127.0.0.1", "port": 8000},
        "internal_key": "sk-secret",
        "instances": [
            {
                "id": "0",
                "pid": 4242,
                "port": 9001,
                "state": "ready",
                "gpu": "0",
                "rss_bytes": 300 * 2**20,
                "vram_bytes": 2 * 2**30,
                "started_at": NOW - 125,
                "ready_at": NOW - 120,
                "requests": 17,
                "avg_latency_ms": 812.4,
                "restarts": 1,
            },
            {
                "id": "1",
                "pid": 4243,
                "port": 9002,
                "state": "failed",
                "gpu": "1",
                "reason": "crashed 6 times within 300 s (last: exited with code 1)",
                "restarts": 5,
            },
        ],
    }
    base.update(over)
    return base


def rendered(s: dict[str, Any]) -> str:
    console = Console(record=True, width=160)
    console.print(render_status(s, NOW))
    return console.export_text()


def test_rows_and_table() -> None:
    rows = rows_from_status(status(), NOW)
    assert [(r.id, r.state, r.uptime_s) for r in rows] == [("0", "ready", 120.0), ("1", "failed", None)]
    assert rows[1].pid is None  # a failed instance has no live pid to show
    text = rendered(status())
    assert "http://127.0.0.1:8000/v1" in text
    assert "qwen2.5-coder:1.5b:q4_k_m" in text
    assert "1/2 ready, 2/3 voters" in text
    header = next(line for line in text.splitlines() if "PID" in line)
    for col in ("ID", "PID", "PORT", "STATE", "GPU", "RSS", "VRAM", "UPTIME", "REQS", "LAT", "RESTARTS"):
        assert col in header
    row0 = next(line for line in text.splitlines() if "4242" in line)
    for cell in ("9001", "ready", "300.0 MiB", "2.0 GiB", "2m00s", "17", "812 ms"):
        assert cell in row0
    assert "instance 1 failed: crashed 6 times" in text


def test_unknown_memory_is_a_dash() -> None:
    s = status()
    s["instances"][0]["vram_bytes"] = None
    row0 = next(line for line in rendered(s).splitlines() if "4242" in line)
    assert " - " in row0


def test_format_duration() -> None:
    assert [format_duration(x) for x in (None, 5, 65, 3725)] == ["-", "5s", "1m05s", "1h02m"]


def test_ps_json_shows_the_run_file_without_the_key(swarm_home: Path) -> None:
    rf = RunFile("default", dirs())
    with rf.lock():
        rf.write(RunRecord.from_json(status()))
    r = CliRunner().invoke(main, ["ps", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["base_url"] == "http://127.0.0.1:8000/v1"
    assert data["supervisor_pid"] == os.getpid()
    assert [(i["id"], i["state"]) for i in data["instances"]] == [("0", "ready"), ("1", "failed")]
    assert "internal_key" not in data and "sk-secret" not in r.output


def test_ps_without_a_swarm_says_what_to_do(swarm_home: Path) -> None:
    r = CliRunner().invoke(main, ["ps"])
    assert r.exit_code == 1
    assert "swarm up" in r.output


def test_ps_cleans_a_stale_run_file(swarm_home: Path) -> None:
    rf = RunFile("default", dirs())
    with rf.lock():
        rf.write(RunRecord.from_json(status(supervisor={"pid": os.getpid(), "create_time": 1.0})))  # not us
    r = CliRunner().invoke(main, ["ps"])
    assert r.exit_code == 1
    assert "stale" in r.output
    assert not rf.path.exists()


def test_logs_shows_the_tail_of_an_instance_log(swarm_home: Path) -> None:
    rf = RunFile("default", dirs())
    rf.ensure_dirs()
    (rf.log_dir / "instance-0.log").write_text("".join(f"line {i}\n" for i in range(100)))
    r = CliRunner().invoke(main, ["logs", "0", "-n", "3"])
    assert r.exit_code == 0
    assert r.output.splitlines() == ["line 97", "line 98", "line 99"]
    r = CliRunner().invoke(main, ["logs", "7"])
    assert r.exit_code == 1 and "instance-0.log" in r.output

"""What `swarm` shows a new user (issue 17): `--help` that matches what each command takes, "nothing
to do" that exits 0, the voter guard, the end of `swarm up` and the memory `ps` counts."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from swarm_supervisor.cli import main
from swarm_supervisor.cli.app import COMMANDS
from swarm_supervisor.cli.next_steps import example_request, next_steps, swarm_command
from swarm_supervisor.config import Config, load_catalogue
from swarm_supervisor.memory import process_memory, pss_from_rollup
from swarm_supervisor.plan import PlanOverrides, make_plan
from swarm_supervisor.plan.guard import cpu_envelope, voter_excess
from tests.machines import CPU16, RTX4090

# --------------------------------------------------------------------------- --help


def test_help_lists_each_command_once() -> None:
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0
    for name in COMMANDS:
        starts = [line for line in r.output.splitlines() if line.strip().startswith(name + " ")]
        assert len(starts) == 1, (name, r.output)
    assert "swarm detect     what" not in r.output  # the old hand-written list is gone


def test_up_help_does_not_offer_the_what_if_flags_it_refuses(swarm_home: Path) -> None:
    up = CliRunner().invoke(main, ["up", "--help"]).output
    plan = CliRunner().invoke(main, ["plan", "--help"]).output
    for flag in ("--gpu-memory", "--ram", "--apple-silicon", "--cpu-only"):
        assert flag not in up
        assert flag in plan
    assert "--force" in up and "--verbose" in up
    refused = CliRunner().invoke(main, ["up", "--cpu-only"])
    assert refused.exit_code == 1
    assert "what-if flags of `swarm plan`" in refused.output


# --------------------------------------------------------------------------- nothing to do


@pytest.mark.parametrize("args", [["down"], ["down", "--all"], ["down", "--name", "other"]])
def test_down_with_nothing_running_says_so_and_exits_0(args: list[str], swarm_home: Path) -> None:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "nothing to stop" in r.output


# --------------------------------------------------------------------------- the voter guard


def test_guard_follows_the_plan_cpu_rule() -> None:
    cat, cfg = load_catalogue(), Config()
    env = cpu_envelope(CPU16, cfg)
    assert env is not None and env.cores == CPU16.physical_cores
    assert env.budget_b == env.largest_b * env.most_voters
    assert cpu_envelope(RTX4090, cfg) is None  # a GPU: memory is the limit, refused by the plan
    off = cfg.model_copy(update={"plan": cfg.plan.model_copy(update={"cpu_params_b_per_core": 0})})
    assert cpu_envelope(CPU16, off) is None

    plan = make_plan(CPU16, cat, cfg, PlanOverrides(model="smollm2:135m", instances=2))
    assert plan.params_b > 0
    assert voter_excess(plan, CPU16, cfg) is None
    fits = int(env.budget_b / plan.params_b)
    assert voter_excess(replace(plan, voters=fits), CPU16, cfg) is None
    problem = voter_excess(replace(plan, voters=fits + 1), CPU16, cfg)
    assert problem is not None
    assert f"--instances {fits} or fewer" in problem and "--force" in problem
    assert f"{env.cores} physical cores" in problem and "plan.cpu_params_b_per_core" in problem


def _beyond_the_guard() -> int:
    """One voter of smollm2:135m more than this machine's CPU envelope allows."""
    from swarm_supervisor.hardware import detect, profile_from_overrides

    hw = profile_from_overrides(detect(), cpu_only=True)
    env = cpu_envelope(hw, Config())
    assert env is not None
    plan = make_plan(hw, load_catalogue(), Config(), PlanOverrides(model="smollm2:135m", instances=1))
    return int(env.budget_b / plan.params_b) + 1


def test_the_plan_itself_stays_within_the_guard() -> None:
    """What the plan picks by itself is never refused."""
    cat, cfg = load_catalogue(), Config()
    plan = make_plan(CPU16, cat, cfg, PlanOverrides())
    assert voter_excess(plan, CPU16, cfg) is None


# --------------------------------------------------------------------------- the end of `swarm up`


def _exe(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_swarm_command_is_what_the_shell_can_run(tmp_path: Path) -> None:
    venv_swarm = _exe(tmp_path / ".venv" / "bin" / "swarm")
    other_bin = tmp_path / "elsewhere"
    other_bin.mkdir()
    # after `make up`: .venv/bin/swarm ran, and no swarm is on PATH
    assert swarm_command(str(venv_swarm), "/usr/bin/python3", str(other_bin), tmp_path) == ".venv/bin/swarm"
    # an activated venv: the swarm on PATH is this one
    assert swarm_command(str(venv_swarm), "/x/python", str(venv_swarm.parent), tmp_path) == "swarm"
    # another swarm first on PATH: the path of this one, from elsewhere absolute
    _exe(other_bin / "swarm")
    assert swarm_command(str(venv_swarm), "/x/python", str(other_bin), tmp_path / "sub") == str(venv_swarm)
    # python -m swarm_supervisor: the interpreter that runs it
    py = _exe(tmp_path / ".venv" / "bin" / "python")
    main_py = "/src/swarm_supervisor/__main__.py"
    assert swarm_command(main_py, str(py), str(other_bin), tmp_path) == ".venv/bin/python -m swarm_supervisor"
    assert swarm_command(main_py, str(py), str(py.parent), tmp_path) == "python -m swarm_supervisor"


def test_next_steps_name_the_request_the_opencode_line_and_a_fallback_last() -> None:
    status = {
        "name": "second",
        "base_url": "http://127.0.0.1:8001/v1",
        "model": "smollm2:135m:q4_1",
        "proxy": {"requires_api_key": True},
        "fallback": {
            "planned": "qwen2.5-coder:1.5b:q4_k_m",
            "running": "smollm2:135m:q4_1",
            "why": "the hub is unreachable",
            "fix": "run `swarm pull --model qwen2.5-coder:1.5b` where the hub is reachable",
        },
    }
    lines = next_steps(status, ".venv/bin/swarm", took_s=1.25)
    text = "\n".join(lines)
    assert "Base URL: http://127.0.0.1:8001/v1" in text
    assert ".venv/bin/swarm opencode --name second --write" in text
    assert ".venv/bin/swarm down --name second" in text
    assert "$SWARM_API_KEY" in text and "All ready in 1.2 s." in text
    assert lines[-2].startswith("NOTE: this swarm runs smollm2:135m:q4_1, the small embedded stand-in")
    assert "qwen2.5-coder:1.5b:q4_k_m" in lines[-2] and "swarm pull" in lines[-1]
    plain = next_steps({**status, "fallback": None}, "swarm")
    assert not any("NOTE" in line for line in plain)


def test_example_request_is_one_valid_shell_line() -> None:
    line = example_request("http://127.0.0.1:8000/v1", "it's:a-model", key_required=False)
    assert line.startswith("curl -s http://127.0.0.1:8000/v1/chat/completions ")
    assert "Authorization" not in line
    # the shell reads it back into the same JSON body
    out = subprocess.run(
        ["sh", "-c", line.replace("curl -s", "printf '%s\\n'", 1)], capture_output=True, text=True, check=True
    )
    assert '"model": "it\'s:a-model"' in out.stdout


# --------------------------------------------------------------------------- memory


def test_pss_of_the_rollup() -> None:
    assert pss_from_rollup("Rss:  1700 kB\nPss:  344 kB\n") == 344 * 1024
    assert pss_from_rollup("Rss:  1700 kB\n") is None


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="Linux with smaps_rollup")
def test_pss_counts_a_shared_mapping_once(tmp_path: Path) -> None:
    """Two processes map the same 64 MiB file (as instances map the weights): their RSS count it
    twice, their PSS once."""
    size = 64 * 2**20
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(size))
    code = (
        "import mmap,sys,time\n"
        f"f=open({str(weights)!r},'rb'); m=mmap.mmap(f.fileno(),0,access=mmap.ACCESS_READ)\n"
        "s=sum(m[i] for i in range(0,len(m),4096)); print('ok',flush=True); time.sleep(60)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ok"
        import psutil

        rss = sum(psutil.Process(p.pid).memory_info().rss for p in procs)
        used = [process_memory(p.pid) for p in procs]
        assert all(u is not None and u.kind == "pss" for u in used)
        pss = sum(u.bytes for u in used if u is not None)
        assert rss - pss > 0.8 * size  # the second copy of the mapping is not counted
        assert pss > size  # the first is
    finally:
        for p in procs:
            p.kill()
            p.wait()


# --------------------------------------------------------------------------- timed from the start


def test_the_command_is_timed_from_the_process_start() -> None:
    from swarm_supervisor.cli.timeline import Timeline, process_age_s

    stat = "4242 (python3 (x) y) S 1 " + " ".join(["0"] * 17) + " 1000 0 0"  # field 22: starttime
    tick = os.sysconf("SC_CLK_TCK")
    assert process_age_s(stat.replace(" 1000 ", f" {10 * tick} "), boot_clock=12.5) == pytest.approx(2.5)
    assert process_age_s("garbage") is None
    if Path("/proc/self/stat").exists():
        age = process_age_s()
        assert age is not None and 0 < age < 3600
        out = subprocess.run(
            [sys.executable, "-c", "import time; time.sleep(0.3); "
             "from swarm_supervisor.cli.timeline import process_age_s; print(process_age_s())"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert 0.3 <= float(out.stdout) < 5.0  # counts the time before any of our code ran
    tl = Timeline(100.0)
    assert tl.mark("a", 100.5) == 0.5 and tl.mark("b", 100.75) == 0.25
    assert tl.lines()[-1].split() == ["in", "all", "0.75", "s"]


def test_plan_warns_what_up_would_refuse(swarm_home: Path) -> None:
    many = str(_beyond_the_guard())
    args = ["plan", "--model", "smollm2:135m", "--instances", many, "--context", "512", "--cpu-only"]
    r = CliRunner().invoke(main, args, env={"COLUMNS": "300"})
    if r.exit_code == 1 and "nothing fits" in r.output:
        pytest.skip(f"{many} voters do not fit in this machine's memory: the plan refuses them first")
    assert r.exit_code == 0, r.output
    assert f"`swarm up` refuses this without --force: {many} voters of smollm2:135m" in r.output
    fine = CliRunner().invoke(main, ["plan", "--model", "smollm2:135m", "--instances", "2", "--cpu-only"])
    assert "refuses" not in fine.output

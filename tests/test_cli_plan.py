"""``swarm plan`` through click's CliRunner, and once as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from swarm_supervisor.cli import main
from swarm_supervisor.cli.plan import render_plan
from swarm_supervisor.config import Config, load_catalogue
from swarm_supervisor.plan import PlanOverrides, make_plan
from tests.machines import A100X2

QWEN_SIZES_B = {"0.5b": 0.5, "1.5b": 1.5, "3b": 3, "7b": 7, "14b": 14, "32b": 32}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_24gib_card_runs_qwen_7b_or_larger_with_two_voters(swarm_home: Path) -> None:
    code, out, _ = run("plan", "--gpu-memory", "24GiB", "--json")
    assert code == 0
    plan = json.loads(out)
    assert plan["model"] == "qwen2.5-coder"
    assert QWEN_SIZES_B[plan["size"]] >= 7
    assert plan["instances"] >= 2
    assert plan["total_bytes"] <= plan["budget_bytes"] == int(24 * 2**30 * 0.9)
    assert plan["placements"] == [{"instance": 0, "gpu": 0, "gpus": [0]}]
    for key in ("quant", "slots", "context", "threads", "per_instance_bytes"):
        assert key in plan


def test_two_gpus_what_if(swarm_home: Path) -> None:
    code, out, _ = run("plan", "--json", "--gpu-memory", "80GiB", "--gpu-memory", "80GiB")
    assert code == 0
    plan = json.loads(out)
    assert {p["gpu"] for p in plan["placements"]} == {0, 1}


def test_apple_and_cpu_what_ifs(swarm_home: Path) -> None:
    _, out, _ = run("plan", "--json", "--apple-silicon", "--ram", "16GiB")
    apple = json.loads(out)
    assert apple["device"] == "apple" and apple["gpu_layers"] == 999
    assert apple["budget_bytes"] == 8 * 2**30
    _, out, _ = run("plan", "--json", "--cpu-only", "--ram", "64GiB")
    cpu = json.loads(out)
    assert cpu["device"] == "cpu" and cpu["gpu_layers"] == 0 and cpu["budget_bytes"] == 32 * 2**30


def test_overrides_on_the_command_line(swarm_home: Path) -> None:
    code, out, _ = run(
        "plan",
        "--json",
        "--gpu-memory",
        "24GiB",
        "--model",
        "qwen2.5-coder:3b:q8_0",
        "--instances",
        "4",
        "--context",
        "8192",
        "--topology",
        "processes",
        "--concurrency",
        "2",
        "--kv-type",
        "q8_0",
    )
    assert code == 0, out
    plan = json.loads(out)
    assert (plan["model_id"], plan["instances"], plan["context"]) == ("qwen2.5-coder:3b:q8_0", 4, 8192)
    # one voter per process, each with a slot for each of the 2 voted requests that run at once
    assert (plan["topology"], plan["processes"], plan["slots"]) == ("processes", 4, 2)
    assert (plan["concurrency"], plan["voters_per_process"], plan["kv_type"]) == (2, 1, "q8_0")
    # Qwen2.5-Coder-3B: 36 layers, 2 KV heads of 128; q8_0 is 34 bytes per 32 elements
    assert plan["kv_bytes_per_slot"] == 2 * 36 * 2 * (128 // 32) * 34 * 8192
    assert "2 slots (1 voters x 2 at once) x" in plan["arithmetic"][0] and "q8_0" in plan["arithmetic"][0]


def test_the_table_shows_the_plan_the_arithmetic_and_why(swarm_home: Path) -> None:
    code, out, _ = run("plan", "--gpu-memory", "24GiB")
    assert code == 0
    for text in ("qwen2.5-coder", "Voters", "Context per slot", "per process:", "budget:", "Why"):
        assert text in out


def test_render_plan_is_pure() -> None:
    plan = make_plan(A100X2, load_catalogue(), Config(), PlanOverrides())
    console = Console(record=True, width=120)
    console.print(render_plan(plan))
    text = console.export_text()
    assert "#0 on GPU 0, #1 on GPU 1" in text and "2 x 4 (slots)" in text


def test_nothing_fits_is_one_line_and_exit_1(swarm_home: Path) -> None:
    code, out, err = run("plan", "--cpu-only", "--ram", "512MiB")
    assert code == 1
    assert "GiB short" in err and "Traceback" not in err and out == ""


def test_a_bad_flag_value(swarm_home: Path) -> None:
    code, _, err = run("plan", "--gpu-memory", "lots")
    assert code == 2 and "not a size" in err
    code, _, err = run("plan", "--gpu-memory", "24")  # a bare number would be 24 bytes
    assert code == 2 and "'24' has no unit: write 24GiB" in err
    code, _, err = run("plan", "--ram", "1.5")
    assert code == 2 and "write 1.5GiB" in err
    code, _, err = run("plan", "--gpu-memory", "8GiB", "--cpu-only")
    assert code == 1 and "contradict" in err
    code, _, err = run("plan", "--model", "nosuch")
    assert code == 1 and "unknown model 'nosuch'" in err


def test_config_file_and_its_errors(swarm_home: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[plan]\npreferred = ["codellama"]\n')
    code, out, _ = run("--config", str(cfg), "plan", "--json", "--gpu-memory", "24GiB")
    assert code == 0 and json.loads(out)["model"] == "codellama"
    cfg.write_text("[plan]\ncontxt = 4096\n")
    code, _, err = run("--config", str(cfg), "plan", "--gpu-memory", "24GiB")
    assert code == 2 and "plan.contxt: unknown key" in err and "Traceback" not in err


def test_the_config_in_swarm_home_is_read(swarm_home: Path) -> None:
    (swarm_home / "config").mkdir(parents=True)
    (swarm_home / "config" / "config.toml").write_text("[plan]\ncontext = 8192\n")
    _, out, _ = run("plan", "--json", "--gpu-memory", "24GiB")
    assert json.loads(out)["context"] == 8192


def test_a_local_gguf(swarm_home: Path, smollm2_gguf: Path) -> None:
    code, out, _ = run("plan", "--json", "--cpu-only", "--ram", "8GiB", "--model", str(smollm2_gguf))
    assert code == 0, out
    plan = json.loads(out)
    assert plan["gguf_path"] == str(smollm2_gguf)
    assert plan["context"] == 8192 and plan["quant"] == "q4_1"
    assert plan["kv_bytes_per_slot"] == 2 * 30 * 3 * 64 * 2 * 8192
    code, _, err = run("plan", "--model", str(smollm2_gguf.parent / "missing.gguf"))
    assert code == 1 and "no such file" in err


def test_swarm_plan_as_a_real_process(tmp_path: Path) -> None:
    env = {**os.environ, "SWARM_HOME": str(tmp_path / "home")}
    env.pop("SWARM_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "swarm_supervisor", "plan", "--json", "--gpu-memory", "24GiB"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["model"] == "qwen2.5-coder" and QWEN_SIZES_B[plan["size"]] >= 7 and plan["instances"] >= 2
    bad = subprocess.run(
        [sys.executable, "-m", "swarm_supervisor", "plan", "--cpu-only", "--ram", "256MiB"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1
    assert "error:" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("flag", ["--help"])
def test_help_lists_the_what_if_flags(flag: str) -> None:
    code, out, _ = run("plan", flag)
    assert code == 0
    for opt in (
        "--gpu-memory",
        "--ram",
        "--apple-silicon",
        "--cpu-only",
        "--model",
        "--instances",
        "--context",
        "--concurrency",
        "--kv-type",
    ):
        assert opt in out


def test_a_local_gguf_named_in_the_config(swarm_home: Path, smollm2_gguf: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[plan]\nmodel = "{smollm2_gguf}"\n')
    code, out, _ = run("--config", str(cfg), "plan", "--json", "--cpu-only", "--ram", "8GiB")
    assert code == 0, out
    assert json.loads(out)["gguf_path"] == str(smollm2_gguf)

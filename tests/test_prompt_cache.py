"""llama-server's host-RAM prompt cache (``--cache-ram``): sized by the plan, counted in its memory
sum, shown by `swarm plan`, passed in the argv, and what a real llama-server then holds.

Left at llama-server's default (8192 MiB a process) the cache grew with every distinct prompt that
passed through, outside the plan's arithmetic (measured below: about 20 MiB a prompt of 900 tokens
with SmolLM2, without end)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest
from click.testing import CliRunner

from swarm_supervisor.cli import main
from swarm_supervisor.config import Config, HardwareConfig, load_catalogue
from swarm_supervisor.plan import PlanOverrides, make_plan
from swarm_supervisor.plan.cache import CACHE_RAM_DEFAULT_MIB
from swarm_supervisor.plan.export import arithmetic_lines, plan_to_json
from swarm_supervisor.swarm.argv import llama_server_argv
from swarm_supervisor.swarm.spec import instance_configs
from swarm_supervisor.units import GiB, MiB
from tests.machines import CPU16, RTX4090
from tests.test_plan import _free_port, cpu, gpus

CAT = load_catalogue()


def _argv(plan_kw: dict[str, object], cache_ram: bool = True) -> list[str]:
    plan = make_plan(**plan_kw)  # type: ignore[arg-type]
    (cfg, *_) = instance_configs(
        plan,
        binary=Path("/b/llama-server"),
        model_path=Path("/m.gguf"),
        log_dir=Path("/l"),
        api_key_file=None,
        cache_ram=cache_ram,
    )
    return llama_server_argv(cfg, 9000)


def test_cpu_caches_are_in_the_budget_and_the_total() -> None:
    ov = PlanOverrides(model="qwen2.5-coder:1.5b:q4_k_m", instances=4, topology="processes", concurrency=1)
    plan = make_plan(cpu(32, cores=8), CAT, Config(), ov)
    m = plan.memory
    assert m.cache_in_budget and m.host_ram_budget_bytes == 0
    assert m.cache_ram_bytes == m.kv_bytes_per_slot  # one slot each: its conversation once more
    assert m.cache_total_bytes == 4 * m.cache_ram_bytes
    assert m.total_bytes == m.weights_bytes + 4 * m.per_instance_bytes + m.cache_total_bytes
    assert m.process_bytes == m.total_bytes - m.cache_total_bytes
    assert m.total_bytes <= m.budget_bytes
    lines = arithmetic_lines(plan)
    assert (
        f"+ 4 x {m.cache_ram_bytes // MiB}.0 MiB prompt cache (--cache-ram {m.cache_ram_bytes // MiB})"
        in lines[1]
    )
    assert any(r.startswith("prompt cache: 4 x ") for r in plan.reasons)


def test_many_slots_are_capped_at_llama_servers_own_default() -> None:
    ov = PlanOverrides(model="qwen2.5-coder:1.5b:q4_k_m", instances=8, concurrency=4, topology="slots")
    plan = make_plan(cpu(128, cores=64), CAT, Config(), ov)
    assert plan.slots * plan.memory.kv_bytes_per_slot > CACHE_RAM_DEFAULT_MIB * MiB
    assert plan.memory.cache_ram_bytes == CACHE_RAM_DEFAULT_MIB * MiB


def test_a_short_budget_gets_the_rest_then_no_cache() -> None:
    # CPU16 (15.4 GiB, 4 cores): 3 voters of the 3B leave 0.7 GiB: a smaller cache than a full slot
    plan = make_plan(CPU16, CAT, Config(), PlanOverrides())
    m = plan.memory
    assert 0 < m.cache_ram_bytes < m.kv_bytes_per_slot
    assert m.total_bytes <= m.budget_bytes and m.budget_bytes - m.total_bytes < 3 * MiB * plan.processes
    # 3 processes of the 3B at 8192 tokens in 9 GiB of RAM (a 4.5 GiB budget): what is left holds
    # not even 4096 tokens a process (144 MiB), so the cache is off
    tight_kw = {
        "hw": cpu(9, cores=4),
        "catalogue": CAT,
        "config": Config(),
        "overrides": PlanOverrides(
            model="qwen2.5-coder:3b:q8_0", instances=3, context=8192, topology="processes"
        ),
    }
    tight = make_plan(**tight_kw)  # type: ignore[arg-type]
    assert (tight.processes, tight.context) == (3, 8192)
    assert tight.memory.cache_ram_bytes == 0 and tight.memory.total_bytes == tight.memory.process_bytes
    assert "prompt cache: off (--cache-ram 0): the memory is short" in arithmetic_lines(tight)
    assert any(r.startswith("prompt cache: off (--cache-ram 0)") for r in tight.reasons)
    assert _argv(tight_kw)[-2:] == ["--cache-ram", "0"]


def test_on_a_gpu_the_cache_is_host_ram_beside_the_vram() -> None:
    plan = make_plan(RTX4090, CAT, Config(), PlanOverrides())
    m = plan.memory
    assert not m.cache_in_budget
    assert m.cache_ram_bytes == CACHE_RAM_DEFAULT_MIB * MiB  # 6 slots of 1.8 GiB, capped
    assert m.total_bytes == m.process_bytes == plan.processes * m.per_instance_bytes  # VRAM only
    assert m.host_ram_budget_bytes == int(RTX4090.ram_total_bytes * 0.5)
    assert any(
        line.startswith("host RAM: 1 x 8.0 GiB prompt cache (--cache-ram 8192)")
        for line in arithmetic_lines(plan)
    )
    # little host RAM: the cache shrinks to what the host's share holds
    lean = Config(hardware=HardwareConfig(ram_fraction=0.05))
    small = make_plan(gpus(24), CAT, lean, PlanOverrides())  # 128 GiB RAM x 5% = 6.4 GiB
    assert small.memory.cache_ram_bytes == int(128 * GiB * 0.05) // MiB * MiB


def test_the_argv_passes_the_plans_cache_only_where_the_binary_has_the_flag() -> None:
    kw = {
        "hw": cpu(32, cores=8),
        "catalogue": CAT,
        "config": Config(),
        "overrides": PlanOverrides(model="qwen2.5-coder:1.5b:q4_k_m", instances=2, concurrency=1),
    }
    plan = make_plan(**kw)  # type: ignore[arg-type]
    argv = _argv(kw)
    assert argv[argv.index("--cache-ram") + 1] == str(plan.memory.cache_ram_bytes // MiB) != "0"
    assert "--cache-ram" not in _argv(kw, cache_ram=False)  # an older build: no such flag, no such cache


def test_swarm_plan_shows_the_cache(swarm_home: Path) -> None:
    r = CliRunner().invoke(
        main, ["plan", "--cpu-only", "--ram", "32GiB", "--model", "qwen2.5-coder:1.5b:q4_k_m"]
    )
    assert r.exit_code == 0, r.output
    assert "prompt cache (--cache-ram " in r.output  # the memory sum
    assert "Prompt cache" in r.output and ", counted in Memory" in r.output  # the table
    j = CliRunner().invoke(main, ["plan", "--json", "--gpu-memory", "24GiB", "--ram", "16GiB"])
    assert j.exit_code == 0, j.output
    data = json.loads(j.output)
    assert data["cache_ram_mib"] * MiB == data["cache_ram_bytes"] > 0
    assert data["cache_in_budget"] is False and data["host_ram_budget_bytes"] == 8 * GiB
    assert any(line.startswith("host RAM: ") for line in data["arithmetic"])
    assert (
        plan_to_json(make_plan(RTX4090, CAT, Config(), PlanOverrides()))["cache_ram_mib"]
        == CACHE_RAM_DEFAULT_MIB
    )


@pytest.mark.llama
@pytest.mark.slow
def test_a_real_llama_server_keeps_its_cache_within_the_plan(
    llama_server_bin: Path, smollm2_gguf: Path, tmp_path: Path
) -> None:
    """Five different prompts through one process of 2 slots: each new one saves the idle slot's
    prompt to the cache. With the plan's ``--cache-ram`` the RSS stays within the plan's total;
    at the default it grew about 20 MiB a prompt (186 -> 286 MiB over 6 prompts of 900 tokens,
    against 186 -> 230 with ``--cache-ram 45``, measured here)."""
    from swarm_supervisor.store.gguf_check import check_gguf

    ov = PlanOverrides(
        model=str(smollm2_gguf),
        facts=check_gguf(smollm2_gguf).facts,
        instances=2,
        concurrency=1,
        context=1024,
        topology="slots",
    )
    plan = make_plan(cpu(8, cores=2), CAT, Config(), ov)
    m = plan.memory
    assert (plan.processes, plan.slots) == (
        1,
        2,
    ) and m.cache_ram_bytes == 2 * m.kv_bytes_per_slot // MiB * MiB
    (cfg,) = instance_configs(
        plan,
        binary=llama_server_bin,
        model_path=smollm2_gguf,
        log_dir=tmp_path,
        api_key_file=None,
        cache_ram=True,
    )
    argv = llama_server_argv(cfg, port := _free_port())
    assert argv[argv.index("--cache-ram") + 1] == str(m.cache_ram_bytes // MiB)
    with (tmp_path / "llama.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    rss = []
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "llama.log").read_text()[
                -2000:
            ]
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        for i in range(5):
            text = f"Topic {i}. " + " ".join(str(i * 7919 + j * 31) for j in range(120))
            body = {"messages": [{"role": "user", "content": text}], "max_tokens": 2}
            httpx.post(f"{base}/v1/chat/completions", json=body, timeout=300).raise_for_status()
            rss.append(psutil.Process(proc.pid).memory_info().rss)
    finally:
        proc.terminate()
        proc.wait(10)
    assert rss[-1] - rss[0] >= m.cache_ram_bytes // 2, rss  # the cache filled: this measured it
    assert rss[-1] <= 1.05 * m.total_bytes, (rss, m.total_bytes)  # and it stayed within the plan

"""Issue 13, parts 3 and 4 (plan side): slots for concurrent voted requests, context for agents,
the KV-cache type, and what reaches llama-server's argv, the run file and opencode.

Default plan = the model's native context up to 32768 a slot; ``concurrency`` voted requests at
once (slots = voters x concurrency); short of memory the plan gives up voters, then
concurrency, then (a default) context.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from swarm_supervisor.config import Catalogue, Config, KvType, PlanConfig, load_catalogue
from swarm_supervisor.errors import PlanError
from swarm_supervisor.hardware.profile import GPU, HardwareProfile
from swarm_supervisor.paths import dirs
from swarm_supervisor.plan import Plan, PlanOverrides, embedded_plan, kv_bytes, make_plan, plan_to_json
from swarm_supervisor.plan.shape import cpu_topology
from swarm_supervisor.swarm.argv import llama_server_argv
from swarm_supervisor.swarm.runfile import RunFile, list_names
from swarm_supervisor.swarm.spec import SwarmSpec, instance_configs
from swarm_supervisor.swarm.teardown import teardown
from swarm_supervisor.units import GiB
from testkit.llama import FAKE_LLAMA_SERVER
from tests.machines import A100X2, CPU16, H100, RTX4090

NONE = PlanOverrides()
FAKE = FAKE_LLAMA_SERVER


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_catalogue()


def nvidia(*sizes_gib: float, cores: int = 16) -> HardwareProfile:
    gpus = tuple(
        GPU("nvidia", i, f"test {s} GiB", int(s * GiB), int(s * GiB)) for i, s in enumerate(sizes_gib)
    )
    return HardwareProfile("linux", "x86_64", cores, 2 * cores, 128 * GiB, 120 * GiB, gpus=gpus)


def cpu(ram_gib: float, cores: int) -> HardwareProfile:
    return HardwareProfile("linux", "x86_64", cores, cores * 2, int(ram_gib * GiB), int(ram_gib * GiB))


def per_process_sum(plan: Plan) -> int:
    m = plan.memory
    weights = 0 if m.shared_weights else m.weights_bytes
    return weights + m.kv_bytes_per_slot * plan.slots + m.compute_bytes * max(len(plan.placements[0].gpus), 1)


# ---------------------------------------------------------------- the done-when figure


@pytest.mark.parametrize(
    ("name", "hw"),
    [
        ("RTX 4090 24 GB", RTX4090),
        ("24 GiB what-if", nvidia(24)),
        ("H100 80 GB", H100),
        ("80 GiB", nvidia(80)),
    ],
)
def test_24_and_80_gb_cards_give_every_slot_32k_and_two_requests_at_once(
    name: str, hw: HardwareProfile, cat: Catalogue
) -> None:
    plan = make_plan(hw, cat, Config(), NONE)
    assert plan.model == "qwen2.5-coder"
    assert plan.context >= 32768, name
    assert plan.concurrency >= 2, name
    assert plan.slots == plan.voters_per_process * plan.concurrency
    assert plan.voters >= Config().plan.min_instances
    assert plan.memory.per_instance_bytes == per_process_sum(plan)
    assert plan.memory.total_bytes <= plan.memory.budget_bytes
    assert any(r.startswith("context: 32768 tokens per slot") for r in plan.reasons)
    assert any(r.startswith("concurrency: 2 voted requests at once") for r in plan.reasons)


def test_this_two_core_machine_runs_three_voters_in_one_process_one_request_at_a_time(cat: Catalogue) -> None:
    """2 physical cores, 23.5 GiB RAM (this machine): one process evaluates an agent's prompt once
    for its voters, three of them (the fewest that can out-vote one), on both cores."""
    plan = make_plan(cpu(23.5, cores=2), cat, Config(), NONE)
    assert (plan.topology, plan.processes, plan.voters, plan.threads) == ("slots", 1, 3, 2)
    assert plan.concurrency == 1 and plan.slots == 3
    assert plan.context == 32768  # memory is not what limits a CPU
    assert any("concurrency: one voted request at a time (1 on CPU" in r for r in plan.reasons)
    assert any(r.startswith("voters: 3 by default, the fewest that can out-vote one") for r in plan.reasons)
    # the same for a model named by hand: memory would hold 8 voters, the cores run 3 usefully
    smol = make_plan(cpu(23.5, cores=2), cat, Config(), PlanOverrides(model="qwen2.5-coder:0.5b"))
    assert (smol.topology, smol.voters) == ("slots", 3)
    five = PlanOverrides(model="qwen2.5-coder:0.5b", instances=5)
    assert make_plan(cpu(23.5, cores=2), cat, Config(), five).voters == 5  # --instances says how many
    # and the embedded stand-in a machine without the hub falls back to
    fallback = embedded_plan(cpu(23.5, cores=2), cat, Config(), NONE, instead_of="qwen2.5-coder:1.5b:q8_0")
    assert (fallback.topology, fallback.voters) == ("slots", 3)
    # nor does a 4-core box get a second voted request: its voters' decoding takes its cores
    assert make_plan(CPU16, cat, Config(), NONE).concurrency == 1


def test_a_cpu_with_cores_to_spare_gets_three_voters_and_two_requests_at_once(cat: Catalogue) -> None:
    plan = make_plan(cpu(256, cores=16), cat, Config(), NONE)
    assert (plan.topology, plan.processes, plan.voters, plan.threads) == ("slots", 1, 3, 16)
    assert plan.concurrency == 2 and plan.slots == 6
    more = Config.model_validate({"plan": {"max_instances": 8}})  # as many as fit, up to 8
    assert make_plan(cpu(256, cores=16), cat, more, NONE).voters == 8
    # six cores are twice the default three voters: two voted requests at once there too
    assert make_plan(cpu(256, cores=6), cat, Config(), NONE).concurrency == 2
    assert make_plan(cpu(256, cores=5), cat, Config(), NONE).concurrency == 1


def test_the_cpu_topology_rule_is_one_function_with_its_measurement() -> None:
    topo, why = cpu_topology()
    assert topo == "slots" and "one llama-server alone" in why and "--topology processes" in why


# ---------------------------------------------------------------- what is given up first


@pytest.mark.parametrize("vram_gib", [6, 8, 10, 12, 14, 16, 20, 24, 32, 40, 48, 64, 80])
def test_voters_go_first_then_concurrency_then_context(vram_gib: int, cat: Catalogue) -> None:
    """A pinned model on ever smaller cards: whatever the plan holds back, a stronger choice of
    the thing given up later does not fit. The third voter comes before a second request at once
    (two voters cannot out-vote each other), voters past three after it."""
    model = "qwen2.5-coder:7b:q4_k_m"
    hw = nvidia(vram_gib)
    try:
        plan = make_plan(hw, cat, Config(), PlanOverrides(model=model))
    except PlanError:
        with pytest.raises(PlanError):  # then not even 2 voters at 4096 tokens fit
            make_plan(hw, cat, Config(), PlanOverrides(model=model, context=4096, concurrency=1))
        return
    low = Config().plan.min_instances

    def fits(**ov: Any) -> bool:
        try:
            make_plan(hw, cat, Config(), PlanOverrides(model=model, **ov))
        except PlanError:
            return False
        return True

    if plan.context < 32768:  # context was given up: the minimum of voters at 32k did not fit
        assert plan.concurrency == 1 and plan.voters == low
        assert not fits(context=32768, concurrency=1, instances=low)
        assert any(w.startswith(f"only {plan.context} tokens of context per slot fit") for w in plan.warnings)
    if plan.concurrency < 2:  # concurrency was given up: for the third voter, or nothing fit twice
        if plan.voters >= 3:
            assert not fits(context=plan.context, concurrency=2, instances=3)
        else:
            assert not fits(context=plan.context, concurrency=2, instances=low)
        assert any(w.startswith("one voted request at a time") for w in plan.warnings)
    if plan.concurrency >= 2 and plan.voters < 3:  # 3 voters a GPU by default
        assert not fits(context=plan.context, concurrency=plan.concurrency, instances=plan.voters + 1)


def test_the_third_voter_comes_before_a_second_request_at_once(cat: Catalogue) -> None:
    """Two voters cannot out-vote each other: where memory holds 3 voters one request at a time,
    or 2 voters two at a time, but not 3 x 2, the plan runs the 3; --concurrency 2 asks for 2 x 2."""
    model = "qwen2.5-coder:7b:q4_k_m"
    plan = make_plan(nvidia(14), cat, Config(), PlanOverrides(model=model))
    assert (plan.voters, plan.concurrency) == (3, 1)
    assert any("--concurrency 2 asks for a second request at once" in w for w in plan.warnings)
    two = make_plan(nvidia(14), cat, Config(), PlanOverrides(model=model, concurrency=2))
    assert (two.voters, two.concurrency) == (2, 2)


def test_quantization_not_size_is_traded_for_the_full_default_swarm(cat: Catalogue) -> None:
    """80 GiB: the 32B at q8_0 holds 3 voters one request at a time or 2 voters two at a time;
    at q4_k_m it holds 3 voters two at a time, the swarm the plan aims at."""
    plan = make_plan(nvidia(80), cat, Config(), NONE)
    assert (plan.size, plan.quant, plan.voters, plan.concurrency) == ("32b", "q4_k_m", 3, 2)
    assert any(r.startswith("quantization: q4_k_m, not q8_0") for r in plan.reasons)
    # an asked-for concurrency is not traded for: the highest quantization that fits it
    asked = make_plan(nvidia(80), cat, Config(), PlanOverrides(concurrency=2))
    assert (asked.size, asked.quant, asked.voters, asked.concurrency) == ("32b", "q8_0", 2, 2)
    # where the full swarm fits the highest quantization nothing is traded (24 GiB: 7b q8_0, 3 x 2)
    card = make_plan(nvidia(24), cat, Config(), NONE)
    assert (card.size, card.quant, card.voters, card.concurrency) == ("7b", "q8_0", 3, 2)
    assert not any(r.startswith("quantization:") for r in card.reasons)


def test_concurrency_grows_into_memory_left_once_the_voters_are_at_their_maximum(cat: Catalogue) -> None:
    """The issue's H200 stand-in: 8 voters used 2.5 GB of 139 GB and a second session waited."""
    model = "qwen2.5-coder:1.5b:q4_k_m"
    plan = make_plan(nvidia(139), cat, Config(), PlanOverrides(model=model))
    assert (plan.voters, plan.concurrency, plan.processes, plan.slots, plan.context) == (3, 4, 1, 12, 32768)
    # 8 voters asked for: two processes of 4 voters x 4 requests (the automatic split)
    eight = make_plan(nvidia(139), cat, Config(), PlanOverrides(model=model, instances=8))
    assert (eight.voters, eight.concurrency, eight.processes, eight.slots) == (8, 4, 2, 16)


def test_concurrency_never_spreads_a_process_over_more_gpus(cat: Catalogue) -> None:
    """Two 24 GiB cards, 14b: one request at a time fits a card each; two at once would need both."""
    plan = make_plan(nvidia(24, 24), cat, Config(), PlanOverrides(model="qwen2.5-coder:14b:q4_k_m"))
    assert all(len(p.gpus) == 1 for p in plan.placements)
    assert plan.concurrency == 1


def test_explicit_choices_win(cat: Catalogue) -> None:
    hw = nvidia(24)
    asked = make_plan(hw, cat, Config(), PlanOverrides(context=16384, concurrency=3))
    assert (asked.context, asked.concurrency) == (16384, 3)
    assert any("(--context)" in r for r in asked.reasons)
    cfg = Config(plan=PlanConfig(context=8192, concurrency=1))
    assert (make_plan(hw, cat, cfg, NONE).context, make_plan(hw, cat, cfg, NONE).concurrency) == (8192, 1)
    # an explicit context is never shortened to fit: a too-long one is an error, not a quiet 4096
    with pytest.raises(PlanError, match="GiB short"):
        make_plan(cpu(1, cores=2), cat, Config(), PlanOverrides(context=32768))
    with pytest.raises(PlanError, match=r"2 voter\(s\) x 8 requests at once"):
        make_plan(nvidia(8), cat, Config(), PlanOverrides(concurrency=8, model="qwen2.5-coder:7b"))


# ---------------------------------------------------------------- the KV-cache type


def test_q8_0_takes_about_half_and_q4_0_about_a_quarter() -> None:
    f16 = kv_bytes(28, 4, 128, 32768)
    assert kv_bytes(28, 4, 128, 32768, "q8_0") == f16 * 34 // 64  # 34 bytes per 32 elements
    assert kv_bytes(28, 4, 128, 32768, "q4_0") == f16 * 18 // 64


def test_a_q8_0_cache_keeps_three_voters_of_a_larger_model_on_a_24_gb_card(cat: Catalogue) -> None:
    f16 = make_plan(RTX4090, cat, Config(), NONE)
    assert f16.size == "7b"  # 14b holds 2 voters only at 31744 tokens; the warning says q8_0 helps
    assert any("at 32768 with a q8_0 KV cache" in w for w in f16.warnings)
    q8 = make_plan(RTX4090, cat, Config(plan=PlanConfig(kv_type="q8_0")), PlanOverrides(instances=3))
    assert (q8.size, q8.voters, q8.context, q8.kv_type) == ("14b", 3, 32768, "q8_0")
    assert q8.memory.kv_bytes_per_slot == kv_bytes(48, 8, 128, 32768, "q8_0")
    assert any(r.startswith("KV cache: q8_0 (plan.kv_type), with flash attention") for r in q8.reasons)
    data = plan_to_json(q8)
    assert data["kv_type"] == "q8_0" and "(32768 tokens, q8_0)" in data["arithmetic"][0]


# ---------------------------------------------------------------- argv, spec, run file, opencode


def test_instances_get_voters_slots_and_the_kv_type(cat: Catalogue, tmp_path: Path) -> None:
    plan = make_plan(A100X2, cat, Config(), PlanOverrides(kv_type="q8_0"))
    assert plan.processes == 2 and plan.concurrency >= 2
    cfgs = instance_configs(
        plan,
        binary=tmp_path / "llama-server",
        model_path=tmp_path / "m.gguf",
        log_dir=tmp_path,
        api_key_file=None,
    )
    spec = SwarmSpec("t", plan.model_id, "m.gguf", plan.context, plan.device, cfgs, "sk-x")
    again = SwarmSpec.from_json(spec.to_json())
    assert again.voters == spec.voters == plan.voters  # voters, not slots
    for cfg in again.instances:
        assert (cfg.voters, cfg.slots, cfg.kv_type) == (plan.voters_per_process, plan.slots, "q8_0")
        argv = llama_server_argv(cfg, 9000)
        assert argv[argv.index("-c") + 1] == str(plan.context * plan.slots)
        assert argv[argv.index("--parallel") + 1] == str(plan.slots)
        assert argv[argv.index("-ctk") + 1] == argv[argv.index("-ctv") + 1] == "q8_0"
        assert argv[argv.index("-fa") + 1] == "on"
    f16 = instance_configs(
        make_plan(A100X2, cat, Config(), NONE),
        binary=tmp_path / "b",
        model_path=tmp_path / "m",
        log_dir=tmp_path,
        api_key_file=None,
    )
    assert not {"-ctk", "-ctv", "-fa"} & set(llama_server_argv(f16[0], 9000))  # the default is llama's own


@pytest.fixture
def home(swarm_home: Path) -> Iterator[Path]:
    cfg = swarm_home / "config"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text("[supervisor]\nhealth_interval_s = 0.5\n")
    try:
        yield swarm_home
    finally:
        for name in list_names(dirs()):
            teardown(RunFile(name, dirs()), grace_s=2.0)


def swarm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm_supervisor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_up_ps_and_opencode_with_two_requests_at_once(home: Path, smollm2_gguf: Path) -> None:
    """`swarm up --concurrency 2` (fake llama-servers): the argv, `swarm ps` and `swarm opencode`."""
    up = swarm(
        "up",
        *("--model", str(smollm2_gguf), "--instances", "2", "--topology", "processes"),
        *("--concurrency", "2", "--kv-type", "q8_0", "--llama-server", str(FAKE), "--port", "0"),
    )
    assert up.returncode == 0, up.stdout + up.stderr
    ps = swarm("ps", "--json")
    status = json.loads(ps.stdout)
    assert (status["voters"], status["ready_voters"], status["concurrency"]) == (2, 2, 2)
    assert [(i["voters"], i["slots"]) for i in status["instances"]] == [(1, 2), (1, 2)]
    for inst in status["instances"]:
        argv = psutil.Process(inst["pid"]).cmdline()
        assert argv[argv.index("-c") + 1] == str(8192 * 2)  # SmolLM2's native 8192 a slot, 2 slots
        assert argv[argv.index("--parallel") + 1] == "2"
        assert argv[argv.index("-ctk") + 1] == "q8_0" and argv[argv.index("-fa") + 1] == "on"
    text = swarm("ps").stdout
    assert "2/2 voters, 2 voted requests at once" in text
    oc = swarm("opencode")
    assert oc.returncode == 0, oc.stderr
    model = next(iter(json.loads(oc.stdout)["provider"]["swarm"]["models"].values()))
    assert model["limit"] == {"context": 8192, "output": 2048}  # one slot's context, not 2 x 8192
    assert "2 voters" in model["name"]


# ---------------------------------------------------------------- a real llama-server


def _rss_of_served(binary: Path, gguf: Path, plan: Plan, tmp: Path) -> int:
    """Start the plan's one process with the argv the supervisor would use, have it answer one
    voted request (n = its voters), and return its RSS."""
    import httpx

    from tests.test_plan import _free_port

    (cfg,) = instance_configs(plan, binary=binary, model_path=gguf, log_dir=tmp, api_key_file=None)
    port = _free_port()
    log = (tmp / f"llama-{plan.kv_type}.log").open("wb")
    proc = subprocess.Popen(llama_server_argv(cfg, port), stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp / f"llama-{plan.kv_type}.log").read_text()[-2000:]
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        body = {"messages": [{"role": "user", "content": "Add two numbers in Python."}], "max_tokens": 8}
        r = httpx.post(f"{base}/v1/chat/completions", json={**body, "n": cfg.voters}, timeout=120)
        r.raise_for_status()
        assert len(r.json()["choices"]) == cfg.voters
        return int(psutil.Process(proc.pid).memory_info().rss)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.mark.llama
def test_a_q8_0_cache_runs_and_takes_what_the_plan_says(
    llama_server_bin: Path, smollm2_gguf: Path, tmp_path: Path
) -> None:
    """SmolLM2, one process, 2 voters x 2 requests at once, 4096 tokens a slot: llama-server takes
    ``-ctk q8_0 -ctv q8_0 -fa on``, and the RSS of each KV type is the plan's sum."""
    from swarm_supervisor.store.gguf_check import check_gguf

    facts = check_gguf(smollm2_gguf).facts
    rss = {}
    plans = {}
    kv_types: tuple[KvType, ...] = ("f16", "q8_0")
    for kv in kv_types:
        ov = PlanOverrides(
            model=str(smollm2_gguf),
            facts=facts,
            instances=2,
            concurrency=2,
            context=4096,
            topology="slots",
            kv_type=kv,
        )
        plans[kv] = make_plan(cpu(8, cores=2), load_catalogue(), Config(), ov)
        assert plans[kv].slots == 4
        rss[kv] = _rss_of_served(llama_server_bin, smollm2_gguf, plans[kv], tmp_path)
    for kv, plan in plans.items():
        predicted = plan.memory.process_bytes  # one request: nothing in the prompt cache yet
        assert 0.85 * predicted <= rss[kv] <= 1.05 * predicted, (kv, rss[kv], predicted)
    saved = plans["f16"].memory.process_bytes - plans["q8_0"].memory.process_bytes
    assert rss["f16"] - rss["q8_0"] >= 0.8 * saved, (rss, saved)

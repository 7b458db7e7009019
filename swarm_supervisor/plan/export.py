"""A plan as one JSON object (``swarm plan --json``, the run file) and as lines of arithmetic. Pure."""

from __future__ import annotations

from typing import Any

from ..units import MiB, format_bytes
from .types import Plan


def per_gpu_bytes(plan: Plan) -> dict[int, int]:
    """The bytes each GPU holds: a process spanning k GPUs counts 1/k of its bytes on each."""
    used: dict[int, int] = {}
    for p in plan.placements:
        gpus = p.gpus or ((p.gpu,) if p.gpu is not None else ())
        for g in gpus:
            used[g] = used.get(g, 0) + plan.memory.per_instance_bytes // len(gpus)
    return used


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """Every field a script needs; ``instances`` is the number of voters (slots in all)."""
    m = plan.memory
    return {
        "model": plan.model,
        "size": plan.size,
        "quant": plan.quant,
        "model_id": plan.model_id,
        "device": plan.device,
        "topology": plan.topology,
        "instances": plan.voters,
        "voters": plan.voters,
        "processes": plan.processes,
        "slots": plan.slots,
        "voters_per_process": plan.voters_per_process,
        "concurrency": plan.concurrency,
        "context": plan.context,
        "kv_type": plan.kv_type,
        "threads": plan.threads,
        "gpu_layers": plan.gpu_layers,
        "budget_bytes": m.budget_bytes,
        "weights_bytes": m.weights_bytes,
        "kv_bytes_per_slot": m.kv_bytes_per_slot,
        "kv_bytes_per_process": m.kv_bytes_per_slot * plan.slots,
        "compute_bytes": m.compute_bytes,
        "per_instance_bytes": m.per_instance_bytes,
        "total_bytes": m.total_bytes,
        "shared_weights": m.shared_weights,
        "cache_ram_bytes": m.cache_ram_bytes,
        "cache_ram_mib": m.cache_ram_bytes // MiB,
        "cache_total_bytes": m.cache_total_bytes,
        "cache_in_budget": m.cache_in_budget,
        "host_ram_budget_bytes": m.host_ram_budget_bytes,
        "placements": [
            {
                "instance": p.instance,
                "gpu": p.gpu,
                "gpus": list(p.gpus or ((p.gpu,) if p.gpu is not None else ())),
            }
            for p in plan.placements
        ],
        "per_gpu_bytes": {str(g): b for g, b in sorted(per_gpu_bytes(plan).items())},
        "embedded": plan.embedded,
        "chat": plan.chat,
        "gguf_path": plan.gguf_path,
        "reasons": list(plan.reasons),
        "warnings": list(plan.warnings),
        "arithmetic": arithmetic_lines(plan),
    }


def arithmetic_lines(plan: Plan) -> list[str]:
    """The memory sum that justifies the plan, one line each, for people."""
    m = plan.memory
    f = format_bytes
    slots = str(plan.slots)
    if plan.concurrency > 1:  # slots = voters x the voted requests that run at once
        slots = f"{plan.slots} slots ({plan.voters_per_process} voters x {plan.concurrency} at once)"
    kv = f"{slots} x {f(m.kv_bytes_per_slot)} KV ({plan.context} tokens, {plan.kv_type})"
    lines = []
    span = max((len(p.gpus) for p in plan.placements), default=1) or 1
    compute = f"{f(m.compute_bytes)} compute" + (f" x {span} GPUs" if span > 1 else "")
    n = plan.processes
    cache = f"{n} x {f(m.cache_ram_bytes)} prompt cache (--cache-ram {m.cache_ram_bytes // MiB})"
    counted = f" + {cache}" if m.cache_in_budget and m.cache_ram_bytes else ""
    if m.shared_weights:
        lines.append(f"per process: {kv} + {compute} = {f(m.per_instance_bytes)}")
        lines.append(
            f"total: {f(m.weights_bytes)} weights (memory-mapped, shared) + {n} x "
            f"{f(m.per_instance_bytes)}{counted} = {f(m.total_bytes)}"
        )
    else:
        lines.append(
            f"per process: {f(m.weights_bytes)} weights + {kv} + {compute} = {f(m.per_instance_bytes)}"
        )
        lines.append(f"total: {n} x {f(m.per_instance_bytes)}{counted} = {f(m.total_bytes)}")
    if not m.cache_in_budget and m.cache_ram_bytes:
        lines.append(
            f"host RAM: {cache} = {f(m.cache_total_bytes)} of {f(m.host_ram_budget_bytes)} "
            "(hardware.ram_fraction), beside the VRAM"
        )
    elif not m.cache_ram_bytes:
        lines.append("prompt cache: off (--cache-ram 0): the memory is short")
    share = m.total_bytes / m.budget_bytes if m.budget_bytes else 0.0
    lines.append(f"budget: {f(m.budget_bytes)}, {share:.0%} used, {f(m.budget_bytes - m.total_bytes)} left")
    return lines

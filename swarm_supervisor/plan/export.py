"""A plan as one JSON object (``swarm plan --json``, the run file) and as lines of arithmetic. Pure."""

from __future__ import annotations

from typing import Any

from ..units import format_bytes
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
    if m.shared_weights:
        lines.append(f"per process: {kv} + {compute} = {f(m.per_instance_bytes)}")
        lines.append(
            f"total: {f(m.weights_bytes)} weights (memory-mapped, shared) + {plan.processes} x "
            f"{f(m.per_instance_bytes)} = {f(m.total_bytes)}"
        )
    else:
        lines.append(
            f"per process: {f(m.weights_bytes)} weights + {kv} + {compute} = {f(m.per_instance_bytes)}"
        )
        lines.append(f"total: {plan.processes} x {f(m.per_instance_bytes)} = {f(m.total_bytes)}")
    share = m.total_bytes / m.budget_bytes if m.budget_bytes else 0.0
    lines.append(f"budget: {f(m.budget_bytes)}, {share:.0%} used, {f(m.budget_bytes - m.total_bytes)} left")
    return lines

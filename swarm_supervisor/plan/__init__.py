"""The plan: hardware x catalogue x config x overrides -> :class:`Plan`. Pure: no I/O.

    from swarm_supervisor.plan import PlanOverrides, make_plan, plan_to_json
    plan = make_plan(hw, catalogue, config, PlanOverrides(model="qwen2.5-coder:7b"))

``types``   the values (Plan, Placement, MemoryBreakdown, PlanOverrides, ModelFacts)
``memory``  budgets and the per-process arithmetic (and the measured compute allowance)
``candidates`` the (family, size, quant) options in the order they are tried
``layout``  fitting one model at one context into a budget: processes, slots, placements
``shape``   topology (the CPU rule in one function), threads, concurrency and context targets
``search``  candidates x contexts: the first that fits, and how it spends the memory left
``select``  make_plan / embedded_plan: which model, size, quant, context and topology, and why
``export``  plan_to_json and the lines of memory arithmetic that ``swarm plan`` prints
"""

from __future__ import annotations

from .candidates import is_gguf_path
from .export import arithmetic_lines, plan_to_json
from .memory import Budget, budget, compute_bytes, kv_bytes
from .select import embedded_plan, make_plan, replan_with_facts
from .types import Device, MemoryBreakdown, ModelFacts, Placement, Plan, PlanOverrides, Topology

__all__ = [
    "Budget",
    "Device",
    "MemoryBreakdown",
    "ModelFacts",
    "Placement",
    "Plan",
    "PlanOverrides",
    "Topology",
    "arithmetic_lines",
    "budget",
    "compute_bytes",
    "embedded_plan",
    "is_gguf_path",
    "kv_bytes",
    "make_plan",
    "plan_to_json",
    "replan_with_facts",
]

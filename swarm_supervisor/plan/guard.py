"""How many voters a CPU runs usefully, by the plan's own CPU rule. Pure.

    env = cpu_envelope(hw, config)          # None on a GPU or Apple Silicon, or with the rule off
    env.largest_b, env.most_voters          # 2.0, 3 on 2 cores (plan.cpu_params_b_per_core = 1)
    problem = voter_excess(plan, hw, config)   # None, or the sentence ``swarm up`` refuses with

On every device the plan, choosing by itself, stops at three voters a device
(:func:`per_device_voters`; a machine with several GPUs has one voter or more on each): the
fewest that can out-vote one; live, 2 to 8 voters scored within about a point on the dev tasks
while every voter more costs decoding time on every answer (docs/plan.md, "How many voters").
``--instances`` or a ``plan.max_instances`` set in the config asks for more. On a CPU-only
machine it also keeps to models of up to ``plan.cpu_params_b_per_core`` x physical cores billion
parameters.
The heaviest swarm it would start is therefore ``most_voters`` voters of a ``largest_b`` model:
``budget_b = most_voters x largest_b`` billion parameters to run per generated token. Voters
asked for with ``--instances`` whose parameters add up to more than that are more than the
machine runs usefully: each token takes longer than in any swarm the plan would choose, in
proportion. Memory is the plan's other limit, refused by ``make_plan`` itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import Config
from ..hardware.profile import HardwareProfile
from .types import Plan

#: the fewest voters that can out-vote one of them: where the plan stops by itself
MAJORITY = 3


def per_device_voters(config: Config) -> int | None:
    """The most voters the plan puts on one device (a GPU or group of GPUs one process spans, or
    the CPU / Apple memory pool) by itself: three, unless the config sets ``plan.max_instances``
    or ``plan.min_instances`` (None: as many as fit, within them)."""
    if {"max_instances", "min_instances"} & config.plan.model_fields_set:
        return None
    return min(config.plan.max_instances, MAJORITY)


def default_voters(config: Config) -> int:
    """The most voters the plan chooses by itself on one memory pool (a CPU, Apple Silicon)."""
    return per_device_voters(config) or config.plan.max_instances


@dataclass(frozen=True)
class CpuEnvelope:
    """What the plan runs by itself on a CPU-only machine."""

    cores: int  # physical
    per_core_b: float  # plan.cpu_params_b_per_core
    largest_b: float  # the largest model it picks: per_core_b x cores
    most_voters: int  # default_voters: three, or plan.max_instances where the config sets it

    @property
    def budget_b(self) -> float:
        """Parameters (billions) per generated token of the heaviest swarm it would start."""
        return self.largest_b * self.most_voters


def cpu_envelope(hw: HardwareProfile, config: Config) -> CpuEnvelope | None:
    """The plan's CPU rule for ``hw``; None where it does not apply (a GPU, Apple Silicon, or
    ``plan.cpu_params_b_per_core = 0``)."""
    per_core = config.plan.cpu_params_b_per_core
    if per_core <= 0 or hw.discrete_gpus or hw.apple_silicon:
        return None
    cores = max(1, hw.physical_cores)
    return CpuEnvelope(cores, per_core, per_core * cores, default_voters(config))


def voter_excess(plan: Plan, hw: HardwareProfile, config: Config) -> str | None:
    """None when ``plan``'s voters are within what the machine runs usefully, else why not, with
    the figures and what to do (``--instances`` at most so many, or ``--force``)."""
    env = cpu_envelope(hw, config)
    if env is None or plan.device != "cpu" or plan.params_b <= 0:
        return None
    load = plan.voters * plan.params_b
    if load <= env.budget_b * (1 + 1e-9):
        return None
    fits = max(1, math.floor(env.budget_b / plan.params_b + 1e-9))
    return (
        f"{plan.voters} voters of {plan.model_id} ({plan.params_b:g}B parameters each) are "
        f"{load:.1f}B parameters to run per generated token on {env.cores} CPU core(s); the heaviest "
        f"swarm the plan runs here by itself is {env.budget_b:.1f}B ({env.most_voters} voters of a "
        f"model up to {env.largest_b:g}B: plan.cpu_params_b_per_core = {env.per_core_b:g} x "
        f"{env.cores} physical cores), so each token would take about {load / env.budget_b:.1f}x as "
        f"long. Use --instances {fits} or fewer, or --force to start {plan.voters} anyway"
    )

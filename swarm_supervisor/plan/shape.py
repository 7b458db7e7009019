"""The shape of a swarm on one machine: topology, threads, concurrent requests, context. Pure.

    topo, why = topology(hw, bud, overrides)               # "slots" on a GPU, "processes" on CPU
    conc = concurrency(hw, bud, config, overrides, high)   # Concurrency(target=2, most=4, ...)
    ctx = context_target(config, overrides)                # ContextTarget(32768, explicit=False)

What these trade against each other when memory is short (``select`` applies it): voters go
first (down to ``plan.min_instances``), then concurrent requests (down to 1), then context
(down to :data:`MIN_USEFUL_CONTEXT`): an agent whose prompt does not fit gets nothing done,
and a second session that has to wait still gets its answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config
from ..hardware.profile import HardwareProfile
from .memory import Budget
from .types import PlanOverrides, Topology

#: the default context per slot: a coding agent's prompt grows past 16k within a session (opencode
#: compacts the conversation when it fills), and Qwen2.5-Coder's native context is 32768
AGENT_CONTEXT = 32768
#: below this many tokens per slot a coding agent's prompt does not fit (opencode's ~3k)
MIN_USEFUL_CONTEXT = 4096
#: the contexts tried, longest first, when the default does not fit even one set of voters
FALLBACK_CONTEXTS = (24576, 16384, 12288, 8192, MIN_USEFUL_CONTEXT)
#: automatic concurrency on a GPU or Apple Silicon: 2 voted requests at once where memory allows
#: the minimum of voters twice, and up to 4 once the voters are at ``plan.max_instances``
AUTO_CONCURRENCY = 2
AUTO_CONCURRENCY_MOST = 4


def cpu_topology(cores: int, voters_asked: int | None) -> tuple[Topology, str]:
    """The CPU rule, kept in this one place because it is to be re-decided on agent-sized prompts
    (issue 13, part 5). Today: one single-threaded llama-server per voter, measured on short
    prompts and 128-token answers (bench/results/topology.json, 2 cores, 2 voters: 119 tok/s for
    two single-threaded processes against 5.5 for one process with ``--parallel 2`` and 2
    threads: ggml's thread barriers collapse when anything else wants a core). Each process gets
    ``concurrency`` slots. More voters than cores cannot have a process each: one process with a
    slot per voter instead."""
    if voters_asked is not None and voters_asked > cores:
        return "slots", (
            f"topology: one llama-server with one slot per voter (--parallel): {voters_asked} "
            f"voters are more than the {cores} physical cores, one process per voter would not fit"
        )
    return "processes", (
        "topology: one llama-server per voter, cores split between them (at most one process per "
        "physical core): a multi-threaded llama-server collapses when anything else wants a core "
        "(measured on 2 cores, 2 voters: 119 tok/s for 2 single-threaded processes against 5.5 "
        "for one process with --parallel 2; bench/results/topology.json), weights are mapped "
        "once and shared, and a crash costs one voter; --topology slots runs one process instead"
    )


def topology(hw: HardwareProfile, bud: Budget, overrides: PlanOverrides) -> tuple[Topology, str]:
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
        return cpu_topology(hw.physical_cores, overrides.instances)
    return "slots", (
        "topology: one llama-server with one slot per voter (--parallel): on Apple Silicon the GPU "
        "is shared like a discrete one, so the weights and compute buffers exist once and decoding "
        "is batched; --topology processes isolates voters instead"
    )


def threads(hw: HardwareProfile, device: str, processes: int) -> int:
    cores = hw.physical_cores
    if device == "apple" and hw.performance_cores:
        cores = hw.performance_cores
    return max(1, cores // max(1, processes))


@dataclass(frozen=True)
class Concurrency:
    """How many voted requests the plan tries to run at once: ``target`` first, down to 1 when
    memory is short; with ``auto``, up to ``most`` once the voters are at their maximum."""

    target: int
    most: int
    auto: bool
    why: str  # the rule, for the plan's reasons

    def tries(self) -> range:
        return range(self.target, 0, -1) if self.auto else range(self.target, self.target - 1, -1)


def concurrency(
    hw: HardwareProfile, bud: Budget, config: Config, overrides: PlanOverrides, high: int
) -> Concurrency:
    """``--concurrency`` / ``plan.concurrency``, else from the hardware. ``high``: the most voters."""
    asked = overrides.concurrency or config.plan.concurrency
    if asked is not None:
        src = "--concurrency" if overrides.concurrency else "plan.concurrency"
        return Concurrency(asked, asked, False, f"{src} {asked}")
    if bud.device != "cpu":
        return Concurrency(
            AUTO_CONCURRENCY,
            AUTO_CONCURRENCY_MOST,
            True,
            f"{AUTO_CONCURRENCY} where memory allows, up to {AUTO_CONCURRENCY_MOST} once the voters "
            "are at plan.max_instances",
        )
    cores = hw.physical_cores
    if cores >= AUTO_CONCURRENCY * high:
        return Concurrency(
            AUTO_CONCURRENCY,
            AUTO_CONCURRENCY,
            True,
            f"{AUTO_CONCURRENCY} on CPU: {cores} physical cores are at least twice the {high} voters",
        )
    return Concurrency(
        1,
        1,
        True,
        f"1 on CPU: the voters take all {cores} physical cores already (one process per core), "
        "so a second voted request at once would only share them",
    )


@dataclass(frozen=True)
class ContextTarget:
    """The context per slot the plan aims for: ``tokens``, clamped to each model's native context."""

    tokens: int
    explicit: bool  # --context or plan.context: never shortened to fit
    source: str  # "--context", "plan.context" or "default"


def context_target(config: Config, overrides: PlanOverrides) -> ContextTarget:
    if overrides.context:
        return ContextTarget(overrides.context, True, "--context")
    if config.plan.context:
        return ContextTarget(config.plan.context, True, "plan.context")
    return ContextTarget(AGENT_CONTEXT, False, "default")


def fallback_contexts(target: ContextTarget) -> tuple[int, ...]:
    """The contexts to try in turn: the target, then (when it was the default) shorter ones."""
    if target.explicit:
        return (target.tokens,)
    return (target.tokens, *(c for c in FALLBACK_CONTEXTS if c < target.tokens))

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
#: the minimum of voters twice, and up to 4 once the voters are at their maximum
AUTO_CONCURRENCY = 2
AUTO_CONCURRENCY_MOST = 4


def cpu_topology() -> tuple[Topology, str]:
    """The CPU rule, in this one place with its measurement. One llama-server with a slot per voter
    and every physical core as its threads: it evaluates a coding agent's long prompt once for all
    its voters (``n`` = the voters), where one process per voter evaluates it once per voter.
    Measured on agent turns (issue 13, part 5: ``python -m bench agent --instances 2 --max-turns 3
    --max-tokens 64 --concurrency 1``, 21 replayed opencode turns of 2.2k-7.9k tokens, 2 cores,
    SmolLM2, an idle machine): one process with 2 slots took 1.05x and 1.16x one llama-server
    alone over the run, two single-threaded processes 1.93x and 1.89x (twice the prompt tokens).
    On short prompts and 128-token answers the two were even on an idle machine (103.1 against
    101.6 tok/s at 3 voters, bench/results/topology.json); under load from other programs the
    multi-threaded process loses more (ggml's threads wait at barriers), as does the one
    llama-server a user would run instead. ``--topology processes`` keeps one process per voter."""
    return "slots", (
        "topology: one llama-server with one slot per voter (--parallel) and every physical core "
        "as its threads: it evaluates an agent's long prompt once for all its voters (measured on "
        "replayed opencode turns, 2 cores, 2 voters: 1.05-1.16x one llama-server alone, against "
        "1.89-1.93x for one single-threaded process per voter, which evaluates it once per voter); "
        "--topology processes runs one process per voter instead"
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
        return cpu_topology()
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
            "are at their maximum",
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
        f"1 on CPU: the voters' decoding takes all {cores} physical cores already, so a second "
        "voted request at once would only share them",
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

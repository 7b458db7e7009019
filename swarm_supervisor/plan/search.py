"""The search of :func:`~swarm_supervisor.plan.select.make_plan`: fit each candidate at a context
with the voters, concurrency and KV type asked for. Pure.

    s, why_topo, target, requested, found = search(hw, config, overrides, candidates)
    cand, ctx, layout = found        # None when nothing fits at any context tried

Order: the target context (then, for the default one, shorter ones); at each, the candidates in
priority order, the first that holds ``plan.min_instances`` voters one request at a time wins;
:meth:`Search.shape` then spends the memory left on concurrent requests and voters.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..config import Config, KvType
from ..errors import PlanError
from ..hardware.profile import HardwareProfile
from .candidates import Candidate
from .guard import default_voters, per_device_voters
from .layout import Layout, Need, Want, fit
from .memory import Budget, budget
from .shape import Concurrency, ContextTarget, concurrency, context_target, fallback_contexts, topology
from .types import PlanOverrides, Topology

CONTEXT_STEP = 1024
#: the fewest voters that can out-vote one: an automatic concurrency gives way to the third
#: voter where it fits one request at a time (docs/plan.md, "How many voters")
MAJORITY = 3
#: GPU, automatic processes per GPU: a process that would hold this many voters or more is split
#: in two (8 voters of the 1.5B decoded 9-13% faster as 2 x 4 than as 1 x 8 on the H200, and agent
#: turns were 2.3x one answer alone against 2.6-2.8x; docs/plan.md, "The topology")
SPLIT_AT_VOTERS = 8
#: ... for models up to this size (billions of parameters): measured on the 1.5B; a larger model
#: spends more of each step on the GPU itself and evaluates a longer prompt twice, unmeasured
SPLIT_MAX_PARAMS_B = 3.0


def want_for(
    config: Config, overrides: PlanOverrides, hw: HardwareProfile, bud: Budget, topo: Topology
) -> Want:
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
        per_gpu=overrides.processes_per_gpu or config.plan.processes_per_gpu or 1,
        per_device=None if overrides.instances is not None else per_device_voters(config),
    )


@dataclass(frozen=True)
class Search:
    """What every candidate is fitted against: the budget, topology, voters, concurrency, KV type."""

    bud: Budget
    topo: Topology
    want: Want
    conc: Concurrency
    kv: KvType
    auto_split: bool = False  # neither --processes-per-gpu nor plan.processes_per_gpu given

    def _most_voters(self, need: Need, layout: Layout, want: Want) -> bool:
        """The voters are at their maximum: the number asked for, ``want.high``, or all that
        ``want.per_device`` lets the devices hold (one more does not fit even one request at a time)."""
        if layout.voters >= (want.exact or want.high):
            return True
        more = replace(want, exact=layout.voters + 1, concurrency=1)
        return want.per_device is not None and fit(need, self.bud, self.topo, more) is None

    def split(self, cand: Candidate, ctx: int, layout: Layout) -> Layout:
        """Automatic processes per GPU: two processes of half the voters where one would hold
        ``SPLIT_AT_VOTERS`` or more of a small model, if the same voters, concurrent requests and
        context fit twice the weights; else ``layout`` as it is."""
        if not (
            self.auto_split
            and self.bud.device == "gpu"
            and layout.topology == "slots"
            and layout.per_process >= SPLIT_AT_VOTERS
            and cand.params_b <= SPLIT_MAX_PARAMS_B
        ):
            return layout
        want = replace(
            self.want, exact=layout.voters, concurrency=layout.concurrency, per_gpu=2, max_span=layout.span
        )
        two = fit(self.need(cand, ctx), self.bud, self.topo, want)
        return two if two is not None and two.processes == 2 * layout.processes else layout

    def need(self, cand: Candidate, ctx: int) -> Need:
        return cand.need(self.bud.device, ctx, self.kv)

    def shape(self, cand: Candidate, ctx: int, want: Want | None = None) -> Layout | None:
        """Voters past three are given up before concurrency, and concurrency before the third
        voter: the target concurrency with as many voters as fit (at least ``want.low``, and at
        least three where three fit one request at a time: two voters cannot out-vote each
        other), else one request fewer at once, down to 1; once the voters are at their maximum,
        an automatic concurrency grows into the memory left (up to ``most``). An asked-for
        concurrency is kept. Concurrency never spreads a process over more GPUs than one request
        at a time needs."""
        want = want or self.want
        need = self.need(cand, ctx)
        one = fit(need, self.bud, self.topo, replace(want, concurrency=1))
        if one is None:  # not even one request at a time
            return None
        want = replace(want, max_span=one.span)
        floor = min(MAJORITY, one.voters) if self.conc.auto else 0
        for c in self.conc.tries():
            layout = fit(need, self.bud, self.topo, replace(want, concurrency=c))
            if layout is not None and layout.voters >= floor:
                break
        else:
            return None
        if self.conc.auto and c == self.conc.target and self._most_voters(need, layout, want):
            for more in range(self.conc.most, c, -1):
                bigger = fit(need, self.bud, self.topo, replace(want, exact=layout.voters, concurrency=more))
                if bigger is not None:
                    return bigger
        return layout


def largest_context(cand: Candidate, s: Search, below: int) -> int | None:
    """The largest context (a multiple of 1024, under ``below``) at which ``cand`` fits
    ``want.low`` voters, one request at a time."""
    low_want = replace(s.want, high=s.want.exact or s.want.low, concurrency=1)
    lo, hi = 1, min(below - 1, cand.native_context) // CONTEXT_STEP
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        if fit(s.need(cand, mid * CONTEXT_STEP), s.bud, s.topo, low_want) is not None:
            best, lo = mid * CONTEXT_STEP, mid + 1
        else:
            hi = mid - 1
    return best


def choose(cands: list[Candidate], s: Search, requested: int) -> tuple[Candidate, int, Layout] | None:
    """The first candidate that fits with each process on as few GPUs as its weights need; else
    the first that fits on more GPUs per process (a pinned 32B with more voters than that holds).
    Among the quantizations of the size that fits first, a lower one that holds three voters at
    the target concurrency wins over a higher one that does not (`_better`)."""
    for attempt in (s.want, replace(s.want, widen=True)):
        best: tuple[Candidate, int, Layout] | None = None
        for cand in cands:
            if best is not None and (
                (cand.family, cand.size) != (best[0].family, best[0].size) or _full(best[2], s)
            ):
                break
            ctx = min(requested, cand.native_context)
            layout = s.shape(cand, ctx, attempt)
            if layout is not None and (best is None or _better(layout, best[2], s)):
                best = (cand, ctx, layout)
        if best is not None:
            cand, ctx, layout = best
            return cand, ctx, s.split(cand, ctx, layout)
        if s.bud.device != "gpu":
            break
    return None


def _full(layout: Layout, s: Search) -> bool:
    """The full default swarm: three voters (or all the config allows) at the target concurrency."""
    return layout.voters >= min(MAJORITY, s.want.high) and layout.concurrency >= s.conc.target


def _better(layout: Layout, than: Layout, s: Search) -> bool:
    """Whether ``layout`` (of a lower quantization of the same model) beats ``than``: it is the
    full default swarm where ``than`` is not. Only an automatic plan trades quantization, and
    only for both: never the model's size."""
    if s.want.exact is not None or not s.conc.auto:
        return False
    return _full(layout, s) and not _full(than, s)


def search(
    hw: HardwareProfile, config: Config, overrides: PlanOverrides, cands: list[Candidate]
) -> tuple[Search, str, ContextTarget, int, tuple[Candidate, int, Layout] | None]:
    """Try the target context, then (a default one) shorter ones."""
    bud = budget(hw, config.hardware)
    topo, why_topo = topology(hw, bud, overrides)
    want = want_for(config, overrides, hw, bud, topo)
    most = want.exact or default_voters(config)  # the voters on the CPU's (or Apple's) one pool
    conc = concurrency(hw, bud, config, overrides, most)
    kv = overrides.kv_type or config.plan.kv_type
    target = context_target(config, overrides)
    auto_split = overrides.processes_per_gpu is None and config.plan.processes_per_gpu is None
    s = Search(bud, topo, want, conc, kv, auto_split)
    requested = target.tokens
    for requested in fallback_contexts(target):
        found = choose(cands, s, requested)
        if found is not None:
            break
    return s, why_topo, target, requested, found

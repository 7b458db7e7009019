"""A process's memory counted so that a sum over processes counts shared pages once.

    used = process_memory(pid)      # Memory(bytes=..., kind="pss") on Linux
    used.kind                       # "pss", "uss" or "rss": what the figure is

The instances of a swarm map the same GGUF file, so their RSS each count the weights again: four
instances of a 300 MiB model show 1.2 GiB of RSS for 300 MiB of pages. Where the OS has it, the
figure is the *proportional set size* (``/proc/PID/smaps_rollup``: each shared page divided
among the processes that map it; the sum over them counts it once). Elsewhere it is the *unique
set size* (psutil's ``memory_full_info().uss``: the pages only this process maps; the sum leaves
the shared weights out, which the label says), and RSS where neither can be read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MemoryKind = Literal["pss", "uss", "rss"]

#: what each kind counts, as ``swarm ps`` says it
MEANING: dict[str, str] = {
    "pss": "shared pages counted once",
    "uss": "private pages only: the shared weights are left out",
    "rss": "shared pages counted again for each process",
}


@dataclass(frozen=True)
class Memory:
    bytes: int
    kind: MemoryKind


def pss_from_rollup(text: str) -> int | None:
    """The ``Pss:`` line of ``/proc/PID/smaps_rollup`` in bytes (None when absent)."""
    for line in text.splitlines():
        if line.startswith("Pss:"):
            parts = line.split()
            return int(parts[1]) * 1024 if len(parts) >= 2 and parts[1].isdigit() else None
    return None


def process_memory(pid: int, proc_dir: Path = Path("/proc")) -> Memory | None:
    """PSS where ``smaps_rollup`` can be read, else USS, else RSS; None when the process is gone
    or not ours to read."""
    try:
        pss = pss_from_rollup((proc_dir / str(pid) / "smaps_rollup").read_text())
    except OSError:
        pss = None
    if pss is not None:
        return Memory(pss, "pss")
    import psutil

    try:
        proc = psutil.Process(pid)
        try:
            return Memory(int(proc.memory_full_info().uss), "uss")
        except (psutil.AccessDenied, AttributeError, NotImplementedError):
            return Memory(int(proc.memory_info().rss), "rss")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None

"""The frozen description of a machine that every later stage reads.

No GPU is an empty ``gpus`` tuple. Apple Silicon is ``apple_silicon=True`` plus one GPU with
``vendor="apple"`` whose ``total_bytes`` is the unified memory: the same bytes as
``ram_total_bytes`` (never add the two); ``has_discrete_gpu`` is False there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..vocabulary import GpuVendor

OsName = Literal["linux", "darwin", "windows"]


@dataclass(frozen=True)
class GPU:
    vendor: GpuVendor
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    driver: str | None = None


@dataclass(frozen=True)
class HardwareProfile:
    os: OsName
    arch: str  # "x86_64", "arm64", ...
    physical_cores: int
    logical_cores: int
    ram_total_bytes: int
    ram_available_bytes: int
    gpus: tuple[GPU, ...] = ()
    apple_silicon: bool = False
    #: why a probe found nothing (no NVML library, rocm-smi failed, ...): shown by ``swarm detect``
    notes: tuple[str, ...] = field(default=())
    #: "AMD Ryzen 9 7950X 16-Core Processor", "Apple M2", ... (None when unknown)
    cpu_name: str | None = None
    #: Apple Silicon performance cores (``hw.perflevel0.physicalcpu``): the useful thread count there
    performance_cores: int | None = None

    @property
    def has_discrete_gpu(self) -> bool:
        return any(g.vendor in ("nvidia", "amd") for g in self.gpus)

    @property
    def discrete_gpus(self) -> tuple[GPU, ...]:
        """The NVIDIA and AMD GPUs (not the Apple unified-memory entry)."""
        return tuple(g for g in self.gpus if g.vendor in ("nvidia", "amd"))

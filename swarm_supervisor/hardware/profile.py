"""The frozen description of a machine that every later stage reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

GpuVendor = Literal["nvidia", "amd", "apple"]
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

    @property
    def has_discrete_gpu(self) -> bool:
        return any(g.vendor in ("nvidia", "amd") for g in self.gpus)

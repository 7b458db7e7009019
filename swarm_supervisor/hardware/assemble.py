"""Put probe readings together into a :class:`HardwareProfile`. Pure: no I/O.

``detect()`` feeds it live readings; the tests feed it canned readings of real machines.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .apple import AppleInfo
from .profile import GPU, HardwareProfile, OsName


@dataclass(frozen=True)
class HostReading:
    """What psutil and platform say about the host."""

    os: OsName
    arch: str
    physical_cores: int
    logical_cores: int
    ram_total_bytes: int
    ram_available_bytes: int
    cpu_name: str | None = None


_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


def normalize_os(system: str) -> OsName:
    """``platform.system()`` -> "linux" / "darwin" / "windows" (anything else counts as linux)."""
    s = system.lower()
    if s == "darwin":
        return "darwin"
    if s.startswith("win") or s.startswith("cygwin") or s.startswith("msys"):
        return "windows"
    return "linux"


def normalize_arch(machine: str) -> str:
    """``platform.machine()`` -> "x86_64", "arm64", ... (AMD64 and aarch64 folded)."""
    m = machine.strip().lower()
    return _ARCH_ALIASES.get(m, m or "unknown")


def assemble(
    host: HostReading,
    *,
    nvidia: Iterable[GPU] = (),
    amd: Iterable[GPU] = (),
    apple: AppleInfo | None = None,
    notes: Iterable[str] = (),
) -> HardwareProfile:
    """One profile from the host reading and whatever the GPU probes found."""
    gpus: list[GPU] = [*nvidia, *amd]
    physical, logical = host.physical_cores, host.logical_cores
    cpu_name, perf = host.cpu_name, None
    apple_silicon = False
    if apple is not None:
        cpu_name = apple.cpu_name or cpu_name
        physical = apple.physical_cores or physical
        logical = apple.logical_cores or logical
        if apple.apple_silicon:
            apple_silicon = True
            perf = apple.performance_cores
            gpus.append(
                GPU(
                    vendor="apple",
                    index=0,
                    name=f"{apple.cpu_name or 'Apple Silicon'} GPU (unified memory)",
                    total_bytes=apple.memsize,
                    free_bytes=min(host.ram_available_bytes, apple.memsize),
                )
            )
    return HardwareProfile(
        os=host.os,
        arch=host.arch,
        physical_cores=max(1, physical),
        logical_cores=max(1, logical, physical),
        ram_total_bytes=apple.memsize if apple is not None else host.ram_total_bytes,
        ram_available_bytes=host.ram_available_bytes,
        gpus=tuple(gpus),
        apple_silicon=apple_silicon,
        notes=tuple(notes),
        cpu_name=cpu_name,
        performance_cores=perf,
    )

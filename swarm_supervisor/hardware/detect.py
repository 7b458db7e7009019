"""``detect()``: read this machine. Thin I/O; every probe is guarded and never raises.

A missing tool or library, a tool that fails or prints something unexpected: the GPU list
stays empty for that vendor and ``HardwareProfile.notes`` says why.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psutil

from .amd import probe_amd
from .apple import AppleInfo, probe_apple
from .assemble import HostReading, assemble, normalize_arch, normalize_os
from .nvidia import probe_nvidia
from .profile import GPU, HardwareProfile

log = logging.getLogger(__name__)
T = TypeVar("T")


def _cpu_name() -> str | None:
    """The CPU model from /proc/cpuinfo (Linux) or platform.processor(); None when unknown."""
    try:
        with Path("/proc/cpuinfo").open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep and key.strip() in ("model name", "Model", "Hardware"):
                    return value.strip() or None
    except OSError:
        pass
    name = platform.processor().strip()
    return name or None


def _allowed_cpus() -> int | None:
    """How many CPUs this process may run on (Linux affinity); None where the OS does not say."""
    getter = getattr(os, "sched_getaffinity", None)
    if getter is None:
        return None
    try:
        return len(getter(0)) or None
    except OSError:
        return None


def read_host() -> tuple[HostReading, tuple[str, ...]]:
    """psutil + platform: cores and RAM. A failing call gives a conservative value and a note."""
    notes: list[str] = []
    logical = psutil.cpu_count(logical=True) or 1
    try:
        physical = psutil.cpu_count(logical=False) or logical
    except Exception as exc:  # psutil may not know on some platforms
        physical = logical
        notes.append(f"CPU: physical core count unknown ({exc}); using the logical count")
    allowed = _allowed_cpus()
    if allowed is not None and allowed < logical:
        # taskset / cpuset / a container's cpuset: plan for the cores this process may run on
        notes.append(f"CPU: this process may use {allowed} of the {logical} logical CPUs (affinity)")
        physical = max(1, min(physical, round(allowed * physical / logical)))
        logical = allowed
    mem = psutil.virtual_memory()
    host = HostReading(
        os=normalize_os(platform.system()),
        arch=normalize_arch(platform.machine()),
        physical_cores=physical,
        logical_cores=logical,
        ram_total_bytes=int(mem.total),
        ram_available_bytes=int(mem.available),
        cpu_name=_cpu_name(),
    )
    return host, tuple(notes)


def _guarded(
    vendor: str, probe: Callable[[], tuple[T, tuple[str, ...]]], empty: T
) -> tuple[T, tuple[str, ...]]:
    """Run one probe; a bug in it is a note, not a crash of ``detect()``."""
    try:
        return probe()
    except Exception as exc:
        log.debug("%s probe failed", vendor, exc_info=True)
        return empty, (f"{vendor}: probe failed unexpectedly: {exc}",)


def detect() -> HardwareProfile:
    """What this machine has: OS, arch, cores, RAM, GPUs, Apple Silicon, and notes."""
    host, host_notes = read_host()
    notes = list(host_notes)
    nvidia: tuple[GPU, ...] = ()
    amd: tuple[GPU, ...] = ()
    apple: AppleInfo | None = None
    if host.os == "darwin":
        apple, more = _guarded("Apple", probe_apple, None)
        notes.extend(more)
    else:
        nvidia, more = _guarded("NVIDIA", probe_nvidia, nvidia)
        notes.extend(more)
        amd, more = _guarded("AMD", probe_amd, amd)
        notes.extend(more)
    profile = assemble(host, nvidia=nvidia, amd=amd, apple=apple, notes=notes)
    log.debug("detected %s", profile)
    return profile

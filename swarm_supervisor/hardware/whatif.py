"""What-if hardware for ``swarm plan``: replace what ``detect()`` found. Pure.

--gpu-memory 24GiB (repeatable)  NVIDIA GPUs of those sizes, all of it free
--ram 64GiB                      total and available RAM (unified memory with --apple-silicon)
--apple-silicon                  an Apple Silicon Mac: os darwin, arch arm64, no discrete GPU
--cpu-only                       drop every GPU (and Apple's Metal GPU)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..errors import PlanError
from ..units import format_bytes
from .profile import GPU, HardwareProfile


def profile_from_overrides(
    base: HardwareProfile,
    gpu_memory: Sequence[int] = (),
    ram: int | None = None,
    apple_silicon: bool = False,
    cpu_only: bool = False,
) -> HardwareProfile:
    """``base`` with the what-if flags applied (``base`` itself when none is given).

    >>> from swarm_supervisor.hardware.profile import HardwareProfile
    >>> box = HardwareProfile("linux", "x86_64", 2, 2, 24 * 2**30, 23 * 2**30)
    >>> profile_from_overrides(box, gpu_memory=[24 * 2**30]).gpus[0].total_bytes
    25769803776
    """
    chosen = [
        name
        for name, on in (
            ("--gpu-memory", bool(gpu_memory)),
            ("--apple-silicon", apple_silicon),
            ("--cpu-only", cpu_only),
        )
        if on
    ]
    if len(chosen) > 1:
        raise PlanError(f"{' and '.join(chosen)} contradict each other: give only one of them.")
    if not chosen and ram is None:
        return base
    for size in (*gpu_memory, *([ram] if ram is not None else [])):
        if size <= 0:
            raise PlanError(f"a what-if memory size must be positive, got {size} bytes: write it like 24GiB.")

    profile = base
    notes: list[str] = []
    if ram is not None:
        profile = replace(profile, ram_total_bytes=ram, ram_available_bytes=ram)
        notes.append(f"what-if: RAM {format_bytes(ram)}")
    if gpu_memory:
        gpus = tuple(
            GPU(
                vendor="nvidia",
                index=i,
                name=f"what-if NVIDIA GPU {format_bytes(size)}",
                total_bytes=size,
                free_bytes=size,
            )
            for i, size in enumerate(gpu_memory)
        )
        profile = replace(profile, gpus=gpus, apple_silicon=False, performance_cores=None)
        notes.append("what-if: " + ", ".join(format_bytes(s) for s in gpu_memory) + " of NVIDIA VRAM")
    elif apple_silicon:
        unified = profile.ram_total_bytes
        gpu = GPU(
            vendor="apple",
            index=0,
            name="what-if Apple Silicon GPU (unified memory)",
            total_bytes=unified,
            free_bytes=unified,
        )
        profile = replace(
            profile,
            os="darwin",
            arch="arm64",
            gpus=(gpu,),
            apple_silicon=True,
            ram_available_bytes=unified,
            performance_cores=profile.performance_cores or profile.physical_cores,
        )
        notes.append(f"what-if: Apple Silicon with {format_bytes(unified)} of unified memory")
    elif cpu_only:
        profile = replace(profile, gpus=(), apple_silicon=False)
        notes.append("what-if: CPU only")
    return replace(profile, notes=tuple(notes))

"""NVIDIA GPUs: NVML (``pynvml`` from the ``nvidia-ml-py`` package), ``nvidia-smi`` CSV as a fallback.

Pure parts: :func:`gpus_from_nvml` (NVML's values -> GPUs) and :func:`parse_nvidia_smi_csv`.
Thin I/O: :func:`read_nvml` and :func:`probe_nvidia`, which never raise: a missing driver or
library is an empty tuple and a note.

GPU indices are NVML's (PCI bus order). CUDA orders devices fastest-first unless
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` is set: whoever sets ``CUDA_VISIBLE_DEVICES`` from these
indices should set that too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from .profile import GPU
from .tools import ToolError, run_tool, which

log = logging.getLogger(__name__)

MiB = 1024**2

#: the query the fallback runs; :func:`parse_nvidia_smi_csv` reads its output
NVIDIA_SMI_ARGV = [
    "nvidia-smi",
    "--query-gpu=index,name,memory.total,memory.free,driver_version",
    "--format=csv,noheader,nounits",
]


class ParseError(ValueError):
    """A tool's output did not have the expected shape."""


@dataclass(frozen=True)
class NvmlDevice:
    """What NVML says about one device (bytes)."""

    index: int
    name: str
    total: int
    free: int


def gpus_from_nvml(driver: str | None, devices: Iterable[NvmlDevice]) -> tuple[GPU, ...]:
    """NVML readings -> GPUs, sorted by index."""
    return tuple(
        GPU(
            vendor="nvidia",
            index=d.index,
            name=d.name.strip(),
            total_bytes=d.total,
            free_bytes=d.free,
            driver=driver or None,
        )
        for d in sorted(devices, key=lambda d: d.index)
    )


def parse_nvidia_smi_csv(text: str) -> tuple[GPU, ...]:
    """Parse ``nvidia-smi --query-gpu=index,name,memory.total,memory.free,driver_version
    --format=csv,noheader,nounits`` (memory in MiB), one GPU per line.

    >>> parse_nvidia_smi_csv("0, NVIDIA GeForce RTX 4090, 24564, 23981, 550.54.14")[0].total_bytes
    25757220864
    """
    gpus: list[GPU] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        # A GPU name never contains a comma, but be safe: index first, the last three fields fixed.
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 5:
            raise ParseError(f"nvidia-smi line {lineno}: expected 5 fields, got {len(fields)}: {line!r}")
        index_s, name, total_s, free_s, driver = (
            fields[0],
            ", ".join(fields[1:-3]),
            fields[-3],
            fields[-2],
            fields[-1],
        )
        try:
            index, total, free = int(index_s), int(float(total_s)), int(float(free_s))
        except ValueError:
            raise ParseError(f"nvidia-smi line {lineno}: not a number in {line!r}") from None
        gpus.append(
            GPU(
                vendor="nvidia",
                index=index,
                name=name,
                total_bytes=total * MiB,
                free_bytes=free * MiB,
                driver=None if driver in ("", "[N/A]", "N/A") else driver,
            )
        )
    return tuple(sorted(gpus, key=lambda g: g.index))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlLibraryNotFound(Exception):
    """No ``libnvidia-ml.so.1`` for the dynamic loader: no NVIDIA driver (Linux)."""


def _nvml_library_present() -> bool:
    """Whether the dynamic loader finds NVML, as pynvml would look for it on Linux: a missing
    library is found out this way without importing pynvml (a large module: some 20-30 ms of
    `swarm plan` on a machine without NVIDIA). True elsewhere: pynvml finds out."""
    if not sys.platform.startswith("linux"):
        return True
    import ctypes

    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def read_nvml() -> tuple[str | None, list[NvmlDevice]]:
    """Ask NVML for the driver version and every device. Raises ``pynvml.NVMLError``,
    :class:`NvmlLibraryNotFound` (or ImportError)."""
    if not _nvml_library_present():
        raise NvmlLibraryNotFound("libnvidia-ml.so.1 not found")
    import pynvml

    pynvml.nvmlInit()
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        devices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            devices.append(
                NvmlDevice(
                    index=i,
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    total=int(mem.total),
                    free=int(mem.free),
                )
            )
        return driver, devices
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # shutting down after a successful read must not lose the reading
            log.debug("nvmlShutdown failed", exc_info=True)


def _nvml_failure(exc: BaseException) -> str:
    if isinstance(exc, ImportError):
        return "NVML bindings (nvidia-ml-py) are not installed"
    kind = type(exc).__name__
    if "LibraryNotFound" in kind:
        return "NVML library not found (no NVIDIA driver installed)"
    if "DriverNotLoaded" in kind:
        return "NVIDIA driver not loaded"
    return f"NVML failed: {exc}"


def probe_nvidia() -> tuple[tuple[GPU, ...], tuple[str, ...]]:
    """NVIDIA GPUs and notes. NVML first; ``nvidia-smi`` when NVML fails but the tool exists."""
    try:
        driver, devices = read_nvml()
        return gpus_from_nvml(driver, devices), ()
    except Exception as exc:  # any NVML trouble is a note, never a crash
        nvml_note = _nvml_failure(exc)
    if which("nvidia-smi") is None:
        return (), (f"NVIDIA: {nvml_note}; no nvidia-smi on PATH: no NVIDIA GPU",)
    try:
        gpus = parse_nvidia_smi_csv(run_tool(NVIDIA_SMI_ARGV))
    except (ToolError, ParseError) as exc:
        return (), (f"NVIDIA: {nvml_note}; {exc}",)
    return gpus, (f"NVIDIA: {nvml_note}; read the GPUs from nvidia-smi instead",)

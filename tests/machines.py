"""Canned ``HardwareProfile`` values of eight real machines, for any test to import.

Each is built by running the hardware parsers over the readings stored in
``tests/data/hardware/<machine>/``: ``host.json`` (psutil / platform) plus the tool output of
that machine (``nvidia-smi.csv``, ``nvml.json``, ``rocm-smi.json`` or ``sysctl.txt``).

    from tests.machines import RTX4090, CPU16, ALL
"""

from __future__ import annotations

import json
from pathlib import Path

from swarm_supervisor.hardware.amd import parse_rocm_smi_json
from swarm_supervisor.hardware.apple import parse_sysctl
from swarm_supervisor.hardware.assemble import HostReading, assemble
from swarm_supervisor.hardware.nvidia import NvmlDevice, gpus_from_nvml, parse_nvidia_smi_csv
from swarm_supervisor.hardware.profile import HardwareProfile

DATA = Path(__file__).parent / "data" / "hardware"


def host_reading(machine: str) -> HostReading:
    raw = json.loads((DATA / machine / "host.json").read_text())
    raw.pop("source", None)
    return HostReading(**raw)


def load_machine(machine: str) -> HardwareProfile:
    """The profile of ``tests/data/hardware/<machine>``, through the same parsers ``detect()`` uses."""
    folder = DATA / machine
    host = host_reading(machine)
    nvml = folder / "nvml.json"
    smi = folder / "nvidia-smi.csv"
    rocm = folder / "rocm-smi.json"
    sysctl = folder / "sysctl.txt"
    if nvml.exists():
        data = json.loads(nvml.read_text())
        nvidia = gpus_from_nvml(data["driver"], [NvmlDevice(**d) for d in data["devices"]])
    elif smi.exists():
        nvidia = parse_nvidia_smi_csv(smi.read_text())
    else:
        nvidia = ()
    amd = parse_rocm_smi_json(rocm.read_text()) if rocm.exists() else ()
    apple = parse_sysctl(sysctl.read_text()) if sysctl.exists() else None
    notes = (
        () if (nvidia or amd or apple) else ("NVIDIA: NVML library not found (no NVIDIA driver installed)",)
    )
    return assemble(host, nvidia=nvidia, amd=amd, apple=apple, notes=notes)


RTX4090 = load_machine("rtx4090")  # 1 x RTX 4090 24 GB, 64 GB RAM, 16 cores
LAPTOP_8GB = load_machine("laptop_8gb")  # RTX 4060 Laptop 8 GB, 16 GB RAM, 8 cores
A100X2 = load_machine("a100x2")  # 2 x A100-SXM4-80GB, 504 GiB RAM, 32 cores
H100 = load_machine("h100")  # 1 x H100 80GB HBM3 (NVML reading), 126 GiB RAM, 16 cores
MI300X = load_machine("mi300x")  # 1 x MI300X 192 GB (rocm-smi JSON), 236 GiB RAM, 20 cores
M2_16 = load_machine("m2_16")  # Apple M2, 16 GB unified, 4P + 4E cores
M3MAX_64 = load_machine("m3max_64")  # Apple M3 Max, 64 GB unified, 12P + 4E cores
CPU16 = load_machine("cpu16")  # no GPU, 16 GB RAM (15.4 GiB visible), 4 cores / 8 threads

ALL: dict[str, HardwareProfile] = {
    "RTX4090": RTX4090,
    "LAPTOP_8GB": LAPTOP_8GB,
    "A100X2": A100X2,
    "H100": H100,
    "MI300X": MI300X,
    "M2_16": M2_16,
    "M3MAX_64": M3MAX_64,
    "CPU16": CPU16,
}

# Several GPUs (issue 10). Kept out of ``ALL`` (whose eight machines other tests count on).
RTX4090X4 = load_machine("4x4090")  # 4 x RTX 4090 24 GB (display on GPU 0), 256 GB RAM, 32 cores
H100X8 = load_machine("8xh100")  # DGX H100: 8 x H100 80GB HBM3 (NVML reading), 2 TiB RAM, 112 cores
A10GX8 = load_machine("8xa10g")  # AWS g5.48xlarge: 8 x A10G 24 GB, 768 GiB RAM, 96 cores
MIXED_3060_4090 = load_machine("mixed_3060_4090")  # GPU 0 an RTX 3060 12 GB, GPU 1 an RTX 4090 24 GB (NVML)

MULTI_GPU: dict[str, HardwareProfile] = {
    "A100X2": A100X2,
    "RTX4090X4": RTX4090X4,
    "H100X8": H100X8,
    "A10GX8": A10GX8,
    "MIXED_3060_4090": MIXED_3060_4090,
}

"""The memory arithmetic of a plan: budgets per device and the bytes one process needs. Pure.

One llama-server process holds

    weights        the GGUF file (memory-mapped on CPU and Apple: shared by every process of
                   the model, so counted once there; copied into VRAM on NVIDIA/AMD)
    KV cache       2 (K and V) x n_layers x n_kv_heads x head_dim x bytes per element x context,
                   per slot: 2 bytes in f16 (llama-server's default), 34 per 32 in q8_0 and 18 per
                   32 in q4_0 (ggml's block sizes), so q8_0 takes 53% of f16 and q4_0 28%
    compute        the graph and output buffers plus the runtime's own overhead (an allowance)

The compute allowance was measured, not guessed:

* CPU, SmolLM2-135M Q4_1 (98.4 MB file), this project's llama-server build, one short chat request,
  RSS by psutil: 227.7 MB at ``-c 4096``, 322.9 MB at 8192, 511.7 MB at 16384, 417.7 MB with
  ``--parallel 3 -c 12288`` and 1268 MB with ``--parallel 3 -c 49152``. Less weights and KV
  (23,040 B per token) that leaves 35.0-37.4 MB at every size: the compute share does not grow
  with context (flash attention). Allowance: 32 MiB + 48 MiB per billion parameters (38 MiB
  for SmolLM2; about 400 MiB for a 7B, which covers its larger graph and vocabulary).
* NVIDIA, H100, a Qwen2.5-Coder-1.5B-shaped Q4_K_M model (985 MB), ``-c 4096`` per slot: 1.7 GB
  for one process with one slot, 2.5 GB for one process with 8 slots, 13.7 GB for 8 processes.
  Less weights and KV (117 MB per slot) that leaves about 0.6 GB per process (the CUDA context
  and the compute buffers). Allowance: 512 MiB + 64 MiB per billion parameters (0.64 GB there).
* Apple (Metal): no measurement yet; 128 MiB + 64 MiB per billion parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import HardwareConfig, KvType
from ..hardware.profile import HardwareProfile
from ..units import MiB, format_bytes
from .types import Device

#: bytes per block of elements of each KV-cache type (ggml: q8_0 = 32 int8 + an f16 scale, q4_0 = 32
#: nibbles + an f16 scale)
KV_TYPE_BLOCKS: dict[str, tuple[int, int]] = {"f16": (2, 1), "q8_0": (34, 32), "q4_0": (18, 32)}

#: (fixed bytes per process, bytes per billion parameters) of the compute allowance
COMPUTE_ALLOWANCE: dict[Device, tuple[int, int]] = {
    "cpu": (32 * MiB, 48 * MiB),
    "gpu": (512 * MiB, 64 * MiB),
    "apple": (128 * MiB, 64 * MiB),
}


def kv_bytes_per_token(n_layers: int, n_kv_heads: int, head_dim: int, kv_type: KvType = "f16") -> int:
    """K and V of one token in every layer."""
    block_bytes, block = KV_TYPE_BLOCKS[kv_type]
    return 2 * n_layers * n_kv_heads * -(-head_dim // block) * block_bytes


def kv_bytes(n_layers: int, n_kv_heads: int, head_dim: int, context: int, kv_type: KvType = "f16") -> int:
    """The KV cache of one slot of ``context`` tokens.

    >>> kv_bytes(28, 4, 128, 16384)  # Qwen2.5-Coder-7B, one 16k slot: 896 MiB
    939524096
    >>> kv_bytes(28, 4, 128, 16384, "q8_0")  # the same in q8_0: 476 MiB
    499122176
    """
    return kv_bytes_per_token(n_layers, n_kv_heads, head_dim, kv_type) * context


def compute_bytes(device: Device, params_b: float) -> int:
    """The compute allowance of one process (on each GPU it spans)."""
    fixed, per_b = COMPUTE_ALLOWANCE[device]
    return fixed + int(per_b * params_b)


@dataclass(frozen=True)
class Budget:
    """What the plan may use: one entry per GPU, or a single entry for CPU / Apple memory."""

    device: Device
    per_device: tuple[int, ...]  # bytes, indexed like ``gpu_indices`` (a single entry on CPU/Apple)
    gpu_indices: tuple[int, ...]  # the GPUs' indices (empty on CPU/Apple)
    rule: str  # "90% of 24.0 GiB VRAM", for the plan's reasons

    @property
    def total(self) -> int:
        return sum(self.per_device)


def budget(hw: HardwareProfile, cfg: HardwareConfig) -> Budget:
    """NVIDIA/AMD: VRAM less the reserve; Apple Silicon: a share of unified memory; else a share of RAM."""
    gpus = hw.discrete_gpus
    if gpus:
        frac = cfg.gpu_memory_fraction
        per = tuple(int(g.total_bytes * frac) for g in gpus)
        sizes = ", ".join(format_bytes(g.total_bytes) for g in gpus)
        return Budget(
            "gpu",
            per,
            tuple(g.index for g in gpus),
            f"{frac:.0%} of the VRAM ({sizes}; hardware.gpu_memory_fraction)",
        )
    if hw.apple_silicon:
        frac = cfg.apple_memory_fraction
        return Budget(
            "apple",
            (int(hw.ram_total_bytes * frac),),
            (),
            f"{frac:.0%} of {format_bytes(hw.ram_total_bytes)} unified memory "
            "(hardware.apple_memory_fraction)",
        )
    frac = cfg.ram_fraction
    return Budget(
        "cpu",
        (int(hw.ram_total_bytes * frac),),
        (),
        f"{frac:.0%} of {format_bytes(hw.ram_total_bytes)} RAM (hardware.ram_fraction)",
    )

"""The plan: hardware x catalogue x config x overrides -> :class:`Plan`. Pure: no I/O.

(The selection function itself is filled in by the foundation work; the types below are the
contract that fetch, supervisor and proxy read.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Topology = Literal["processes", "slots"]
Device = Literal["cpu", "gpu", "apple"]


@dataclass(frozen=True)
class Placement:
    """Where one llama-server process runs."""

    instance: int  # 0-based process index
    gpu: int | None  # GPU index (CUDA_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES), None on CPU / Apple
    gpus: tuple[int, ...] = ()  # when one instance spans several GPUs (tensor split); else (gpu,)


@dataclass(frozen=True)
class MemoryBreakdown:
    """The arithmetic that justifies the plan, in bytes."""

    budget_bytes: int
    weights_bytes: int  # one copy of the weights
    kv_bytes_per_slot: int
    compute_bytes: int  # per process
    per_instance_bytes: int  # one process: weights (unless shared) + kv * slots + compute
    shared_weights: bool  # CPU / Apple: mmap'd weights counted once
    total_bytes: int


@dataclass(frozen=True)
class Plan:
    model: str  # family name, "qwen2.5-coder"
    size: str  # "7b"
    quant: str  # "q4_k_m"
    model_id: str  # "qwen2.5-coder:7b:q4_k_m" (the alias the proxy serves)
    device: Device
    topology: Topology  # N processes with 1 slot each, or 1 process (per GPU) with N slots
    voters: int  # total slots that vote: the "instances" a user asks for
    processes: int  # llama-server processes
    slots: int  # --parallel per process
    context: int  # tokens per slot
    threads: int  # --threads per process
    gpu_layers: int  # -ngl (0 on CPU)
    placements: tuple[Placement, ...]
    memory: MemoryBreakdown
    embedded: bool = False
    chat: bool = True
    reasons: tuple[str, ...] = field(default=())  # why this model, topology, context ...
    warnings: tuple[str, ...] = field(default=())  # e.g. "14b would fit only at 8192 context"
    gguf_path: str | None = None  # when the user named a local file

"""The plan's values: what fetch, supervisor and proxy read (:class:`Plan`), and what the caller
passes in besides hardware, catalogue and config (:class:`PlanOverrides`, :class:`ModelFacts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import KvType

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
    total_bytes: int  # every process, and their prompt caches where they share the budget's memory
    #: llama-server's host-RAM prompt cache per process (``--cache-ram``; 0: off): plan/cache.py
    cache_ram_bytes: int = 0
    cache_total_bytes: int = 0  # the caches of all processes, full
    #: True on CPU / Apple (the caches are in ``total_bytes``); False on a GPU: host RAM, not VRAM
    cache_in_budget: bool = True
    #: GPU: the host's share of RAM the caches are sized against (0 on CPU / Apple)
    host_ram_budget_bytes: int = 0

    @property
    def process_bytes(self) -> int:
        """What the processes themselves hold (weights, KV, compute), their prompt caches left out:
        what they take before any prompt is cached."""
        return self.total_bytes - (self.cache_total_bytes if self.cache_in_budget else 0)


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
    #: voted requests that run at once without queueing: slots = voters per process x concurrency
    concurrency: int = 1
    kv_type: str = "f16"  # KV-cache element type (llama-server -ctk/-ctv)
    params_b: float = 0.0  # the model's parameters in billions (0: unknown)

    @property
    def voters_per_process(self) -> int:
        """Voters one process answers for in one voted request (the ``n`` it is sent)."""
        return max(1, self.slots // max(1, self.concurrency))


@dataclass(frozen=True)
class ModelFacts:
    """The numbers of a real GGUF file, which replace the catalogue's once the file is present.

    The model store reads them from the file's metadata (``general.architecture`` and the
    ``<arch>.block_count`` / ``attention.head_count_kv`` / ``attention.key_length`` /
    ``context_length`` keys); ``file_bytes`` is the size on disk (all parts of a split file).
    """

    n_layers: int
    n_kv_heads: int
    head_dim: int
    context: int  # native (training) context
    file_bytes: int
    name: str | None = None  # general.name, for display
    quant: str | None = None  # "q4_k_m" where known (from general.file_type or the file name)
    params_b: float | None = None  # parameters in billions, where known


@dataclass(frozen=True)
class PlanOverrides:
    """What a user (flags) or the supervisor asks for, over the config's defaults.

    ``model`` is ``NAME``, ``NAME:SIZE``, ``NAME:SIZE:QUANT`` (``qwen2.5-coder:7b:q4_k_m``) or a
    path to a ``.gguf`` file (then ``facts`` is required: the plan cannot guess its architecture).
    ``facts`` with a catalogue model pinned to one size and quant replaces the catalogue's figures.
    """

    model: str | None = None
    instances: int | None = None  # voters; None: as many as fit, from min_instances to max_instances
    context: int | None = None  # tokens per slot; None: config.plan.context, else native up to 32k
    concurrency: int | None = None  # voted requests at once; None: config.plan.concurrency, else auto
    kv_type: KvType | None = None  # None: config.plan.kv_type
    topology: Topology | None = None  # None: the plan chooses (and says why)
    processes_per_gpu: int | None = None  # None: config.plan.processes_per_gpu
    allow_embedded: bool = False  # let the embedded PyPI models compete (after every hub model)
    facts: ModelFacts | None = None

"""How one instance is started: the argv of llama-server (or ``mlx_lm.server``) and its environment.

Pure functions of an :class:`~swarm_supervisor.swarm.spec.InstanceConfig` and a port::

    llama_server_argv(cfg, 8081)   # [binary, "-m", model, "--host", "127.0.0.1", "--port", "8081", ...]
    instance_env(cfg)              # os.environ plus the GPU(s) this instance may see
"""

from __future__ import annotations

import os

from .spec import InstanceConfig


def llama_server_argv(cfg: InstanceConfig, port: int) -> list[str]:
    """The argv for llama-server: every size explicit, loopback only, the port always passed."""
    argv = [
        str(cfg.binary),
        "-m",
        str(cfg.model_path),
        "--host",
        cfg.host,
        "--port",
        str(port),
        "-c",
        str(cfg.context * cfg.slots),
        "-ngl",
        str(cfg.gpu_layers),
        "--threads",
        str(cfg.threads),
        "--parallel",
        str(cfg.slots),
        "--metrics",
        "--alias",
        cfg.model_id,
    ]
    if cfg.api_key_file is not None:
        argv += ["--api-key-file", str(cfg.api_key_file)]
    if cfg.seed is not None:
        argv += ["--seed", str(cfg.seed)]
    if cfg.kv_type != "f16":
        argv += ["-ctk", cfg.kv_type, "-ctv", cfg.kv_type, "-fa", "on"]
    if cfg.shared_kv:
        # one KV pool for all slots, so the n answers of one request share the prompt's cells
        # instead of copying them; each slot keeps the plan's context as its limit, so one long
        # answer cannot take the cells that the other slots' requests are using
        argv += ["--kv-unified", "--kv-unified-per-slot", str(cfg.context)]
    if cfg.cache_ram_mib is not None:
        # the host-RAM prompt cache as the plan counted it (llama-server's default: 8192 MiB a process)
        argv += ["--cache-ram", str(cfg.cache_ram_mib)]
    return argv + list(cfg.extra_args)


def mlx_server_argv(cfg: InstanceConfig, port: int) -> list[str]:
    """The argv for ``mlx_lm.server`` (Apple Silicon). ``binary`` is the mlx_lm.server script."""
    argv = [
        str(cfg.binary),
        "--model",
        str(cfg.model_path),
        "--host",
        cfg.host,
        "--port",
        str(port),
        "--max-tokens",
        str(cfg.max_tokens),
    ]
    return argv + list(cfg.extra_args)


def build_argv(cfg: InstanceConfig, port: int) -> list[str]:
    return mlx_server_argv(cfg, port) if cfg.backend == "mlx" else llama_server_argv(cfg, port)


def instance_env(cfg: InstanceConfig, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment: the GPU(s) this instance may see, nothing else changed.

    The plan's GPU indices are NVML's / nvidia-smi's (PCI bus order); CUDA numbers devices
    fastest-first unless told otherwise, so ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` goes with them (on a
    3060 + 4090 box CUDA's device 0 would otherwise be the 4090, NVML's index 1).
    """
    env = dict(os.environ if base is None else base)
    gpus = ",".join(str(g) for g in cfg.visible_gpus)
    if cfg.gpu_vendor == "nvidia" and gpus:
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["CUDA_VISIBLE_DEVICES"] = gpus
    elif cfg.gpu_vendor == "amd" and gpus:
        env["HIP_VISIBLE_DEVICES"] = gpus
    return env

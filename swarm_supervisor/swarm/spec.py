"""What a supervisor runs: a :class:`SwarmSpec`, built from a plan by ``swarm up``.

The spec is plain data and goes to the detached supervisor process as a JSON file (mode 0600:
it carries the internal API key)::

    spec = SwarmSpec(name="default", model_id=plan.model_id, ..., instances=instance_configs(plan, ...))
    write_private(path, spec.to_json());  SwarmSpec.from_json(path.read_text())
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..units import MiB
from ..vocabulary import Backend, GpuVendor

if TYPE_CHECKING:
    from ..config import Config  # imported when a spec is read: the daemon spawns before pydantic
    from ..plan import Plan  # the daemon reads a spec without the planner

#: seeds of the instances: SEED_BASE + instance index, so no two instances sample alike
SEED_BASE = 1000


@dataclass(frozen=True)
class InstanceConfig:
    """Everything needed to start one instance; the port is chosen at spawn time."""

    id: str
    binary: Path
    model_path: Path
    model_id: str  # --alias: the name the proxy serves
    context: int  # tokens per slot; llama-server's -c is the total, so context * slots is passed
    slots: int = 1
    threads: int = 1
    gpu_layers: int = 0
    log_path: Path = Path("instance.log")
    #: voters this process answers for in one request (sent as ``n``); 0: all its slots.
    #: slots = voters x concurrent requests (the plan's ``concurrency``)
    voters: int = 0
    backend: Backend = "llama.cpp"
    gpu: int | None = None
    gpus: tuple[int, ...] = ()
    gpu_vendor: GpuVendor | None = None
    api_key_file: Path | None = None  # the key is read from a 0600 file, never put in argv
    seed: int | None = None
    extra_args: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    max_tokens: int = 8192  # mlx_lm.server only: its default of 512 cuts answers
    #: KV-cache type (``-ctk``/``-ctv``); a quantized one also gets ``-fa on``: llama.cpp refuses a
    #: quantized V cache without flash attention ("quantized V cache was requested, but this
    #: requires Flash Attention", src/llama-context.cpp), and ``auto`` may resolve to off
    kv_type: str = "f16"
    #: one KV pool for the process's slots, each slot still capped at ``context`` (llama-server's
    #: ``--kv-unified --kv-unified-per-slot``): the n answers of one voted request share the
    #: prompt's cells instead of each copying them. Only where the binary has both flags.
    shared_kv: bool = False
    #: llama-server's host-RAM prompt cache in MiB (``--cache-ram``, 0: off), as the plan sized
    #: and counted it (plan/cache.py); None: the flag is not passed (a binary without it)
    cache_ram_mib: int | None = None

    @property
    def visible_gpus(self) -> tuple[int, ...]:
        if self.gpus:
            return self.gpus
        return () if self.gpu is None else (self.gpu,)


def new_api_key() -> str:
    import secrets  # (hashlib, random: not before the supervisor process's spawn)

    return "sk-swarm-" + secrets.token_urlsafe(24)


@dataclass(frozen=True)
class SwarmSpec:
    name: str
    model_id: str
    model_path: str
    context: int  # tokens per slot
    device: str  # "cpu" / "gpu" / "apple"
    instances: tuple[InstanceConfig, ...]
    api_key: str  # the instances' internal key; only the proxy sends it
    proxy_host: str = "127.0.0.1"
    proxy_port: int = 8000
    config: Config = field(default_factory=lambda: _config_model()())
    log_dir: str = ""
    plan_summary: dict[str, Any] = field(default_factory=dict)  # shown by ps / kept for the record
    #: set when model_id is the embedded stand-in for the planned model: {"planned", "running",
    #: "why", "fix"} (docs/api.md); the proxy and the run file carry it as it is
    fallback: dict[str, str] | None = None

    @property
    def voters(self) -> int:
        """Voters in all: each process's voters (its slots over the plan's concurrency), not its slots."""
        return sum(i.voters or i.slots for i in self.instances)

    def to_json(self) -> str:
        data = asdict(self)
        data["config"] = self.config.model_dump(mode="json")
        data["instances"] = [_instance_to_dict(i) for i in self.instances]
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str, *, validate: bool = True) -> SwarmSpec:
        """The spec :meth:`to_json` wrote. ``validate=False`` (the supervisor process, which reads
        the spec `swarm up` of the same installation just wrote from a validated config) reads
        the config as it was dumped, through a :class:`ConfigView`, without importing pydantic."""
        data = json.loads(text)
        if validate:
            data["config"] = _config_model().model_validate(data.get("config") or {})
        else:
            data["config"] = cast("Config", ConfigView(data.get("config") or {}))
        data["instances"] = tuple(_instance_from_dict(d) for d in data["instances"])
        return cls(**data)


class ConfigView:
    """Attribute access to a config that ``Config.model_dump(mode="json")`` wrote: the tables are
    views again, the values are as dumped (numbers, strings, lists, None). Read-only; a key the
    dump lacks is an AttributeError naming it.

    >>> v = ConfigView({"proxy": {"port": 8000, "aliases": ["a"]}})
    >>> (v.proxy.port, v.proxy.aliases)
    (8000, ['a'])
    """

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # (copy and pickle look for these before _data is set)
            raise AttributeError(name)
        try:
            value = self._data[name]
        except KeyError:
            raise AttributeError(f"the launch spec's config has no {name!r}") from None
        return ConfigView(value) if isinstance(value, dict) else value

    def model_dump(self, mode: str = "json") -> dict[str, Any]:
        """The config as it was dumped (as :class:`Config`'s, for :meth:`SwarmSpec.to_json`)."""
        copy: dict[str, Any] = json.loads(json.dumps(self._data))
        return copy


def _config_model() -> type[Config]:
    from ..config import Config

    return Config


def files_named(text: str) -> list[str]:
    """The model and binary paths a launch spec (:meth:`SwarmSpec.to_json`) names, read leniently:
    an older or partial spec gives what it has, one that is not JSON gives nothing.

    >>> files_named('{"model_path": "/m.gguf", "instances": [{"binary": "/s", "model_path": 3}, 7]}')
    ['/m.gguf', '/s']
    """
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return []
    if not isinstance(data, dict):
        return []
    paths = [data.get("model_path")]
    for inst in data.get("instances") or []:
        if isinstance(inst, dict):
            paths += [inst.get("binary"), inst.get("model_path")]
    return [p for p in paths if isinstance(p, str) and p]


def _instance_to_dict(cfg: InstanceConfig) -> dict[str, Any]:
    d = asdict(cfg)
    for key in ("binary", "model_path", "log_path", "api_key_file"):
        if d[key] is not None:
            d[key] = str(d[key])
    d["gpus"] = list(cfg.gpus)
    d["extra_args"] = list(cfg.extra_args)
    return d


def _instance_from_dict(d: dict[str, Any]) -> InstanceConfig:
    d = dict(d)
    for key in ("binary", "model_path", "log_path", "api_key_file"):
        if d.get(key) is not None:
            d[key] = Path(d[key])
    d["gpus"] = tuple(d.get("gpus") or ())
    d["extra_args"] = tuple(d.get("extra_args") or ())
    return InstanceConfig(**d)


def start_groups(spec: SwarmSpec) -> list[list[InstanceConfig]]:
    """The order of start: instances that share GPUs start one after another (llama-server sizes
    itself to the VRAM it sees free), the groups side by side; on CPU each is a group of its own.

    >>> on = [InstanceConfig(str(i), Path("s"), Path("m"), "m", 512, gpu=g) for i, g in enumerate((0, 0, 1))]
    >>> [[i.id for i in g] for g in start_groups(SwarmSpec("x", "m", "m", 512, "gpu", tuple(on), "k"))]
    [['0', '1'], ['2']]
    """
    return groups_of(spec.device, spec.instances)


def groups_of(device: str, instances: tuple[InstanceConfig, ...]) -> list[list[InstanceConfig]]:
    """:func:`start_groups` of a spec's device and instances."""
    groups: dict[str, list[InstanceConfig]] = {}
    for cfg in instances:
        gpus = cfg.visible_gpus
        key = f"gpu{','.join(map(str, gpus))}" if gpus and device == "gpu" else f"cpu{cfg.id}"
        groups.setdefault(key, []).append(cfg)
    return list(groups.values())


def first_to_start(text: str) -> list[InstanceConfig]:
    """The instances of a launch spec (:meth:`SwarmSpec.to_json`) that start at once: the first of
    each start group. Read as plain JSON, without the config's models (the supervisor process
    spawns these before it imports pydantic); ValueError, KeyError or TypeError when it is not one.
    """
    data = json.loads(text)
    instances = tuple(_instance_from_dict(d) for d in data["instances"])
    return [group[0] for group in groups_of(str(data["device"]), instances)]


def instance_configs(
    plan: Plan,
    *,
    binary: Path,
    model_path: Path,
    log_dir: Path,
    api_key_file: Path | None,
    backend: Backend = "llama.cpp",
    gpu_vendor: GpuVendor | None = None,
    extra_args: tuple[str, ...] = (),
    shared_kv: bool = False,
    cache_ram: bool = False,
) -> tuple[InstanceConfig, ...]:
    """One :class:`InstanceConfig` per placement of ``plan`` (pure): ``slots`` = the process's
    voters x the plan's concurrency (``--parallel``), ``voters`` = what one voted request asks of
    it (``n``), ``context`` per slot (``-c`` gets context x slots); ``cache_ram`` (the binary takes
    ``--cache-ram``): the plan's prompt cache per process."""
    cache_mib = plan.memory.cache_ram_bytes // MiB if cache_ram else None
    out = []
    for p in plan.placements:
        out.append(
            InstanceConfig(
                id=str(p.instance),
                binary=binary,
                model_path=model_path,
                model_id=plan.model_id,
                context=plan.context,
                slots=plan.slots,
                voters=plan.voters_per_process,
                kv_type=plan.kv_type,
                threads=plan.threads,
                gpu_layers=plan.gpu_layers,
                log_path=log_dir / f"instance-{p.instance}.log",
                backend=backend,
                gpu=p.gpu,
                gpus=tuple(p.gpus),
                gpu_vendor=gpu_vendor if plan.device == "gpu" else None,
                api_key_file=api_key_file if backend == "llama.cpp" else None,
                seed=SEED_BASE + p.instance,
                extra_args=extra_args,
                shared_kv=shared_kv and plan.slots > 1,
                cache_ram_mib=cache_mib,
            )
        )
    return tuple(out)

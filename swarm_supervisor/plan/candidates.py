"""The models a plan may choose from, in the order it tries them. Pure.

A :class:`Candidate` is one (family, size, quant) with the numbers the arithmetic needs: from the
catalogue, from a named ``--model``, or from a local ``.gguf`` and its :class:`ModelFacts`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..config import QUANT_ORDER, Catalogue, Config, KvType, ModelFamily
from ..errors import ConfigError, PlanError
from .layout import Need
from .memory import compute_bytes, kv_bytes
from .types import Device, ModelFacts


@dataclass(frozen=True)
class Candidate:
    """One (family, size, quant) with the numbers the arithmetic needs."""

    family: str
    size: str
    quant: str
    weights: int
    n_layers: int
    n_kv_heads: int
    head_dim: int
    native_context: int
    params_b: float
    embedded: bool = False
    chat: bool = True
    gguf_path: str | None = None

    @property
    def model_id(self) -> str:
        if self.gguf_path is not None:
            return self.family
        return f"{self.family}:{self.size}:{self.quant}"

    def need(self, device: Device, context: int, kv_type: KvType = "f16") -> Need:
        return Need(
            weights=self.weights,
            kv_per_slot=kv_bytes(self.n_layers, self.n_kv_heads, self.head_dim, context, kv_type),
            compute=compute_bytes(device, self.params_b),
        )

    def with_facts(self, facts: ModelFacts) -> Candidate:
        return replace(
            self,
            weights=facts.file_bytes,
            n_layers=facts.n_layers,
            n_kv_heads=facts.n_kv_heads,
            head_dim=facts.head_dim,
            native_context=facts.context,
            params_b=facts.params_b or self.params_b,
        )


def _family_candidates(
    fam: ModelFamily, size: str | None = None, quant: str | None = None
) -> list[Candidate]:
    out = []
    variants = sorted(fam.variants, key=lambda v: v.params_b, reverse=True)
    for v in variants:
        if size is not None and v.size != size:
            continue
        quants = sorted(v.quants, key=QUANT_ORDER.index, reverse=True)
        for q in quants:
            if quant is not None and q != quant:
                continue
            out.append(
                Candidate(
                    fam.name,
                    v.size,
                    q,
                    v.quants[q].bytes,
                    v.n_layers,
                    v.n_kv_heads,
                    v.head_dim,
                    v.context,
                    v.params_b,
                    embedded=fam.embedded,
                    chat=fam.chat,
                )
            )
    return out


def is_gguf_path(spec: str) -> bool:
    return spec.lower().endswith(".gguf") or "/" in spec or "\\" in spec


def _path_candidate(path: str, facts: ModelFacts | None) -> Candidate:
    if facts is None:
        raise PlanError(
            f"{path}: planning a local .gguf needs its metadata; read it first (the model store's "
            "facts) or name a catalogue model like qwen2.5-coder:7b"
        )
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    stem = name[: -len(".gguf")] if name.lower().endswith(".gguf") else name
    params_b = facts.params_b or max(facts.file_bytes / 0.6e9, 0.05)  # ~4.8 bits per weight if unknown
    return Candidate(
        stem,
        "",
        facts.quant or "unknown",
        facts.file_bytes,
        facts.n_layers,
        facts.n_kv_heads,
        facts.head_dim,
        facts.context,
        params_b,
        gguf_path=path,
    )


def explicit_candidates(spec: str, catalogue: Catalogue, facts: ModelFacts | None) -> list[Candidate]:
    if is_gguf_path(spec):
        return [_path_candidate(spec, facts)]
    parts = spec.strip().lower().split(":")
    if len(parts) > 3 or not parts[0]:
        raise PlanError(f"--model {spec!r}: write NAME, NAME:SIZE or NAME:SIZE:QUANT (or a path to a .gguf)")
    name = parts[0]
    size = parts[1] if len(parts) > 1 else None
    quant = parts[2] if len(parts) > 2 else None
    try:
        fam = catalogue.family(name)
        if size:
            catalogue.find(name, size)
    except ConfigError as exc:
        raise PlanError(str(exc)) from None
    out = _family_candidates(fam, size or None, quant or None)
    if not out:
        have = ", ".join(sorted({c.quant for c in _family_candidates(fam, size or None)}))
        raise PlanError(f"{name}:{size} has no quantization {quant!r}; it comes in: {have}")
    if facts is not None:
        if len(out) != 1:
            raise PlanError("model facts apply to one file: pin the model as NAME:SIZE:QUANT")
        out = [out[0].with_facts(facts)]
    return out


def auto_candidates(catalogue: Catalogue, config: Config, embedded: bool) -> list[Candidate]:
    order: list[ModelFamily] = []
    for name in config.plan.preferred:
        try:
            fam = catalogue.family(name)
        except ConfigError as exc:
            raise ConfigError(f"plan.preferred: {exc}") from None
        if fam not in order:
            order.append(fam)
    order += [f for f in catalogue.models if f not in order]
    out: list[Candidate] = []
    for fam in order:
        if fam.chat and fam.embedded == embedded:
            out += _family_candidates(fam)
    return out

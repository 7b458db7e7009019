"""Read :class:`ModelFacts` from a GGUF file's metadata (the one module of ``plan`` that does I/O).

    facts = read_model_facts(Path("SmolLM2-135M-Instruct.Q4_1.gguf"))
    facts.n_layers, facts.n_kv_heads, facts.head_dim, facts.context   # 30, 3, 64, 8192

``make_plan`` never calls this: the caller (``swarm plan --model PATH``, the model store once the
weights are present) reads the facts and passes them in ``PlanOverrides.facts``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import ModelFileError
from .types import ModelFacts

#: llama.cpp's ``general.file_type`` (enum llama_ftype) -> the catalogue's quant names
FILE_TYPES = {
    1: "f16",
    2: "q4_0",
    3: "q4_1",
    7: "q8_0",
    8: "q5_0",
    10: "q2_k",
    12: "q3_k_m",
    15: "q4_k_m",
    17: "q5_k_m",
    18: "q6_k",
}
_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.gguf$")


def _value(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return None
    value = field.contents()
    if isinstance(value, list):  # per-layer arrays (some architectures): the largest entry
        return max(value) if value else None
    return value


def file_bytes(path: Path) -> int:
    """The size of the model: all parts of a ``-00001-of-0000N.gguf`` split, else the one file."""
    m = _SPLIT.match(path.name)
    if not m:
        return path.stat().st_size
    n = int(m.group("n"))
    parts = [path.with_name(f"{m.group('stem')}-{i:05d}-of-{n:05d}.gguf") for i in range(1, n + 1)]
    return sum(p.stat().st_size for p in parts if p.exists())


def read_model_facts(path: Path) -> ModelFacts:
    """The architecture numbers of ``path`` (the first part of a split file is enough)."""
    from gguf import GGUFReader  # imported here: reading is the rare path, the plan is the common one

    try:
        reader = GGUFReader(str(path), "r")
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a readable GGUF file ({exc}); download it again") from None
    arch = _value(reader, "general.architecture")
    if not isinstance(arch, str):
        raise ModelFileError(f"{path}: no general.architecture in the GGUF metadata; is it a model file?")
    layers = _value(reader, f"{arch}.block_count")
    heads = _value(reader, f"{arch}.attention.head_count")
    kv_heads = _value(reader, f"{arch}.attention.head_count_kv") or heads
    head_dim = _value(reader, f"{arch}.attention.key_length")
    if head_dim is None and heads:
        embd = _value(reader, f"{arch}.embedding_length")
        head_dim = embd // heads if embd else None
    context = _value(reader, f"{arch}.context_length")
    missing = [
        k
        for k, v in (
            ("block_count", layers),
            ("head_count_kv", kv_heads),
            ("key_length", head_dim),
            ("context_length", context),
        )
        if not v
    ]
    if missing:
        raise ModelFileError(f"{path}: the GGUF metadata lacks {arch}.{', '.join(missing)}")
    params = sum(int(t.n_elements) for t in reader.tensors)
    name = _value(reader, "general.name")
    ftype = _value(reader, "general.file_type")
    return ModelFacts(
        n_layers=int(layers),
        n_kv_heads=int(kv_heads),
        head_dim=int(head_dim),
        context=int(context),
        file_bytes=file_bytes(path),
        name=name if isinstance(name, str) else None,
        quant=FILE_TYPES.get(int(ftype)) if ftype is not None else None,
        params_b=params / 1e9 if params else None,
    )

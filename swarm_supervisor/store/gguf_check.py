"""Check a GGUF file before anything uses it, and read the numbers the plan needs from it.

::

    info = check_gguf(Path("model.gguf"), expected_bytes=98_362_432)
    info.facts.n_layers, info.facts.n_kv_heads, info.architecture, info.has_chat_template

A file is accepted only when its magic and version are those of a GGUF, its whole metadata and
tensor table read back with the ``gguf`` package, every tensor's data lies inside the file, and its
size is the expected one (when known). Anything else is a :class:`ModelFileError` that names the
file and says to delete it and pull again. Reading the metadata of a large file takes a second or
two (the tokenizer arrays), so :func:`check_gguf_cached` remembers a verdict per (path, size,
mtime) in a small JSON file under the models cache.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelFileError
from ..paths import replace_file
from ..plan.types import ModelFacts

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
_SPLIT_NAME = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


@dataclass(frozen=True)
class GGUFInfo:
    """What the store learnt from one model file (all parts of a split file counted)."""

    path: Path  # the file llama-server is given (the first part of a split file)
    architecture: str  # general.architecture: "llama", "qwen2", "gemma3"
    has_chat_template: bool  # tokenizer.chat_template present: the model can chat
    version: int  # GGUF version
    parts: int  # 1, or split.count of a multi-part file
    facts: ModelFacts


class _Bad(ModelFileError):
    """A :class:`ModelFileError` that remembers what exactly is wrong (``reason``)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"{path} is not a usable GGUF model file: {reason}. Delete it and run `swarm pull` again "
            "(or pass another --model PATH.gguf)."
        )
        self.reason = reason


def _bad(path: Path, what: str) -> ModelFileError:
    return _Bad(path, what)


def _header(path: Path) -> int:
    """Magic and version, from the first 8 bytes: the cheap check that names what is wrong."""
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise _bad(path, f"cannot read it ({exc.strerror})") from None
    if len(head) < 8:
        raise _bad(path, f"only {len(head)} bytes long (truncated)")
    if head[:4] != GGUF_MAGIC:
        raise _bad(path, f"it does not start with the GGUF magic (found {head[:4]!r})")
    (version,) = struct.unpack("<I", head[4:8])
    if version not in SUPPORTED_VERSIONS:
        raise _bad(path, f"GGUF version {version} is not one this tool reads (2 or 3)")
    return int(version)


def _value(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return None
    return field.contents()


def _quant_name(file_type: Any) -> str | None:
    """``general.file_type`` (llama_ftype) -> ``"q4_k_m"``."""
    if not isinstance(file_type, int):
        return None
    import gguf

    try:
        name = gguf.LlamaFileType(file_type).name
    except ValueError:
        return None
    return name.removeprefix("MOSTLY_").removeprefix("ALL_").lower()


def _read(path: Path) -> tuple[Any, int]:
    """Open ``path`` with GGUFReader and check that every tensor's data lies inside the file."""
    import gguf  # numpy-heavy: imported on first use

    size = path.stat().st_size
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, IndexError, KeyError, TypeError, OverflowError, struct.error) as exc:
        raise _bad(path, f"it does not read back as a GGUF, so it is corrupt or truncated ({exc})") from None
    except OSError as exc:
        raise _bad(path, f"cannot map it ({exc.strerror})") from None
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > size:
        raise _bad(path, f"its tensors need {end} bytes but the file has {size} (truncated)")
    return reader, size


def _int(reader: Any, key: str, path: Path) -> int:
    value = _value(reader, key)
    if not isinstance(value, int) or value <= 0:
        raise _bad(path, f"its metadata lacks `{key}`")
    return value


def split_parts(first: Path) -> list[Path]:
    """The parts of a split GGUF (``name-00001-of-00003.gguf``) from its first part; else [first]."""
    m = _SPLIT_NAME.search(first.name)
    if not m:
        return [first]
    count = int(m.group(2))
    stem = first.name[: m.start()]
    return [first.with_name(f"{stem}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]


def gguf_problem(path: Path) -> str | None:
    """What is wrong with one file (or one part of a split file) as a GGUF, or None.

    Checks the magic, the version, that the metadata and tensor table read back, and that every
    tensor's data lies inside the file; not the architecture keys (later parts lack them).
    """
    try:
        _header(path)
        _read(path)
    except _Bad as exc:
        return exc.reason
    return None


def check_gguf(path: Path, *, expected_bytes: int | None = None, parts: list[Path] | None = None) -> GGUFInfo:
    """Verify ``path`` (and the other parts of a split file) and read its facts.

    ``expected_bytes`` is the total of all parts when known (a download's announced size, an
    embedded model's published size). ``parts`` defaults to the split-name convention.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file. Check the path, or run `swarm pull`.")
    parts = parts or split_parts(path)
    missing = [p for p in parts if not p.is_file()]
    if missing:
        raise ModelFileError(
            f"{path} is one part of a split model, but {missing[0].name} is missing beside it. "
            "Run `swarm pull` again to fetch every part."
        )
    version = _header(path)
    total = 0
    for extra in parts[1:]:
        _header(extra)
        _read(extra)
        total += extra.stat().st_size
    reader, size = _read(path)
    total += size
    if expected_bytes is not None and total != expected_bytes:
        raise _bad(path, f"it is {total} bytes, {expected_bytes} expected (incomplete or the wrong file)")

    arch = _value(reader, "general.architecture")
    if not isinstance(arch, str) or not arch:
        raise _bad(path, "its metadata lacks `general.architecture`")
    n_layers = _int(reader, f"{arch}.block_count", path)
    context = _int(reader, f"{arch}.context_length", path)
    n_heads = _value(reader, f"{arch}.attention.head_count")
    n_kv = _value(reader, f"{arch}.attention.head_count_kv")
    if not isinstance(n_kv, int):  # per-layer arrays exist in some models: take the largest
        n_kv = max(n_kv) if isinstance(n_kv, list) and n_kv else n_heads
    if not isinstance(n_kv, int) or n_kv <= 0:
        raise _bad(path, f"its metadata lacks `{arch}.attention.head_count_kv`")
    head_dim = _value(reader, f"{arch}.attention.key_length")
    if not isinstance(head_dim, int):
        embd = _int(reader, f"{arch}.embedding_length", path)
        if not isinstance(n_heads, int) or n_heads <= 0:
            raise _bad(path, f"its metadata lacks `{arch}.attention.head_count`")
        head_dim = embd // n_heads
    n_params = sum(int(t.n_elements) for t in reader.tensors)
    name = _value(reader, "general.name")
    facts = ModelFacts(
        n_layers=n_layers,
        n_kv_heads=n_kv,
        head_dim=head_dim,
        context=context,
        file_bytes=total,
        name=name if isinstance(name, str) else None,
        quant=_quant_name(_value(reader, "general.file_type")),
        params_b=round(n_params / 1e9, 3) if len(parts) == 1 and n_params else None,
    )
    return GGUFInfo(
        path=path,
        architecture=arch,
        has_chat_template=isinstance(_value(reader, "tokenizer.chat_template"), str),
        version=version,
        parts=len(parts),
        facts=facts,
    )


# --------------------------------------------------------------------------- remembered verdicts


def _stamp(parts: list[Path]) -> list[list[int]]:
    return [[p.stat().st_size, p.stat().st_mtime_ns] for p in parts]


def check_gguf_cached(
    path: Path, facts_dir: Path, *, expected_bytes: int | None = None, parts: list[Path] | None = None
) -> GGUFInfo:
    """:func:`check_gguf`, skipped when the same file (path, size, mtime) passed before.

    The verdict lives in ``facts_dir/<sha1 of the path>.json``; a file that changed is read again.
    """
    path = Path(path).absolute()
    parts = [Path(p).absolute() for p in (parts or split_parts(path))]
    memo = facts_dir / (hashlib.sha1(str(path).encode(), usedforsecurity=False).hexdigest() + ".json")
    try:
        stamp = _stamp(parts)
    except OSError:
        return check_gguf(path, expected_bytes=expected_bytes, parts=parts)  # names what is missing
    try:
        saved = json.loads(memo.read_text())
        if saved["path"] == str(path) and saved["stamp"] == stamp:
            facts = ModelFacts(**saved["facts"])
            if expected_bytes is None or facts.file_bytes == expected_bytes:
                return GGUFInfo(
                    path=path,
                    architecture=saved["architecture"],
                    has_chat_template=saved["has_chat_template"],
                    version=saved["version"],
                    parts=len(parts),
                    facts=facts,
                )
    except (OSError, ValueError, KeyError, TypeError):
        pass
    info = check_gguf(path, expected_bytes=expected_bytes, parts=parts)
    record = {
        "path": str(path),
        "stamp": stamp,
        "architecture": info.architecture,
        "has_chat_template": info.has_chat_template,
        "version": info.version,
        "facts": asdict(info.facts),
    }
    try:
        facts_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        replace_file(memo, json.dumps(record), 0o600)
    except OSError:
        pass  # a cache that cannot be written only costs time
    return info

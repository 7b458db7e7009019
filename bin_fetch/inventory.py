"""What the binary cache holds, for ``swarm models``: finished entries, downloaded sources and
unfinished work, each with its size, and removing one of them.

    items = list_binaries(dirs().bin)      # newest entry first, then sources, then unfinished work
    items[0].name, items[0].source         # "build-11434.0.0-cpu", "source build 11434.0.0 (cpu)"
    remove_binary(dirs().bin, items[0])    # FetchBinaryError while a download or build runs

Removal takes the cache's lock without waiting: while ``swarm pull`` resolves a binary (a
download, a build) nothing is removed. Whether a running swarm uses an entry is the caller's
question (this package knows nothing of swarms).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from filelock import FileLock, Timeout

from .cache import STAGING_PREFIX, entries_dir, list_entries, lock_file
from .errors import FetchBinaryError

Kind = Literal["binary", "source", "partial"]


@dataclass(frozen=True)
class CachedBinary:
    """One thing in the binary cache."""

    name: str  # what `swarm models --rm` takes: the entry's folder name, "sdist-VERSION", ...
    kind: Kind  # binary: a runnable entry; source: a downloaded sdist; partial: unfinished work
    path: Path  # the folder or file that removing it deletes
    bytes: int
    source: str  # "release b10760 (cpu)", "source build 11434.0.0 (cpu)", "PyPI sdist ..."
    binary: Path | None = None  # the llama-server inside a finished entry
    version: str | None = None  # what the binary's --version said


def tree_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (links not followed)."""
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).lstat().st_size
    return total


def list_binaries(cache_dir: Path) -> list[CachedBinary]:
    """Everything in ``cache_dir`` (``dirs().bin``) that ``remove_binary`` can remove."""
    out: list[CachedBinary] = []
    for e in list_entries(cache_dir):
        what = "release" if e.origin == "release" else "source build" if e.origin == "build" else e.origin
        key = str(e.manifest.get("key") or e.manifest.get("tag") or e.dir.name)
        out.append(
            CachedBinary(
                name=e.dir.name,
                kind="binary",
                path=e.dir,
                bytes=tree_bytes(e.dir),
                source=f"{what} {key} ({e.backend})",
                binary=e.binary,
                version=e.version,
            )
        )
    sdist = cache_dir / "sdist"
    if sdist.is_dir():
        for f in sorted(sdist.iterdir()):
            if f.is_file() and f.name.endswith((".tar.gz", ".zip")):
                stem = f.name.removesuffix(".tar.gz").removesuffix(".zip")
                version = stem.rpartition("-")[2] or stem
                out.append(
                    CachedBinary(
                        name=f"sdist-{version}",
                        kind="source",
                        path=f,
                        bytes=f.stat().st_size,
                        source=f"PyPI sdist {stem} (kept for rebuilds)",
                    )
                )
    unfinished = [p for p in _children(entries_dir(cache_dir)) if p.name.startswith(STAGING_PREFIX)]
    unfinished += [p for p in _children(cache_dir / "build-work") if p.is_dir()]
    for p in unfinished:
        out.append(
            CachedBinary(
                name=f"unfinished-{p.name.lstrip('.')}",
                kind="partial",
                path=p,
                bytes=tree_bytes(p),
                source="an unfinished download or build",
            )
        )
    return out


def _children(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


def remove_binary(cache_dir: Path, item: CachedBinary) -> None:
    """Delete ``item``; :class:`FetchBinaryError` while another process downloads or builds."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_file(cache_dir)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise FetchBinaryError(
            f"a llama-server download or build is running (it holds {lock_file(cache_dir)}); "
            f"remove {item.name} once it is done"
        ) from None
    try:
        if item.path.is_dir() and not item.path.is_symlink():
            # rename first, so the entry vanishes in one step even if the delete is cut short
            gone = item.path.parent / f"{STAGING_PREFIX}rm-{item.path.name}"
            item.path.rename(gone)
            shutil.rmtree(gone, ignore_errors=True)
        else:
            item.path.unlink(missing_ok=True)
    finally:
        lock.release()

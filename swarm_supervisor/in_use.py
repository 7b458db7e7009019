"""Which files the running swarms use, from their run files: ``swarm models`` will not remove them.

    in_use = files_in_use(dirs())              # {"default": [model_path, binary, ...]}
    used_by((folder_or_file,), in_use)         # ["default"]: a swarm uses it or something inside it

A run record names ``model_path`` and ``binary``; the launch spec beside it (older run files lack
``binary``) names each instance's. A run file whose supervisor and instances are gone counts for
nothing; a damaged one for the whole cache (nothing is removed while it is there).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from .paths import Dirs
from .swarm.record import RunRecord
from .swarm.runfile import RunFile, is_stale, list_names
from .swarm.spec import files_named


def _swarm_files(rec: RunRecord, launch: Path) -> list[Path]:
    paths = [p for p in (rec.model_path, rec.binary) if p]
    with contextlib.suppress(OSError, UnicodeDecodeError):
        paths += files_named(launch.read_text(encoding="utf-8"))
    return [Path(p) for p in paths]


def files_in_use(where: Dirs) -> dict[str, list[Path]]:
    """Running swarm name -> the model and binary files it uses. A damaged run file counts as a
    swarm that may use anything in the caches (nothing is removed while it is there)."""
    out: dict[str, list[Path]] = {}
    for name in list_names(where):
        rf = RunFile(name, where)
        rec = rf.peek()
        if rec is None:
            if rf.path.exists():  # damaged, or being written: assume the worst
                out[name] = [where.cache]
            continue
        if not is_stale(rec):
            out[name] = _swarm_files(rec, rf.launch_path)
    return out


def _forms(path: Path) -> set[Path]:
    forms = {path.absolute()}
    with contextlib.suppress(OSError):
        forms.add(path.resolve())
    return forms


def used_by(paths: tuple[Path, ...], in_use: dict[str, list[Path]]) -> list[str]:
    """The swarms that use a file among ``paths`` or inside one of them (links followed or not)."""
    mine = set().union(*(_forms(p) for p in paths)) if paths else set()
    names = []
    for name, used in in_use.items():
        if any(
            u == m or u.is_relative_to(m) or m.is_relative_to(u)
            for f in used
            for u in _forms(f)
            for m in mine
        ):
            names.append(name)
    return names

"""The run file: one JSON file per swarm that ``ps`` and ``down`` read from any shell.

``<state>/runs/<name>.json`` (mode 0600, in a 0700 dir: it holds the internal API key) holds a
:class:`~.record.RunRecord`: which supervisor runs the swarm and which processes are its
instances, each with the ``create_time`` psutil reported when it started, so that a recycled
pid is never signalled::

    rf = RunFile("default")
    with rf.lock():
        rec = rf.read()            # RunRecord or None
        rf.write(rec)              # tmp file + os.replace: readers never see half a file

A run file whose supervisor is dead and whose instances are all gone is *stale*;
:func:`claim` removes it. A run file that cannot be parsed is *damaged*: :meth:`RunFile.read`
raises :class:`~swarm_supervisor.errors.RunFileDamaged` and nothing deletes it (a live
supervisor writes it again within one health interval). :func:`~.teardown.teardown` is what
``swarm down`` does, and works after the supervisor was killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import RunFileDamaged, SwarmStateError
from ..memory import process_memory
from ..paths import Dirs, dirs, ensure_private_dir, replace_file
from .record import InstanceRecord, RunRecord
from .system import same_process

log = logging.getLogger(__name__)

DEFAULT_NAME = "default"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: what a name may not end with: the other files of a swarm beside its run file
_RESERVED_SUFFIXES = (".launch",)


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name) or name.endswith(_RESERVED_SUFFIXES):
        raise SwarmStateError(
            f"invalid swarm name {name!r}: use letters, digits, '.', '_' or '-' (at most 64 characters, "
            "starting with a letter or digit, not ending in '.launch')"
        )
    return name


class RunFile:
    """The run file of the swarm ``name`` and its lock."""

    def __init__(self, name: str = DEFAULT_NAME, where: Dirs | None = None) -> None:
        self.name = check_name(name)
        self.dirs = where or dirs()
        self.path = self.dirs.runs / f"{name}.json"

    @property
    def launch_path(self) -> Path:
        """What ``swarm up`` hands the supervisor process (the spec it runs)."""
        return self.dirs.launch_file(self.name)

    @property
    def key_path(self) -> Path:
        """The internal API key, read by the instances with ``--api-key-file``."""
        return self.dirs.runs / f"{self.name}.key"

    @property
    def log_dir(self) -> Path:
        return self.dirs.log_dir(self.name)

    def ensure_dirs(self) -> None:
        ensure_private_dir(self.dirs.state)
        ensure_private_dir(self.dirs.runs)
        ensure_private_dir(self.dirs.logs)
        ensure_private_dir(self.log_dir)

    @contextlib.contextmanager
    def lock(self, timeout_s: float = 10.0) -> Iterator[None]:
        from filelock import FileLock, Timeout  # not for `swarm up`'s supervisor process's start

        self.ensure_dirs()
        lock = FileLock(str(self.dirs.runs / f"{self.name}.lock"), timeout=timeout_s, mode=0o600)
        try:
            with lock:
                yield
        except Timeout:
            raise SwarmStateError(
                f"the run file of swarm {self.name!r} stayed locked for {timeout_s:.0f} s; "
                "another swarm command is busy with it: try again"
            ) from None

    def read(self) -> RunRecord | None:
        """The record, or None when there is no run file; :class:`RunFileDamaged` when there is one
        that is not a supervisor's record (never treated as stale: it may belong to a live swarm)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise self.damaged(f"cannot be read: {exc}") from None
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise self.damaged(f"is not valid JSON ({exc})") from None
        try:
            return RunRecord.from_json(data, name=self.name)
        except ValueError as exc:
            raise self.damaged(str(exc)) from None

    def peek(self) -> RunRecord | None:
        """:meth:`read`, with a damaged file read as None (for loops that wait for a state)."""
        try:
            return self.read()
        except RunFileDamaged:
            return None

    def damaged(self, what: str) -> RunFileDamaged:
        flag = "" if self.name == DEFAULT_NAME else f" --name {self.name}"
        return RunFileDamaged(
            f"the run file {self.path} is damaged: it {what}; nothing was deleted. "
            f"If swarm {self.name!r} runs, its supervisor writes the file again within a few seconds: "
            f"run `swarm ps{flag}` again. "
            f"`swarm down{flag}` stops the swarm either way (it finds its processes without the file)"
        )

    def write(self, record: RunRecord) -> None:
        write_private(self.path, json.dumps(record.to_json(), indent=2, sort_keys=True) + "\n")

    def remove(self) -> None:
        for p in (self.path, self.launch_path, self.key_path):
            p.unlink(missing_ok=True)


def write_private(path: Path, text: str, durable: bool = True) -> None:
    """Write ``text`` atomically (tmp file in the same dir + os.replace), mode 0600; ``durable``:
    on the disk before it replaces the old file (an fsync, some milliseconds)."""
    ensure_private_dir(path.parent)
    replace_file(path, text, 0o600, durable=durable)


def list_names(where: Dirs | None = None) -> list[str]:
    runs = (where or dirs()).runs
    if not runs.is_dir():
        return []
    return sorted(p.stem for p in runs.glob("*.json") if not p.name.endswith(".launch.json"))


# --------------------------------------------------------------------------- liveness


def alive(pid: int | None, create_time: float | None) -> bool:
    """The recorded process still runs (the same one: a recycled pid does not count)."""
    return pid is not None and same_process(pid, create_time)


def supervisor_alive(rec: RunRecord) -> bool:
    return alive(rec.supervisor.pid, rec.supervisor.create_time)


def live_instances(rec: RunRecord) -> list[InstanceRecord]:
    return [inst for inst in rec.instances if alive(inst.pid, inst.create_time)]


def is_stale(rec: RunRecord) -> bool:
    return not supervisor_alive(rec) and not live_instances(rec)


def ensure_not_running(rf: RunFile) -> None:
    """Raise if a live swarm of that name has a run file; remove a stale one. Hold ``rf.lock()``."""
    rec = rf.read()
    if rec is not None and not is_stale(rec):
        where = rec.base_url or "starting"
        pid = rec.supervisor.pid
        raise SwarmStateError(
            f"swarm {rf.name!r} is already running ({where}, supervisor pid {pid}). "
            f"See it with `swarm ps`, stop it with `swarm down`, or start another one beside it "
            f"with `swarm up --name OTHER --port OTHER_PORT`"
        )
    if rec is not None:
        log.info("removing the stale run file %s", rf.path)
        rf.remove()


def claim(rf: RunFile, initial: RunRecord) -> None:
    """Write ``initial`` as the run file unless a live swarm of that name has one (then raise).

    A stale run file is removed first. Call with ``rf.lock()`` held.
    """
    ensure_not_running(rf)
    rf.write(initial)


# --------------------------------------------------------------------------- what `ps` shows


def process_rss(pid: int | None, create_time: float | None) -> int | None:
    """Resident memory of a recorded process, or None when it is gone (or not ours to read)."""
    import psutil

    if pid is None or not same_process(pid, create_time):
        return None
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def live_status(rec: RunRecord, vram_by_pid: dict[int, int] | None = None) -> dict[str, Any]:
    """The run file as ``swarm ps`` shows it (its ``--json``): no key, and memory measured now
    (from any shell)."""
    out = rec.to_json()
    del out["internal_key"]
    out["supervisor_alive"] = supervisor_alive(rec)
    instances = []
    for inst, shown in zip(rec.instances, out["instances"], strict=True):
        up = alive(inst.pid, inst.create_time)
        shown["alive"] = up
        shown["rss_bytes"] = process_rss(inst.pid, inst.create_time) if up else None
        used = process_memory(inst.pid) if up and inst.pid is not None else None
        shown["memory_bytes"], shown["memory_kind"] = (used.bytes, used.kind) if used else (None, None)
        vram = None
        if vram_by_pid is not None and up and inst.pid is not None:
            vram = vram_by_pid.get(inst.pid, 0)
        shown["vram_bytes"] = vram
        instances.append(shown)
    out["instances"] = instances
    return out

"""The run file: one JSON file per swarm that ``ps`` and ``down`` read from any shell.

``<state>/runs/<name>.json`` (mode 0600, in a 0700 dir: it holds the internal API key) says
which supervisor runs the swarm and which processes are its instances, each with the
``create_time`` psutil reported when it started, so that a recycled pid is never signalled::

    rf = RunFile("default")
    with rf.lock():
        rec = rf.read()            # dict or None
        rf.write({...})            # tmp file + os.replace: readers never see half a file

A run file whose supervisor is dead and whose instances are all gone is *stale*;
:func:`claim` removes it. A run file that cannot be parsed is *damaged*: :meth:`RunFile.read`
raises :class:`~swarm_supervisor.errors.RunFileDamaged` and nothing deletes it (a live
supervisor writes it again within one health interval). :func:`teardown` is what ``swarm down``
does, and works after the supervisor was killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock, Timeout

from ..errors import RunFileDamaged, SwarmStateError
from ..paths import Dirs, dirs, ensure_private_dir, replace_file
from .system import port_is_free, same_process, terminate_group

log = logging.getLogger(__name__)

DEFAULT_NAME = "default"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: what a name may not end with: the other files of a swarm beside its run file
_RESERVED_SUFFIXES = (".launch",)
Record = dict[str, Any]
#: the module a supervisor process runs (``python -m``): today's, and its name before the swarm/ package
#: (a swarm started before an upgrade is still found)
DAEMON_MODULES = ("swarm_supervisor.swarm.daemon", "swarm_supervisor.supervisor_main")


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
        return self.dirs.runs / f"{self.name}.launch.json"

    @property
    def key_path(self) -> Path:
        """The internal API key, read by the instances with ``--api-key-file``."""
        return self.dirs.runs / f"{self.name}.key"

    @property
    def log_dir(self) -> Path:
        return self.dirs.logs / self.name

    def ensure_dirs(self) -> None:
        ensure_private_dir(self.dirs.state)
        ensure_private_dir(self.dirs.runs)
        ensure_private_dir(self.dirs.logs)
        ensure_private_dir(self.log_dir)

    @contextlib.contextmanager
    def lock(self, timeout_s: float = 10.0) -> Iterator[None]:
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

    def read(self) -> Record | None:
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
        if not isinstance(data, dict) or not isinstance(data.get("supervisor"), dict):
            raise self.damaged("is not a swarm's run file (no `supervisor` object)")
        return data

    def peek(self) -> Record | None:
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

    def write(self, record: Record) -> None:
        write_private(self.path, json.dumps(record, indent=2, sort_keys=True) + "\n")

    def remove(self) -> None:
        for p in (self.path, self.launch_path, self.key_path):
            p.unlink(missing_ok=True)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically (tmp file in the same dir + os.replace), mode 0600."""
    ensure_private_dir(path.parent)
    replace_file(path, text, 0o600)


def list_names(where: Dirs | None = None) -> list[str]:
    runs = (where or dirs()).runs
    if not runs.is_dir():
        return []
    return sorted(p.stem for p in runs.glob("*.json") if not p.name.endswith(".launch.json"))


# --------------------------------------------------------------------------- liveness


def supervisor_alive(rec: Record) -> bool:
    sup = rec.get("supervisor") or {}
    pid = sup.get("pid")
    return isinstance(pid, int) and same_process(pid, sup.get("create_time"))


def live_instances(rec: Record) -> list[Record]:
    return [
        inst
        for inst in rec.get("instances") or []
        if isinstance(inst.get("pid"), int) and same_process(inst["pid"], inst.get("create_time"))
    ]


def is_stale(rec: Record) -> bool:
    return not supervisor_alive(rec) and not live_instances(rec)


def ensure_not_running(rf: RunFile) -> None:
    """Raise if a live swarm of that name has a run file; remove a stale one. Hold ``rf.lock()``."""
    rec = rf.read()
    if rec is not None and not is_stale(rec):
        where = rec.get("base_url") or "starting"
        pid = (rec.get("supervisor") or {}).get("pid")
        raise SwarmStateError(
            f"swarm {rf.name!r} is already running ({where}, supervisor pid {pid}). "
            f"See it with `swarm ps`, stop it with `swarm down`, or start another one beside it "
            f"with `swarm up --name OTHER --port OTHER_PORT`"
        )
    if rec is not None:
        log.info("removing the stale run file %s", rf.path)
        rf.remove()


def claim(rf: RunFile, initial: Record) -> None:
    """Write ``initial`` as the run file unless a live swarm of that name has one (then raise).

    A stale run file is removed first. Call with ``rf.lock()`` held.
    """
    ensure_not_running(rf)
    rf.write(initial)


# --------------------------------------------------------------------------- teardown


def _wait_gone(pid: int, create_time: float | None, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not same_process(pid, create_time):
            return True
        time.sleep(0.05)
    return not same_process(pid, create_time)


def _wait_ports_free(ports: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    busy = ports
    while True:
        busy = [p for p in busy if not port_is_free(p)]
        if not busy or time.monotonic() >= deadline:
            return busy
        time.sleep(0.05)


def _read_healed(rf: RunFile, wait_s: float) -> Record | None:
    """The record; a damaged file is given ``wait_s`` to be rewritten by its live supervisor."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with rf.lock():
                return rf.read()
        except RunFileDamaged:
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.2)


def swarm_processes(rf: RunFile) -> list[psutil.Process]:
    """The processes of swarm ``rf.name`` found without its run file: its supervisor (started in
    the swarm's log dir) and the instances (their argv names the swarm's key file)."""
    key = str(rf.key_path)
    supervisors, instances = [], []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        cmd = p.info.get("cmdline") or []
        if key in cmd:
            instances.append(p)
        elif (
            any(m in cmd for m in DAEMON_MODULES)
            and cmd[-1:] == [rf.name]
            and p.info.get("cwd") == str(rf.log_dir)
        ):
            supervisors.append(p)
    return supervisors + instances  # the supervisor first: it stops its instances itself


def _teardown_blind(rf: RunFile, grace_s: float) -> list[str]:
    """``swarm down`` for a run file that stays damaged: stop what :func:`swarm_processes` finds."""
    done = [f"the run file {rf.path} is damaged; stopping the swarm's processes found without it"]
    for p in swarm_processes(rf):
        with contextlib.suppress(psutil.Error):
            if terminate_group(p.pid, p.create_time(), grace_s):
                done.append(f"process {p.pid} ({' '.join(p.cmdline()[:2])}...) stopped")
    with rf.lock():
        rf.remove()
    return done


#: stop grace when neither the caller nor the run file says one (SupervisorConfig's default)
DEFAULT_GRACE_S = 10.0


def teardown(rf: RunFile, grace_s: float | None = None, heal_s: float = 5.0) -> list[str]:
    """Stop the swarm of ``rf`` whatever state it is in; returns one line per action.

    1. SIGTERM the supervisor (if it is still the recorded process) and give it ``grace_s`` plus
       a margin to stop its instances itself; SIGKILL it after that.
    2. For every recorded instance still alive (same pid *and* create_time): TERM its process
       group, grace, KILL.
    3. Remove the run file, the launch spec and the key file.

    ``grace_s``: None takes the ``stop_grace_s`` the swarm recorded. A damaged run file is given
    ``heal_s`` to be rewritten by its supervisor; after that the swarm's processes are found
    without it (:func:`swarm_processes`).
    """
    done: list[str] = []
    try:
        rec = _read_healed(rf, heal_s)
    except RunFileDamaged:
        return _teardown_blind(rf, DEFAULT_GRACE_S if grace_s is None else grace_s)
    if rec is None:
        raise SwarmStateError(f"no swarm named {rf.name!r} is running (no run file at {rf.path})")
    if grace_s is None:
        recorded = rec.get("stop_grace_s")
        grace_s = float(recorded) if isinstance(recorded, int | float) and recorded > 0 else DEFAULT_GRACE_S
    sup = rec.get("supervisor") or {}
    pid, ctime = sup.get("pid"), sup.get("create_time")
    if isinstance(pid, int) and same_process(pid, ctime):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
        if _wait_gone(pid, ctime, grace_s + 5.0):
            done.append(f"supervisor {pid} stopped")
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, ctime, 5.0)
            done.append(f"supervisor {pid} killed (no exit {grace_s + 5.0:.0f} s after SIGTERM)")
    # re-read: the supervisor may have restarted an instance (new pid) before it stopped
    with rf.lock():
        rec = rf.peek() or rec
    ports: list[int] = []
    for inst in rec.get("instances") or []:
        ipid = inst.get("pid")
        if isinstance(ipid, int) and terminate_group(ipid, inst.get("create_time"), grace_s):
            done.append(f"instance {inst.get('id')} (pid {ipid}) stopped")
        port = inst.get("port")
        if isinstance(port, int):
            ports.append(port)
    proxy_port = (rec.get("proxy") or {}).get("port")
    if isinstance(proxy_port, int) and proxy_port > 0:
        ports.append(proxy_port)
    busy = _wait_ports_free(ports, 5.0)
    if busy:
        done.append(f"warning: ports still in use by another program: {', '.join(map(str, busy))}")
    with rf.lock():
        rf.remove()
    return done


def process_rss(pid: int | None, create_time: float | None) -> int | None:
    """Resident memory of a recorded process, or None when it is gone (or not ours to read)."""
    if pid is None or not same_process(pid, create_time):
        return None
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def live_status(rec: Record, vram_by_pid: dict[int, int] | None = None) -> Record:
    """The run file as ``swarm ps`` shows it: no key, and memory measured now (from any shell)."""
    out = {k: v for k, v in rec.items() if k != "internal_key"}
    out["supervisor_alive"] = supervisor_alive(rec)
    instances = []
    for inst in rec.get("instances") or []:
        inst = dict(inst)
        alive = isinstance(inst.get("pid"), int) and same_process(inst["pid"], inst.get("create_time"))
        inst["alive"] = alive
        inst["rss_bytes"] = process_rss(inst.get("pid"), inst.get("create_time")) if alive else None
        pid = inst.get("pid")
        vram = None
        if vram_by_pid is not None and alive and isinstance(pid, int):
            vram = vram_by_pid.get(pid, 0)
        inst["vram_bytes"] = vram
        instances.append(inst)
    out["instances"] = instances
    return out

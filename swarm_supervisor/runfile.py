"""The run file: one JSON file per swarm that ``ps`` and ``down`` read from any shell.

``<state>/runs/<name>.json`` (mode 0600, in a 0700 dir: it holds the internal API key) says
which supervisor runs the swarm and which processes are its instances, each with the
``create_time`` psutil reported when it started, so that a recycled pid is never signalled::

    rf = RunFile("default")
    with rf.lock():
        rec = rf.read()            # dict or None
        rf.write({...})            # tmp file + os.replace: readers never see half a file

A run file whose supervisor is dead and whose instances are all gone is *stale*;
:func:`claim` removes it. :func:`teardown` is what ``swarm down`` does, and works after the
supervisor was killed with SIGKILL.
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

from .errors import SwarmStateError
from .paths import Dirs, dirs, ensure_private_dir, replace_file
from .process import port_is_free, same_process, terminate_group

log = logging.getLogger(__name__)

DEFAULT_NAME = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
Record = dict[str, Any]


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise SwarmStateError(
            f"invalid swarm name {name!r}: use letters, digits, '.', '_' or '-' (at most 64 characters)"
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
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            log.warning("run file %s is not valid JSON; treating it as stale", self.path)
            return {}
        return data if isinstance(data, dict) else {}

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


def teardown(rf: RunFile, grace_s: float = 10.0) -> list[str]:
    """Stop the swarm of ``rf`` whatever state it is in; returns one line per action.

    1. SIGTERM the supervisor (if it is still the recorded process) and give it ``grace_s`` plus
       a margin to stop its instances itself; SIGKILL it after that.
    2. For every recorded instance still alive (same pid *and* create_time): TERM its process
       group, grace, KILL.
    3. Remove the run file, the launch spec and the key file.
    """
    done: list[str] = []
    with rf.lock():
        rec = rf.read()
    if rec is None:
        raise SwarmStateError(f"no swarm named {rf.name!r} is running (no run file at {rf.path})")
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
        rec = rf.read() or rec
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

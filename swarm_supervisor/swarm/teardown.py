"""``swarm down``: stop a swarm whatever state it is in, from any shell, and remove its files.

:func:`teardown` works from the run file, and after the supervisor was killed with SIGKILL;
when the run file stays damaged, :func:`swarm_processes` finds the swarm's processes without it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import psutil

from ..errors import NotRunningError, RunFileDamaged
from .record import RunRecord
from .runfile import RunFile, alive
from .system import port_is_free, same_process, terminate_group

#: the module a supervisor process runs (``python -m``): today's, and its names before (a swarm
#: started before an upgrade is still found)
DAEMON_MODULES = (
    "swarm_supervisor.swarm.boot",
    "swarm_supervisor.swarm.daemon",
    "swarm_supervisor.supervisor_main",
)


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


def _read_healed(rf: RunFile, wait_s: float) -> RunRecord | None:
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
        raise NotRunningError(f"no swarm named {rf.name!r} is running (no run file at {rf.path})")
    if grace_s is None:
        recorded = rec.stop_grace_s
        grace_s = recorded if recorded is not None and recorded > 0 else DEFAULT_GRACE_S
    pid, ctime = rec.supervisor.pid, rec.supervisor.create_time
    if pid is not None and alive(pid, ctime):
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
    for inst in rec.instances:
        if inst.pid is not None and terminate_group(inst.pid, inst.create_time, grace_s):
            done.append(f"instance {inst.id} (pid {inst.pid}) stopped")
        if inst.port is not None:
            ports.append(inst.port)
    if rec.proxy.port is not None and rec.proxy.port > 0:
        ports.append(rec.proxy.port)
    busy = _wait_ports_free(ports, 5.0)
    if busy:
        done.append(f"warning: ports still in use by another program: {', '.join(map(str, busy))}")
    with rf.lock():
        rf.remove()
    return done

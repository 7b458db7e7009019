"""What the swarm asks of the operating system: free ports, log files, process identity and
process-group signals. Small functions, no state; :mod:`.instance` and :mod:`.runfile` use them.

A recorded process is identified by its pid *and* the ``create_time`` psutil reported when it
started (:func:`same_process`), so a recycled pid is never signalled. psutil is imported where it
is used: on Linux a start reads a process's ``create_time`` from /proc as psutil does
(:func:`create_time_of`), so `swarm up` spawns its instances without loading psutil (10-20 ms of
CPU on the path to the first spawn).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
from collections import deque
from pathlib import Path

#: old logs kept beside the current one (``instance-0.log.1`` ... ``.3``)
LOG_KEEP = 3
#: a running instance's log is rotated (copy, then truncate) once it is larger than this
LOG_MAX_BYTES = 20 * 1024 * 1024
#: lines of the log shown when an instance fails
TAIL_LINES = 20


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nobody listens on ``port`` (connections in TIME_WAIT do not count, as for a server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if sys.platform != "win32":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def rotate_log(path: Path, keep: int = LOG_KEEP) -> None:
    """``x.log`` -> ``x.log.1`` -> ... -> ``x.log.<keep>`` (the oldest is dropped)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    for i in range(keep, 0, -1):
        src = path if i == 1 else path.with_name(f"{path.name}.{i - 1}")
        if src.exists():
            src.replace(path.with_name(f"{path.name}.{i}"))


def rotate_running_log(path: Path, max_bytes: int = LOG_MAX_BYTES, keep: int = LOG_KEEP) -> bool:
    """Rotate a log a live process appends to: copy it aside, then truncate it in place."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    for i in range(keep, 1, -1):
        src = path.with_name(f"{path.name}.{i - 1}")
        if src.exists():
            src.replace(path.with_name(f"{path.name}.{i}"))
    shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    with path.open("r+b") as fh:  # the writer has O_APPEND: it goes on at the new end
        fh.truncate(0)
    return True


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines)).rstrip("\n")
    except OSError:
        return f"(no log at {path})"


# --------------------------------------------------------------------------- signals


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def same_process(pid: int, create_time: float | None) -> bool:
    """True if ``pid`` is alive and (when known) was created at ``create_time``: never a recycled pid."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - create_time) < 0.01
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def create_time_of(pid: int, proc: Path = Path("/proc")) -> float | None:
    """When ``pid`` started, in seconds since the epoch, as psutil reports it; None when it is gone.
    On Linux read from ``proc`` (psutil is the fallback for anything unreadable there)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, ValueError, IndexError, StopIteration):
            return _proc_create_time(pid, proc)
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _proc_create_time(pid: int, proc: Path = Path("/proc")) -> float:
    """psutil's Linux ``create_time``: the start in clock ticks since boot (field 22 of
    ``/proc/PID/stat``, counted after the command name, which may hold spaces and parentheses)
    over the ticks per second, plus the boot time (``btime`` of ``/proc/stat``)."""
    stat = (proc / str(pid) / "stat").read_bytes()
    ticks = int(stat[stat.rindex(b")") + 2 :].split()[19])
    with (proc / "stat").open("rb") as f:
        boot = next(float(line.split()[1]) for line in f if line.startswith(b"btime"))
    return float(ticks) / os.sysconf("SC_CLK_TCK") + boot


def terminate_group(pid: int, create_time: float | None, grace_s: float) -> bool:
    """Stop a process group we did not spawn (``swarm down``): TERM, grace, KILL.

    Acts only if the leader ``pid`` is still the process recorded (same ``create_time``).
    Returns True if a process was signalled.
    """
    import psutil

    if not same_process(pid, create_time):
        return False
    proc = psutil.Process(pid)
    if sys.platform == "win32":  # pragma: no cover - no Windows here
        proc.terminate()
        _, alive = psutil.wait_procs([proc], timeout=grace_s)
        for p in alive:
            p.kill()
        return True
    signal_group(pid, signal.SIGTERM)
    _, alive = psutil.wait_procs([proc], timeout=grace_s)
    if alive:
        signal_group(pid, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=5)
    return True


def allowed_cpus() -> int | None:
    """How many CPUs this process may run on (its affinity); None where the OS does not say."""
    getter = getattr(os, "sched_getaffinity", None)
    return len(getter(0)) if getter is not None else None


def raise_open_file_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit (each client connection of the
    proxy is a file); returns the soft limit now."""
    import resource  # not on Windows; the daemon runs where it is

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError):
            pass
    return int(soft)

"""Running a probe tool (nvidia-smi, rocm-smi, sysctl): argv list, no shell, a timeout.

Every failure becomes a :class:`ToolError` whose message fits in a ``HardwareProfile`` note.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

DEFAULT_TIMEOUT_S = 10.0


class ToolError(Exception):
    """A probe tool is missing, failed, timed out or printed nothing."""


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.communicate()


def which(name: str) -> str | None:
    """The full path of ``name`` on PATH, or None."""
    return shutil.which(name)


def run_tool(argv: list[str], timeout: float = DEFAULT_TIMEOUT_S, *, allow_failure: bool = False) -> str:
    """Run ``argv`` and return its stdout.

    ``allow_failure``: accept a non-zero exit status when stdout is not empty (``sysctl`` exits 1
    when one of several names is unknown but still prints the others).
    """
    name = argv[0]
    try:
        # own session, so that a hung tool and anything it started can be killed together
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
    except FileNotFoundError:
        raise ToolError(f"{name} not found") from None
    except OSError as exc:
        raise ToolError(f"{name} could not run: {exc.strerror or exc}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise ToolError(f"{name} did not answer within {timeout:g} s") from None
    if proc.returncode != 0 and not (allow_failure and out.strip()):
        detail = (err.strip() or out.strip()).splitlines()
        last = detail[-1] if detail else "no output"
        raise ToolError(f"{name} exited with status {proc.returncode}: {last[:200]}")
    if not out.strip():
        raise ToolError(f"{name} printed nothing")
    return out

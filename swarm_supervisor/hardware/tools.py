"""Running a probe tool (nvidia-smi, rocm-smi, sysctl): argv list, no shell, a timeout.

Every failure becomes a :class:`ToolError` whose message fits in a ``HardwareProfile`` note.
"""

from __future__ import annotations

import shutil
import subprocess

DEFAULT_TIMEOUT_S = 10.0


class ToolError(Exception):
    """A probe tool is missing, failed, timed out or printed nothing."""


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
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise ToolError(f"{name} not found") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"{name} did not answer within {timeout:g} s") from None
    except OSError as exc:
        raise ToolError(f"{name} could not run: {exc.strerror or exc}") from None
    out = proc.stdout
    if proc.returncode != 0 and not (allow_failure and out.strip()):
        detail = (proc.stderr.strip() or out.strip()).splitlines()
        last = detail[-1] if detail else "no output"
        raise ToolError(f"{name} exited with status {proc.returncode}: {last[:200]}")
    if not out.strip():
        raise ToolError(f"{name} printed nothing")
    return out

"""Trust a binary only after it runs: ``--version`` (and ``--list-devices`` to name its backend)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .errors import BinaryNotRunnableError
from .values import Backend

VERSION_TIMEOUT_S = 30.0
_VERSION_RE = re.compile(r"^version:\s*(.+?)\s*$", re.MULTILINE)


def _tail(text: str, lines: int = 5) -> str:
    kept = [ln for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)


def _run(path: Path, arg: str, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [str(path), arg],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        raise BinaryNotRunnableError(
            f"{path}: no such file; check the llama-server path (--llama-server, config "
            "binary.llama_server or SWARM_LLAMA_SERVER)"
        ) from None
    except PermissionError:
        raise BinaryNotRunnableError(
            f"{path}: not executable; run `chmod +x {path}` or point to the llama-server executable"
        ) from None
    except subprocess.TimeoutExpired:
        raise BinaryNotRunnableError(
            f"{path} {arg} did not finish within {timeout:.0f} s; is it really llama-server?"
        ) from None
    except OSError as exc:
        raise BinaryNotRunnableError(
            f"{path}: cannot run ({exc.strerror}); it may be built for another OS or CPU. "
            "Remove it or point to a llama-server built for this machine"
        ) from None


def verify(path: Path, timeout: float = VERSION_TIMEOUT_S) -> str:
    """Run ``path --version``; return the version text (``0.6.0-dev (build 0, commit unknown)``).

    Raises :class:`BinaryNotRunnableError` (a ``FetchBinaryError``) when it does not run, exits
    non-zero or prints no ``version:`` line; the message carries the tail of its output.
    """
    if path.is_dir():
        raise BinaryNotRunnableError(f"{path} is a folder; point to the llama-server executable inside it")
    if not path.exists():
        raise BinaryNotRunnableError(
            f"{path}: no such file; check the llama-server path (--llama-server, config "
            "binary.llama_server or SWARM_LLAMA_SERVER)"
        )
    proc = _run(path, "--version", timeout)
    output = proc.stderr + "\n" + proc.stdout
    match = _VERSION_RE.search(output)
    if proc.returncode != 0 or match is None:
        why = f"exit status {proc.returncode}" if proc.returncode != 0 else "no 'version:' line"
        tail = _tail(output)
        raise BinaryNotRunnableError(
            f"{path} --version failed ({why}){': ' + tail if tail else ''}. "
            "If a shared library is missing, keep the files that came with the binary beside it, "
            "or let `swarm pull --build` build one for this machine"
        )
    return match.group(1)


_DEVICE_PREFIXES: tuple[tuple[str, Backend], ...] = (
    ("cuda", "cuda"),
    ("rocm", "rocm"),
    ("hip", "rocm"),
    ("vulkan", "vulkan"),
    ("mtl", "metal"),
    ("metal", "metal"),
)
_LIB_HINTS: tuple[tuple[str, Backend], ...] = (
    ("ggml-cuda", "cuda"),
    ("ggml-hip", "rocm"),
    ("ggml-vulkan", "vulkan"),
    ("ggml-metal", "metal"),
)


def backend_from_devices(listing: str) -> Backend | None:
    """The backend named by ``--list-devices`` output (``  CUDA0: NVIDIA H100 ...``), if any."""
    for line in listing.splitlines():
        name = line.strip().split(":", 1)[0].lower()
        for prefix, backend in _DEVICE_PREFIXES:
            if name.startswith(prefix) and name[len(prefix) :].isdigit():
                return backend
    return None


def detect_backend(path: Path, os_name: str, arch: str, timeout: float = VERSION_TIMEOUT_S) -> Backend:
    """Best guess of a foreign binary's backend: its devices, else the libraries beside it, else cpu."""
    try:
        proc = _run(path, "--list-devices", timeout)
        found = backend_from_devices(proc.stdout + "\n" + proc.stderr)
        if found:
            return found
    except BinaryNotRunnableError:
        pass
    try:
        names = [p.name.lower() for p in path.resolve().parent.iterdir()]
    except OSError:
        names = []
    for hint, backend in _LIB_HINTS:
        if any(hint in n for n in names):
            return backend
    return "metal" if os_name == "darwin" and arch == "arm64" else "cpu"

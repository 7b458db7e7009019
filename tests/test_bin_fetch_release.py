"""bin_fetch steps 1-4 against a real HTTP server on 127.0.0.1 that plays GitHub's release API.

The archives are real .tar.gz / .zip files under the official asset names, holding a tiny
llama-server script that only runs when its backend library lies beside it.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bin_fetch import (
    BinaryNotRunnableError,
    FetchBinaryError,
    ReleaseError,
    Request,
    describe_known_binary,
    find_cached,
    find_or_fetch,
    make_progress,
    verify,
)
from testkit.release_server import Member, ReleaseServer, fake_server_script, tar_gz, zip_bytes

TAG = "b1234"
LINUX_ASSET = f"llama-{TAG}-bin-ubuntu-x64.tar.gz"


def linux_archive(tag: str = TAG) -> bytes:
    return tar_gz(
        {
            f"llama-{tag}/llama-server": Member(fake_server_script(), 0o755),
            f"llama-{tag}/libggml-cpu.so": Member(b"\x7fELF fake backend"),
            f"llama-{tag}/libllama.so.0": Member(b"\x7fELF fake llama"),
            f"llama-{tag}/libllama.so": Member(b"", symlink_to="libllama.so.0"),
            f"llama-{tag}/llama-quantize": Member(b"#!/bin/sh\nexit 0\n", 0o755),
        }
    )


@pytest.fixture
def server() -> Iterator[ReleaseServer]:
    with ReleaseServer() as srv:
        yield srv


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "bin"


def request(cache_dir: Path, srv: ReleaseServer, **kw: Any) -> Request:
    defaults: dict[str, Any] = {
        "cache_dir": cache_dir,
        "release_base_url": srv.api_url,
        "release_tag": TAG,
        "os": "linux",
        "arch": "x64",
        "use_path": False,
        "allow_build": False,
    }
    defaults.update(kw)
    return Request(**defaults)


def assert_nothing_installed(cache_dir: Path) -> None:
    """No entry, no staging folder, no stray download: at most the lock file and an empty folder."""
    if not cache_dir.exists():
        return
    assert {p.name for p in cache_dir.iterdir()} <= {"llama-server.lock", "llama-server"}
    entries = cache_dir / "llama-server"
    if entries.exists():
        assert list(entries.iterdir()) == []


# --------------------------------------------------------------------------- happy paths


def test_tar_gz_unpacks_whole_and_the_second_call_hits_the_cache(
    server: ReleaseServer, cache_dir: Path
) -> None:
    server.publish(TAG, {LINUX_ASSET: linux_archive(), f"llama-{TAG}-bin-ubuntu-vulkan-x64.tar.gz": b"x"})

    binary = find_or_fetch(request(cache_dir, server))

    assert binary.source == "release"
    assert binary.backend == "cpu"
    assert binary.version == "1234 (abc)"
    assert verify(binary.path) == "1234 (abc)"
    # the backend library and the tools stay beside the binary; the archive's links survive
    assert (binary.path.parent / "libggml-cpu.so").read_bytes() == b"\x7fELF fake backend"
    assert (binary.path.parent / "libllama.so").resolve().name == "libllama.so.0"
    entry = cache_dir / "llama-server" / f"release-{TAG}-cpu"
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["binary"] == f"llama-{TAG}/llama-server"
    assert manifest["version"] == "1234 (abc)"
    assert manifest["assets"][0]["name"] == LINUX_ASSET
    assert "llama-quantize" in manifest["tools"]
    # only the entry is left: the downloaded archive and staging are gone
    assert [p.name for p in (cache_dir / "llama-server").iterdir()] == [entry.name]
    assert server.count(LINUX_ASSET) == 1

    seen = len(server.requests)
    again = find_or_fetch(request(cache_dir, server))
    assert again.source == "cache"
    assert again.path == binary.path
    assert len(server.requests) == seen  # no network on a cache hit

    assert find_cached(cache_dir) == again
    assert find_cached(cache_dir, "cuda") is None
    described = describe_known_binary(cache_dir)
    assert described is not None
    assert described["path"] == str(binary.path)
    assert (described["version"], described["backend"], described["source"]) == (
        "1234 (abc)",
        "cpu",
        "release",
    )


def test_zip_macos_asset_of_an_older_tag(server: ReleaseServer, cache_dir: Path) -> None:
    archive = zip_bytes(
        {
            "build/bin/llama-server": Member(fake_server_script(needs=("libggml-metal.dylib",)), 0o755),
            "build/bin/libggml-metal.dylib": Member(b"fake metal"),
        }
    )
    server.publish(TAG, {f"llama-{TAG}-bin-macos-arm64.zip": archive})

    binary = find_or_fetch(request(cache_dir, server, os="darwin", arch="arm64"))

    assert (binary.source, binary.backend, binary.version) == ("release", "metal", "1234 (abc)")
    assert binary.path == cache_dir / "llama-server" / f"release-{TAG}-metal" / "build/bin/llama-server"
    assert os.access(binary.path, os.X_OK)  # zip keeps no modes by itself: the unix bits are restored


def test_windows_cuda_takes_its_cudart_archive_too(server: ReleaseServer, cache_dir: Path) -> None:
    # a shell script named .exe runs here as well; it needs the DLLs of both archives beside it
    main = zip_bytes(
        {
            "llama-server.exe": Member(fake_server_script(needs=("ggml-cuda.dll", "cudart64_12.dll")), 0o755),
            "ggml-cuda.dll": Member(b"fake cuda backend"),
        }
    )
    cudart = zip_bytes({"cudart64_12.dll": Member(b"fake cudart")})
    server.publish(
        TAG,
        {
            f"llama-{TAG}-bin-win-cuda-12.4-x64.zip": main,
            f"llama-{TAG}-bin-win-cuda-13.1-x64.zip": b"not this one",
            "cudart-llama-bin-win-cuda-12.4-x64.zip": cudart,
            f"llama-{TAG}-bin-win-cpu-x64.zip": b"nor this one",
        },
    )

    binary = find_or_fetch(request(cache_dir, server, os="windows", has_nvidia=True))

    assert (binary.source, binary.backend) == ("release", "cuda")
    assert binary.path.name == "llama-server.exe"
    assert (binary.path.parent / "cudart64_12.dll").is_file()
    assert server.count("win-cuda-13.1-x64.zip") == 0


def test_plain_progress_lines_when_not_a_terminal(server: ReleaseServer, cache_dir: Path) -> None:
    server.publish(TAG, {LINUX_ASSET: linux_archive()})
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)

    find_or_fetch(request(cache_dir, server), make_progress(console))

    text = out.getvalue()
    assert f"downloading {LINUX_ASSET}" in text
    assert "done" in text
    assert "llama-server 1234 (abc) (cpu, release b1234)" in text


def test_two_concurrent_resolutions_download_once(server: ReleaseServer, cache_dir: Path) -> None:
    server.publish(TAG, {LINUX_ASSET: linux_archive()})
    results: list[Any] = []

    def resolve() -> None:
        try:
            results.append(find_or_fetch(request(cache_dir, server)))
        except Exception as exc:  # surfaced by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=resolve) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert sorted(r.source for r in results) == ["cache", "release"]
    assert results[0].path == results[1].path
    assert server.count(LINUX_ASSET) == 1


def test_a_broken_cached_binary_is_replaced(server: ReleaseServer, cache_dir: Path) -> None:
    server.publish(TAG, {LINUX_ASSET: linux_archive()})
    first = find_or_fetch(request(cache_dir, server))
    (first.path.parent / "libggml-cpu.so").unlink()  # now --version fails

    second = find_or_fetch(request(cache_dir, server))

    assert second.source == "release"
    assert server.count(LINUX_ASSET) == 2


def test_a_staging_folder_left_by_a_killed_run_is_removed(server: ReleaseServer, cache_dir: Path) -> None:
    stale = cache_dir / "llama-server" / ".tmp-deadbeef"
    stale.mkdir(parents=True)
    (stale / "half.tar.gz").write_bytes(b"half")
    server.publish(TAG, {LINUX_ASSET: linux_archive()})

    find_or_fetch(request(cache_dir, server))

    assert not stale.exists()


# ----------------------------------------------------------------- faults: clear error, nothing left


def test_truncated_archive(server: ReleaseServer, cache_dir: Path) -> None:
    whole = linux_archive()
    server.publish(TAG, {LINUX_ASSET: whole[: len(whole) // 2]})  # listed size and digest match the stub

    with pytest.raises(ReleaseError, match=r"damaged or truncated.*nothing was installed"):
        find_or_fetch(request(cache_dir, server))
    assert_nothing_installed(cache_dir)


def test_transfer_cut_off_midway(server: ReleaseServer, cache_dir: Path) -> None:
    whole = linux_archive()
    server.publish(TAG, {LINUX_ASSET: whole}, cut_after={LINUX_ASSET: len(whole) // 3})

    with pytest.raises(ReleaseError, match=r"cut off after \d+ of \d+ bytes"):
        find_or_fetch(request(cache_dir, server))
    assert_nothing_installed(cache_dir)


def test_wrong_digest(server: ReleaseServer, cache_dir: Path) -> None:
    server.publish(TAG, {LINUX_ASSET: linux_archive()}, listed_digest={LINUX_ASSET: "sha256:" + "0" * 64})

    with pytest.raises(ReleaseError, match=r"sha256 [0-9a-f]{64} does not match"):
        find_or_fetch(request(cache_dir, server))
    assert_nothing_installed(cache_dir)


def test_size_mismatch(server: ReleaseServer, cache_dir: Path) -> None:
    body = linux_archive()
    server.publish(TAG, {LINUX_ASSET: body}, listed_size={LINUX_ASSET: len(body) + 100})

    with pytest.raises(ReleaseError, match=rf"got {len(body)} bytes but the release lists {len(body) + 100}"):
        find_or_fetch(request(cache_dir, server))
    assert_nothing_installed(cache_dir)


def test_release_not_found(server: ReleaseServer, cache_dir: Path) -> None:
    with pytest.raises(ReleaseError, match=r"release 'b1234' not found .*\(404\); set binary.release_tag"):
        find_or_fetch(request(cache_dir, server))
    assert_nothing_installed(cache_dir)


def test_asset_not_found(server: ReleaseServer, cache_dir: Path) -> None:
    server.publish(TAG, {LINUX_ASSET: linux_archive()}, missing=(LINUX_ASSET,))

    with pytest.raises(ReleaseError, match=rf"downloading {LINUX_ASSET} failed: .* answered 404"):
        find_or_fetch(request(cache_dir, server))
    assert_nothing_installed(cache_dir)


def test_no_asset_for_this_platform(server: ReleaseServer, cache_dir: Path) -> None:
    server.publish(TAG, {f"llama-{TAG}-bin-macos-arm64.tar.gz": b"x"})

    with pytest.raises(ReleaseError, match=r"has no cpu asset for linux-x64"):
        find_or_fetch(request(cache_dir, server))
    assert_nothing_installed(cache_dir)


def test_unreachable_release_server(cache_dir: Path) -> None:
    req = Request(
        cache_dir=cache_dir, release_base_url="http://127.0.0.1:9/nothing", use_path=False, allow_build=False
    )
    with pytest.raises(ReleaseError, match=r"cannot reach http://127\.0\.0\.1:9/nothing"):
        find_or_fetch(req)
    assert_nothing_installed(cache_dir)


@pytest.mark.parametrize(
    "member",
    [
        {"../evil": Member(b"escaped")},
        {"llama-b1234/link": Member(b"", symlink_to="../../evil")},
    ],
    ids=["dotdot", "symlink"],
)
def test_archive_entries_that_escape_are_refused(
    server: ReleaseServer, cache_dir: Path, tmp_path: Path, member: dict[str, Member]
) -> None:
    members = {f"llama-{TAG}/llama-server": Member(fake_server_script(), 0o755), **member}
    server.publish(TAG, {LINUX_ASSET: tar_gz(members)})

    with pytest.raises(ReleaseError, match="refusing to unpack"):
        find_or_fetch(request(cache_dir, server))
    assert_nothing_installed(cache_dir)
    assert not list(tmp_path.rglob("evil"))


def test_zip_entry_that_escapes_is_refused(server: ReleaseServer, cache_dir: Path) -> None:
    archive = zip_bytes({"llama-server": Member(fake_server_script(), 0o755), "../../evil": Member(b"x")})
    server.publish(TAG, {f"llama-{TAG}-bin-win-cpu-x64.zip": archive})

    with pytest.raises(ReleaseError, match="refusing to unpack"):
        find_or_fetch(request(cache_dir, server, os="windows"))
    assert_nothing_installed(cache_dir)


def test_a_release_binary_that_does_not_run_is_not_installed(server: ReleaseServer, cache_dir: Path) -> None:
    archive = tar_gz({f"llama-{TAG}/llama-server": Member(fake_server_script(), 0o755)})  # its .so is missing
    server.publish(TAG, {LINUX_ASSET: archive})

    with pytest.raises(ReleaseError, match=r"does not run on this machine.*libggml-cpu\.so"):
        find_or_fetch(request(cache_dir, server))
    assert_nothing_installed(cache_dir)


# --------------------------------------------------------------------------- steps 1 and 2


def write_script(path: Path, body: bytes, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    path.chmod(mode)
    return path


def test_explicit_path_that_runs(tmp_path: Path) -> None:
    exe = write_script(tmp_path / "mine" / "llama-server", fake_server_script())
    write_script(tmp_path / "mine" / "libggml-cpu.so", b"")

    binary = find_or_fetch(Request(cache_dir=tmp_path / "cache", explicit=exe))

    assert (binary.path, binary.version, binary.source, binary.backend) == (
        exe,
        "1234 (abc)",
        "explicit",
        "cpu",
    )
    assert not (tmp_path / "cache").exists()  # nothing fetched, nothing cached


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", r"no such file"),
        ("not-executable", r"not executable; run `chmod \+x"),
        ("fails", r"--version failed \(exit status 127\): error while loading shared libraries"),
        ("folder", r"is a folder"),
    ],
)
def test_explicit_path_that_does_not_run_is_a_clear_error(tmp_path: Path, setup: str, message: str) -> None:
    exe = tmp_path / "llama-server"
    if setup == "not-executable":
        write_script(exe, fake_server_script(needs=()), 0o644)
    elif setup == "fails":
        write_script(exe, fake_server_script())  # its library is not beside it
    elif setup == "folder":
        exe.mkdir()

    with pytest.raises(BinaryNotRunnableError, match=message) as info:
        find_or_fetch(Request(cache_dir=tmp_path / "cache", explicit=exe))
    assert "configured llama-server does not run" in str(info.value)
    assert "SWARM_LLAMA_SERVER" in str(info.value)


def test_llama_server_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "path-bin"
    write_script(bindir / "llama-server", fake_server_script(version="777 (onpath)", needs=()))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")

    binary = find_or_fetch(Request(cache_dir=tmp_path / "cache", allow_download=False, allow_build=False))
    assert (binary.source, binary.version, binary.path) == ("path", "777 (onpath)", bindir / "llama-server")

    # use_path=False skips it; with nothing cached and fetching off, the error says what to do
    with pytest.raises(FetchBinaryError, match=r"no cpu llama-server is cached .* run `swarm pull`"):
        find_or_fetch(
            Request(cache_dir=tmp_path / "cache", use_path=False, allow_download=False, allow_build=False)
        )


def test_a_broken_llama_server_on_path_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "path-bin"
    write_script(bindir / "llama-server", b"#!/bin/sh\nexit 3\n")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")

    with pytest.raises(FetchBinaryError, match="no cpu llama-server is cached"):
        find_or_fetch(Request(cache_dir=tmp_path / "cache", allow_download=False, allow_build=False))


def test_rich_progress_bar_on_a_terminal(server: ReleaseServer, cache_dir: Path) -> None:
    server.publish(TAG, {LINUX_ASSET: linux_archive()})
    console = Console(file=io.StringIO(), force_terminal=True, record=True, width=120)

    find_or_fetch(request(cache_dir, server), make_progress(console))

    text = console.export_text()
    assert f"downloading {LINUX_ASSET}" in text
    assert "llama-server 1234 (abc)" in text


def test_mlx_server_is_found_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bin_fetch import find_mlx_server

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_mlx_server() is None or find_mlx_server() == Path(sys.executable).parent / "mlx_lm.server"
    write_script(tmp_path / "mlx-bin" / "mlx_lm.server", b"#!/bin/sh\nexit 0\n")
    monkeypatch.setenv("PATH", str(tmp_path / "mlx-bin"))
    if not (Path(sys.executable).parent / "mlx_lm.server").exists():
        assert find_mlx_server() == tmp_path / "mlx-bin" / "mlx_lm.server"

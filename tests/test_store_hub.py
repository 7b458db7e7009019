"""The hub path against a real HTTP server on 127.0.0.1 that answers like the Hugging Face hub."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarm_supervisor.errors import FetchError, HubUnreachableError, ModelFileError
from swarm_supervisor.store import cached_files, check_gguf, fetch_from_hub
from testkit.hub_server import COMMIT, Fault, HubServer, tiny_gguf

REPO = "test-org/Tiny-GGUF"
EMBEDDED = ("smollm2:135m:q4_1", "gemma3:270m:q4_k_m (base model, not for chat)")


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    with HubServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield server


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """huggingface_hub writes what arrives in 10 MiB chunks; test files are smaller than that."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 4096)
    return 4096


@pytest.fixture
def model_bytes(tmp_path: Path) -> bytes:
    return tiny_gguf(tmp_path / "src.gguf", tensors=8).read_bytes()


def _nothing_partial(cache: Path) -> bool:
    return not any(p.suffix in (".part", ".incomplete") for p in cache.rglob("*"))


def test_download_lands_verified_under_the_commit(hub: HubServer, model_bytes: bytes, tmp_path: Path) -> None:
    hub.publish(REPO, "tiny-q4_k_m.gguf", model_bytes)
    cache = tmp_path / "hub"
    got = fetch_from_hub(REPO, ["tiny-q4_k_m.gguf"], cache_dir=cache)
    assert got.source == "hub"
    assert got.commit == COMMIT
    assert got.paths[0] == cache / "test-org--Tiny-GGUF" / "snapshots" / COMMIT / "tiny-q4_k_m.gguf"
    assert got.paths[0].read_bytes() == model_bytes
    assert check_gguf(got.paths[0]).facts.n_layers == 4
    assert _nothing_partial(cache)
    # the revision is remembered: the cache answers without the network
    assert cached_files(cache, REPO, ["tiny-q4_k_m.gguf"]) is not None
    again = fetch_from_hub(REPO, ["tiny-q4_k_m.gguf"], cache_dir=cache)
    assert again.source == "cache"
    assert len(hub.gets("tiny-q4_k_m.gguf")) == 1  # downloaded once


def test_pinned_revision_is_requested_and_then_served_from_cache(
    hub: HubServer, model_bytes: bytes, tmp_path: Path
) -> None:
    hub.publish(REPO, "m.gguf", model_bytes)
    cache = tmp_path / "hub"
    fetch_from_hub(REPO, ["m.gguf"], cache_dir=cache, revision=COMMIT)
    assert all(f"/resolve/{COMMIT}/" in r.path for r in hub.requests)
    n = len(hub.requests)
    assert fetch_from_hub(REPO, ["m.gguf"], cache_dir=cache, revision=COMMIT).source == "cache"
    assert len(hub.requests) == n  # a commit never changes: no request at all


def _range_start(headers: dict[str, str]) -> int:
    value = headers["range"]
    assert value.startswith("bytes=") and value.endswith("-")
    return int(value[len("bytes=") : -1])


def test_transfer_cut_in_the_middle_resumes_with_range(
    hub: HubServer, model_bytes: bytes, tmp_path: Path, small_chunks: int
) -> None:
    hub.publish(REPO, "m.gguf", model_bytes, Fault(cut_first=True))
    got = fetch_from_hub(REPO, ["m.gguf"], cache_dir=tmp_path / "hub")
    assert got.paths[0].read_bytes() == model_bytes
    gets = hub.gets("m.gguf")
    assert len(gets) == 2
    assert "range" not in gets[0].headers
    # resumed from what had been written (whole chunks of what arrived), not from zero
    assert len(model_bytes) // 2 - small_chunks < _range_start(gets[1].headers) <= len(model_bytes) // 2


def test_interrupted_download_is_kept_and_resumed_by_the_next_call(
    hub: HubServer, model_bytes: bytes, tmp_path: Path, small_chunks: int
) -> None:
    # the link drops half-way and the hub then answers 503: this call fails ...
    hub.publish(REPO, "m.gguf", model_bytes, Fault(cut_first=True, then_status=1))
    cache = tmp_path / "hub"
    with pytest.raises(HubUnreachableError, match="run `swarm pull` again"):
        fetch_from_hub(REPO, ["m.gguf"], cache_dir=cache)
    parts = list(cache.rglob("*.part"))
    assert len(parts) == 1
    kept = parts[0].stat().st_size
    assert 0 < kept <= len(model_bytes) // 2
    assert cached_files(cache, REPO, ["m.gguf"]) is None  # a partial file never counts
    # ... and the next call asks only for the rest
    got = fetch_from_hub(REPO, ["m.gguf"], cache_dir=cache)
    assert got.paths[0].read_bytes() == model_bytes
    last = hub.gets("m.gguf")[-1]
    assert _range_start(last.headers) == kept
    assert _nothing_partial(cache)


def test_wrong_size_is_refused_and_nothing_is_kept(
    hub: HubServer, model_bytes: bytes, tmp_path: Path
) -> None:
    hub.publish(REPO, "m.gguf", model_bytes, Fault(announce_size=len(model_bytes) + 4096))
    cache = tmp_path / "hub"
    with pytest.raises(FetchError, match="wrong number of bytes") as err:
        fetch_from_hub(REPO, ["m.gguf"], cache_dir=cache)
    assert not isinstance(err.value, HubUnreachableError)
    assert not list(cache.rglob("m.gguf"))
    assert _nothing_partial(cache)


def test_a_file_that_is_not_gguf_is_deleted(hub: HubServer, tmp_path: Path) -> None:
    hub.publish(REPO, "m.gguf", b"<html>sign in</html>" * 100)
    cache = tmp_path / "hub"
    with pytest.raises(ModelFileError, match=r"m\.gguf.*not a valid GGUF"):
        fetch_from_hub(REPO, ["m.gguf"], cache_dir=cache)
    assert not list(cache.rglob("m.gguf"))
    assert _nothing_partial(cache)


def test_multi_part_files_are_all_downloaded(hub: HubServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    names = ["big-q8_0-00001-of-00002.gguf", "big-q8_0-00002-of-00002.gguf"]
    for i, name in enumerate(names):
        tiny_gguf(src / name, extra={"split.no": i, "split.count": 2})
        hub.publish(REPO, name, (src / name).read_bytes())
    got = fetch_from_hub(REPO, names, cache_dir=tmp_path / "hub")
    assert [p.name for p in got.paths] == names
    info = check_gguf(got.paths[0])
    assert info.parts == 2
    assert info.facts.file_bytes == sum((src / n).stat().st_size for n in names)


def test_missing_file_is_a_clear_error(hub: HubServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"no file 'nope\.gguf'") as err:
        fetch_from_hub(REPO, ["nope.gguf"], cache_dir=tmp_path / "hub")
    assert not isinstance(err.value, HubUnreachableError)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_hub_names_the_embedded_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(HubUnreachableError) as err:
        fetch_from_hub(REPO, ["m.gguf"], cache_dir=tmp_path / "hub", embedded=EMBEDDED)
    msg = str(err.value)
    assert "\n" not in msg
    assert "cannot be reached" in msg
    assert "smollm2:135m:q4_1" in msg and "gemma3:270m:q4_k_m" in msg


def test_offline_uses_the_cache_and_otherwise_says_so(
    hub: HubServer, model_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.publish(REPO, "m.gguf", model_bytes)
    cache = tmp_path / "hub"
    fetch_from_hub(REPO, ["m.gguf"], cache_dir=cache)
    n = len(hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fetch_from_hub(REPO, ["m.gguf"], cache_dir=cache).source == "cache"
    assert len(hub.requests) == n
    with pytest.raises(HubUnreachableError, match="HF_HUB_OFFLINE") as err:
        fetch_from_hub(REPO, ["other.gguf"], cache_dir=cache, embedded=EMBEDDED)
    assert "smollm2:135m:q4_1" in str(err.value)


def test_cached_copy_is_used_when_the_hub_goes_away(
    hub: HubServer, model_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.publish(REPO, "m.gguf", model_bytes)
    cache = tmp_path / "hub"
    first = fetch_from_hub(REPO, ["m.gguf"], cache_dir=cache)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    again = fetch_from_hub(REPO, ["m.gguf"], cache_dir=cache)
    assert again.source == "cache" and again.paths == first.paths


@pytest.mark.parametrize("commit", ["../../../../escaped", "main", "a" * 39, "A" * 40])
def test_a_malformed_commit_hash_is_refused_before_it_names_a_folder(
    hub: HubServer, model_bytes: bytes, tmp_path: Path, commit: str
) -> None:
    """The commit the hub names becomes a folder under snapshots/: only 40 hex digits may."""
    hub.publish(REPO, "tiny-q4_k_m.gguf", model_bytes, Fault(commit=commit))
    cache = tmp_path / "cache" / "hub"
    with pytest.raises(HubUnreachableError, match="malformed commit hash"):
        fetch_from_hub(REPO, ["tiny-q4_k_m.gguf"], cache_dir=cache)
    assert not list((tmp_path / "cache").rglob("*.gguf"))
    assert not (tmp_path / "escaped").exists()

"""The GGUF check: real files written with GGUFWriter, broken copies of them, and the real SmolLM2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swarm_supervisor.errors import ModelFileError
from swarm_supervisor.store import check_gguf, check_gguf_cached, gguf_problem, split_parts
from testkit.hub_server import tiny_gguf


def test_small_valid_gguf_gives_its_numbers(tmp_path: Path) -> None:
    path = tiny_gguf(tmp_path / "m.gguf", n_layers=6, n_heads=8, n_kv_heads=2, embedding=64, context=4096)
    info = check_gguf(path, expected_bytes=path.stat().st_size)
    assert info.architecture == "llama"
    assert info.has_chat_template
    assert info.version == 3
    f = info.facts
    assert (f.n_layers, f.n_kv_heads, f.head_dim, f.context) == (6, 2, 8, 4096)  # head_dim = 64 / 8
    assert f.file_bytes == path.stat().st_size
    assert f.quant == "f32"  # ALL_F32 file type
    assert f.name == "tiny test model"


def test_key_length_wins_over_embedding_per_head(tmp_path: Path) -> None:
    path = tiny_gguf(
        tmp_path / "g.gguf", arch="gemma3", n_heads=4, n_kv_heads=1, embedding=64, key_length=256
    )
    info = check_gguf(path)
    assert info.architecture == "gemma3"
    assert info.facts.head_dim == 256


def test_base_model_without_chat_template(tmp_path: Path) -> None:
    info = check_gguf(tiny_gguf(tmp_path / "base.gguf", chat_template=None))
    assert not info.has_chat_template


def test_truncated_file_is_refused_naming_it(tmp_path: Path) -> None:
    good = tiny_gguf(tmp_path / "m.gguf", tensors=4)
    cut = tmp_path / "cut.gguf"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ModelFileError) as err:
        check_gguf(cut)
    msg = str(err.value)
    assert str(cut) in msg
    assert "truncated" in msg
    assert "swarm pull" in msg and "Delete" in msg


def test_header_only_is_refused(tmp_path: Path) -> None:
    good = tiny_gguf(tmp_path / "m.gguf")
    cut = tmp_path / "head.gguf"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ModelFileError, match=r"head\.gguf"):
        check_gguf(cut)


def test_not_a_gguf_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "page.gguf"
    junk.write_text("<html>404 Not Found</html>" * 10)
    with pytest.raises(ModelFileError) as err:
        check_gguf(junk)
    assert "GGUF magic" in str(err.value)
    assert str(junk) in str(err.value)
    assert gguf_problem(junk) is not None


def test_unknown_version_is_refused(tmp_path: Path) -> None:
    data = bytearray(tiny_gguf(tmp_path / "m.gguf").read_bytes())
    data[4:8] = (99).to_bytes(4, "little")
    bad = tmp_path / "v99.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="version 99"):
        check_gguf(bad)


def test_wrong_size_is_refused(tmp_path: Path) -> None:
    path = tiny_gguf(tmp_path / "m.gguf")
    with pytest.raises(ModelFileError, match="expected"):
        check_gguf(path, expected_bytes=path.stat().st_size + 1)


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such model file"):
        check_gguf(tmp_path / "nothing.gguf")


def test_split_file_counts_all_parts_and_needs_them(tmp_path: Path) -> None:
    first = tiny_gguf(tmp_path / "m-00001-of-00002.gguf", extra={"split.no": 0, "split.count": 2})
    assert split_parts(first) == [first, tmp_path / "m-00002-of-00002.gguf"]
    with pytest.raises(ModelFileError, match="00002-of-00002"):
        check_gguf(first)
    second = tiny_gguf(tmp_path / "m-00002-of-00002.gguf", extra={"split.no": 1, "split.count": 2})
    info = check_gguf(first)
    assert info.parts == 2
    assert info.facts.file_bytes == first.stat().st_size + second.stat().st_size


def test_remembered_verdict_is_used_until_the_file_changes(tmp_path: Path) -> None:
    path = tiny_gguf(tmp_path / "m.gguf", n_layers=5)
    memo = tmp_path / "facts"
    assert check_gguf_cached(path, memo).facts.n_layers == 5
    assert len(list(memo.iterdir())) == 1
    assert check_gguf_cached(path, memo).facts.n_layers == 5
    # the file is replaced by a broken one: the memo must not vouch for it
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    os.utime(path, ns=(1, 1))
    with pytest.raises(ModelFileError):
        check_gguf_cached(path, memo)


@pytest.mark.llama
def test_real_smollm2(smollm2_gguf: Path) -> None:
    info = check_gguf(smollm2_gguf, expected_bytes=98_362_432)
    f = info.facts
    assert info.architecture == "llama"
    assert info.has_chat_template
    assert (f.n_layers, f.n_kv_heads, f.head_dim, f.context) == (30, 3, 64, 8192)
    assert f.quant == "q4_1"
    assert f.params_b is not None and 0.1 < f.params_b < 0.2

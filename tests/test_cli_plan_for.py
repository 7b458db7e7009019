"""`swarm plan`, `swarm pull` and `swarm up` make the same plan from the same config and flags.

The bug this guards: `plan.model = "x.gguf"` in the config worked for `swarm plan` and failed for
`swarm up` and `swarm pull` ("planning a local .gguf needs its metadata"), because only `plan`
handed the config to the code that reads the file's metadata.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarm_supervisor.paths import dirs
from swarm_supervisor.swarm.runfile import RunFile, list_names
from swarm_supervisor.swarm.teardown import teardown
from testkit.llama import FAKE_LLAMA_SERVER

FAKE = FAKE_LLAMA_SERVER


def swarm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm_supervisor", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture
def gguf_in_config(swarm_home: Path, smollm2_gguf: Path) -> Iterator[Path]:
    """A config whose plan.model is a local .gguf (and a fast health loop); swarms torn down after."""
    cfg = swarm_home / "config"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text(
        f'[plan]\nmodel = "{smollm2_gguf}"\n[supervisor]\nhealth_interval_s = 0.5\nstop_grace_s = 2.0\n'
    )
    try:
        yield smollm2_gguf
    finally:
        for name in list_names(dirs()):
            teardown(RunFile(name, dirs()), grace_s=2.0)


def test_plan_takes_the_gguf_of_the_config(gguf_in_config: Path) -> None:
    r = swarm("plan", "--json", "--instances", "1")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["model_id"] == gguf_in_config.stem
    assert got["gguf_path"] == str(gguf_in_config)


def test_pull_takes_the_gguf_of_the_config(gguf_in_config: Path) -> None:
    r = swarm("pull", "--json", "--llama-server", str(FAKE))
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["model"]["path"] == str(gguf_in_config)
    assert got["model"]["source"] == "local"
    assert got["llama_server"]["path"] == str(FAKE)


def test_up_takes_the_gguf_of_the_config(gguf_in_config: Path) -> None:
    r = swarm("up", "--instances", "1", "--port", "0", "--llama-server", str(FAKE))
    assert r.returncode == 0, r.stderr + r.stdout
    ps = json.loads(swarm("ps", "--json").stdout)
    assert ps["status"] == "up"
    assert ps["model_path"] == str(gguf_in_config)
    assert ps["model"] == gguf_in_config.stem

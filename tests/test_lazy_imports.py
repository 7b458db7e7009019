"""Each `swarm` command loads only what it uses, so the quick ones answer at once (issue 17): the
module list of a real run, read with ``python -X importtime``. Times are measured by
``python -m bench cli``; this checks what makes them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import swarm_supervisor.store as store

#: what the proxy, the downloads and the GGUF reader bring; none of it is needed to answer these
HEAVY = {"aiohttp", "uvicorn", "starlette", "httpx", "huggingface_hub", "gguf", "numpy", "prometheus_client"}


def loaded(args: list[str], home: Path) -> set[str]:
    env = {**os.environ, "SWARM_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "swarm_supervisor", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


@pytest.mark.parametrize(
    ("args", "also_not"),
    [
        (["--version"], {"pydantic", "rich", "psutil", "swarm_supervisor.config", "logging", "dataclasses"}),
        (["ps"], {"pydantic", "swarm_supervisor.proxy", "swarm_supervisor.plan", "pynvml"}),
        (["plan", "--cpu-only"], {"swarm_supervisor.proxy", "swarm_supervisor.swarm.supervisor"}),
    ],
)
def test_a_command_loads_only_what_it_uses(args: list[str], also_not: set[str], swarm_home: Path) -> None:
    names = loaded(args, swarm_home)
    assert "swarm_supervisor.cli.app" in names  # the run happened
    top = {n.split(".")[0] for n in names}
    assert not (HEAVY & top), f"swarm {' '.join(args)} imports {sorted(HEAVY & top)}"
    assert not (also_not & (names | top)), f"swarm {' '.join(args)} imports {sorted(also_not & names)}"


def test_every_name_of_the_store_resolves() -> None:
    for name in store.__all__:
        assert getattr(store, name) is not None
    with pytest.raises(AttributeError):
        _ = store.no_such_thing


def test_version_is_the_one_in_pyproject(swarm_home: Path) -> None:
    """`--version` reads ``swarm_supervisor.__version__`` (no package-metadata scan): it must say
    what pyproject.toml says."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    out = subprocess.run(
        [sys.executable, "-m", "swarm_supervisor", "--version"], capture_output=True, text=True, timeout=60
    ).stdout
    assert out.strip() == f"swarm, version {pyproject['project']['version']}"


def test_plan_leaves_pynvml_alone_without_an_nvidia_driver(swarm_home: Path) -> None:
    """The missing NVML library is found out by the dynamic loader, as pynvml would look for it,
    before pynvml (a large module) is imported; the note is the same."""
    import ctypes

    if not sys.platform.startswith("linux"):
        pytest.skip("the check is Linux's")
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
        pytest.skip("this machine has NVML: pynvml is what reads it")
    except OSError:
        pass
    assert "pynvml" not in loaded(["plan", "--cpu-only"], swarm_home)
    detect = subprocess.run(
        [sys.executable, "-m", "swarm_supervisor", "detect"],
        capture_output=True,
        text=True,
        env={**os.environ, "SWARM_HOME": str(swarm_home), "COLUMNS": "300"},
        timeout=60,
    )
    assert "NVML library not found (no NVIDIA driver installed)" in detect.stdout

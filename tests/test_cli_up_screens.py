"""The screens of a real swarm (issue 17): what `swarm up` ends with, `ps` at 80 and 160 columns,
`--verbose`'s breakdown, the voter guard, and a fallback said in `ps`. Separate processes, as a
user runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from swarm_supervisor.cli import main
from swarm_supervisor.paths import dirs
from swarm_supervisor.render import render_status
from swarm_supervisor.swarm.record import RunRecord
from swarm_supervisor.swarm.runfile import RunFile, list_names
from swarm_supervisor.swarm.teardown import teardown
from testkit.llama import FAKE_LLAMA_SERVER
from tests.test_cli_ps import NOW
from tests.test_cli_ps import status as fake_status
from tests.test_cli_screens import _beyond_the_guard

FAKE = FAKE_LLAMA_SERVER
#: the run record carries the fallback facts once branch `fallback` is in (it writes them); until
#: then the tests that read them from a real run file wait for it
KEY = "sk-test-proxy-key"


def swarm(*args: str, columns: int = 200, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm_supervisor", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": str(columns)},
    )


@pytest.fixture
def home(swarm_home: Path) -> Iterator[Path]:
    cfg = swarm_home / "config"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text(f'[proxy]\napi_key = "{KEY}"\n\n[supervisor]\nstop_grace_s = 5.0\n')
    try:
        yield swarm_home
    finally:
        for name in list_names(dirs()):
            teardown(RunFile(name, dirs()), grace_s=2.0)


@pytest.mark.llama
def test_up_ends_with_a_request_that_works_and_ps_fits_its_terminal(
    home: Path, llama_server_bin: Path, smollm2_gguf: Path
) -> None:
    r = swarm(
        "up",
        *("--model", str(smollm2_gguf), "--instances", "2", "--topology", "processes"),
        *("--context", "2048", "--llama-server", str(llama_server_bin), "--port", "0", "--verbose"),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()

    # where the time went, from the command's start: the parts add up to "All ready in"
    spans = {
        m.group(1).strip(): float(m.group(2))
        for m in (re.match(r"  (.+?)\s+([\d.]+) s$", x) for x in out)
        if m
    }
    for label in ("Python start", "hardware detection", "plan", "llama-server: find and version"):
        assert label in spans, r.stdout
    assert spans["Python start"] > 0.005 and spans["imports (click, rich, pydantic, plan, store)"] > 0.05
    ready = float(re.search(r"All ready in ([\d.]+) s", r.stdout).group(1))  # type: ignore[union-attr]
    assert abs(ready - spans["in all"]) <= 0.15

    # the request printed is one that works, pasted into a shell with the key in the environment
    curl = next(x.strip() for x in out if x.strip().startswith("curl "))
    assert "$SWARM_API_KEY" in curl and KEY not in r.stdout
    sent = subprocess.run(
        ["sh", "-c", curl],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SWARM_API_KEY": KEY},
    )
    body = json.loads(sent.stdout)
    assert body["choices"][0]["message"]["content"], sent.stdout
    assert any(" opencode --write" in x for x in out)

    # ps at 80 columns: the narrow table, nothing wrapped or cut; at 160: every column by name
    narrow = swarm("ps", columns=80)
    assert narrow.returncode == 0, narrow.stderr
    lines = narrow.stdout.splitlines()
    assert all(len(x.rstrip()) <= 80 for x in lines), narrow.stdout
    assert "…" not in narrow.stdout
    rows = [x for x in lines if re.match(r"\s*[01]\s+\d+\s+\d+\s+ready", x)]
    assert len(rows) == 2 and all(re.search(r"\d+\.\d MiB", x) for x in rows), narrow.stdout
    assert "PSS" in narrow.stdout and "shared pages counted once" in narrow.stdout
    wide = swarm("ps", columns=160)
    header = next(x for x in wide.stdout.splitlines() if "PID" in x)
    for col in ("UPTIME", "AVG LAT", "RESTARTS", "GPU", "VRAM", "PSS"):
        assert col in header, wide.stdout
    assert all(len(x.rstrip()) <= 160 for x in wide.stdout.splitlines())


@pytest.mark.llama
def test_too_many_voters_are_refused_with_the_figure_and_force_goes_on(
    home: Path, smollm2_gguf: Path
) -> None:
    common = ["--model", str(smollm2_gguf), "--context", "1024", "--llama-server", str(FAKE), "--port", "0"]
    many = str(_beyond_the_guard())
    if int(many) > 200:
        pytest.skip(f"{many} voters: this machine's envelope is beyond what its memory holds")
    refused = swarm("up", "--instances", many, *common)
    assert refused.returncode == 1
    msg = " ".join(refused.stderr.split())
    assert f"{many} voters of" in msg and "physical cores" in msg and "--force" in msg, msg
    assert re.search(r"--instances \d+ or fewer", msg)
    assert list_names(dirs()) == []  # nothing started

    forced = swarm("up", "--instances", many, "--force", *common)
    assert forced.returncode == 0, forced.stderr
    assert "--force" in forced.stderr  # the figure is still said
    ps = json.loads(swarm("ps", "--json").stdout)
    assert ps["voters"] == int(many)


def test_ps_says_a_fallback_swarm_runs_the_stand_in() -> None:
    """The screen of a run record that carries the fallback facts, at 80 columns."""
    rec = fake_status(
        model="smollm2:135m:q4_1",
        fallback={
            "planned": "qwen2.5-coder:1.5b:q4_k_m",
            "running": "smollm2:135m:q4_1",
            "why": "the hub is unreachable",
            "fix": "run `swarm pull --model qwen2.5-coder:1.5b` where the hub is reachable",
        },
    )
    console = Console(record=True, width=80)
    console.print(render_status(rec, NOW, 80))
    out = console.export_text()
    assert all(len(x.rstrip()) <= 80 for x in out.splitlines())
    text = " ".join(out.split())
    assert "smollm2:135m:q4_1 is the embedded stand-in, not the planned qwen2.5-coder:1.5b:q4_k_m" in text
    assert "why: the hub is unreachable" in text
    assert "to get it: run `swarm pull --model qwen2.5-coder:1.5b`" in text
    plain = Console(record=True, width=80)
    plain.print(render_status({**rec, "fallback": None}, NOW, 80))
    assert "stand-in" not in plain.export_text()


@pytest.mark.llama
def test_a_fallback_swarm_says_so_last_at_the_end_of_up_and_in_ps(home: Path, hub_unreachable: Path) -> None:
    """No route to the hub and nothing cached: the embedded stand-in runs, and the last lines of
    `swarm up` and every `swarm ps` say so, with how to get the planned model."""
    r = swarm("up", "--instances", "1", "--llama-server", str(FAKE), "--port", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    last = [x for x in r.stdout.splitlines() if x.strip()][-2:]
    assert last[0].startswith(
        "NOTE: this swarm runs smollm2:135m:q4_1, the small embedded stand-in, not the planned qwen2.5-coder:"
    )
    assert last[1].startswith("To get the planned model: run `swarm pull --model qwen2.5-coder:")
    for columns in (80, 160):
        ps = " ".join(swarm("ps", columns=columns).stdout.split())
        assert "smollm2:135m:q4_1 is the embedded stand-in, not the planned qwen2.5-coder:" in ps
        assert "why: the hub is unreachable" in ps


def test_ps_of_a_fallback_run_file_says_so(swarm_home: Path) -> None:
    """`swarm ps` on a run file that records the fallback (what a fallback `swarm up` writes)."""
    fb = {
        "planned": "qwen2.5-coder:1.5b:q4_k_m",
        "running": "smollm2:135m:q4_1",
        "why": "the hub is unreachable",
        "fix": "run `swarm pull --model qwen2.5-coder:1.5b` where the hub is reachable",
    }
    rf = RunFile("default", dirs())
    with rf.lock():
        rf.write(RunRecord.from_json(fake_status(model="smollm2:135m:q4_1", fallback=fb)))
    r = CliRunner().invoke(main, ["ps"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "smollm2:135m:q4_1 is the embedded stand-in, not the planned qwen2.5-coder:1.5b:q4_k_m" in text
    assert "to get it: run `swarm pull --model qwen2.5-coder:1.5b`" in text

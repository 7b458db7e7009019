"""A swarm run through the real CLI (``swarm up / ps / down``) in an isolated ``SWARM_HOME``, for the
start-up and soak benchmarks. Everything it starts listens on 127.0.0.1; :meth:`SwarmHome.down`
stops it through the run file (``swarm down``), and :meth:`SwarmHome.ensure_down` makes sure
nothing of it is left even when the CLI failed.

    with SwarmHome(tmp, supervisor={"health_interval_s": 0.5}) as home:
        took = home.up("--model", str(gguf), "--instances", "2", "--llama-server", str(binary))
        rec = home.record()          # the run file: pids, ports, states, the internal key
        status = home.ps()           # `swarm ps --json`
        home.down()
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def swarm_argv() -> list[str]:
    """The ``swarm`` console script of this venv (what a user runs), else ``python -m swarm_supervisor``."""
    script = Path(sys.executable).with_name("swarm")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "swarm_supervisor"]


def _toml(tables: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for table, values in tables.items():
        if not values:
            continue
        lines.append(f"[{table}]")
        for k, v in values.items():
            lines.append(f"{k} = {json.dumps(v)}")
        lines.append("")
    return "\n".join(lines)


class SwarmHome:
    """An isolated ``SWARM_HOME`` under ``root`` with a config of its own (``[supervisor]`` and
    ``[proxy]`` values); the swarm named ``name`` in it."""

    def __init__(self, root: Path, *, name: str = "default", **tables: dict[str, Any]) -> None:
        self.root = Path(root)
        self.name = name
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "config").mkdir(exist_ok=True)
        (self.root / "config" / "config.toml").write_text(_toml(tables), encoding="utf-8")
        self.env = {**os.environ, "SWARM_HOME": str(self.root), "COLUMNS": "200", "NO_COLOR": "1"}

    def __enter__(self) -> SwarmHome:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.ensure_down()

    # ------------------------------------------------------------------ the CLI

    def run(self, *args: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*swarm_argv(), *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )

    def up(self, *args: str, timeout_s: float = 300.0) -> float:
        """``swarm up ARGS --name NAME``; seconds from spawn to its return (it returns once all
        instances are ready). Raises RuntimeError with its output when it fails."""
        t0 = time.perf_counter()
        r = self.run("up", "--name", self.name, *args, timeout_s=timeout_s)
        took = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(f"swarm up failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return took

    def ps(self) -> dict[str, Any]:
        r = self.run("ps", "--json", "--name", self.name, timeout_s=60)
        if r.returncode != 0:
            raise RuntimeError(f"swarm ps failed ({r.returncode}): {r.stderr[-2000:]}")
        data: dict[str, Any] = json.loads(r.stdout)
        return data

    def down(self) -> subprocess.CompletedProcess[str]:
        return self.run("down", "--name", self.name, timeout_s=120)

    # ------------------------------------------------------------------ the run file, read directly

    @property
    def dirs(self) -> Any:
        from swarm_supervisor.paths import dirs

        return dirs({"SWARM_HOME": str(self.root)})

    @property
    def run_path(self) -> Path:
        return Path(self.dirs.runs) / f"{self.name}.json"

    def record(self) -> dict[str, Any]:
        """The run file as the supervisor last wrote it (atomically replaced: never half a file)."""
        try:
            data = json.loads(self.run_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def key_path(self) -> Path:
        return Path(self.dirs.runs) / f"{self.name}.key"

    def ensure_down(self) -> None:
        """``swarm down`` if a run file is left; then the run file's own teardown in-process (it
        signals only pids whose create_time matches what the swarm recorded)."""
        if not self.run_path.is_file():
            return
        with contextlib.suppress(Exception):
            self.down()
        if self.run_path.is_file():
            from swarm_supervisor.swarm.runfile import RunFile, teardown

            with contextlib.suppress(Exception):
                teardown(RunFile(self.name, self.dirs), grace_s=5.0)

    def remove(self) -> None:
        self.ensure_down()
        shutil.rmtree(self.root, ignore_errors=True)


def instance_argvs(record: dict[str, Any]) -> list[list[str]]:
    """The argv every instance of a running swarm was started with (its /proc cmdline), in id order."""
    import psutil

    out = []
    for inst in sorted(record.get("instances") or [], key=lambda i: str(i.get("id"))):
        out.append(list(psutil.Process(inst["pid"]).cmdline()))
    return out


def same_process(pid: int | None, create_time: float | None) -> bool:
    from swarm_supervisor.swarm.system import same_process as same

    return isinstance(pid, int) and bool(same(pid, create_time))


def pytest_pids() -> list[str]:
    """Pids of a test suite running on this machine (``pgrep -f bin/pytest``), not this process."""
    r = subprocess.run(["pgrep", "-f", "bin/pytest"], capture_output=True, text=True)
    return [p for p in r.stdout.split() if p != str(os.getpid())]


class ContentionWatch:
    """Polls :func:`pytest_pids` in a thread while a benchmark runs: whether, and how long, a test
    suite ran beside it (a shared 2-core machine: its figures then carry that contention)."""

    def __init__(self, every_s: float = 5.0) -> None:
        import threading

        self.every_s = every_s
        self.seen: set[str] = set()
        self.polls = 0
        self.busy_polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            found = pytest_pids()
            self.polls += 1
            if found:
                self.busy_polls += 1
                self.seen.update(found)
            self._stop.wait(self.every_s)

    def __enter__(self) -> ContentionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def summary(self) -> dict[str, Any]:
        return {
            "pytest_seen_during_run": bool(self.seen),
            "pytest_share_of_run": round(self.busy_polls / self.polls, 2) if self.polls else None,
        }


def cpu_busy_pct(seconds: float = 3.0) -> float:
    """How busy the machine's CPUs were over the next ``seconds`` (/proc/stat), in percent."""

    def sample() -> list[int]:
        with open("/proc/stat", encoding="ascii") as f:
            return [int(x) for x in f.readline().split()[1:9]]

    a = sample()
    time.sleep(seconds)
    d = [y - x for x, y in zip(a, sample(), strict=True)]
    return round(100.0 * (sum(d) - d[3]) / (sum(d) or 1), 1)


def wait_for_quiet(
    max_wait_s: float = 1200.0, poll_s: float = 30.0, busy_limit_pct: float = 30.0, echo: Any = print
) -> dict[str, Any]:
    """Wait (polling every ``poll_s``, at most ``max_wait_s``) until no test suite runs on this
    machine (``pgrep -f bin/pytest`` finds nothing) and its CPUs are mostly idle (another
    session's build counts too); what was found goes into the result JSON."""
    t0 = time.monotonic()
    found, busy = pytest_pids(), cpu_busy_pct()
    while (found or busy > busy_limit_pct) and time.monotonic() - t0 < max_wait_s:
        what = (
            f"a test suite is running (pids {' '.join(found)})" if found else f"the CPUs are {busy:.0f}% busy"
        )
        echo(f"{what}: waiting ...")
        time.sleep(poll_s)
        found, busy = pytest_pids(), cpu_busy_pct()
    note = None
    if found:
        note = f"ran beside a running test suite (pids {' '.join(found)}) after waiting {max_wait_s:.0f} s"
    elif busy > busy_limit_pct:
        note = f"ran with the CPUs {busy:.0f}% busy from other work after waiting {max_wait_s:.0f} s"
    return {
        "waited_s": round(time.monotonic() - t0, 1),
        "pytest_running_at_start": bool(found),
        "cpu_busy_pct_at_start": busy,
        "note": note,
        "load_average": os.getloadavg(),
    }

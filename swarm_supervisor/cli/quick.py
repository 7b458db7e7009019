"""``swarm up`` from a remembered launch (swarm/relaunch.py): before click parses anything and before
the CLI imports pydantic, the plan or the store, the command line, environment, files and machine
are checked against the last clean start of the same command; when nothing changed, the run
file is claimed and the supervisor process spawns the same instances at once.

    code = quick_up(sys.argv[1:])     # an exit code, or None: run the full `swarm up`
    missed()                          # (in `swarm up`) the key to remember under, and the
                                      # supervisor process already started for it

Anything unusual (another command, ``--help``, ``--foreground``, global options, no record, a
changed input, a swarm of that name running, a proxy port in use, a record that cannot be read)
is a miss, and the full ``swarm up`` runs: it says what is wrong, and remembers its own start.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..swarm.prestart import Prestarted

if TYPE_CHECKING:
    import subprocess

    from ..paths import Dirs
    from ..swarm.relaunch import Remembered
    from ..swarm.runfile import RunFile

#: flags after which `swarm up` is not started from a record
_NOT_QUICK = frozenset({"--help", "-h", "--foreground"})


class Missed:
    """A `swarm up` that found no usable record: what its start is remembered under, and the
    supervisor process started for it (prestart.py). (A plain class: the supervisor process is
    started before this module would have imported dataclasses.)"""

    def __init__(self, key: dict[str, Any], prestarted: Prestarted) -> None:
        self.key = key
        self.prestarted = prestarted


_missed: Missed | None = None


def missed() -> Missed | None:
    """The miss of this process's `swarm up` (None when quick_up did not run: a test's CliRunner,
    `python -c`, another command)."""
    return _missed


def quick_up(args: list[str]) -> int | None:
    """Start ``swarm ARGS`` from its record; the exit code, or None for the full path."""
    global _missed
    if not args or args[0] != "up" or _NOT_QUICK.intersection(args):
        return None
    started = time.time()
    pre = Prestarted.start()  # either way: its Python start overlaps the checks
    from ..paths import dirs
    from ..swarm.relaunch import launch_key, recall

    where = dirs()
    key = launch_key(args, os.environ, str(Path.cwd()))
    got = recall(where, key, _available_ram())
    code = None if got is None else _start(args, got, where, started, pre)
    if code is None:
        _missed = Missed(key, pre)
    return code


def _available_ram(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """The RAM available now, as psutil's ``virtual_memory().available`` says it: on Linux the
    kernel's ``MemAvailable`` line, read without loading psutil before the spawn."""
    try:
        with meminfo.open("rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except (ImportError, OSError, RuntimeError):
        return None


def _start(args: list[str], got: Remembered, where: Dirs, started: float, pre: Prestarted) -> int | None:
    from ..bind import bind_problem
    from ..errors import SwarmError
    from ..swarm.launcher import initial_record_of, launch_detached
    from ..swarm.relaunch import split_port
    from ..swarm.runfile import RunFile
    from ..swarm.spec import new_api_key

    launch = dict(got.launch)
    _, port_s = split_port(args)
    if port_s is not None:
        if not port_s.isdigit() or int(port_s) > 65535:
            return None  # click says what is wrong with it
        launch["proxy_port"] = int(port_s)
    if bind_problem(launch["proxy_host"], launch["proxy_port"]) is not None:
        return None  # the full path says why, with the same check
    try:
        rf = RunFile(launch["name"], where)
        launch["api_key"] = new_api_key()
        proc = launch_detached(
            rf,
            json.dumps(launch, indent=2),
            launch["api_key"],
            lambda pid: initial_record_of(rf, launch, pid),
            pre,
        )
    except SwarmError:  # running already, or its lock busy: the full path says what to do
        return None
    return _shown(args, got, rf, proc, launch, started)


def _shown(
    args: list[str],
    got: Remembered,
    rf: RunFile,
    proc: subprocess.Popen[bytes],
    launch: dict[str, Any],
    started: float,
) -> int:
    """What the full `swarm up` shows, from the record; the exit code."""
    from rich.console import Console
    from rich.markup import escape

    from ..errors import SwarmError
    from ..swarm.runfile import live_status
    from .timeline import Timeline, command_started
    from .up_screen import print_plan, print_timeline, print_up, print_warning, wait_shown

    spawned = time.time()
    console, err = Console(), Console(stderr=True)
    for warning in got.warnings:
        print_warning(err, warning)
    print_plan(console, got.plan_rows)
    what = f"starting {len(launch['instances'])} instance(s) of {launch['model_id']} ..."
    grace = float((launch.get("config") or {}).get("supervisor", {}).get("stop_grace_s", 10.0))
    try:
        rec = wait_shown(console, err, rf, proc, timeout_s=got.ready_timeout_s, what=what, grace_s=grace)
    except SwarmError as exc:
        got.forget()  # the next `swarm up` checks everything again
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    done = time.time()
    if "--verbose" in args:
        tl = Timeline(command_started(started))
        tl.mark("Python start, remembered launch checked, run file claimed", spawned)
        print_timeline(console, tl, done, rec)
    print_up(console, live_status(rec), took_s=done - command_started(started))
    return 0

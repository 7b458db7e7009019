"""The supervisor process started before ``swarm up`` knows what to run, so that its Python start
and imports (about half a second) overlap the CLI's own.

``swarm up`` starts ``python -P -m swarm_supervisor.swarm.boot --wait`` before it imports its
modules; that process imports what it needs to spawn the instances, then waits for a swarm's
name on its stdin. Once the run file is claimed and the launch spec written,
:meth:`Prestarted.hand_over` sends the name; the process then writes to the swarm's
``supervisor.log`` and runs as if it had been started with the name. If ``swarm up`` ends without
handing over (an error, ``--help``, ``--foreground``, Ctrl-C, even SIGKILL), the pipe closes and
the process exits without a trace::

    pre = Prestarted.start()          # at once, before the heavy imports
    ...
    proc = pre.hand_over("default")   # the Popen, or None if the process is gone (start one anew)
    pre.close()                       # no-op after a hand-over

Kept light (no import beyond the standard library's ``subprocess``): it runs before anything else.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

#: the daemon's argument that makes it wait for the name on stdin
WAIT_FLAG = "--wait"
#: where ``swarm up``'s click context keeps its :class:`Prestarted` (``ctx.meta``)
META_KEY = "swarm_supervisor.prestarted"


class Prestarted:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.done = False  # handed over or let go

    @classmethod
    def start(cls) -> Prestarted:
        proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "swarm_supervisor.swarm.boot", WAIT_FLAG],
            cwd=os.sep,  # the daemon moves to the swarm's log dir once it has a name
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,  # until it has a name; then its supervisor.log
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        return cls(proc)

    def hand_over(self, name: str) -> subprocess.Popen[bytes] | None:
        """Tell the waiting process to run swarm ``name``; None when it has died meanwhile (the
        caller then starts a supervisor the usual way, whose log shows why)."""
        if self.done or self.proc.poll() is not None or self.proc.stdin is None:
            self.close()
            return None
        try:
            self.proc.stdin.write(name.encode("utf-8") + b"\n")
            self.proc.stdin.close()
        except OSError:  # it exited between the check and the write
            self.close()
            return None
        self.done = True
        return self.proc

    def close(self) -> None:
        """Let the process go without a name (it exits); nothing after a hand-over."""
        if self.done:
            return
        self.done = True
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

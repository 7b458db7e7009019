"""One llama-server (or ``mlx_lm.server``) process: spawn, readiness, stop, and its states.

An :class:`Instance` knows nothing about other instances. Its life is a :class:`State` with a
table of allowed transitions (:data:`TRANSITIONS`); an invalid move raises
:class:`TransitionError`, which is a bug in the caller, not a user error::

    inst = Instance(InstanceConfig(id="0", binary=..., model_path=..., ...))
    inst.spawn(free_port())                 # STOPPED -> STARTING, own process group, log file
    await inst.wait_ready(client, 120.0)    # STARTING -> READY, or ProcessError / NotReadyError
    await inst.stop(grace_s=10.0)           # -> STOPPING -> STOPPED: TERM to the group, grace, KILL

Readiness polls ``/health`` (public even with an API key): connection refused and 503 mean
"loading" and are debug lines; 200 is ready. It has three exits, each with its own message:
ready, the process exited early (with the tail of its log), the deadline passed. The argv is
built in :mod:`.argv`; ports, logs and signals are :mod:`.system`'s.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import time
from enum import StrEnum
from typing import IO

from ..errors import NotReadyError, ProcessError
from .argv import build_argv, instance_env
from .spec import InstanceConfig
from .system import create_time_of, log_tail, rotate_log, signal_group

log = logging.getLogger(__name__)

#: how often a loading instance's /health is asked: a refused connection or a 503 costs it
#: about a tenth of a millisecond, and `swarm up` returns this much sooner on average
POLL_S = 0.02


class State(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    UNHEALTHY = "unhealthy"  # dead or not answering; the supervisor decides what follows
    STOPPING = "stopping"
    FAILED = "failed"  # given up on: ps shows the reason


TRANSITIONS: dict[State, frozenset[State]] = {
    State.STOPPED: frozenset({State.STARTING}),
    State.STARTING: frozenset({State.READY, State.UNHEALTHY, State.STOPPING, State.FAILED}),
    State.READY: frozenset({State.UNHEALTHY, State.STOPPING, State.FAILED}),
    State.UNHEALTHY: frozenset({State.READY, State.STARTING, State.STOPPING, State.FAILED}),
    State.STOPPING: frozenset({State.STOPPED, State.FAILED}),
    State.FAILED: frozenset({State.STARTING, State.STOPPING, State.STOPPED}),
}


class TransitionError(RuntimeError):
    """A state change the table does not allow (a bug in the caller)."""


class Instance:
    """One process and its state. Not thread-safe: the supervisor's loop owns it."""

    def __init__(self, cfg: InstanceConfig) -> None:
        self.cfg = cfg
        self.state = State.STOPPED
        self.reason: str | None = None  # why it is unhealthy / failed / stopped
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.create_time: float | None = None
        self.started_at: float | None = None  # wall clock of the last spawn
        self.ready_at: float | None = None
        self.restarts = 0

    @property
    def id(self) -> str:
        return self.cfg.id

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.port}"

    def transition(self, new: State, reason: str | None = None) -> None:
        if new not in TRANSITIONS[self.state]:
            raise TransitionError(f"instance {self.id}: {self.state} -> {new} is not allowed")
        log.debug("instance %s: %s -> %s%s", self.id, self.state, new, f" ({reason})" if reason else "")
        self.state = new
        self.reason = reason

    def spawn(self, port: int) -> None:
        """Start the process in its own group, output appended to its (rotated) log."""
        self.transition(State.STARTING)
        self.port = port
        argv = build_argv(self.cfg, port)
        self.cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
        rotate_log(self.cfg.log_path)
        logf: IO[bytes] = self.cfg.log_path.open("ab")
        try:
            logf.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
            logf.flush()
            kwargs: dict[str, object] = {}
            if sys.platform == "win32":  # pragma: no cover - untested here
                kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
            else:
                kwargs["start_new_session"] = True
            try:
                self.proc = subprocess.Popen(  # type: ignore[call-overload]
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    env=instance_env(self.cfg),
                    **kwargs,
                )
            except OSError as exc:
                self.transition(State.FAILED, f"cannot run {argv[0]}: {exc.strerror}")
                raise ProcessError(
                    f"instance {self.id}: cannot run {argv[0]}: {exc.strerror}. "
                    "Check the path (--llama-server or binary.llama_server in the config)."
                ) from exc
        finally:
            logf.close()
        assert self.proc is not None
        self.create_time = create_time_of(self.proc.pid)
        self.started_at = time.time()
        self.ready_at = None
        log.info("instance %s: pid %d on port %d", self.id, self.proc.pid, port)

    def returncode(self) -> int | None:
        """The exit code once the process has exited (reaped), else None."""
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def probe(self, timeout_s: float = 5.0) -> int | None:
        """GET /health: the status code, or None when nothing answers."""
        from .probe import health_status

        code = await health_status(self.cfg.host, self.port or 0, timeout_s)
        if code is None:
            log.debug("instance %s: /health: no answer", self.id)
        return code

    def failure_text(self, what: str) -> str:
        tail = log_tail(self.cfg.log_path)
        return f"instance {self.id} {what}. Last lines of {self.cfg.log_path}:\n{tail}"

    async def wait_ready(self, timeout_s: float, poll_s: float = POLL_S) -> None:
        """Poll /health until 200 (-> READY); raise if the process exits or the deadline passes."""
        import asyncio  # running in a loop: already loaded

        deadline = time.monotonic() + timeout_s
        while True:
            rc = self.returncode()
            if rc is not None:
                msg = self.failure_text(f"exited with code {rc} before it was ready")
                self.transition(State.UNHEALTHY, f"exited with code {rc} while starting")
                raise ProcessError(msg)
            code = await self.probe(timeout_s=max(poll_s * 10, 1.0))
            if code == 200:
                self.ready_at = time.time()
                self.transition(State.READY)
                log.info("instance %s: ready on port %s", self.id, self.port)
                return
            if code is None:
                log.debug("instance %s: connection refused (starting)", self.id)
            elif code == 503:
                log.debug("instance %s: loading the model", self.id)
            else:
                log.debug("instance %s: /health answered %d", self.id, code)
            if time.monotonic() >= deadline:
                msg = self.failure_text(
                    f"was not ready after {timeout_s:.0f} s "
                    "(raise supervisor.ready_timeout_s in the config for a slow disk or a large model)"
                )
                self.transition(State.UNHEALTHY, f"not ready after {timeout_s:.0f} s")
                raise NotReadyError(msg)
            await asyncio.sleep(poll_s)

    def _send_stop(self, hard: bool) -> None:
        assert self.proc is not None
        if sys.platform == "win32":  # pragma: no cover - untested here
            if hard:
                self.proc.kill()
            else:
                with contextlib.suppress(OSError):
                    self.proc.send_signal(signal.CTRL_BREAK_EVENT)
            return
        signal_group(self.proc.pid, signal.SIGKILL if hard else signal.SIGTERM)

    async def kill_process(self, grace_s: float) -> None:
        """TERM to the group, wait up to ``grace_s``, then KILL; reaps the process. No state change."""
        import asyncio  # running in a loop: already loaded

        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._send_stop(hard=False)
            deadline = time.monotonic() + grace_s
            while self.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        if self.proc.poll() is None:
            log.warning("instance %s: no exit %.0f s after SIGTERM, sending SIGKILL", self.id, grace_s)
            self._send_stop(hard=True)
        while self.proc.poll() is None:
            await asyncio.sleep(0.02)

    async def stop(self, grace_s: float, reason: str | None = None) -> None:
        """-> STOPPING -> STOPPED (from any live state)."""
        if self.state == State.STOPPED:
            return
        self.transition(State.STOPPING, reason)
        await self.kill_process(grace_s)
        self.transition(State.STOPPED, reason)

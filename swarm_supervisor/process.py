"""One llama-server (or ``mlx_lm.server``) process: argv, spawn, readiness, stop.

An :class:`Instance` knows nothing about other instances. Its life is a :class:`State` with a
table of allowed transitions (:data:`TRANSITIONS`); an invalid move raises
:class:`TransitionError`, which is a bug in the caller, not a user error::

    inst = Instance(InstanceConfig(id="0", binary=..., model_path=..., ...))
    inst.spawn(free_port())                 # STOPPED -> STARTING, own process group, log file
    await inst.wait_ready(client, 120.0)    # STARTING -> READY, or ProcessError / NotReadyError
    await inst.stop(grace_s=10.0)           # -> STOPPING -> STOPPED: TERM to the group, grace, KILL

Readiness polls ``/health`` (public even with an API key): connection refused and 503 mean
"loading" and are debug lines; 200 is ready. It has three exits, each with its own message:
ready, the process exited early (with the tail of its log), the deadline passed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING

import psutil

from .errors import NotReadyError, ProcessError
from .vocabulary import Backend, GpuVendor

if TYPE_CHECKING:
    import httpx  # imported where used: `swarm ps` and `swarm down` need none of it

log = logging.getLogger(__name__)

#: old logs kept beside the current one (``instance-0.log.1`` ... ``.3``)
LOG_KEEP = 3
#: a running instance's log is rotated (copy, then truncate) once it is larger than this
LOG_MAX_BYTES = 20 * 1024 * 1024
#: lines of the log shown when an instance fails
TAIL_LINES = 20


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


@dataclass(frozen=True)
class InstanceConfig:
    """Everything needed to start one instance; the port is chosen at spawn time."""

    id: str
    binary: Path
    model_path: Path
    model_id: str  # --alias: the name the proxy serves
    context: int  # tokens per slot; llama-server's -c is the total, so context * slots is passed
    slots: int = 1
    threads: int = 1
    gpu_layers: int = 0
    log_path: Path = Path("instance.log")
    #: voters this process answers for in one request (sent as ``n``); 0: all its slots.
    #: slots = voters x concurrent requests (the plan's ``concurrency``)
    voters: int = 0
    backend: Backend = "llama.cpp"
    gpu: int | None = None
    gpus: tuple[int, ...] = ()
    gpu_vendor: GpuVendor | None = None
    api_key_file: Path | None = None  # the key is read from a 0600 file, never put in argv
    seed: int | None = None
    extra_args: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    max_tokens: int = 8192  # mlx_lm.server only: its default of 512 cuts answers
    #: KV-cache type (``-ctk``/``-ctv``); a quantized one also gets ``-fa on``: llama.cpp refuses a
    #: quantized V cache without flash attention ("quantized V cache was requested, but this
    #: requires Flash Attention", src/llama-context.cpp), and ``auto`` may resolve to off
    kv_type: str = "f16"

    @property
    def visible_gpus(self) -> tuple[int, ...]:
        if self.gpus:
            return self.gpus
        return () if self.gpu is None else (self.gpu,)


# --------------------------------------------------------------------------- argv, env


def llama_server_argv(cfg: InstanceConfig, port: int) -> list[str]:
    """The argv for llama-server: every size explicit, loopback only, the port always passed."""
    argv = [
        str(cfg.binary),
        "-m",
        str(cfg.model_path),
        "--host",
        cfg.host,
        "--port",
        str(port),
        "-c",
        str(cfg.context * cfg.slots),
        "-ngl",
        str(cfg.gpu_layers),
        "--threads",
        str(cfg.threads),
        "--parallel",
        str(cfg.slots),
        "--metrics",
        "--alias",
        cfg.model_id,
    ]
    if cfg.api_key_file is not None:
        argv += ["--api-key-file", str(cfg.api_key_file)]
    if cfg.seed is not None:
        argv += ["--seed", str(cfg.seed)]
    if cfg.kv_type != "f16":
        argv += ["-ctk", cfg.kv_type, "-ctv", cfg.kv_type, "-fa", "on"]
    if cfg.slots > 1:
        # one KV pool for all slots: the n answers of one request share the prompt's cells
        # instead of copying them (llama-server's own default when it picks the slots itself)
        argv.append("--kv-unified")
    return argv + list(cfg.extra_args)


def mlx_server_argv(cfg: InstanceConfig, port: int) -> list[str]:
    """The argv for ``mlx_lm.server`` (Apple Silicon). ``binary`` is the mlx_lm.server script."""
    argv = [
        str(cfg.binary),
        "--model",
        str(cfg.model_path),
        "--host",
        cfg.host,
        "--port",
        str(port),
        "--max-tokens",
        str(cfg.max_tokens),
    ]
    return argv + list(cfg.extra_args)


def build_argv(cfg: InstanceConfig, port: int) -> list[str]:
    return mlx_server_argv(cfg, port) if cfg.backend == "mlx" else llama_server_argv(cfg, port)


def instance_env(cfg: InstanceConfig, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment: the GPU(s) this instance may see, nothing else changed.

    The plan's GPU indices are NVML's / nvidia-smi's (PCI bus order); CUDA numbers devices
    fastest-first unless told otherwise, so ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` goes with them (on a
    3060 + 4090 box CUDA's device 0 would otherwise be the 4090, NVML's index 1).
    """
    env = dict(os.environ if base is None else base)
    gpus = ",".join(str(g) for g in cfg.visible_gpus)
    if cfg.gpu_vendor == "nvidia" and gpus:
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["CUDA_VISIBLE_DEVICES"] = gpus
    elif cfg.gpu_vendor == "amd" and gpus:
        env["HIP_VISIBLE_DEVICES"] = gpus
    return env


# --------------------------------------------------------------------------- ports, logs


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nobody listens on ``port`` (connections in TIME_WAIT do not count, as for a server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if sys.platform != "win32":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def rotate_log(path: Path, keep: int = LOG_KEEP) -> None:
    """``x.log`` -> ``x.log.1`` -> ... -> ``x.log.<keep>`` (the oldest is dropped)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    for i in range(keep, 0, -1):
        src = path if i == 1 else path.with_name(f"{path.name}.{i - 1}")
        if src.exists():
            src.replace(path.with_name(f"{path.name}.{i}"))


def rotate_running_log(path: Path, max_bytes: int = LOG_MAX_BYTES, keep: int = LOG_KEEP) -> bool:
    """Rotate a log a live process appends to: copy it aside, then truncate it in place."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    for i in range(keep, 1, -1):
        src = path.with_name(f"{path.name}.{i - 1}")
        if src.exists():
            src.replace(path.with_name(f"{path.name}.{i}"))
    shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    with path.open("r+b") as fh:  # the writer has O_APPEND: it goes on at the new end
        fh.truncate(0)
    return True


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines)).rstrip("\n")
    except OSError:
        return f"(no log at {path})"


# --------------------------------------------------------------------------- signals


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def same_process(pid: int, create_time: float | None) -> bool:
    """True if ``pid`` is alive and (when known) was created at ``create_time``: never a recycled pid."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - create_time) < 0.01
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def create_time_of(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def terminate_group(pid: int, create_time: float | None, grace_s: float) -> bool:
    """Stop a process group we did not spawn (``swarm down``): TERM, grace, KILL.

    Acts only if the leader ``pid`` is still the process recorded (same ``create_time``).
    Returns True if a process was signalled.
    """
    if not same_process(pid, create_time):
        return False
    proc = psutil.Process(pid)
    if sys.platform == "win32":  # pragma: no cover - no Windows here
        proc.terminate()
        _, alive = psutil.wait_procs([proc], timeout=grace_s)
        for p in alive:
            p.kill()
        return True
    _signal_group(pid, signal.SIGTERM)
    _, alive = psutil.wait_procs([proc], timeout=grace_s)
    if alive:
        _signal_group(pid, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=5)
    return True


# --------------------------------------------------------------------------- the instance


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

    async def probe(self, client: httpx.AsyncClient, timeout_s: float = 5.0) -> int | None:
        """GET /health: the status code, or None when nothing answers."""
        import httpx

        try:
            resp = await client.get(f"{self.url}/health", timeout=timeout_s)
        except httpx.ConnectError:
            return None
        except httpx.HTTPError as exc:
            log.debug("instance %s: /health: %s", self.id, exc)
            return None
        return resp.status_code

    def failure_text(self, what: str) -> str:
        tail = log_tail(self.cfg.log_path)
        return f"instance {self.id} {what}. Last lines of {self.cfg.log_path}:\n{tail}"

    async def wait_ready(self, client: httpx.AsyncClient, timeout_s: float, poll_s: float = 0.1) -> None:
        """Poll /health until 200 (-> READY); raise if the process exits or the deadline passes."""
        import asyncio  # running in a loop: already loaded

        deadline = time.monotonic() + timeout_s
        while True:
            rc = self.returncode()
            if rc is not None:
                msg = self.failure_text(f"exited with code {rc} before it was ready")
                self.transition(State.UNHEALTHY, f"exited with code {rc} while starting")
                raise ProcessError(msg)
            code = await self.probe(client, timeout_s=max(poll_s * 10, 1.0))
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
        _signal_group(self.proc.pid, signal.SIGKILL if hard else signal.SIGTERM)

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

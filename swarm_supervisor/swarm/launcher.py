"""What ``swarm up`` does between the plan and a running swarm (the CLI only wires this).

    spec = build_spec(rf, plan, binary=..., model_path=..., config=..., host=..., port=...)
    pid = start_detached(rf, spec)                                   # claims the run file
    rec = wait_until_up(rf, pid, timeout_s)                          # the run file says "up"

or, in the foreground, ``claim_foreground(rf, spec)`` and then
:func:`swarm_supervisor.swarm.daemon.run_swarm`. The background process is
``python -m swarm_supervisor.swarm.boot NAME``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..bind import bind_problem
from ..errors import ConfigError, ProcessError, SwarmStateError
from ..vocabulary import Backend, GpuVendor
from .prestart import Prestarted
from .record import ProcessRef, ProxyRecord, RunRecord
from .runfile import RunFile, claim, is_stale, write_private
from .spec import SwarmSpec, instance_configs, new_api_key
from .system import create_time_of, log_tail

if TYPE_CHECKING:  # a remembered launch (relaunch.py) starts without the config's and plan's modules
    from ..config import Catalogue, Config
    from ..plan import Plan


def extra_args_for(plan: Plan, catalogue: Catalogue, config: Config) -> tuple[str, ...]:
    """models.toml's ``extra_args`` of the family, then ``binary.extra_args`` of the config."""
    family: tuple[str, ...] = ()
    if not plan.gguf_path:
        try:
            family = tuple(catalogue.family(plan.model).extra_args)
        except ConfigError:
            family = ()
    return family + tuple(config.binary.extra_args)


def build_spec(
    rf: RunFile,
    plan: Plan,
    *,
    binary: Path,
    model_path: Path,
    config: Config,
    host: str,
    port: int,
    backend: Backend = "llama.cpp",
    gpu_vendor: GpuVendor | None = None,
    extra_args: tuple[str, ...] = (),
    shared_kv: bool = False,
    cache_ram: bool = False,
    fallback: dict[str, str] | None = None,
) -> SwarmSpec:
    """The spec of the swarm ``rf.name`` with a new internal key. Nothing is written: the key file
    and the launch spec are written only once the run file is claimed (:func:`start_detached`),
    so a second ``swarm up`` of the same name cannot overwrite the key of the one that runs."""
    rf.ensure_dirs()
    key = new_api_key()
    return SwarmSpec(
        name=rf.name,
        model_id=plan.model_id,
        model_path=str(model_path),
        context=plan.context,
        device=plan.device,
        instances=instance_configs(
            plan,
            binary=binary,
            model_path=model_path,
            log_dir=rf.log_dir,
            api_key_file=rf.key_path,
            backend=backend,
            gpu_vendor=gpu_vendor,
            extra_args=extra_args,
            shared_kv=shared_kv,
            cache_ram=cache_ram,
        ),
        api_key=key,
        proxy_host=host,
        proxy_port=port,
        config=config,
        log_dir=str(rf.log_dir),
        plan_summary={
            "voters": plan.voters,
            "processes": plan.processes,
            "slots": plan.slots,
            "concurrency": plan.concurrency,
            "kv_type": plan.kv_type,
        },
        fallback=fallback,
    )


def initial_record(rf: RunFile, spec: SwarmSpec, pid: int) -> RunRecord:
    """The run record before the supervisor writes its own: ``starting``, run by ``pid``."""
    return RunRecord(
        name=rf.name,
        status="starting",
        model=spec.model_id,
        fallback=spec.fallback,
        model_path=spec.model_path,
        binary=str(spec.instances[0].binary) if spec.instances else None,
        supervisor=ProcessRef(pid, create_time_of(pid)),
        proxy=ProxyRecord(spec.proxy_host, spec.proxy_port),
        started_at=time.time(),
        log_dir=spec.log_dir,
    )


def initial_record_of(rf: RunFile, launch: dict[str, Any], pid: int) -> RunRecord:
    """:func:`initial_record` of a launch spec as plain JSON (:meth:`SwarmSpec.to_json`)."""
    insts = launch.get("instances") or []
    return RunRecord(
        name=rf.name,
        status="starting",
        model=launch["model_id"],
        fallback=launch.get("fallback"),
        model_path=launch["model_path"],
        binary=str(insts[0]["binary"]) if insts else None,
        supervisor=ProcessRef(pid, create_time_of(pid)),
        proxy=ProxyRecord(launch["proxy_host"], int(launch["proxy_port"])),
        started_at=time.time(),
        log_dir=launch["log_dir"],
    )


def check_port(host: str, port: int) -> None:
    """Raise :class:`SwarmStateError` with the real cause when the proxy could not listen there."""
    problem = bind_problem(host, port)
    if problem is not None:
        raise SwarmStateError(f"the proxy cannot listen on {host}:{port}: {problem}")


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """A warning when the endpoint is reachable from other machines with no API key, else None."""
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback or api_key:
        return None
    return (
        f"the endpoint listens on {host} without an API key: anyone who can reach this machine can use "
        "the swarm; set proxy.api_key in the config, or bind 127.0.0.1 (the default)"
    )


def supervisor_log(rf: RunFile) -> Path:
    return rf.log_dir / "supervisor.log"


def _write_claimed(rf: RunFile, api_key: str, launch_json: str) -> None:
    """The key file (read by the instances) and the launch spec, once the run file is ours."""
    write_private(rf.key_path, api_key, durable=False)  # read at once; a crash makes both moot
    write_private(rf.launch_path, launch_json, durable=False)


def claim_foreground(rf: RunFile, spec: SwarmSpec) -> None:
    """Claim the run file for a supervisor running in this process."""
    with rf.lock():
        claim(rf, initial_record(rf, spec, os.getpid()))
        _write_claimed(rf, spec.api_key, spec.to_json())


def start_detached(
    rf: RunFile, spec: SwarmSpec, prestarted: Prestarted | None = None
) -> subprocess.Popen[bytes]:
    """Claim the run file and start ``python -P -m swarm_supervisor.swarm.boot NAME`` detached,
    or hand the swarm to the ``prestarted`` one (:mod:`.prestart`) when it still waits.

    ``-P`` and the swarm's log dir as working directory: a file in the user's working directory
    named like a module (``inspect.py``) is never imported instead of the standard one."""
    return launch_detached(
        rf, spec.to_json(), spec.api_key, lambda pid: initial_record(rf, spec, pid), prestarted
    )


def launch_detached(
    rf: RunFile,
    launch_json: str,
    api_key: str,
    record_of: Callable[[int], RunRecord],
    prestarted: Prestarted | None = None,
) -> subprocess.Popen[bytes]:
    """:func:`start_detached` of a launch spec already written out as JSON; ``record_of(pid)`` is
    the run record of the ``starting`` swarm run by ``pid``. SwarmStateError (nothing written)
    when a live swarm of that name has the run file."""
    with rf.lock():
        claim(rf, record_of(os.getpid()))
        _write_claimed(rf, api_key, launch_json)
        proc = prestarted.hand_over(rf.name) if prestarted is not None else None
        if proc is None:
            proc = _spawn_daemon(rf)
        rf.write(record_of(proc.pid))
    return proc


def _spawn_daemon(rf: RunFile) -> subprocess.Popen[bytes]:
    with supervisor_log(rf).open("ab") as logf:
        return subprocess.Popen(
            [sys.executable, "-P", "-m", "swarm_supervisor.swarm.boot", rf.name],
            cwd=rf.log_dir,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def wait_until_up(rf: RunFile, proc: subprocess.Popen[bytes], timeout_s: float) -> RunRecord:
    """Wait for the run file to say ``up``; raise ProcessError with the reason otherwise."""
    deadline = time.monotonic() + timeout_s
    seen: tuple[int, int] | None = None
    rec = None
    while True:
        now = _stamp(rf.path)
        if now is None or now != seen:  # read again only once the supervisor wrote it again
            seen = now
            rec = rf.peek()  # None while damaged for a moment: the supervisor writes it again
        if rec is not None and rec.status == "up":
            return rec
        rc = proc.poll()
        if rc is not None or (rec is not None and rec.status == "failed"):
            if rc is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
            rec = rf.peek() or rec
            reason = rec.reason if rec is not None else None
            with rf.lock():
                latest = rf.peek()
                if latest is not None and is_stale(latest):
                    rf.remove()
            if reason:
                raise ProcessError(f"swarm {rf.name!r} did not start: {reason}")
            tail = log_tail(supervisor_log(rf))
            raise ProcessError(
                f"the supervisor exited (code {rc}) before the swarm was up. "
                f"Last lines of {supervisor_log(rf)}:\n{tail}"
            )
        if time.monotonic() > deadline:
            raise ProcessError(
                f"swarm {rf.name!r} was not up after {timeout_s:.0f} s; it is still starting: "
                "watch it with `swarm ps` and `swarm logs`, or stop it with `swarm down`"
            )
        time.sleep(0.01)  # a stat; the 50 ms it was cost 25 ms on average


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_ino

"""All instances of a plan: start, health loop, restarts with backoff, memory guard, run file.

One :class:`Supervisor` runs in one event loop beside the proxy. It knows nothing of the proxy:
it reports every change of an instance as an :class:`~.events.InstanceEvent` (and the swarm's
status as a :class:`~.events.StatusEvent`) to ``on_event``; :mod:`.daemon` turns them into the
proxy's pool::

    sup = Supervisor(spec, runfile=RunFile(spec.name), on_event=listener, traffic=counts)
    async with sup:                 # the health-check HTTP client
        await sup.spawn_ahead()     # optional: spawn now, do other work while they load
        await sup.start()           # every instance ready, or ProcessError (all stopped again)
        await sup.run()             # the health loop, until request_stop(); then everything stops

Start order: instances that share a GPU start one after another (llama-server sizes itself to
the VRAM it sees free); on CPU they start together. The loop, every
``supervisor.health_interval_s``: an instance whose process exited, or that failed
:data:`MISSES_BEFORE_RESTART` health probes in a row, is restarted after a backoff that doubles
with each crash (``restart_backoff_s`` up to ``restart_backoff_max_s``); more than
``max_crashes`` within ``crash_window_s`` and it is marked failed with the reason. When free
system memory falls under ``min_free_memory_bytes`` the newest instance is stopped (never the
last one). Signal handlers call :meth:`request_stop`, which only records; the loop acts. Where
the OS has process file descriptors (Linux 5.3+), an instance's exit wakes the loop at once rather
than at its next round, so its route is withdrawn and its restart begins within milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any

from ..errors import ProcessError
from .aio import call_on_exit, unless_stopped
from .events import InstanceEvent, Listener, RouteState, StatusEvent, Traffic, no_traffic
from .health import CrashTracker, VramReader, available_memory, degraded_reason
from .instance import Instance, State
from .memguard import MemoryGuard
from .record import RunRecord
from .runfile import RunFile
from .spec import SwarmSpec, start_groups
from .status import base_url, build_record, live_snapshot
from .system import free_port, port_is_free, rotate_running_log
from .writer import RunFileWriter

log = logging.getLogger(__name__)

#: failed /health probes in a row before a live instance counts as hung and is restarted
MISSES_BEFORE_RESTART = 3
PROBE_TIMEOUT_S = 5.0
#: health-loop rounds in a row that raised before the swarm counts as degraded (`swarm ps`)
DEGRADED_AFTER = 3
_LIVE = (State.STARTING, State.READY, State.UNHEALTHY)


class Supervisor:
    def __init__(
        self,
        spec: SwarmSpec,
        *,
        runfile: RunFile | None = None,
        on_event: Listener | None = None,
        traffic: Callable[[], Traffic] = no_traffic,
        free_memory: Callable[[], int] = available_memory,
        vram: VramReader | None = None,
        probe_timeout_s: float = PROBE_TIMEOUT_S,
        guard_cooldown_s: float | None = None,
        spawned: dict[str, Instance] | None = None,
    ) -> None:
        self.spec = spec
        self.cfg = spec.config.supervisor
        self.on_event = on_event
        self.traffic = traffic
        self.runfile = runfile
        self.vram = vram or VramReader(enabled=spec.device == "gpu")
        self.probe_timeout_s = probe_timeout_s
        #: time between two memory-guard stops, so freed memory shows before the next decision
        cooldown = max(3 * self.cfg.health_interval_s, 5.0) if guard_cooldown_s is None else guard_cooldown_s
        self.guard = MemoryGuard(self.cfg.min_free_memory_bytes, cooldown, free_memory)
        #: ``spawned``: instances already spawned (swarm/boot.py), taken over by :meth:`spawn_ahead`
        self.instances = {c.id: (spawned or {}).get(c.id) or Instance(c) for c in spec.instances}
        self.trackers = {
            c.id: CrashTracker(
                self.cfg.max_crashes,
                self.cfg.crash_window_s,
                self.cfg.restart_backoff_s,
                self.cfg.restart_backoff_max_s,
            )
            for c in spec.instances
        }
        self.status = "starting"  # starting / up / failed / stopping / stopped
        self.reason: str | None = None
        self.started_at = time.time()
        self.proxy_port: int | None = spec.proxy_port or None
        self._misses = dict.fromkeys(self.instances, 0)
        #: instances reported "ready" (the proxy sends them requests)
        self.routable: set[str] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()
        self._nudge = asyncio.Event()  # wakes the health loop before its interval: a stop, an exit
        self._stop_reason: str | None = None
        self._saved: RunRecord | None = None
        self.writer = RunFileWriter(runfile) if runfile is not None else None
        #: rounds of the health loop in a row that raised, and why the swarm is degraded (or None)
        self.failed_rounds = 0
        self.degraded: str | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Supervisor:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self.shutdown()
        finally:
            if self.writer is not None:
                await self.writer.close()
            self.vram.close()

    def request_stop(self, why: str = "stop requested") -> None:
        """Safe from a signal handler: records, the loop acts."""
        self._stop_reason = self._stop_reason or why
        self._stop.set()
        self._nudge.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def spawn_ahead(self) -> None:
        """Spawn the first instance of each start group now, without waiting for it: it loads its
        model while the caller does its own slow work (the daemon imports the proxy), and
        :meth:`start` then waits for it. On CPU that is every instance. If one cannot be spawned,
        every instance is stopped again and ProcessError is raised, as from :meth:`start`.
        """
        if self.stopping:
            return
        self.save()
        try:
            for group in start_groups(self.spec):
                inst = self.instances[group[0].id]
                if inst.state == State.STARTING:  # spawned by swarm/boot.py: reported now
                    self._spawned(inst)
                else:
                    self._spawn_one(inst)
        except ProcessError as exc:
            await self._start_failed(exc)
            raise

    async def start(self) -> None:
        """Start every instance (sequentially per GPU); raise ProcessError if one does not get ready.

        Instances already spawned by :meth:`spawn_ahead` are waited for, not spawned again. A
        stop requested meanwhile aborts the start (no error: the caller then shuts down).
        """
        groups = [[self.instances[c.id] for c in group] for group in start_groups(self.spec)]
        self.save()
        done, results = await unless_stopped(
            asyncio.gather(*(self._start_group(g) for g in groups), return_exceptions=True), self._stop
        )
        if not done:
            return
        errors = [r for r in results or [] if isinstance(r, BaseException)]
        if errors:
            await self._start_failed(errors[0])
            raise errors[0] if isinstance(errors[0], ProcessError) else ProcessError(str(errors[0]))
        self.status = "up"
        self.save()
        if self.writer is not None:
            await self.writer.flush()  # `swarm up` waits for the run file to say "up"

    async def _start_failed(self, error: BaseException) -> None:
        self.status = "failed"
        self.reason = str(error)
        await self.shutdown(final_status="failed")

    async def _start_group(self, group: list[Instance]) -> None:
        for inst in group:
            await self._start_one(inst)

    def _spawn_one(self, inst: Instance) -> None:
        port = inst.port if inst.port is not None and port_is_free(inst.port) else free_port()
        inst.spawn(port)
        self._spawned(inst)

    def _spawned(self, inst: Instance) -> None:
        """A process was spawned for ``inst`` (here, or by swarm/boot.py): its exit wakes the
        health loop at once, and it is reported as starting."""
        if inst.pid is not None:
            call_on_exit(inst.pid, self._nudge.set)
        self._report(inst, "starting")
        self.save()

    async def _start_one(self, inst: Instance) -> None:
        if inst.state != State.STARTING:  # else spawn_ahead spawned it
            self._spawn_one(inst)
        await inst.wait_ready(self.cfg.ready_timeout_s)
        self._misses[inst.id] = 0
        self._report(inst, "ready")
        self.save()

    def _report(self, inst: Instance, state: RouteState) -> None:
        """Tell the listener (the proxy's side) what became of ``inst``."""
        if state == "ready":
            self.routable.add(inst.id)
        else:
            self.routable.discard(inst.id)
        if self.on_event is not None:
            cfg = inst.cfg
            self.on_event(InstanceEvent(inst.id, inst.url, state, cfg.slots, cfg.voters, inst.restarts))

    async def run(self) -> None:
        """The health loop: until :meth:`request_stop`; then every instance is stopped."""
        try:
            while not self._stop.is_set():
                try:
                    await self.tick()
                except Exception as exc:  # one bad round (EMFILE, a full disk) must not stop the swarm
                    self._round_failed(exc)
                else:
                    self._round_ok()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._nudge.wait(), self.cfg.health_interval_s)
                self._nudge.clear()
            log.info("stopping the swarm: %s", self._stop_reason)
        finally:
            await self.shutdown()

    def _round_failed(self, exc: Exception) -> None:
        self.failed_rounds += 1
        what = f"{type(exc).__name__}: {exc}"
        if self.failed_rounds == 1:
            log.exception("a round of the health loop failed; the swarm keeps running")
        else:
            log.error("a round of the health loop failed (%d in a row): %s", self.failed_rounds, what)
        if self.failed_rounds >= DEGRADED_AFTER:
            self.degraded = degraded_reason(self.failed_rounds, what)
        with contextlib.suppress(Exception):
            self.save()

    def _round_ok(self) -> None:
        if self.failed_rounds:
            log.info("the health loop works again after %d failed rounds", self.failed_rounds)
        self.failed_rounds = 0
        if self.degraded is not None:
            self.degraded = None
            self.save()

    async def shutdown(self, final_status: str = "stopped") -> None:
        """Cancel pending restarts and stop every instance (TERM, grace, KILL), concurrently."""
        if self.status in ("stopped",) and not self._tasks:
            return
        if self.status != "failed":
            self.status = "stopping"
        self.save()
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        await asyncio.gather(*(self._stop_instance(i, "swarm stopped") for i in self.instances.values()))
        self.status = final_status if self.status != "failed" else "failed"
        self.save()

    async def _stop_instance(self, inst: Instance, reason: str) -> None:
        self._report(inst, "stopping")
        if inst.state in _LIVE:
            await inst.stop(self.cfg.stop_grace_s, reason)
        elif inst.state in (State.FAILED, State.STOPPING):
            await inst.kill_process(self.cfg.stop_grace_s)
        self._report(inst, "removed")

    # ------------------------------------------------------------------ the loop's work

    async def tick(self) -> None:
        """One round of the health loop (public so tests can drive it step by step)."""
        idle = [i for i in self.instances.values() if i.id not in self._tasks]
        ready = [i for i in idle if i.state == State.READY]
        codes = await asyncio.gather(*(i.probe(self.probe_timeout_s) for i in ready))
        for inst, code in zip(ready, codes, strict=True):
            rc = inst.returncode()
            if rc is not None:
                self._crashed(inst, f"exited with code {rc}")
            elif code == 200:
                self._misses[inst.id] = 0
            else:
                self._misses[inst.id] += 1
                if self._misses[inst.id] >= MISSES_BEFORE_RESTART:
                    what = "did not answer" if code is None else f"answered {code}"
                    self._crashed(inst, f"/health {what} {MISSES_BEFORE_RESTART} times in a row")
        for inst in idle:
            if inst.state == State.UNHEALTHY and inst.id not in self._tasks:  # a failed restart
                self._crashed(inst, inst.reason or "not ready")
        self._memory_guard()
        for inst in self.instances.values():
            if inst.state in _LIVE:
                rotate_running_log(inst.cfg.log_path)
        self.save(publish=True)  # memory readings change: the status is published every round
        if self.writer is not None:
            self.writer.verify()  # a deleted or damaged run file is written again

    def _spawn(self, inst: Instance, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks[inst.id] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._tasks.get(inst.id) is t:
                del self._tasks[inst.id]
            if not t.cancelled() and t.exception() is not None:
                log.error("instance %s: %s", inst.id, t.exception())
            self.save()

        task.add_done_callback(done)

    def _crashed(self, inst: Instance, why: str) -> None:
        tracker = self.trackers[inst.id]
        n = tracker.record(time.monotonic())
        if inst.state == State.READY:
            inst.transition(State.UNHEALTHY, why)
        if tracker.too_many():
            self._report(inst, "unhealthy")
            reason = (
                f"crashed {n} times within {self.cfg.crash_window_s:.0f} s (last: {why}); "
                f"see `swarm logs {inst.id}`, then `swarm down` and `swarm up` again"
            )
            log.error("instance %s failed: %s", inst.id, reason)
            self._spawn(inst, self._fail(inst, reason))
            return
        delay = tracker.backoff()
        inst.restarts += 1
        self._report(inst, "unhealthy")
        inst.reason = why
        log.warning("instance %s %s; restart %d in %.1f s", inst.id, why, inst.restarts, delay)
        self._spawn(inst, self._restart(inst, delay))

    async def _restart(self, inst: Instance, delay: float) -> None:
        await inst.kill_process(self.cfg.stop_grace_s)  # a hung one is still running
        await asyncio.sleep(delay)
        try:
            await self._start_one(inst)
        except ProcessError as exc:  # left UNHEALTHY (or FAILED): the next tick decides
            log.warning("%s", exc)
        else:
            log.info("instance %s: ready again after restart %d", inst.id, inst.restarts)

    async def _fail(self, inst: Instance, reason: str) -> None:
        await inst.kill_process(self.cfg.stop_grace_s)
        inst.transition(State.FAILED, reason)
        self._report(inst, "failed")

    def _memory_guard(self) -> None:
        if (found := self.guard.victim(i for i in self.instances.values() if i.state in _LIVE)) is None:
            return
        newest, reason = found
        old = self._tasks.pop(newest.id, None)
        if old is not None:
            old.cancel()
        self._report(newest, "stopped")
        self._spawn(newest, self._guard_stop(newest, old, reason))

    async def _guard_stop(self, inst: Instance, old: asyncio.Task[None] | None, reason: str) -> None:
        if old is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await old
        await inst.stop(self.cfg.stop_grace_s, reason)
        self._report(inst, "removed")

    # ------------------------------------------------------------------ status

    @property
    def base_url(self) -> str | None:
        return base_url(self.spec.proxy_host, self.proxy_port)

    def record(self) -> RunRecord:
        """What the run file holds (no live measurements): status.py."""
        return build_record(self)

    def snapshot(self) -> dict[str, Any]:
        """What ``swarm ps --json`` and the proxy's /swarm/status show: the record plus memory."""
        return live_snapshot(self.record(), self.vram.by_pid())

    def save(self, publish: bool = False) -> None:
        """Write the record if it changed, and publish the status (also when ``publish``)."""
        rec = self.record()
        if rec == self._saved and not publish:
            return
        if rec != self._saved and self.writer is not None:
            self.writer.submit(rec)  # written off the event loop (writer.py)
        self._saved = rec
        if self.on_event is not None:
            self.on_event(StatusEvent(live_snapshot(rec, self.vram.by_pid())))

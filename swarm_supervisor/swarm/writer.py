"""The supervisor's run-file writes, off the event loop.

The run file's lock can be held by another command (``swarm ps``, ``swarm down``, a stuck
editor) and ``fsync`` can take seconds on a busy disk; neither may freeze the proxy or the health
loop that share the supervisor's event loop. So the supervisor only *submits* records; one task
writes the newest in a worker thread, with a short lock timeout, and tries again a moment later
when the lock stays busy or the disk fails::

    writer = RunFileWriter(rf)
    writer.submit(record)      # returns at once; the newest record wins
    writer.verify()            # once per health round: rewrite the file if it was deleted or damaged
    await writer.flush()       # wait until the newest record is on disk (start-up, shutdown)
    await writer.close()       # flush, then stop (before the run file is removed)

``verify`` is what makes a deleted or damaged run file heal itself while the swarm runs: the
writer remembers the file it wrote (inode, size, mtime) and rewrites it when that changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..errors import SwarmStateError
from .record import RunRecord
from .runfile import RunFile

log = logging.getLogger(__name__)

#: seconds the supervisor waits for the run file's lock before it tries again later
LOCK_TIMEOUT_S = 2.0
#: seconds between two attempts after a failed write
RETRY_S = 1.0


class RunFileWriter:
    def __init__(
        self, rf: RunFile, *, lock_timeout_s: float = LOCK_TIMEOUT_S, retry_s: float = RETRY_S
    ) -> None:
        self.rf = rf
        self.lock_timeout_s = lock_timeout_s
        self.retry_s = retry_s
        self._want: RunRecord | None = None
        self._dirty = False
        self._check = False
        self._written: tuple[int, int, int] | None = None  # (inode, size, mtime_ns) of our last write
        self._failures = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Future[bool] | None = None
        self._closed = False

    # ------------------------------------------------------------------ the loop's side

    def submit(self, record: RunRecord) -> None:
        """Write ``record`` soon (a newer one submitted meanwhile replaces it)."""
        if self._closed:
            return
        self._want = record
        self._dirty = True
        self._kick()

    def verify(self) -> None:
        """Rewrite the run file soon if someone deleted or changed it."""
        if self._closed or self._written is None:
            return
        self._check = True
        self._kick()

    @property
    def failing(self) -> bool:
        """True while the last attempt to write failed."""
        return self._failures > 0

    def _kick(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not (self._dirty or self._check):
                continue
            ok = await self._once()
            if not ok:
                await asyncio.sleep(self.retry_s)
                self._wake.set()

    async def _once(self) -> bool:
        record, force = self._want, self._dirty
        self._dirty = self._check = False
        self._inflight = asyncio.ensure_future(asyncio.to_thread(self._io, record, force))
        ok = await asyncio.shield(self._inflight)
        self._inflight = None
        if not ok and force:
            self._dirty = True
        elif not ok:
            self._check = True
        return ok

    async def flush(self, attempts: int = 3) -> bool:
        """Wait until the newest record is on disk (at most ``attempts`` tries); True when it is."""
        for _ in range(attempts):
            while self._inflight is not None and not self._inflight.done():
                await asyncio.shield(self._inflight)
            if not self._dirty:
                return True
            if await self._once():
                return True
            await asyncio.sleep(self.retry_s)
        return not self._dirty

    async def close(self) -> None:
        """Write what is pending, then stop: nothing is written after this returns."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        self._closed = True

    # ------------------------------------------------------------------ the worker thread

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.rf.path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _io(self, record: RunRecord | None, force: bool) -> bool:
        if record is None:
            return True
        if not force and self._written is not None and self._stat() == self._written:
            return True  # intact: nothing to do, and no lock taken
        try:
            with self.rf.lock(self.lock_timeout_s):
                if not force:
                    log.warning("the run file %s was deleted or changed; writing it again", self.rf.path)
                self.rf.write(record)
                # deleted in the instant after the write: a stamp no file has, so that the next
                # check writes it again (None would switch the checks off for good)
                self._written = self._stat() or (-1, -1, -1)
        except (SwarmStateError, OSError) as exc:
            self._failures += 1
            if self._failures == 1 or self._failures % 30 == 0:
                log.warning("cannot write the run file %s (%s); trying again", self.rf.path, exc)
            return False
        if self._failures:
            log.info("the run file %s is written again after %d failures", self.rf.path, self._failures)
        self._failures = 0
        return True

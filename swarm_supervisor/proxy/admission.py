"""Admission: how many voted requests run at once, and a fair queue for the rest.

A voted request takes ``per_request`` slots on every process; a process with ``slots`` slots
therefore runs ``slots // per_request`` votes at once (the plan's ``concurrency``). Beyond that a
request waits here, first come first served, instead of being half-placed by llama-server (some
of its voters in free slots, the rest deferred behind another session's). A client that leaves
while waiting gives its place up.

    gate = Admission(pool.concurrency)
    async with gate.turn():
        ballot = await fan_out(...)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager


class Admission:
    """At most ``capacity()`` holders at once; the others wait in arrival order."""

    def __init__(self, capacity: Callable[[], int]) -> None:
        self._capacity = capacity
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def active(self) -> int:
        return self._active

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold one place while the block runs; wait for it (FIFO) when all are taken."""
        await self._acquire()
        try:
            yield
        finally:
            self._active -= 1
            self._wake()

    async def _acquire(self) -> None:
        self._wake()
        if not self._waiters and self._active < max(1, self._capacity()):
            self._active += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # _wake counted us in before it woke us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._active -= 1  # woken and cancelled at once: give the place on
                self._wake()
            else:
                self._waiters.remove(waiter)
            raise

    def _wake(self) -> None:
        while self._waiters and self._active < max(1, self._capacity()):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._active += 1
                waiter.set_result(None)

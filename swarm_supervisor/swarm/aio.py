"""Small asyncio helpers of the supervisor."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> tuple[bool, T | None]:
    """Await ``work`` unless ``stop`` is set first: (True, its result), or (False, None) after
    cancelling it."""
    task: asyncio.Future[T] = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    waiting: list[asyncio.Future[Any]] = [task, stopped]
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if task.done():
        return True, task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False, None


def call_on_exit(pid: int, callback: Callable[[], None]) -> bool:
    """Have the running event loop call ``callback`` once process ``pid`` exits (a pidfd turns
    readable then: Linux 5.3 and later). False where that cannot be watched (no pidfds, no running
    loop, the process gone already): the caller's own polling sees the exit then."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return False
    try:
        loop = asyncio.get_running_loop()
        fd = opener(pid)
    except (RuntimeError, OSError):
        return False

    def exited() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        callback()

    try:
        loop.add_reader(fd, exited)
    except (OSError, NotImplementedError):
        os.close(fd)
        return False
    return True

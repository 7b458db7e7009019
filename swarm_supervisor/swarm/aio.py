"""Small asyncio helpers of the supervisor."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
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

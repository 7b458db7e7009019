"""Progress reporting for downloads and builds: a rich bar on a terminal, plain lines elsewhere.

bin_fetch talks to one small interface, :class:`Progress`; callers pick the rendering::

    from rich.console import Console
    progress = make_progress(Console(stderr=True))
    binary = find_or_fetch(req, progress)

One task runs at a time: ``start`` it, ``update`` it with the completed amount (bytes or build
steps), ``stop`` it. ``note`` prints a one-line status message.
"""

from __future__ import annotations

from typing import Literal, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichBar

Unit = Literal["bytes", "steps"]


class Progress(Protocol):
    """What bin_fetch reports to. All methods must be cheap; they are called per chunk/line."""

    def start(self, description: str, total: float | None, unit: Unit) -> None: ...

    def update(self, completed: float, total: float | None = None) -> None: ...

    def stop(self) -> None: ...

    def note(self, message: str) -> None: ...


class NullProgress:
    """Reports nothing (the default when the caller passes no progress)."""

    def start(self, description: str, total: float | None, unit: Unit) -> None:
        return None

    def update(self, completed: float, total: float | None = None) -> None:
        return None

    def stop(self) -> None:
        return None

    def note(self, message: str) -> None:
        return None


def _fmt(amount: float, unit: Unit) -> str:
    if unit == "steps":
        return str(int(amount))
    return f"{amount / 1e6:.1f} MB"


class PlainProgress:
    """Plain lines, one per tenth of the task (for logs, CI and pipes)."""

    def __init__(self, console: Console, *, every: float = 0.1) -> None:
        self._console = console
        self._every = every
        self._desc = ""
        self._total: float | None = None
        self._unit: Unit = "bytes"
        self._next = 0.0
        self._last = 0.0

    def start(self, description: str, total: float | None, unit: Unit) -> None:
        self._desc, self._total, self._unit = description, total, unit
        self._next, self._last = self._every, 0.0
        size = f" ({_fmt(total, unit)}{' steps' if unit == 'steps' else ''})" if total else ""
        self._console.print(f"{description}{size} ...", highlight=False, markup=False)

    def update(self, completed: float, total: float | None = None) -> None:
        if total:
            self._total = total
        self._last = completed
        if not self._total:
            return
        fraction = completed / self._total
        if fraction >= self._next and fraction < 1.0:
            self._console.print(
                f"{self._desc}: {fraction:4.0%} ({_fmt(completed, self._unit)} of "
                f"{_fmt(self._total, self._unit)})",
                highlight=False,
                markup=False,
            )
            while self._next <= fraction:
                self._next += self._every

    def stop(self) -> None:
        self._console.print(
            f"{self._desc}: done ({_fmt(self._last, self._unit)})", highlight=False, markup=False
        )

    def note(self, message: str) -> None:
        self._console.print(message, highlight=False, markup=False)


class RichProgress:
    """A live rich progress bar (bytes: size and speed; build steps: n of N)."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._bar: RichBar | None = None
        self._task: TaskID | None = None

    def start(self, description: str, total: float | None, unit: Unit) -> None:
        self.stop()
        columns: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn()]
        if unit == "bytes":
            columns += [DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
        else:
            columns += [MofNCompleteColumn(), TimeElapsedColumn()]
        self._bar = RichBar(*columns, console=self._console)
        self._bar.start()
        self._task = self._bar.add_task(description, total=total)

    def update(self, completed: float, total: float | None = None) -> None:
        if self._bar is not None and self._task is not None:
            if total is not None:
                self._bar.update(self._task, completed=completed, total=total)
            else:
                self._bar.update(self._task, completed=completed)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        self._bar, self._task = None, None

    def note(self, message: str) -> None:
        self._console.print(message, highlight=False, markup=False)


def make_progress(console: Console | None = None) -> Progress:
    """A rich bar when ``console`` is a terminal, plain lines otherwise (stderr by default)."""
    console = console or Console(stderr=True)
    if console.is_terminal:
        return RichProgress(console)
    return PlainProgress(console)

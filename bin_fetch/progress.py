"""Progress reporting for downloads and builds: a rich bar on a terminal, plain lines elsewhere.

bin_fetch talks to one small interface, :class:`Progress`; callers pick the rendering::

    from rich.console import Console
    progress = make_progress(Console(stderr=True))
    binary = find_or_fetch(req, progress)

One task runs at a time: ``start`` it, ``update`` it with the completed amount (bytes, build
steps, or percent), ``stop`` it. ``note`` prints a one-line status message.

A build says how far it is and how long it has left: steps done against the total (ninja's
``[n/N]``, or cmake's ``[NN%]`` with make), the time per step so far and the estimate it gives
(:func:`estimate`). On a terminal that is the bar's columns; in a log (:class:`PlainProgress`) a
line every tenth of the task and at least every 30 s, whichever comes first, so that a long
compile step does not look like a hang.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichBar
from rich.text import Text

Unit = Literal["bytes", "steps", "percent"]


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
    if unit == "percent":
        return f"{amount:.0f}%"
    return f"{amount / 1e6:.1f} MB"


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def estimate(done: float, total: float, elapsed_s: float, unit: Unit = "steps") -> str:
    """``"45 of 272 steps, 3.2 s per step so far, about 12 min 06 s left"``: where a build is, from
    the time its steps took so far (no estimate before the first step is done)."""
    step = "step" if unit == "steps" else "1%"
    where = f"{_fmt(done, unit)} of {_fmt(total, unit)}{' steps' if unit == 'steps' else ''}"
    if done <= 0 or elapsed_s <= 0:
        return f"{where}, no estimate yet"
    per = elapsed_s / done
    left = per * max(0.0, total - done)
    return f"{where}, {per:.1f} s per {step} so far, about {format_seconds(left)} left"


class PlainProgress:
    """Plain lines (for logs, CI and pipes): one per tenth of the task, and for build steps at
    least one every ``every_s`` seconds, with the estimate of :func:`estimate`."""

    def __init__(
        self,
        console: Console,
        *,
        every: float = 0.1,
        every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        ticker: bool = True,
    ) -> None:
        self._console = console
        self._every = every
        self._every_s = every_s
        self._clock = clock
        self._use_ticker = ticker  # False: lines only when the build prints one (tests)
        self._desc = ""
        self._total: float | None = None
        self._unit: Unit = "bytes"
        self._next = 0.0
        self._last = 0.0
        self._started = 0.0
        self._printed = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def start(self, description: str, total: float | None, unit: Unit) -> None:
        self.stop_ticker()
        self._desc, self._total, self._unit = description, total, unit
        self._next, self._last = self._every, 0.0
        self._started = self._printed = self._clock()
        size = f" ({_fmt(total, unit)}{' steps' if unit == 'steps' else ''})" if total else ""
        self._print(f"{description}{size} ...")
        if unit != "bytes" and self._every_s > 0 and self._use_ticker:
            self._stop = threading.Event()
            self._ticker = threading.Thread(target=self._tick, name="build-progress", daemon=True)
            self._ticker.start()

    def _line(self) -> str:
        assert self._total
        fraction = self._last / self._total
        if self._unit == "bytes":
            return (
                f"{self._desc}: {fraction:4.0%} ({_fmt(self._last, self._unit)} of "
                f"{_fmt(self._total, self._unit)})"
            )
        elapsed = self._clock() - self._started
        return (
            f"{self._desc}: {fraction:4.0%} ({estimate(self._last, self._total, elapsed, self._unit)}; "
            f"{format_seconds(elapsed)} so far)"
        )

    def _print(self, text: str) -> None:
        self._printed = self._clock()
        self._console.print(text, highlight=False, markup=False)

    def update(self, completed: float, total: float | None = None) -> None:
        with self._lock:
            if total:
                self._total = total
            self._last = completed
            if not self._total:
                return
            fraction = completed / self._total
            if fraction >= 1.0:
                return
            due = (
                self._unit != "bytes" and self._every_s > 0 and self._clock() - self._printed >= self._every_s
            )
            if fraction >= self._next or due:
                self._print(self._line())
                while self._next <= fraction:
                    self._next += self._every

    def _tick(self) -> None:
        """A line when nothing was printed for ``every_s`` (one compile step can take minutes)."""
        while not self._stop.wait(min(self._every_s, 1.0)):
            with self._lock:
                if self._total and self._clock() - self._printed >= self._every_s:
                    self._print(self._line())

    def stop_ticker(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self._ticker = None

    def stop(self) -> None:
        self.stop_ticker()
        took = f" in {format_seconds(self._clock() - self._started)}" if self._unit != "bytes" else ""
        self._print(f"{self._desc}: done ({_fmt(self._last, self._unit)}){took}")

    def note(self, message: str) -> None:
        self._console.print(message, highlight=False, markup=False)


class StepEstimateColumn(ProgressColumn):
    """The time per step so far and what it leaves (:func:`estimate`), for the rich bar."""

    def __init__(self, unit: Unit) -> None:
        super().__init__()
        self._unit = unit

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        if not task.completed or not task.total or elapsed <= 0:
            return Text("estimating ...", style="progress.remaining")
        per = elapsed / task.completed
        left = per * max(0.0, task.total - task.completed)
        step = "step" if self._unit == "steps" else "1%"
        return Text(f"{per:.1f} s/{step}, ~{format_seconds(left)} left", style="progress.remaining")


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
            columns += [MofNCompleteColumn(), TimeElapsedColumn(), StepEstimateColumn(unit)]
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

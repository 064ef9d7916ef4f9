"""Long work is written as generators that yield progress and return a result (see STYLE.md).

Widgets run them in a thread worker; the CLI, scripts and tests drive them with :func:`drain`.
"""

import time
from collections.abc import Callable, Generator
from typing import TypeVar

R = TypeVar("R")
Y = TypeVar("Y")


def drain(gen: Generator[Y, None, R], on_step: Callable[[Y], object] | None = None) -> R:
    """Run a progress generator to the end and return its return value.

    ``on_step``, if given, is called with every yielded item (a progress bar's update).
    """
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_step is not None:
            on_step(item)


def _now() -> float:
    return time.monotonic()


class Eta:
    """Rate and time left of long work, from the work done in this process only.

    A resumed run starts with work already done (cells of a study finished by an earlier run or
    another process): counted into ``done``, that jump would make the rate look huge and the
    time left zero. :meth:`update` takes the part done elsewhere separately, so the rate is
    this process's own: ``(done - before) / seconds since this process started``.

    Parameters
    ----------
    total : float
        All the work, in any unit (epochs for a study).
    clock : callable, optional
        Seconds, monotonic (default :func:`time.monotonic`); tests pass a scripted clock.
    """

    def __init__(self, total: float, clock: Callable[[], float] | None = None) -> None:
        self.clock = clock or _now
        self.start = self.clock()
        self.total = float(total)
        self.done = self.before = 0.0

    def update(self, done: float, before: float = 0.0) -> None:
        """``done`` of the work is finished, ``before`` of it not by this process."""
        self.done, self.before = float(done), float(before)

    def rate(self) -> float | None:
        """Work per second done by this process, or None before it has done any."""
        mine, elapsed = self.done - self.before, self.clock() - self.start
        return mine / elapsed if mine > 0 and elapsed > 0 else None

    def seconds_left(self) -> float | None:
        """Seconds to finish at this process's rate, or None while the rate is unknown."""
        rate = self.rate()
        return None if rate is None else max(self.total - self.done, 0.0) / rate

    def describe(self, unit: str) -> str:
        """``"12/60 epochs, 0.50 epoch/min, 1:36:00 left"`` (``"time left unknown"`` at first)."""
        head = f"{self.done:.0f}/{self.total:.0f} {unit}s"
        rate, left = self.rate(), self.seconds_left()
        if rate is None or left is None:
            return f"{head}, time left unknown"
        per = f"{rate:.2f} {unit}/s" if rate >= 0.5 else f"{rate * 60:.2f} {unit}/min"
        return f"{head}, {per}, {_clock_text(left)} left"


def _clock_text(seconds: float) -> str:
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"

"""Long work is written as generators that yield progress and return a result (see STYLE.md).

Widgets run them in a thread worker; the CLI, scripts and tests drive them with :func:`drain`.
"""

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

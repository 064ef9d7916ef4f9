"""Long work is written as generators that yield progress and return a result (see STYLE.md).

Widgets run them in a thread worker; the CLI, scripts and tests drive them with :func:`drain`.
"""

from collections.abc import Generator
from typing import Any, TypeVar

R = TypeVar("R")


def drain(gen: Generator[Any, None, R]) -> R:
    """Run a progress generator to the end and return its return value."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value

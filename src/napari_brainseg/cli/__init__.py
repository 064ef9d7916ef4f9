"""The ``brainseg`` command line: an adapter over the core (torch is imported lazily).

Exit codes: 0 success, 1 some inputs failed (each reported on stderr), 2 bad usage.
"""

from ._common import RANGES, check_ranges
from .parser import build_parser, main

__all__ = ["RANGES", "build_parser", "check_ranges", "main"]

"""``python -m napari_brainseg.cli``: the same as ``brainseg``."""

import sys

from .parser import main

sys.exit(main())

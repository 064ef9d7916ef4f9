"""napari widgets: thin adapters that read layers, run one core generator in a worker, add layers.

Numerics live in the core; a widget here only wires layers, parameters, a progress bar and a
cancel button to a core generator (see shared/STYLE.md, "Long work").
"""

from .correct import FinetuneWidget
from .panel import BrainSegPanel
from .segment import DEMO_CHOICE, FILE_CHOICE, BatchSegmentWidget, SegmentWidget
from .skullstrip import SkullStripWidget
from .train import RECENT_MODELS, LossPlot, TrainWidget

__all__ = ["DEMO_CHOICE", "FILE_CHOICE", "RECENT_MODELS", "BatchSegmentWidget", "BrainSegPanel",
           "FinetuneWidget", "LossPlot", "SegmentWidget", "SkullStripWidget", "TrainWidget"]

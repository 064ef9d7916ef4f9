"""The one panel: the four widgets as tabs, each in a scroll area, so it fits a laptop screen."""

from typing import Any

import napari
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from ._base import _StopWhenClosed
from .correct import FinetuneWidget
from .segment import BatchSegmentWidget, SegmentWidget
from .skullstrip import SkullStripWidget
from .train import TrainWidget

#: Tallest the panel asks to be: a 1280 x 800 screen minus the title, menu and status bars.
MAX_PANEL_HEIGHT = 640


def _scrolled(inner: QWidget) -> QScrollArea:
    """``inner`` in a vertical scroll area as wide as ``inner`` needs (no sideways scrolling)."""
    area = QScrollArea()
    area.setWidget(inner)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    bar = area.verticalScrollBar().sizeHint().width()
    area.setMinimumWidth(inner.minimumSizeHint().width() + bar + 4)
    return area


class BrainSegPanel(QTabWidget):
    """Skull strip, Segment, Correct & train and Batch as tabs of one dock widget.

    The same widgets as the Plugins menu's separate entries; each tab scrolls, so the panel
    fits a 1280 x 800 screen beside the layer list.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.skull_strip = SkullStripWidget(viewer)
        self.segment = SegmentWidget(viewer)
        self.finetune = FinetuneWidget(viewer)
        self.train = TrainWidget(viewer)
        self.batch = BatchSegmentWidget(viewer)
        correct = QWidget()  # the quick path (fine-tune on corrections) above full training
        box = QVBoxLayout(correct)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.finetune.native)
        box.addWidget(self.train.native)
        for title, native in (("Skull strip", self.skull_strip.native),
                              ("Segment", self.segment.native), ("Correct && train", correct),
                              ("Batch", self.batch.native)):
            self.addTab(_scrolled(native), title)
        self.setCurrentIndex(1)  # segmenting is what most people come for
        # The tabs' own close watch sees no Close or un-parenting when the dock closes the
        # panel, so the panel watches for them.
        self._close_watch = _StopWhenClosed(self)
        self.installEventFilter(self._close_watch)

    @property
    def widgets(self) -> list[Any]:
        """The tab widgets (magicgui containers), in tab order."""
        return [self.skull_strip, self.segment, self.finetune, self.train, self.batch]

    def sizeHint(self) -> Any:  # noqa: N802 (Qt's name)
        """Qt's hint, never taller than :data:`MAX_PANEL_HEIGHT` (the tabs scroll)."""
        hint = super().sizeHint()
        hint.setHeight(min(hint.height(), MAX_PANEL_HEIGHT))
        return hint

    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer lists of every tab (napari calls this when layers change)."""
        for w in self.widgets:
            w.reset_choices()

    def cancel(self) -> None:
        """Stop every tab's running job."""
        for w in self.widgets:
            w.cancel()

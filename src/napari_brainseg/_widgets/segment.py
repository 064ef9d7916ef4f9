"""Segment and Batch segment widgets."""

from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSlider,
    FloatSpinBox,
    ProgressBar,
    create_widget,
)
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QAbstractItemView, QStyledItemDelegate

from napari_brainseg import _writer
from napari_brainseg._reader import prediction_colormap
from napari_brainseg.lesions import UNIT_TEXT

from ._base import _grey_data, _layer_scale, _WorkerWidget
from .train import NEW_MODELS, RECENT_MODELS

# --------------------------------------------------------------------------- segmentation

DEMO_CHOICE = "built-in model (CE-T1)"
TABLE_COLUMNS = ["file", "status", "tumour", "Dice", "uncertainty", "seconds", "error"]
FILE_CHOICE = "checkpoint file below"
#: Skull strip before segmenting (when no brain mask layer is chosen): auto strips volumes only.
SKULL_CHOICES = {"volumes only (auto)": None, "always": True, "never": False}


def _columns(rows: list[list[str]]) -> dict[str, list[str]]:
    """Rows as magicgui's column dict (its split format mislabels an empty table)."""
    return {c: [r[i] for r in rows] for i, c in enumerate(TABLE_COLUMNS)}


def _model_choices(*_: Any) -> list[str]:
    """Demo model, the models trained in this session (newest first), or a file."""
    return [DEMO_CHOICE, *reversed(RECENT_MODELS), FILE_CHOICE]


class _ModelPicker(Container):
    """Model choice shared by the segment and batch widgets."""

    def __init__(self) -> None:
        from magicgui.widgets import FileEdit

        self.choice = ComboBox(choices=_model_choices, label="model")
        # Long model paths (fine-tuned versions) must not widen the panel past the screen.
        from qtpy.QtWidgets import QComboBox

        self.choice.native.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.choice.native.setMinimumContentsLength(24)
        self.file = FileEdit(mode="r", filter="*.pt", label="checkpoint")
        super().__init__(widgets=[self.choice, self.file], labels=True)
        NEW_MODELS.added.connect(self._choose_new)  # a weak reference: no leak when closed

    def _choose_new(self, path: str) -> None:
        """A model just trained or fine-tuned in this session becomes the choice."""
        try:
            self.choice.reset_choices()
            self.choice.value = path
        except RuntimeError:  # its Qt widget went with a closed viewer
            NEW_MODELS.added.disconnect(self._choose_new)

    def path(self) -> str:
        """'demo' or a checkpoint path; raises ValueError when none is usable."""
        value = self.choice.value
        if value == DEMO_CHOICE:
            return "demo"
        if value == FILE_CHOICE:
            p = Path(str(self.file.value))
            if not p.is_file():
                raise ValueError("choose a checkpoint file (.pt) or the built-in demo model")
            return str(p)
        return str(value)


def _geometry_known(meta: dict[str, Any], scale: tuple[float, ...]) -> bool:
    """Whether a layer's scale is a real pixel size (as :attr:`Volume.has_geometry` says).

    Real: an affine from the file, a header's pixel size (a one-slice NIfTI or DICOM, even at
    1 x 1 mm: the reader marks it ``pixel_spacing``), or a scale someone set. A PNG's layer has
    1 x 1 placeholder pixels: the model then guesses the pixel size, and sizes are pixels.
    """
    return (meta.get("affine") is not None or bool(meta.get("pixel_spacing"))
            or any(float(v) != 1.0 for v in scale))


def _segment_options(w: Any) -> Any:
    from napari_brainseg.predict import SegmentOptions

    threshold = None if w.own_threshold.value else float(w.threshold.value)
    return SegmentOptions(threshold=threshold, tta=bool(w.tta.value),
                          min_area_mm2=float(w.min_area.value), keep=w.keep.value)


def _option_widgets(w: Any) -> list[Any]:
    w.tta = CheckBox(value=False, text="test-time augmentation (flips, 4x slower)")
    w.own_threshold = CheckBox(value=True, text="the model's own threshold (built-in: 0.6)")
    # Shown only when the user sets the threshold: a greyed value would be wrong for any
    # model but the built-in one (each records its own; reading it means loading the model).
    w.threshold = FloatSlider(value=0.6, min=0.05, max=0.95, step=0.05, label="threshold",
                              visible=False)
    w.own_threshold.changed.connect(lambda on: setattr(w.threshold, "visible", not on))
    w.min_area = FloatSpinBox(value=10.0, min=0.0, max=10_000.0, step=5.0,
                              label="min area (mm²)")
    w.keep = ComboBox(choices=["all", "largest"], value="all", label="keep components")
    return [w.tta, w.own_threshold, w.threshold, w.min_area, w.keep]


class SegmentWidget(_WorkerWidget):
    """Segment an Image layer into a new, editable "<image> prediction" Labels layer.

    Every run adds a new layer, so labels you have corrected are never overwritten.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer, "Segment", self._segment_job)
        from magicgui.widgets import SpinBox

        self.image = create_widget(annotation=Image, label="image")
        self.brain = create_widget(annotation=Labels | None, label="brain mask (optional)",
                                   options={"nullable": True})
        self.model = _ModelPicker()
        self.axis = SpinBox(value=0, min=0, max=2, label="slice axis (volumes)")
        self.skull = ComboBox(choices=list(SKULL_CHOICES), value=next(iter(SKULL_CHOICES)),
                              label="skull strip first")
        self.show_prob = CheckBox(value=False, text="also add the probability map")
        self.uncertain = CheckBox(value=False, text="uncertainty (4 flips, ~4x slower)")
        self.uncertain.tooltip = ("score how sure the model is on every pixel and slice, to "
                                  "review the least certain slices first")
        self.lesions = LesionTable(viewer)
        self.review = UncertainSlices(viewer)
        self.extend([self.image, self.brain, self.model, *_option_widgets(self), self.axis,
                     self.skull, self.show_prob, self.uncertain, *self._controls(),
                     self.review, self.lesions])

    def _segment_job(self) -> Any:
        from napari_brainseg.predict import Predictor, iter_segment_scan

        layer = self.image.value
        data = _grey_data(layer, "segmenting")
        if data is None:
            return None
        brain = None
        if self.brain.value is not None:
            brain = np.asarray(self.brain.value.data) > 0
            if brain.shape != data.shape:
                show_error(f"napari-brainseg: brain mask {brain.shape} does not match the image "
                           f"{data.shape}.")
                return None
        try:  # loading is quick; doing it here makes a bad checkpoint a plain notification
            predictor = Predictor.from_checkpoint(self.model.path(), _segment_options(self))
        except ValueError as exc:
            show_error(f"napari-brainseg: {exc}")
            return None
        scale = _layer_scale(layer)
        axis = int(self.axis.value)
        keep_prob = bool(self.show_prob.value)
        skull = SKULL_CHOICES[self.skull.value]
        want_uncertainty = bool(self.uncertain.value)
        model_path = self.model.path()
        name, meta, full_scale = layer.name, dict(layer.metadata), layer.scale
        affine = meta.get("affine")
        affine = np.asarray(affine) if affine is not None else None
        known = _geometry_known(meta, scale)

        def job() -> Any:
            from napari_brainseg.metrics import lesion_table

            result = yield from iter_segment_scan(
                predictor, data, scale, affine=affine, geometry_known=known,
                brain_mask=brain, skull_strip=skull, axis=axis, keep_probability=True)
            unc = None
            if want_uncertainty:
                from napari_brainseg.uncertainty import iter_uncertainty

                unc = yield from iter_uncertainty(
                    predictor, data, scale, axis=axis, geometry_known=known,
                    brain_mask=brain if brain is not None else result.brain,
                    features=data.ndim == 3)  # for the diverse review order
            return result, lesion_table(result.mask, scale, result.probability), unc

        def done(out: Any) -> None:
            if out is None:
                return
            result, lesions, unc = out
            # What the model said, kept beside the layer: the slices the user then changes
            # are the corrections (Correct & train > Fine-tune on corrected slices).
            pred_meta = {**meta, PREDICTION_KEY: result.mask.copy(), "brainseg_axis": axis,
                         "brainseg_model": model_path}
            layer = self.viewer.add_labels(result.mask, name=f"{name} prediction",
                                           scale=full_scale, metadata=pred_meta, opacity=0.6,
                                           colormap=prediction_colormap())
            if result.brain is not None:
                self.viewer.add_labels(result.brain.astype(np.uint8), name=f"{name} brain",
                                       scale=full_scale, metadata=meta, opacity=0.25,
                                       visible=False)
            if unc is not None:
                self.viewer.add_image(unc.map.astype(np.float32), name=f"{name} uncertainty",
                                      scale=full_scale, colormap="inferno",
                                      blending="additive", contrast_limits=(0, 1),
                                      visible=False)
            self.review.show(unc, layer, axis)
            show_largest_lesion(self.viewer, layer, result.mask)
            self.lesions.show(lesions, layer, known=known)
            if result.warning:
                show_warning(f"napari-brainseg: {result.warning}")
            if keep_prob and result.probability is not None:
                self.viewer.add_image(result.probability, name=f"{name} tumour probability",
                                      scale=full_scale, colormap="magma", blending="additive",
                                      contrast_limits=(0, 1), visible=False)
            unit = UNIT_TEXT[result.unit]
            where = ""
            if result.mask.ndim == 3 and result.voxels:
                where = f"; slice {viewer_slice(self.viewer)}"  # the largest lesion's centre
            if result.unit in ("px", "vox"):  # no pixel size: the count is the size
                self.status.value = f"tumour: {result.voxels:,} {unit}{where}"
            else:
                self.status.value = (f"tumour: {result.size_mm:,.0f} {unit}, "
                                     f"{result.voxels:,} voxels{where}")

        return job(), done


#: Layer metadata key holding the model's own mask, to tell corrected slices from the rest
#: (the writer marks a saved prediction corrected by it).
PREDICTION_KEY = _writer.PREDICTION_KEY


def go_to_slice(viewer: napari.viewer.Viewer, layer: Labels, axis: int, index: int) -> None:
    """Move the viewer's slider for ``layer``'s ``axis`` to slice ``index``."""
    lead = viewer.dims.ndim - layer.data.ndim
    world = index * layer.scale[axis] + layer.translate[axis]
    viewer.dims.set_point(lead + axis, world)


class UncertainSlices(Container):
    """Review in order: previous / next most uncertain slice, and which slices were corrected.

    A slice counts as corrected once its labels differ from what the model predicted
    (:func:`napari_brainseg.correction.corrected_slices`).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from magicgui.widgets import Label, PushButton

        self.viewer = viewer
        self.ranked: list[int] = []
        self.pos = -1
        self.layer: Labels | None = None
        self.axis = 0
        self._update_pending = False
        self.prev_button = PushButton(text="< previous", enabled=False)
        self.next_button = PushButton(text="most uncertain next >", enabled=False)
        self.info = Label(value="")
        self.prev_button.changed.connect(lambda *_: self.step(-1))
        self.next_button.changed.connect(lambda *_: self.step(1))
        buttons = Container(widgets=[self.prev_button, self.next_button], layout="horizontal",
                            labels=False)
        buttons.margins = (0, 0, 0, 0)
        super().__init__(widgets=[buttons, self.info], labels=False)
        self.margins = (0, 0, 0, 0)
        viewer.dims.events.current_step.connect(self._update_info)

    def show(self, unc: Any, layer: Labels, axis: int) -> None:
        """Rank the slices of ``layer`` by the uncertainty result ``unc`` (None: no ranking)."""
        self.layer, self.axis, self.pos = layer, axis, -1
        # Uncertain *and* unlike each other, 8 at a time (uncertainty.select_slices): in
        # benchmarks/correction_loop.py this order beat "most uncertain first" on average.
        self.ranked = (unc.ranked_slices(diverse=unc.features is not None)
                       if unc is not None and layer.data.ndim == 3 else [])
        enabled = bool(self.ranked)
        self.prev_button.enabled = self.next_button.enabled = enabled
        # napari emits paint before a polygon or a programmatic paint reaches the data, and
        # undo/redo emit only set_data: count the corrected slices once the edit is done.
        layer.events.paint.connect(self._update_soon)
        layer.events.set_data.connect(self._update_soon)
        self._update_info()

    def _update_soon(self, *_: Any) -> None:
        from qtpy.QtCore import QTimer

        if not self._update_pending:  # one count for a burst of events (a slider move)
            self._update_pending = True
            QTimer.singleShot(0, self._update_now)

    def _update_now(self) -> None:
        self._update_pending = False
        self._update_info()

    def corrected(self) -> list[int]:
        """Slices of the layer whose labels differ from the model's prediction."""
        from napari_brainseg.correction import corrected_slices

        if self.layer is None or PREDICTION_KEY not in self.layer.metadata:
            return []
        return corrected_slices(self.layer.metadata[PREDICTION_KEY], self.layer.data,
                                self.axis)

    def step(self, direction: int) -> None:
        """Go to the next (``+1``) or previous (``-1``) slice in uncertainty order."""
        if not self.ranked or self.layer is None or self.layer not in self.viewer.layers:
            return
        self.pos = int(np.clip(self.pos + direction, 0, len(self.ranked) - 1))
        go_to_slice(self.viewer, self.layer, self.axis, self.ranked[self.pos])
        self.viewer.layers.selection.active = self.layer
        self._update_info()

    def _update_info(self, *_: Any) -> None:
        if self.layer is None or self.layer not in self.viewer.layers:
            self.info.value = ""
            return
        fixed = self.corrected()
        text = f"corrected slices: {len(fixed)}"
        if self.layer.data.ndim == 3:
            lead = self.viewer.dims.ndim - self.layer.data.ndim
            here = int(self.viewer.dims.current_step[lead + self.axis])
            if self.ranked and here in self.ranked:
                text = (f"slice {here}: uncertainty rank {self.ranked.index(here) + 1}"
                        f"/{len(self.ranked)}; " + text)
            if here in fixed:
                text += f" (slice {here} corrected)"
        elif fixed:
            text = "this slice is corrected"
        self.info.value = text


#: Lesion table columns: number, volume or area, longest diameter (mm), mean tumour
#: probability, slice range (first-last).
LESION_COLUMNS = ["#", "size", "diameter", "mean p", "slices"]
HIGHLIGHT = "lesion highlight"


class LesionTable(Container):
    """The lesions of the last segmentation, one row each; clicking a row shows that lesion.

    The view moves to the lesion's centre slice and a yellow box (a temporary Shapes layer
    named "lesion highlight") frames it on each of its slices. The mask is left as it is.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from magicgui.widgets import Label, Table

        self.viewer = viewer
        self.rows: list[Any] = []
        self.layer: Labels | None = None
        self.title = Label(value="lesions: none yet")
        self.table = Table(value={c: [] for c in LESION_COLUMNS})
        self.table.read_only = True
        self.table.native.setMinimumHeight(120)
        self.table.native.setMaximumHeight(220)
        self.table.native.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.native.verticalHeader().setVisible(False)  # "#" is the lesion's number
        # Show the texts as formatted here (magicgui's delegate would print 39.2 as 39.2000).
        self.table.native.setItemDelegate(QStyledItemDelegate(self.table.native))
        tips = ["largest first", "volume (3D) or area (2D)", "longest diameter, mm",
                "mean tumour probability", "slice range along the slider"]
        for k, tip in enumerate(tips):
            self.table.native.horizontalHeaderItem(k).setToolTip(tip)
        self.table.native.cellClicked.connect(lambda row, _col: self.select(row))
        self.table.native.currentCellChanged.connect(lambda row, *_: self.select(row))
        super().__init__(widgets=[self.title, self.table], labels=False)
        self.margins = (0, 0, 0, 0)

    def show(self, lesions: list[Any], layer: Labels, known: bool = True) -> None:
        """List ``lesions`` (from :func:`napari_brainseg.metrics.lesion_table`) of ``layer``.

        ``known=False``: the pixel size is a placeholder (PNG, JPEG, TIFF, .mat), so sizes are
        pixel (voxel) counts and diameters are in pixels, as the status line says.
        """
        self._remove_highlight()
        self.rows, self.layer = list(lesions), layer
        if known:
            unit, length = ("mm³" if layer.data.ndim == 3 else "mm²"), "mm"
        else:
            unit, length = UNIT_TEXT["vox" if layer.data.ndim == 3 else "px"], "pixels"
        native = self.table.native
        native.blockSignals(True)  # filling the table is not a click
        self.table.value = {
            "#": [str(r.number) for r in lesions],
            "size": [f"{r.size_mm:,.1f} {unit}" if known else f"{r.size_mm:,.0f} {unit}"
                     for r in lesions],
            "diameter": [f"{r.diameter_mm:.1f} {length}" for r in lesions],
            "mean p": ["-" if r.mean_probability != r.mean_probability
                           else f"{r.mean_probability:.2f}" for r in lesions],
            "slices": [self._slice_text(r) for r in lesions],
        }
        native.setCurrentCell(-1, -1)
        native.blockSignals(False)
        native.resizeColumnsToContents()
        n = len(lesions)
        self.title.value = (f"{n} lesion{'s' if n != 1 else ''}"
                            + (" (click a row to show it)" if n else ""))
        self.title.tooltip = f"connected components of '{layer.name}'"

    def _axis(self) -> int | None:
        """The mask axis moved by the viewer's first slider (None for a 2D mask)."""
        if self.layer is None or self.layer.data.ndim < 3:
            return None
        lead = self.viewer.dims.ndim - self.layer.data.ndim
        for ax in self.viewer.dims.not_displayed:
            if 0 <= ax - lead < self.layer.data.ndim:
                return ax - lead
        return None

    def _slice_text(self, lesion: Any) -> str:
        axis = self._axis()
        if axis is None:
            return "-"
        a, b = lesion.slices(axis)
        return str(a) if a == b else f"{a}-{b}"

    def _remove_highlight(self) -> None:
        if HIGHLIGHT in self.viewer.layers:
            self.viewer.layers.remove(HIGHLIGHT)

    def select(self, row: int) -> None:
        """Move the view to lesion ``row``'s centre slice and frame it."""
        if not 0 <= row < len(self.rows) or self.layer is None:
            return
        if self.layer not in self.viewer.layers:
            show_info("napari-brainseg: the segmentation layer of this table was removed.")
            return
        lesion, layer = self.rows[row], self.layer
        world = [c * s + t for c, s, t in zip(lesion.centre, layer.scale, layer.translate,
                                              strict=False)]
        lead = self.viewer.dims.ndim - layer.data.ndim
        for ax in self.viewer.dims.not_displayed:
            if 0 <= ax - lead < layer.data.ndim:
                self.viewer.dims.set_point(ax, world[ax - lead])
        self._draw_box(lesion, layer)
        self.viewer.layers.selection.active = layer  # ready for the brush and eraser

    def _draw_box(self, lesion: Any, layer: Labels) -> None:
        (y0, y1), (x0, x1) = lesion.bbox[-2:]
        # Voxel edges, one voxel out, so the frame does not hide the lesion's border.
        y0, x0, y1, x1 = y0 - 1.5, x0 - 1.5, y1 + 1.5, x1 + 1.5
        corners = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], float)
        if layer.data.ndim == 3:
            z0, z1 = lesion.bbox[0]
            boxes = [np.column_stack([np.full(4, z), corners]) for z in range(z0, z1 + 1)]
        else:
            boxes = [corners]
        if HIGHLIGHT in self.viewer.layers:
            self.viewer.layers.remove(HIGHLIGHT)
        self.viewer.add_shapes(boxes, shape_type="rectangle", name=HIGHLIGHT,
                               scale=layer.scale, translate=layer.translate,
                               edge_color="yellow", face_color="transparent",
                               edge_width=1.5)


def viewer_slice(viewer: napari.viewer.Viewer) -> int:
    """The current slice index along the viewer's first slider."""
    return int(viewer.dims.current_step[viewer.dims.not_displayed[0]])


def show_largest_lesion(viewer: napari.viewer.Viewer, layer: Labels, mask: np.ndarray) -> None:
    """Move the viewer to the centre slice of the largest lesion and select its layer."""
    from napari_brainseg.lesions import largest_lesion_centre

    centre = largest_lesion_centre(mask)
    viewer.layers.selection.active = layer
    if centre is None or mask.ndim < 3:
        return
    world = [c * s + t for c, s, t in zip(centre, layer.scale, layer.translate, strict=False)]
    lead = viewer.dims.ndim - mask.ndim
    for ax in viewer.dims.not_displayed:  # the sliders; the displayed plane stays as it is
        if 0 <= ax - lead < mask.ndim:
            viewer.dims.set_point(ax, world[ax - lead])


class _SliceRelay(QObject):
    """Carries slice progress from the worker thread to the widget.

    The core reports slices through a callback that runs in the worker; a queued signal lets
    only the main thread touch the bar.
    """

    moved = Signal(int, int)


class BatchSegmentWidget(_WorkerWidget):
    """Segment every scan of a folder; results appear in a table as files finish.

    Double-click a row to open the scan and its mask in the viewer.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer, "Start batch", self._batch_job)
        from magicgui.widgets import FileEdit, Table

        self.input = FileEdit(mode="d", label="input folder")
        self.output = FileEdit(mode="d", label="output folder")
        self.model = _ModelPicker()
        self.skull = ComboBox(choices=list(SKULL_CHOICES), value=next(iter(SKULL_CHOICES)),
                              label="skull strip first")
        self.overwrite = CheckBox(value=False, text="redo files already segmented")
        self.overlays = CheckBox(value=True, text="write overlay PNGs")
        self.uncertain = CheckBox(value=False, text="uncertainty (~4x slower; least certain "
                                  "first)")
        self.uncertain.tooltip = ("score each file's uncertainty (4-flip TTA) and sort the table "
                                  "by it when the run ends, to review the least certain first")
        self._rows: list[list[str]] = []
        self.table = Table(value=_columns([]))
        self.table.read_only = True
        self.table.native.cellDoubleClicked.connect(self._open_row)
        self._results: list[Any] = []
        # The scan being segmented moves its own bar, slice by slice, inside the file bar.
        self.slice_progress = ProgressBar(value=0, min=0, max=1, label="slices")
        self._slices = _SliceRelay()
        self._slices.moved.connect(self._on_slices)
        buttons, files, status = self._controls()
        self.extend([self.input, self.output, self.model, *_option_widgets(self), self.skull,
                     self.overwrite, self.overlays, self.uncertain, buttons, files,
                     self.slice_progress, status, self.table])

    def _batch_job(self) -> Any:
        from napari_brainseg.batch import iter_segment_folder
        from napari_brainseg.batch_inputs import list_inputs
        from napari_brainseg.predict import Predictor

        src, dst = Path(str(self.input.value)), Path(str(self.output.value))
        if not src.is_dir():
            show_error("napari-brainseg: choose an input folder that exists")
            return None
        if str(self.output.value) in ("", ".") or dst.resolve() == src.resolve():
            show_error("napari-brainseg: choose an output folder different from the input")
            return None
        try:
            predictor = Predictor.from_checkpoint(self.model.path(), _segment_options(self))
            items = list_inputs(src, exclude=dst)  # paired once: the run gets this list
            total = len(items)
        except ValueError as exc:
            show_error(f"napari-brainseg: {exc}")
            return None
        if total == 0:
            show_error(f"napari-brainseg: no scans found in {src}")
            return None
        self.progress.max, self.progress.value = total, 0
        self.slice_progress.value = 0
        self._results = []
        self._rows = []
        self.table.value = _columns([])
        skull, overwrite, overlays = SKULL_CHOICES[self.skull.value], bool(self.overwrite.value), \
            bool(self.overlays.value)
        u_opts = None
        if self.uncertain.value:
            from napari_brainseg.uncertainty import UncertaintyOptions

            u_opts = UncertaintyOptions()

        def job() -> Any:
            done_n = 0
            for r in iter_segment_folder(src, dst, predictor, skull_strip=skull,
                                         overwrite=overwrite, overlays=overlays, items=items,
                                         uncertainty=u_opts, on_slices=self._slices.moved.emit):
                done_n += 1
                yield (r, done_n, total)
            return None

        def done(_: Any) -> None:
            if u_opts is not None:  # review order: the least certain file first
                order = sorted(range(len(self._results)), key=lambda i: -1.0 if
                               self._results[i].uncertainty is None
                               else self._results[i].uncertainty, reverse=True)
                self._results = [self._results[i] for i in order]
                self._rows = [self._rows[i] for i in order]
                self.table.value = _columns(self._rows)
            n_fail = sum(r.status == "failed" for r in self._results)
            self.status.value = (f"{len(self._results)} files: "
                                 f"{sum(r.status == 'ok' for r in self._results)} segmented, "
                                 f"{sum(r.status == 'skipped' for r in self._results)} skipped, "
                                 f"{n_fail} failed; see results.csv")
            if n_fail:
                show_error(f"napari-brainseg: {n_fail} file(s) failed; see the table")

        return job(), done

    def _on_slices(self, done: int, total: int) -> None:
        """The scan being segmented reached slice ``done`` of ``total`` (main thread)."""
        self.slice_progress.max = max(int(total), 1)
        self.slice_progress.value = int(done)
        self.status.value = (f"file {len(self._results) + 1}/{self.progress.max}: slice "
                             f"{done}/{total}")

    def _on_progress(self, item: Any) -> None:
        r, done_n, total = item
        self._results.append(r)
        self.progress.max = total
        self.progress.value = done_n
        unit = UNIT_TEXT[r.unit]
        size = f"{r.size_mm:,.1f} {unit}" if r.unit else ""
        unc = "" if r.uncertainty is None else f"{r.uncertainty:,.0f} {unit}"
        self._rows.append([r.source.name, r.status, size,
                           "" if r.dice is None else f"{r.dice:.3f}", unc, f"{r.seconds:.2f}",
                           r.error])
        self.table.value = _columns(self._rows)

    def _open_row(self, row: int, _col: int = 0) -> None:
        if not 0 <= row < len(self._results):
            return
        r = self._results[row]
        try:
            self.viewer.open(str(r.source), plugin="napari-brainseg")
            if r.output is not None:  # a Labels layer "NAME prediction" in prediction colours
                self.viewer.open(str(r.output), plugin="napari-brainseg")
        except Exception as exc:  # the reader notifies itself; keep napari alive regardless
            show_error(f"napari-brainseg: could not open {r.source.name}: {exc}")

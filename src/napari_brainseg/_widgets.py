"""napari widgets: thin adapters that read layers, run one core generator in a worker, add layers.

Numerics live in the core; a widget here only wires layers, parameters, a progress bar and a
cancel button to a core generator (see shared/STYLE.md, "Long work").
"""

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
    Label,
    ProgressBar,
    PushButton,
    create_widget,
)
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info

from .skullstrip import SkullStripParams, apply_mask, iter_skull_strip, skull_strip


def _layer_scale(layer: Any) -> tuple[float, ...]:
    return tuple(float(s) for s in layer.scale[-layer.data.ndim:])


def _grey_data(layer: Any, task: str) -> np.ndarray | None:
    """The layer's array when it is a grey 2D/3D image, else None after telling the user why."""
    if layer is None:
        show_info("Open an image first.")
        return None
    data = np.asarray(layer.data)
    if data.ndim not in (2, 3) or getattr(layer, "rgb", False):
        show_error(f"napari-brainseg: {task} needs a grey 2D or 3D image; '{layer.name}' has "
                   f"shape {data.shape}.")
        return None
    return data


def _current_index(viewer: napari.viewer.Viewer, layer: Any, axis: int = 0) -> int:
    """Index of the slice shown for ``layer`` along ``axis`` (data coordinates)."""
    point = layer.world_to_data(viewer.dims.point[-layer.ndim:])
    return int(np.clip(round(float(point[axis])), 0, layer.data.shape[axis] - 1))


class _WorkerWidget(Container):
    """A container with Run/Cancel buttons, a progress bar and a status line for one worker."""

    def __init__(self, viewer: napari.viewer.Viewer, run_text: str) -> None:
        super().__init__()
        self.viewer = viewer
        self._worker: Any = None
        self.run_button = PushButton(text=run_text)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1, label="progress")
        self.status = Label(value="")
        self.run_button.changed.connect(self._start)
        self.cancel_button.changed.connect(self.cancel)

    def _controls(self) -> list[Any]:
        return [Container(widgets=[self.run_button, self.cancel_button], layout="horizontal",
                          labels=False), self.progress, self.status]

    # subclasses: return (generator, on_done) or None after showing why
    def _make_job(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _start(self) -> None:
        from napari.qt.threading import create_worker

        job = self._make_job()
        if job is None:
            return
        gen, on_done = job
        def run() -> Any:
            return (yield from gen)

        self._worker = create_worker(run)
        self._worker.yielded.connect(lambda item: self._on_progress(item))
        self._worker.returned.connect(on_done)
        self._worker.errored.connect(self._on_error)
        self._worker.finished.connect(self._on_finished)
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = "running..."
        self._worker.start()

    def _on_progress(self, step: tuple[int, int]) -> None:
        done, total = step
        self.progress.max = max(int(total), 1)
        self.progress.value = int(done)

    def _on_error(self, exc: BaseException) -> None:
        self.status.value = f"failed: {exc}"
        show_error(f"napari-brainseg: {exc}")

    def _on_finished(self) -> None:
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        self._worker = None

    def cancel(self) -> None:
        """Stop the running worker (it finishes its current step first)."""
        if self._worker is not None:
            self._worker.quit()
            self.status.value = "cancelled"

    def wait(self, timeout_ms: int = 60_000) -> None:
        """Block until the worker is done (tests and scripts)."""
        from qtpy.QtCore import QCoreApplication, QElapsedTimer

        timer = QElapsedTimer()
        timer.start()
        while self._worker is not None and timer.elapsed() < timeout_ms:
            QCoreApplication.processEvents()


class SkullStripWidget(_WorkerWidget):
    """Skull strip an Image layer into an editable "brain mask" Labels layer.

    Parameters are previewed on the current slice (2D, fast); Run strips the whole image (3D for
    volumes) in a background thread.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer, "Run skull strip")
        d = SkullStripParams()
        self.image = create_widget(annotation=Image, label="image")
        self.mode = ComboBox(choices=["auto", "slices"], value="auto", label="mode",
                             tooltip="auto: 3D for volumes; slices: each slice on its own")
        self.tightness = FloatSlider(value=d.tightness, min=0.0, max=1.0, step=0.05,
                                     label="tightness", tooltip="higher gives a tighter mask")
        self.erode_mm = FloatSpinBox(value=d.erode_mm, min=0.0, max=20.0, step=0.5,
                                     label="erode (mm)", tooltip="cuts brain-skull bridges")
        self.close_mm = FloatSpinBox(value=d.close_mm, min=0.0, max=20.0, step=0.5,
                                     label="close (mm)", tooltip="fills sulci at the surface")
        self.smooth_mm = FloatSpinBox(value=d.smooth_mm, min=0.0, max=10.0, step=0.5,
                                      label="smooth (mm)")
        self.masked = CheckBox(value=False, text="also add the skull-stripped image")
        self.live = CheckBox(value=True, text="preview parameter changes on this slice")
        self.preview_button = PushButton(text="Preview current slice")
        self.preview_button.changed.connect(self.preview)
        for w in (self.tightness, self.erode_mm, self.close_mm, self.smooth_mm):
            w.changed.connect(self._maybe_preview)
        self.extend([self.image, self.mode, self.tightness, self.erode_mm, self.close_mm,
                     self.smooth_mm, self.masked, self.live, self.preview_button,
                     *self._controls()])

    def _params(self) -> dict[str, float]:
        return {"tightness": float(self.tightness.value), "erode_mm": float(self.erode_mm.value),
                "close_mm": float(self.close_mm.value), "smooth_mm": float(self.smooth_mm.value)}

    def _maybe_preview(self, *_: Any) -> None:
        if self.live.value and "brain mask preview" in self.viewer.layers:
            self.preview()

    def preview(self, *_: Any) -> None:
        """Strip the slice on screen in 2D and show it in a "brain mask preview" layer."""
        layer = self.image.value
        if layer is None:
            show_info("Open an image first.")
            return
        data = np.asarray(layer.data)
        scale = _layer_scale(layer)
        try:
            if data.ndim == 3:
                z = _current_index(self.viewer, layer)
                mask = np.zeros(data.shape, np.uint8)
                mask[z] = skull_strip(data[z], scale[1:], **self._params())
            else:
                mask = skull_strip(data, scale, **self._params()).astype(np.uint8)
        except (ValueError, TypeError) as exc:
            show_error(f"napari-brainseg: {exc}")
            return
        if "brain mask preview" in self.viewer.layers:
            self.viewer.layers["brain mask preview"].data = mask
        else:
            self.viewer.add_labels(mask, name="brain mask preview", scale=layer.scale,
                                   opacity=0.4)
        self.status.value = f"preview: {int(mask.sum()):,} brain pixels on this slice"

    def _make_job(self) -> Any:
        layer = self.image.value
        data = _grey_data(layer, "skull strip")
        if data is None:
            return None
        scale = _layer_scale(layer)
        gen = iter_skull_strip(data, scale, mode=self.mode.value, **self._params())
        name, meta, full_scale = layer.name, dict(layer.metadata), layer.scale
        add_masked = bool(self.masked.value)

        def done(mask: np.ndarray) -> None:
            if mask is None:
                return
            if "brain mask preview" in self.viewer.layers:
                self.viewer.layers.remove("brain mask preview")
            # A new layer every run: a user's edited mask is never overwritten.
            self.viewer.add_labels(mask.astype(np.uint8), name=f"{name} brain mask",
                                   scale=full_scale, metadata=meta, opacity=0.4)
            if add_masked:
                self.viewer.add_image(apply_mask(data, mask), name=f"{name} brain",
                                      scale=full_scale, metadata=meta, colormap="gray")
            self.status.value = f"done: {int(mask.sum()):,} brain voxels"

        return gen, done


# --------------------------------------------------------------------------- training

#: Checkpoints trained in this napari session, newest last (offered by the segment widget).
RECENT_MODELS: list[str] = []


def _default_model_path() -> Path:
    import time

    return Path.home() / "napari-brainseg" / "models" / f"model-{time.strftime('%Y%m%d-%H%M%S')}.pt"


class LossPlot:
    """A small matplotlib figure docked in the widget: losses and validation Dice per epoch."""

    def __init__(self) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 3), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        self.ax_loss = self.figure.add_subplot(211)
        self.ax_dice = self.figure.add_subplot(212)
        self.clear()

    def clear(self) -> None:
        """Forget all epochs."""
        self.epochs: list[int] = []
        self.train: list[float] = []
        self.val: list[float] = []
        self.dice: list[float] = []
        self.redraw()

    def add(self, report: Any) -> None:
        """Append one EpochReport and redraw."""
        self.epochs.append(report.epoch)
        self.train.append(report.train_loss)
        self.val.append(report.val_loss)
        self.dice.append(report.val_dice)
        self.redraw()

    def redraw(self) -> None:
        """Draw the curves."""
        for ax in (self.ax_loss, self.ax_dice):
            ax.clear()
            ax.grid(alpha=0.3)
        self.ax_loss.plot(self.epochs, self.train, "o-", ms=3, label="train loss")
        self.ax_loss.plot(self.epochs, self.val, "o-", ms=3, label="val loss")
        self.ax_loss.legend(fontsize=7, loc="upper right")
        self.ax_loss.set_ylabel("loss", fontsize=8)
        self.ax_dice.plot(self.epochs, self.dice, "o-", ms=3, color="tab:green")
        self.ax_dice.set_ylim(0, 1)
        self.ax_dice.set_ylabel("val Dice", fontsize=8)
        self.ax_dice.set_xlabel("epoch", fontsize=8)
        for ax in (self.ax_loss, self.ax_dice):
            ax.tick_params(labelsize=7)
        self.canvas.draw_idle()


class TrainWidget(_WorkerWidget):
    """Train or fine-tune a U-Net on painted/corrected labels or a folder, with a live plot.

    Correct-then-retrain: *Add to training folder* saves the image and its labels as a new pair
    (never overwriting); *fine-tune* continues from the current model on that folder.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer, "Start training")
        from magicgui.widgets import FileEdit, SpinBox

        self._stop: Any = None
        self.image = create_widget(annotation=Image, label="image")
        self.labels = create_widget(annotation=Labels, label="labels")
        self.source = ComboBox(choices=["layers", "training folder"], value="layers",
                               label="train on")
        self.folder = FileEdit(mode="d", label="training folder",
                               value=str(Path.home() / "napari-brainseg" / "training"))
        self.add_button = PushButton(text="Add image + labels to training folder")
        self.add_button.changed.connect(self.add_to_folder)
        self.loss = ComboBox(choices=["dice+bce", "bce", "dice", "focal", "tversky",
                                      "dice+focal"], value="dice+bce", label="loss")
        self.use_alpha = CheckBox(value=False, text="set alpha (focal: tumour weight; "
                                  "tversky: FP weight)")
        self.alpha = FloatSpinBox(value=0.25, min=0.0, max=1.0, step=0.05, label="alpha")
        self.gamma = FloatSpinBox(value=2.0, min=0.0, max=10.0, step=0.5, label="gamma")
        self.epochs = SpinBox(value=30, min=1, max=10_000, label="epochs")
        self.batch_size = SpinBox(value=8, min=1, max=512, label="batch size")
        self.lr = FloatSpinBox(value=1e-3, min=1e-6, max=1.0, step=1e-4, label="learning rate")
        self.lr.native.setDecimals(6)
        self.val_split = FloatSlider(value=0.2, min=0.0, max=0.9, step=0.05, label="validation")
        self.patch_size = SpinBox(value=256, min=16, max=2048, step=16, label="patch size")
        self.base_filters = SpinBox(value=16, min=2, max=128, label="U-Net width")
        self.fine_tune = CheckBox(value=False, text="fine-tune from checkpoint below")
        self.init_model = FileEdit(mode="r", filter="*.pt", label="start from", value="")
        self.out = FileEdit(mode="w", filter="*.pt", label="save model to",
                            value=str(_default_model_path()))
        self.plot = LossPlot()
        self.extend([self.image, self.labels, self.source, self.folder, self.add_button,
                     self.loss, self.use_alpha, self.alpha, self.gamma, self.epochs,
                     self.batch_size, self.lr, self.val_split, self.patch_size,
                     self.base_filters, self.fine_tune, self.init_model, self.out,
                     *self._controls()])
        self.native.layout().addWidget(self.plot.canvas)

    # -- correct-then-retrain
    def add_to_folder(self, *_: Any) -> None:
        """Save the chosen image + labels into the training folder as a new pair."""
        from .data import add_training_pair

        img, lab = self.image.value, self.labels.value
        if img is None or lab is None:
            show_info("Choose an image and its labels layer first.")
            return
        try:
            ip, mp = add_training_pair(self.folder.value, np.asarray(img.data),
                                       np.asarray(lab.data), img.name, like=dict(img.metadata))
        except (ValueError, OSError) as exc:
            show_error(f"napari-brainseg: {exc}")
            return
        self.status.value = f"added {ip.name} + mask to {Path(self.folder.value).name}/"
        show_info(f"Saved {ip} and {mp}")

    # -- training
    def _make_job(self) -> Any:
        import threading

        from .data import samples_from_arrays, samples_from_folder, split_samples
        from .losses import LossConfig
        from .model import UNetConfig
        from .train import EpochReport, TrainConfig, iter_training

        try:
            alpha = float(self.alpha.value) if self.use_alpha.value else None
            cfg = TrainConfig(
                loss=LossConfig(self.loss.value, alpha=alpha, gamma=float(self.gamma.value)),
                epochs=int(self.epochs.value), batch_size=int(self.batch_size.value),
                lr=float(self.lr.value), patch_size=int(self.patch_size.value))
            if self.source.value == "layers":
                img, lab = self.image.value, self.labels.value
                if img is None or lab is None:
                    raise ValueError("choose an image and the labels layer you painted")
                samples = samples_from_arrays(np.asarray(img.data), np.asarray(lab.data),
                                              group=img.name)
                patch = min(cfg.patch_size, *np.asarray(img.data).shape[-2:])
                cfg = replace_config(cfg, patch_size=max(16, int(patch)))
            else:
                samples = samples_from_folder(self.folder.value)
            train_s, val_s = split_samples(samples, float(self.val_split.value), cfg.seed)
            init = str(self.init_model.value) if self.fine_tune.value else None
            if init is not None and not Path(init).is_file():
                raise ValueError(f"no checkpoint at {init}; choose the model to fine-tune")
        except ValueError as exc:
            show_error(f"napari-brainseg: {exc}")
            return None
        out = Path(self.out.value)
        self._stop = threading.Event()
        gen = iter_training(train_s, val_s, out, cfg,
                            UNetConfig(base_filters=int(self.base_filters.value)), init=init,
                            stop=self._stop)
        self.plot.clear()
        total_epochs = cfg.epochs

        def on_yield(item: Any) -> None:
            if isinstance(item, EpochReport):
                self.plot.add(item)
                self.status.value = (f"epoch {item.epoch}/{item.epochs}: loss "
                                     f"{item.train_loss:.3f}, val Dice {item.val_dice:.3f}")
            else:
                self.progress.max = total_epochs * item.steps
                self.progress.value = (item.epoch - 1) * item.steps + item.step

        def done(result: Any) -> None:
            if result is None:
                return
            if result.best_epoch:
                RECENT_MODELS.append(str(result.best_path))
            word = "cancelled" if result.cancelled else (
                "stopped early" if result.stopped_early else "done")
            if not result.cancelled:
                self.progress.value = self.progress.max
            self.status.value = (f"{word}: best epoch {result.best_epoch}, Dice "
                                 f"{result.best_score:.3f} -> {result.best_path.name}")
            self.out.value = str(_default_model_path())  # the next run never overwrites
            self.init_model.value = str(result.best_path)

        self._on_progress = on_yield  # type: ignore[method-assign]
        return gen, done

    def cancel(self) -> None:
        """Stop after the current batch; the last whole epoch's checkpoints stay valid."""
        if self._stop is not None:
            self._stop.set()
            self.status.value = "cancelling after this batch..."


def replace_config(cfg: Any, **changes: Any) -> Any:
    """dataclasses.replace, imported lazily."""
    from dataclasses import replace

    return replace(cfg, **changes)


# --------------------------------------------------------------------------- segmentation

DEMO_CHOICE = "built-in demo model"
TABLE_COLUMNS = ["file", "status", "tumour", "Dice", "seconds", "error"]
FILE_CHOICE = "checkpoint file below"


def _model_choices(*_: Any) -> list[str]:
    """Demo model, the models trained in this session (newest first), or a file."""
    return [DEMO_CHOICE, *reversed(RECENT_MODELS), FILE_CHOICE]


class _ModelPicker(Container):
    """Model choice shared by the segment and batch widgets."""

    def __init__(self) -> None:
        from magicgui.widgets import FileEdit

        self.choice = ComboBox(choices=_model_choices, label="model")
        self.file = FileEdit(mode="r", filter="*.pt", label="checkpoint")
        super().__init__(widgets=[self.choice, self.file], labels=True)

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


def _segment_options(w: Any) -> Any:
    from .predict import SegmentOptions

    return SegmentOptions(threshold=float(w.threshold.value), tta=bool(w.tta.value),
                          min_area_mm2=float(w.min_area.value), keep=w.keep.value)


def _option_widgets(w: Any) -> list[Any]:
    w.tta = CheckBox(value=False, text="test-time augmentation (flips, 4x slower)")
    w.threshold = FloatSlider(value=0.5, min=0.05, max=0.95, step=0.05, label="threshold")
    w.min_area = FloatSpinBox(value=10.0, min=0.0, max=10_000.0, step=5.0,
                              label="min area (mm²)")
    w.keep = ComboBox(choices=["all", "largest"], value="all", label="keep components")
    return [w.tta, w.threshold, w.min_area, w.keep]


class SegmentWidget(_WorkerWidget):
    """Segment an Image layer into a new, editable "<image> tumour" Labels layer.

    Every run adds a new layer, so labels you have corrected are never overwritten.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer, "Segment")
        from magicgui.widgets import SpinBox

        self.image = create_widget(annotation=Image, label="image")
        self.brain = create_widget(annotation=Labels | None, label="brain mask (optional)",
                                   options={"nullable": True})
        self.model = _ModelPicker()
        self.axis = SpinBox(value=0, min=0, max=2, label="slice axis (volumes)")
        self.show_prob = CheckBox(value=False, text="also add the probability map")
        self.extend([self.image, self.brain, self.model, *_option_widgets(self), self.axis,
                     self.show_prob, *self._controls()])

    def _make_job(self) -> Any:
        from .predict import Predictor

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
        try:
            model_path = self.model.path()
            options = _segment_options(self)
        except ValueError as exc:
            show_error(f"napari-brainseg: {exc}")
            return None
        scale = _layer_scale(layer)
        axis = int(self.axis.value)
        keep_prob = bool(self.show_prob.value)
        name, meta, full_scale = layer.name, dict(layer.metadata), layer.scale

        def job() -> Any:
            predictor = Predictor.from_checkpoint(model_path, options)
            return (yield from predictor.iter_segment_volume(
                data, scale, axis=axis, brain_mask=brain, keep_probability=keep_prob))

        def done(result: Any) -> None:
            if result is None:
                return
            self.viewer.add_labels(result.mask, name=f"{name} tumour", scale=full_scale,
                                   metadata=meta, opacity=0.6)
            if keep_prob and result.probability is not None:
                self.viewer.add_image(result.probability, name=f"{name} tumour probability",
                                      scale=full_scale, colormap="magma", blending="additive",
                                      contrast_limits=(0, 1), visible=False)
            unit = "mm³" if result.unit == "mm3" else "mm²"
            self.status.value = (f"tumour: {result.size_mm:,.1f} {unit} "
                                 f"({result.voxels:,} voxels)")

        return job(), done


class BatchSegmentWidget(_WorkerWidget):
    """Segment every scan of a folder; results appear in a table as files finish.

    Double-click a row to open the scan and its mask in the viewer.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer, "Start batch")
        from magicgui.widgets import FileEdit, Table

        self.input = FileEdit(mode="d", label="input folder")
        self.output = FileEdit(mode="d", label="output folder")
        self.model = _ModelPicker()
        self.skull = CheckBox(value=False, text="skull strip first (no tumour outside brain)")
        self.overwrite = CheckBox(value=False, text="redo files already segmented")
        self.overlays = CheckBox(value=True, text="write overlay PNGs")
        self._rows: list[list[str]] = []
        self.table = Table(value={"data": [], "columns": TABLE_COLUMNS})
        self.table.read_only = True
        self.table.native.cellDoubleClicked.connect(self._open_row)
        self._results: list[Any] = []
        self.extend([self.input, self.output, self.model, *_option_widgets(self), self.skull,
                     self.overwrite, self.overlays, *self._controls(), self.table])

    def _make_job(self) -> Any:
        from .predict import Predictor, iter_segment_folder, list_inputs

        src, dst = Path(str(self.input.value)), Path(str(self.output.value))
        if not src.is_dir():
            show_error("napari-brainseg: choose an input folder that exists")
            return None
        if str(self.output.value) in ("", ".") or dst.resolve() == src.resolve():
            show_error("napari-brainseg: choose an output folder different from the input")
            return None
        try:
            model_path = self.model.path()
            options = _segment_options(self)
            total = len(list_inputs(src))
        except ValueError as exc:
            show_error(f"napari-brainseg: {exc}")
            return None
        if total == 0:
            show_error(f"napari-brainseg: no scans found in {src}")
            return None
        self._results = []
        self._rows = []
        self.table.value = {"data": [], "columns": TABLE_COLUMNS}
        skull, overwrite, overlays = bool(self.skull.value), bool(self.overwrite.value), \
            bool(self.overlays.value)

        def job() -> Any:
            predictor = Predictor.from_checkpoint(model_path, options)
            done_n = 0
            for r in iter_segment_folder(src, dst, predictor, skull_strip=skull,
                                         overwrite=overwrite, overlays=overlays):
                done_n += 1
                yield (r, done_n, total)
            return None

        def done(_: Any) -> None:
            n_fail = sum(r.status == "failed" for r in self._results)
            self.status.value = (f"{len(self._results)} files: "
                                 f"{sum(r.status == 'ok' for r in self._results)} segmented, "
                                 f"{sum(r.status == 'skipped' for r in self._results)} skipped, "
                                 f"{n_fail} failed; see results.csv")
            if n_fail:
                show_error(f"napari-brainseg: {n_fail} file(s) failed; see the table")

        return job(), done

    def _on_progress(self, item: Any) -> None:  # type: ignore[override]
        r, done_n, total = item
        self._results.append(r)
        self.progress.max = total
        self.progress.value = done_n
        size = f"{r.size_mm:,.1f} {'mm³' if r.unit == 'mm3' else 'mm²'}" if r.unit else ""
        self._rows.append([r.source.name, r.status, size,
                           "" if r.dice is None else f"{r.dice:.3f}", f"{r.seconds:.2f}", r.error])
        self.table.value = {"data": self._rows, "columns": TABLE_COLUMNS}

    def _open_row(self, row: int, _col: int = 0) -> None:
        if not 0 <= row < len(self._results):
            return
        r = self._results[row]
        try:
            self.viewer.open(str(r.source), plugin="napari-brainseg")
            if r.output is not None:
                layers = self.viewer.open(str(r.output), plugin="napari-brainseg")
                for lyr in layers:
                    lyr.name = f"{r.source.name} tumour (saved)"
        except Exception as exc:  # the reader notifies itself; keep napari alive regardless
            show_error(f"napari-brainseg: could not open {r.source.name}: {exc}")

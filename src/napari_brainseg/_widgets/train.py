"""Train widget with its live loss plot."""

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FloatSlider,
    FloatSpinBox,
    PushButton,
    create_widget,
)
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from psygnal import Signal

from napari_brainseg.loss_config import DEFAULT_LOSS, LOSS_NAMES

from ._base import _WorkerWidget

# --------------------------------------------------------------------------- training

#: Checkpoints trained in this napari session, newest last (offered by the segment widget).
RECENT_MODELS: list[str] = []


class _NewModels:
    """``added(path)`` is emitted when a model is trained or fine-tuned in this session."""

    added = Signal(str)


#: The model pickers of Segment and Batch listen to it: the newest model becomes their choice.
NEW_MODELS = _NewModels()


def remember_model(path: str | Path) -> None:
    """Offer a model trained in this session for segmentation, as the current choice."""
    RECENT_MODELS.append(str(path))
    NEW_MODELS.added.emit(str(path))


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

    def clear(self, total_epochs: int | None = None) -> None:
        """Forget all epochs; ``total_epochs`` sets the epoch axis of the coming run."""
        self.total_epochs = total_epochs
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
        """Draw the curves (whole epochs on the x axis; loss from 0, Dice 0-1)."""
        from matplotlib.ticker import MaxNLocator

        last = max([self.total_epochs or 1, *self.epochs, 2])
        for ax in (self.ax_loss, self.ax_dice):
            ax.clear()
            ax.grid(alpha=0.3)
            ax.set_xlim(0.5, last + 0.5)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        self.ax_loss.plot(self.epochs, self.train, "o-", ms=3, label="train loss")
        self.ax_loss.plot(self.epochs, self.val, "o-", ms=3, label="val loss")
        self.ax_loss.legend(fontsize=7, loc="upper right")
        finite = [v for v in (*self.train, *self.val) if math.isfinite(v)]
        self.ax_loss.set_ylim(0, max(1.0, *finite) * 1.05 if finite else 1.0)
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

    def _label_choices(self, *_: Any) -> list[tuple[str, Labels]]:
        """Labels layers, tumour labels first and brain masks last (the first is the default)."""
        layers = [la for la in self.viewer.layers if isinstance(la, Labels)]

        def rank(layer: Labels) -> tuple[bool, bool]:
            name = layer.name.lower()
            return ("brain" in name or "mask" in name,
                    not any(w in name for w in ("tumour", "prediction", "ground truth")))

        return [(la.name, la) for la in sorted(layers, key=rank)]

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer, "Start training", self._train_job)
        from magicgui.widgets import FileEdit, SpinBox

        self._stop: Any = None
        self.image = create_widget(annotation=Image, label="image")
        self.labels_layer = ComboBox(choices=self._label_choices, label="labels")
        self.source = ComboBox(choices=["layers", "training folder"], value="layers",
                               label="train on")
        self.folder = FileEdit(mode="d", label="training folder",
                               value=str(Path.home() / "napari-brainseg" / "training"))
        self.add_button = PushButton(text="Add image + labels to training folder")
        self.add_button.changed.connect(self.add_to_folder)
        self.loss = ComboBox(choices=[DEFAULT_LOSS, *(n for n in LOSS_NAMES if n != DEFAULT_LOSS)],
                             value=DEFAULT_LOSS, label="loss")
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
        self.extend([self.image, self.labels_layer, self.source, self.folder, self.add_button,
                     self.loss, self.use_alpha, self.alpha, self.gamma, self.epochs,
                     self.batch_size, self.lr, self.val_split, self.patch_size,
                     self.base_filters, self.fine_tune, self.init_model, self.out,
                     *self._controls()])
        self.native.layout().addWidget(self.plot.canvas)

    # -- correct-then-retrain
    def add_to_folder(self, *_: Any) -> None:
        """Save the chosen image + labels into the training folder as a new pair."""
        from napari_brainseg.data import add_training_pair

        img, lab = self.image.value, self.labels_layer.value
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
    def _train_job(self) -> Any:
        import threading

        from napari_brainseg.data import samples_from_arrays, samples_from_folder, split_samples
        from napari_brainseg.losses import LossConfig
        from napari_brainseg.model import UNetConfig
        from napari_brainseg.train import (
            EpochReport,
            TrainConfig,
            ValidationProgress,
            iter_training,
            last_path_for,
        )

        try:
            alpha = float(self.alpha.value) if self.use_alpha.value else None
            cfg = TrainConfig(
                loss=LossConfig(self.loss.value, alpha=alpha, gamma=float(self.gamma.value)),
                epochs=int(self.epochs.value), batch_size=int(self.batch_size.value),
                lr=float(self.lr.value), patch_size=int(self.patch_size.value))
            if self.source.value == "layers":
                img, lab = self.image.value, self.labels_layer.value
                if img is None or lab is None:
                    raise ValueError("choose an image and the labels layer you painted")
                samples = samples_from_arrays(np.asarray(img.data), np.asarray(lab.data),
                                              group=img.name)
                patch = min(cfg.patch_size, *np.asarray(img.data).shape[-2:])
                cfg = replace(cfg, patch_size=max(16, int(patch)))
            else:
                samples = samples_from_folder(self.folder.value)
            train_s, val_s = split_samples(samples, float(self.val_split.value), cfg.seed)
            init = str(self.init_model.value) if self.fine_tune.value else None
            if init is not None and not Path(init).is_file():
                raise ValueError(f"no checkpoint at {init}; choose the model to fine-tune")
            out = Path(self.out.value)
            existing = [p for p in (out, last_path_for(out)) if p.exists()]
            if existing:  # as the CLI without --overwrite: a trained model is never replaced
                raise ValueError(f"{existing[0]} exists: a trained model is never replaced; "
                                 "choose another file in 'save model to'")
        except ValueError as exc:
            show_error(f"napari-brainseg: {exc}")
            return None
        self._stop = threading.Event()
        gen = iter_training(train_s, val_s, out, cfg,
                            UNetConfig(base_filters=int(self.base_filters.value)), init=init,
                            stop=self._stop)
        self.plot.clear(cfg.epochs)
        total_epochs = cfg.epochs
        per_epoch = [1]  # training + validation batches of one epoch

        def on_yield(item: Any) -> None:
            # The bar counts validation batches too, so it is never full while an epoch
            # is still being validated.
            if isinstance(item, EpochReport):
                self.plot.add(item)
                val = (f"val Dice {item.val_dice:.3f}" if math.isfinite(item.val_dice)
                       else "no validation slices")
                self.status.value = (f"epoch {item.epoch}/{item.epochs}: loss "
                                     f"{item.train_loss:.3f}, {val}")
            elif isinstance(item, ValidationProgress):
                self.progress.value = (item.epoch - 1) * per_epoch[0] + (
                    per_epoch[0] - item.steps) + item.step
                self.status.value = (f"epoch {item.epoch}/{total_epochs}: validating "
                                     f"{item.step}/{item.steps}")
            else:
                per_epoch[0] = item.steps + item.val_steps
                self.progress.max = total_epochs * per_epoch[0]
                self.progress.value = (item.epoch - 1) * per_epoch[0] + item.step

        def done(result: Any) -> None:
            if result is None:
                return
            word = "cancelled" if result.cancelled else (
                "stopped early" if result.stopped_early else "done")
            if not result.cancelled:
                self.progress.value = self.progress.max
            self.out.value = str(_default_model_path())  # the next run never overwrites
            if not result.best_epoch:
                self.status.value = f"{word} before the first epoch ended: no model saved"
                return
            if any(math.isfinite(r.val_dice) for r in result.history):
                score = f"best epoch {result.best_epoch}, val Dice {result.best_score:.3f}"
            else:  # nothing held out: the model is the last epoch's, its score the train loss
                score = (f"epoch {result.best_epoch} (no validation slices), train loss "
                         f"{-result.best_score:.3f}")
            self.status.value = f"{word}: {score} -> {result.best_path.name}"
            self.init_model.value = str(result.best_path)
            remember_model(result.best_path)

        return gen, done, on_yield

    def cancel(self) -> None:
        """Stop after the current batch; the last whole epoch's checkpoints stay valid."""
        if self._stop is not None:
            self._stop.set()
            self.status.value = "cancelling after this batch..."

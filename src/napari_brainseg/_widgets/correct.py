"""Fine-tune on corrected slices: one click from the user's corrections to a new model version."""

from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, SpinBox, create_widget
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info

from ._base import _WorkerWidget
from .segment import PREDICTION_KEY
from .train import remember_model


class FinetuneWidget(_WorkerWidget):
    """Fine-tune the model that made a prediction on the slices you corrected in it.

    Only slices whose labels differ from the model's prediction are used. A quarter of them
    (when there are at least 5) is held out to report Dice before and after. The new model
    is written beside the old one as a new version (``model.v2.pt``; the built-in model's go
    to ``~/napari-brainseg/models``) and becomes the current model for segmentation. Nothing
    you painted is changed.
    """

    def _prediction_choices(self, *_: Any) -> list[tuple[str, Labels]]:
        return [(la.name, la) for la in self.viewer.layers
                if isinstance(la, Labels) and PREDICTION_KEY in la.metadata]

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer, "Fine-tune on corrected slices", self._job)
        from magicgui.widgets import FileEdit

        self.image = create_widget(annotation=Image, label="image")
        self.labels_layer = ComboBox(choices=self._prediction_choices, label="corrected labels")
        self.steps = SpinBox(value=120, min=10, max=5000, step=10, label="steps")
        self.replay = FileEdit(mode="d", label="replay folder", value="")
        self.replay.tooltip = ("a training folder of image/mask pairs mixed into every batch so "
                               "the model does not forget; without one, the model's own "
                               "predictions on the slices you did not correct are replayed")
        self.extend([self.image, self.labels_layer, self.steps, self.replay, *self._controls()])

    def _job(self) -> Any:
        from napari_brainseg.correction import (
            Correction,
            FinetuneConfig,
            corrected_slices,
            folder_replay,
            iter_finetune,
            next_version_path,
        )

        img, lab = self.image.value, self.labels_layer.value
        if img is None or lab is None:
            show_info("napari-brainseg: segment an image first, correct its prediction, then "
                      "choose the image and the corrected prediction layer.")
            return None
        image = np.asarray(img.data, np.float32)
        labels = np.array(lab.data)  # a copy: training never touches the layer
        pred = np.asarray(lab.metadata[PREDICTION_KEY])
        axis = int(lab.metadata.get("brainseg_axis", 0))
        model = str(lab.metadata.get("brainseg_model", "demo"))
        if image.shape != labels.shape:
            show_error(f"napari-brainseg: image {image.shape} and labels {labels.shape} differ "
                       "in shape; choose the image that was segmented.")
            return None
        fixed = corrected_slices(pred, labels, axis)
        if not fixed:
            show_info("napari-brainseg: no corrected slices yet: paint or erase on the "
                      "prediction first.")
            return None
        scale = tuple(float(s) for s in lab.scale)
        if image.ndim == 3:
            sp = tuple(s for k, s in enumerate(scale) if k != axis)
            corrections = [Correction(np.take(image, i, axis), np.take(labels, i, axis), sp)
                           for i in fixed]
        else:
            corrections = [Correction(image, labels, scale)]
        folder = str(self.replay.value or "")
        try:
            if folder and folder != "." and Path(folder).is_dir():
                replay = folder_replay(model, folder)
            else:
                replay = _self_replay(model, image, pred, axis, set(fixed), scale)
            out = next_version_path(model)
            if model in ("demo", "builtin"):
                out = Path.home() / "napari-brainseg" / "models" / out.name
                out.parent.mkdir(parents=True, exist_ok=True)
                out = next_version_path(out) if out.exists() else out
            gen = iter_finetune(model, corrections, out, replay,
                                FinetuneConfig(steps=int(self.steps.value)))
        except (ValueError, OSError) as exc:
            show_error(f"napari-brainseg: {exc}")
            return None

        def done(res: Any) -> None:
            if res is None:
                return
            remember_model(res.path)
            gain = ("no held-out slices (correct 5 or more to measure)"
                    if res.dice_before is None else
                    f"held-out Dice {res.dice_before:.3f} -> {res.dice_after:.3f} "
                    f"({res.n_holdout} slices)")
            self.status.value = (f"{len(fixed)} corrected slices: {gain}; "
                                 f"new model {res.path.name}")
            show_info(f"napari-brainseg: fine-tuned in {res.seconds:.0f} s; {gain}. "
                      f"Saved {res.path}; it is now the model in Segment.")

        def progress(item: Any) -> None:
            self.progress.max = item.total
            self.progress.value = item.step
            self.status.value = f"step {item.step}/{item.total}: loss {item.loss:.3f}"

        return gen, done, progress


def _self_replay(model: str, image: np.ndarray, pred: np.ndarray, axis: int, skip: set[int],
                 scale: tuple[float, ...]) -> Any:
    """Replay the model's own predictions on the slices that were not corrected.

    Keeps the fine-tuned model close to what it did on the rest of this scan (a form of
    distillation), where no training folder is at hand. Returns None for a single slice.
    """
    if image.ndim != 3:
        return None
    from napari_brainseg.correction import Correction, to_model_grid
    from napari_brainseg.model import load_checkpoint
    from napari_brainseg.predict import BUILTIN_MODEL, BUILTIN_NAMES

    ck = load_checkpoint(BUILTIN_MODEL if model in BUILTIN_NAMES else Path(model))
    sp = tuple(s for k, s in enumerate(scale) if k != axis)
    keep = [i for i in range(image.shape[axis])
            if i not in skip and np.take(image, i, axis).std() > 0]
    if not keep:
        return None
    rng = np.random.default_rng(0)
    picks = rng.choice(keep, min(48, len(keep)), replace=False)
    pairs = [to_model_grid(ck, Correction(np.take(image, i, axis), np.take(pred, i, axis), sp))
             for i in picks]

    def draw(r: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return pairs[int(r.integers(len(pairs)))]

    return draw

"""napari widgets: thin adapters that read layers, run one core generator in a worker, add layers.

Numerics live in the core; a widget here only wires layers, parameters, a progress bar and a
cancel button to a core generator (see shared/STYLE.md, "Long work").
"""

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
from napari.layers import Image
from napari.utils.notifications import show_error, show_info

from .skullstrip import SkullStripParams, apply_mask, iter_skull_strip, skull_strip


def _layer_scale(layer: Any) -> tuple[float, ...]:
    return tuple(float(s) for s in layer.scale[-layer.data.ndim:])


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
        self._worker.yielded.connect(self._on_progress)
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
        if layer is None:
            show_info("Open an image first.")
            return None
        data = np.asarray(layer.data)
        if data.ndim not in (2, 3) or getattr(layer, "rgb", False):
            show_error(f"napari-brainseg: skull strip needs a grey 2D or 3D image; "
                       f"'{layer.name}' has shape {data.shape}.")
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

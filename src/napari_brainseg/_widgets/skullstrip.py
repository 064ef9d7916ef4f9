"""Skull strip widget."""

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
from napari.layers import Image
from napari.utils.notifications import show_error, show_info

from napari_brainseg.skullstrip import SkullStripParams, apply_mask, iter_skull_strip, skull_strip

from ._base import _current_index, _grey_data, _layer_scale, _WorkerWidget


class SkullStripWidget(_WorkerWidget):
    """Skull strip an Image layer into an editable "brain mask" Labels layer.

    Parameters are previewed on the current slice (2D, fast); Run strips the whole image (3D for
    volumes) in a background thread.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer, "Run skull strip", self._strip_job)
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

    def _strip_job(self) -> Any:
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



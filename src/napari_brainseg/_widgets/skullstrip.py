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

from napari_brainseg.skullstrip import (
    DEFAULT_METHOD,
    SkullStripParams,
    apply_mask,
    include_enhancing,
    iter_skull_strip,
    skull_strip,
)

from ._base import _current_index, _grey_data, _layer_scale, _WorkerWidget


class SkullStripWidget(_WorkerWidget):
    """Skull strip an Image layer into an editable "brain mask" Labels layer.

    The learned method (default) runs deepbet on volumes and the built-in 2D U-Net on slices;
    the classical one is thresholds and morphology with adjustable parameters. The preview strips
    the current slice in 2D (fast); Run strips the whole image (3D for volumes) in a background
    thread.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer, "Run skull strip", self._strip_job)
        d = SkullStripParams()
        self.image = create_widget(annotation=Image, label="image")
        self.method = ComboBox(choices=["learned", "classical"], value=DEFAULT_METHOD,
                               label="method",
                               tooltip="learned: deepbet (3D) and the built-in 2D U-Net "
                               "(slices); classical: thresholds and morphology, tunable below")
        self.method.changed.connect(self._method_changed)
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
        self.extend([self.image, self.method, self.mode, self.tightness, self.erode_mm,
                     self.close_mm, self.smooth_mm, self.masked, self.live, self.preview_button,
                     *self._controls()])
        self._method_changed()

    def _method_changed(self, *_: Any) -> None:
        classical = self.method.value == "classical"
        for w in (self.tightness, self.erode_mm, self.close_mm, self.smooth_mm):
            w.enabled = classical

    def _params(self) -> dict[str, float]:
        if self.method.value != "classical":
            return {}
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
                mask[z] = self._strip_2d(data[z], scale[1:])
            else:
                mask = self._strip_2d(data, scale).astype(np.uint8)
        except (ValueError, TypeError) as exc:
            show_error(f"napari-brainseg: {exc}")
            return
        if "brain mask preview" in self.viewer.layers:
            self.viewer.layers["brain mask preview"].data = mask
        else:
            self.viewer.add_labels(mask, name="brain mask preview", scale=layer.scale,
                                   opacity=0.4)
        self.status.value = f"preview: {int(mask.sum()):,} brain pixels on this slice"

    def _strip_2d(self, image: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
        if self.method.value == "classical":
            mask = skull_strip(image, spacing, **self._params())
        else:
            from napari_brainseg.skullstrip_learned import strip_slice

            mask = strip_slice(np.asarray(image, np.float32), spacing)
        return include_enhancing(mask, image, spacing)

    def _strip_job(self) -> Any:
        layer = self.image.value
        data = _grey_data(layer, "skull strip")
        if data is None:
            return None
        scale = _layer_scale(layer)
        name, meta, full_scale = layer.name, dict(layer.metadata), layer.scale
        gen = iter_skull_strip(data, scale, mode=self.mode.value, method=self.method.value,
                               affine=meta.get("affine"), **self._params())
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



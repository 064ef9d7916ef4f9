import numpy as np
from napari.layers import Labels

from napari_brainseg._widgets import SkullStripWidget
from napari_brainseg.synthetic import make_phantom


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_widget_strips_volume_in_worker(make_napari_viewer_proxy, qtbot):
    viewer = make_napari_viewer_proxy()
    phs = [make_phantom((96, 96), "glioma", seed=s) for s in range(3)]
    vol = np.stack([p.image for p in phs])
    layer = viewer.add_image(vol, name="head", scale=(2.0, 1.0, 1.0), metadata={"k": 1})
    widget = SkullStripWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.reset_choices()
    widget.image.value = layer
    widget.method.value = "classical"
    widget.mode.value = "slices"
    widget.masked.value = True
    widget.run_button.clicked.emit()
    qtbot.waitUntil(lambda: "head brain mask" in viewer.layers, timeout=30_000)
    mask_layer = viewer.layers["head brain mask"]
    assert isinstance(mask_layer, Labels)
    np.testing.assert_allclose(mask_layer.scale, (2.0, 1.0, 1.0))
    assert mask_layer.metadata["k"] == 1
    assert _dice(mask_layer.data[1] > 0, phs[1].brain) > 0.9
    assert "head brain" in viewer.layers
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=5_000)
    assert widget.progress.value == widget.progress.max == 4  # 3 slices + enhancing lesions

    # Running again adds a new layer: the user's edited mask is left alone.
    mask_layer.data[0, :5, :5] = 7
    widget.run_button.clicked.emit()
    qtbot.waitUntil(lambda: len([lyr for lyr in viewer.layers if "brain mask" in lyr.name]) == 2,
                    timeout=30_000)
    assert (mask_layer.data[0, :5, :5] == 7).all()


def test_preview_on_current_slice(make_napari_viewer_proxy):
    viewer = make_napari_viewer_proxy()
    vol = np.stack([make_phantom((96, 96), "none", seed=s).image for s in range(4)])
    layer = viewer.add_image(vol, name="head")
    widget = SkullStripWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.reset_choices()
    widget.image.value = layer
    assert widget.method.value == "learned" and not widget.tightness.enabled
    widget.method.value = "classical"
    assert widget.tightness.enabled
    viewer.dims.set_current_step(0, 2)
    widget.preview()
    prev = viewer.layers["brain mask preview"].data
    assert prev[2].any() and not prev[0].any()
    # Live preview follows a parameter change.
    before = prev[2].sum()
    widget.tightness.value = 0.9
    assert viewer.layers["brain mask preview"].data[2].sum() <= before


def test_bad_layer_notifies(make_napari_viewer_proxy, monkeypatch):
    shown = []
    monkeypatch.setattr("napari_brainseg._widgets.skullstrip.show_error", shown.append)
    viewer = make_napari_viewer_proxy()
    layer = viewer.add_image(np.ones((32, 32), np.float32), name="flat")
    widget = SkullStripWidget(viewer)
    widget.reset_choices()
    widget.image.value = layer
    widget.preview()
    assert shown and "constant" in shown[0]


def test_learned_default_strips_a_real_head_in_3d(make_napari_viewer_proxy, qtbot, colin_path,
                                                   colin_bet_path):
    from napari_brainseg._reader import get_reader

    viewer = make_napari_viewer_proxy()
    for data, kwargs, _kind in get_reader(str(colin_path))(str(colin_path)):
        layer = viewer.add_image(data, **kwargs)
    widget = SkullStripWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.reset_choices()
    widget.image.value = layer
    viewer.dims.set_current_step(0, 90)
    widget.preview()  # the 2D network on the slice on screen
    assert viewer.layers["brain mask preview"].data[90].sum() > 5000
    widget.run_button.clicked.emit()
    name = f"{layer.name} brain mask"
    qtbot.waitUntil(lambda: name in viewer.layers, timeout=120_000)
    from napari_brainseg.io import read

    (bet,) = read(colin_bet_path)
    assert _dice(viewer.layers[name].data > 0, bet.data > 0) > 0.92
    assert "brain mask preview" not in viewer.layers

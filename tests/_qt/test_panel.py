from pathlib import Path

from napari_brainseg._widgets import BrainSegPanel

MANIFEST = Path(__file__).resolve().parents[2] / "src" / "napari_brainseg" / "napari.yaml"


def test_panel_fits_a_1280x800_screen(make_napari_viewer_proxy, qtbot):
    viewer = make_napari_viewer_proxy(show=True)
    panel = BrainSegPanel(viewer)
    viewer.window.add_dock_widget(panel, name="Brain tumour segmentation", area="right")
    window = viewer.window._qt_window
    window.resize(1280, 800)
    qtbot.wait(0)  # let the layout settle (no timing involved: one pass of the event loop)
    assert [panel.tabText(i) for i in range(panel.count())] == [
        "Skull strip", "Segment", "Correct && train", "Batch"]
    assert panel.sizeHint().height() <= 760 and panel.minimumSizeHint().height() <= 760
    assert window.minimumSizeHint().height() <= 800 and window.minimumSizeHint().width() <= 1280
    assert window.height() <= 800 and window.width() <= 1280  # the window did not grow
    # narrow enough to leave the canvas most of the screen
    assert max(panel.widget(i).minimumWidth() for i in range(panel.count())) <= 520
    for i in range(panel.count()):  # tall tabs scroll instead of stretching the window
        area = panel.widget(i)
        # (Correct & train stacks the quick fine-tune above full training: the tallest)
        assert area.widget().sizeHint().height() <= 1300
        assert area.minimumSizeHint().height() <= 200


def test_panel_tabs_follow_the_layers_and_closing_cancels(make_napari_viewer_proxy):
    import numpy as np

    viewer = make_napari_viewer_proxy()
    panel = BrainSegPanel(viewer)
    viewer.window.add_dock_widget(panel, name="Brain tumour segmentation", area="right")
    layer = viewer.add_image(np.zeros((32, 32), np.float32), name="scan")
    # napari calls the panel's reset_choices: every tab offers the new layer
    assert panel.segment.image.value.name == layer.name
    assert panel.skull_strip.image.value.name == layer.name
    assert panel.train.image.value.name == layer.name
    cancelled = []
    for w in panel.widgets:
        w.cancel = lambda w=w: cancelled.append(w)
    viewer.window.remove_dock_widget(panel)  # the dock's "x" button
    assert len(cancelled) == 5  # skull strip, segment, fine-tune, train, batch


def test_manifest_offers_the_panel_and_each_widget():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(MANIFEST)
    names = [w.display_name for w in manifest.contributions.widgets]
    assert names[0] == "Brain tumour segmentation"
    assert {"Skull strip", "Segment tumour", "Train U-Net", "Batch segment a folder"} <= set(names)
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    assert commands[manifest.contributions.widgets[0].command].endswith(":BrainSegPanel")


def test_every_field_of_every_tab_has_its_label_in_an_empty_viewer(make_napari_viewer_proxy):
    """A widget attribute named ``labels`` replaced magicgui's Container.labels flag: with no
    Labels layer yet (the usual start) the Correct & train tab showed its fields unlabelled."""
    from magicgui.widgets import Container
    from magicgui.widgets.bases import ButtonWidget

    viewer = make_napari_viewer_proxy()
    panel = BrainSegPanel(viewer)

    def fields(container):
        for w in container:
            if isinstance(w, Container) and not w.labels:
                yield from fields(w)  # a row of buttons or a sub-form shows its own labels
            elif not isinstance(w, (ButtonWidget, Container)) and w.label:
                yield container, w

    unlabelled = [f"{type(c).__name__}.{w.label}" for tab in panel.widgets
                  for c, w in fields(tab) if c.labels is not True or w._labeled_widget() is None]
    assert unlabelled == []



def test_a_long_status_wraps_inside_its_tab(make_napari_viewer_proxy):
    """A status naming a model file widened the Correct & train tab past its scroll area: the
    Cancel and Choose buttons went off the right edge and the status was cut off."""
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer_proxy()
    panel = BrainSegPanel(viewer)
    area = panel.widget(2)
    narrow = area.minimumWidth()  # what the tab was sized for, before any status
    panel.finetune.status.value = ("12 corrected slices: held-out Dice 0.851 -> 0.948 (3 slices);"
                                   " new model tumour_unet_fine_tuned_on_my_scans.v12.pt")
    panel.train.status.value = ("cancelled: best epoch 2, val Dice 0.012 -> "
                                "model-20261130-101718-a-long-model-name-for-this-run.pt")
    for _ in range(3):  # the layouts' update requests (no timing involved)
        QApplication.sendPostedEvents()
    assert area.widget().minimumSizeHint().width() <= narrow
    for w in (panel.finetune, panel.train):  # (shown, the tab grew to the widest label's)
        assert w.status.native.minimumSizeHint().width() <= narrow

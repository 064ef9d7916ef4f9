"""The learned skull strip: canvas geometry, orientation, the lesion rule, real heads."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_brainseg import skullstrip_learned as learned
from napari_brainseg.io import read
from napari_brainseg.model import CheckpointError
from napari_brainseg.skullstrip import include_enhancing, iter_skull_strip, run_skull_strip
from napari_brainseg.synthetic import make_phantom

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _real(name):
    path = REAL / name
    if not path.is_file():
        pytest.fail(f"real MRI not found at {path}: put shared/ beside the repository")
    (vol,) = read(path, with_mask=False)
    return vol


# --------------------------------------------------------------------------- canvas


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.5, 1.0), (3.0, 0.8)])
def test_canvas_round_trip_keeps_a_mask(spacing):
    yy, xx = np.mgrid[:300, :220]
    cy, cx = 150, 110
    mask = ((yy - cy) * spacing[0]) ** 2 / 80**2 + ((xx - cx) * spacing[1]) ** 2 / 60**2 < 1
    head = ((yy - cy) * spacing[0]) ** 2 / 95**2 + ((xx - cx) * spacing[1]) ** 2 / 75**2 < 1
    img = np.where(head, 0.6, 0.0) + np.where(mask, 0.4, 0.0)
    geo = learned.canvas_geometry(learned.normalise_slice(img), spacing)
    canvas = learned.to_canvas(mask.astype(np.float32), geo)
    assert canvas.shape == (learned.CANVAS, learned.CANVAS)
    # square pixels in mm on the canvas: the ellipse's aspect is preserved
    assert geo.step[0] * spacing[0] == pytest.approx(geo.step[1] * spacing[1])
    back = learned.from_canvas(canvas, geo) > 0.5
    assert dice(back, mask) > 0.98


def test_head_box_ignores_specks_and_finds_the_head():
    img = np.zeros((200, 200), np.float32)
    img[50:150, 60:140] = 1.0
    img[5, 5] = 3.0  # a hot pixel
    y0, y1, x0, x1 = learned.head_box(learned.normalise_slice(img))
    assert 45 <= y0 <= 52 and 148 <= y1 <= 155 and 55 <= x0 <= 62 and 138 <= x1 <= 145


@pytest.mark.parametrize("codes", ["LPI", "RAS", "PSL", "IRA", "ASR"])
def test_ras_reorientation_inverts_exactly(codes):
    rng = np.random.default_rng(0)
    data = rng.random((5, 6, 7))
    ornt = nib.orientations.axcodes2ornt(codes)
    affine = nib.orientations.inv_ornt_aff(
        nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), ornt), (5, 6, 7))
    ras, back = learned._to_ras(data, affine)
    assert nib.orientations.aff2axcodes(affine) == tuple(codes)
    np.testing.assert_array_equal(nib.orientations.apply_orientation(ras, back), data)
    # RAS really is RAS: the reordered array's first axis runs to the Right, and so on.
    ras_affine = affine @ nib.orientations.inv_ornt_aff(
        nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(codes),
                                        nib.orientations.axcodes2ornt("RAS")), data.shape)
    assert nib.orientations.aff2axcodes(ras_affine) == ("R", "A", "S")


def test_ras_order_of_a_display_volume():
    # Display order is (I, P, L) along (Z, Y, X): RAS is the reverse of all three, transposed.
    data = np.arange(24.0).reshape(2, 3, 4)
    ras, _ = learned._to_ras(data, None)
    np.testing.assert_array_equal(ras, data.transpose(2, 1, 0)[::-1, ::-1, ::-1])


# --------------------------------------------------------------------------- lesion rule


def _ball(shape, centre, r):
    zz, yy, xx = np.indices(shape)
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 < r * r


def test_enhancing_lesion_across_the_edge_is_kept_and_dura_is_not():
    rng = np.random.default_rng(1)
    shape = (60, 80, 80)
    brain = _ball(shape, (30, 40, 40), 25)
    img = np.where(_ball(shape, (30, 40, 40), 32), 0.3, 0.0) + np.where(brain, 0.4, 0.0)
    img += rng.normal(0, 0.01, shape)
    lesion = _ball(shape, (30, 40, 62), 9)  # half outside the brain, like a meningioma
    dura = _ball(shape, (30, 40, 40), 27.5) & ~_ball(shape, (30, 40, 40), 26)  # a thin rim
    img[lesion] = 1.5
    img[dura] = 1.5
    out = include_enhancing(brain, img.astype(np.float32))
    assert out[lesion].mean() > 0.99 and (out & brain).sum() == brain.sum()
    added = out & ~brain
    # The bright rim is added only near the lesion (its dural tail), never all round the brain.
    from scipy import ndimage as ndi

    from napari_brainseg.skullstrip import LESION_REACH_MM

    far = ndi.distance_transform_edt(~lesion) > LESION_REACH_MM + 1
    assert (dura & far).sum() > 1000 and not added[dura & far].any()


def test_lesion_rule_leaves_a_plain_head_alone():
    ph = make_phantom((128, 128), "none", seed=2, skull=True)
    np.testing.assert_array_equal(include_enhancing(ph.brain, ph.image), ph.brain)


def test_lesion_rule_checks_shapes():
    with pytest.raises(ValueError, match="shape"):
        include_enhancing(np.ones((4, 4), bool), np.ones((5, 5)))


# --------------------------------------------------------------------------- the 2D network


def test_learned_2d_on_phantom_slices_and_progress():
    stack = np.stack([make_phantom((128, 128), "glioma", seed=s, skull=True).image
                      for s in range(2)])
    gen = iter_skull_strip(stack, mode="slices")
    steps = []
    while True:
        try:
            steps.append(next(gen))
        except StopIteration as stop:
            mask = stop.value
            break
    # one step per slice plus the enhancing-lesion stage, from 0 to the total
    assert steps == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert mask.shape == stack.shape and mask.dtype == bool
    for s in range(2):
        ph = make_phantom((128, 128), "glioma", seed=s, skull=True)
        # cartoon phantoms are outside the model's domain (real heads): 0.848-0.886 measured
        assert dice(mask[s], ph.brain) > 0.84


def test_learned_2d_keeps_a_real_tumour_on_a_clinical_slice():
    # Never trained on: the tumour scans are the held-out real-tumour check.
    vol = _real("mrbraintumor1_cet1.nii.gz")
    (tum,) = read(REAL / "mrbraintumor1_cet1_tumour.nii.gz", with_mask=False)
    z = int(np.argmax((tum.data > 0).sum(axis=(1, 2))))
    mask = run_skull_strip(vol.data[z], vol.spacing[1:])
    t = tum.data[z] > 0
    assert mask[t].mean() > 0.97
    area_cm2 = mask.sum() * vol.spacing[1] * vol.spacing[2] / 100
    assert 80 < area_cm2 < 250  # a brain's cross-section, not the head's


def test_strip_slice_rejects_bad_input():
    with pytest.raises(ValueError, match="constant"):
        learned.strip_slice(np.ones((64, 64)))
    with pytest.raises(ValueError, match="NaN"):
        learned.strip_slice(np.full((64, 64), np.nan))


def test_a_tumour_checkpoint_is_not_a_strip_model(tiny_model):
    learned.load_strip_model.cache_clear()
    with pytest.raises(CheckpointError, match="not a skull-strip model"):
        learned.load_strip_model(str(tiny_model))


def test_learned_method_refuses_classical_parameters():
    img = make_phantom((64, 64), "none", seed=0).image
    with pytest.raises(ValueError, match="classical"):
        run_skull_strip(img, tightness=0.3)


# --------------------------------------------------------------------------- 3D (deepbet)


def test_learned_3d_on_a_real_head_it_was_not_tuned_on():
    vol = _real("itk_t1_head.nii.gz")
    (ref,) = read(REAL / "itk_t1_head_brainmask.nii.gz", with_mask=False)
    mask = run_skull_strip(vol.data, vol.spacing, affine=vol.affine)
    assert mask.shape == vol.data.shape and dice(mask, ref.data > 0) >= 0.95


def test_learned_3d_rejects_an_empty_volume():
    vol = np.zeros((20, 30, 30), np.float32)
    vol[10, 15, 15] = 1.0
    with pytest.raises(ValueError):
        learned.strip_volume(vol)


def test_the_shipped_2d_model_loads_and_is_not_taken_for_a_tumour_model():
    from napari_brainseg.model import CheckpointError
    from napari_brainseg.predict import Predictor

    learned.load_strip_model.cache_clear()
    ck = learned.load_strip_model()
    assert ck.training["task"] == "skull-strip"
    with pytest.raises(CheckpointError, match="skull-strip model, not a tumour model"):
        Predictor.from_checkpoint(learned.DEFAULT_2D_MODEL)

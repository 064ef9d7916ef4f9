import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_brainseg.io import read
from napari_brainseg.skullstrip import apply_mask, iter_skull_strip, run_skull_strip, skull_strip
from napari_brainseg.synthetic import make_phantom


def dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("kind", ["meningioma", "glioma", "pituitary", "none"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_phantom_with_skull(kind, seed):
    ph = make_phantom((256, 256), kind, seed=seed, skull=True)
    mask = skull_strip(ph.image)
    assert mask.dtype == bool and mask.shape == ph.image.shape
    assert dice(mask, ph.brain) > 0.93
    if ph.tumour.any():  # an enhancing tumour, even at the surface, is never cut off
        assert mask[ph.tumour > 0].mean() > 0.97


def test_large_bright_meningioma_at_surface_is_kept():
    # A big dural-based tumour touching the skull: brighter than brain, like the scalp's fat.
    for seed in range(6):
        ph = make_phantom((256, 256), "meningioma", seed=seed, skull=True)
        assert skull_strip(ph.image)[ph.tumour > 0].mean() > 0.97


def test_already_stripped_phantom_kept():
    for kind, seed in [("glioma", 0), ("pituitary", 1), ("none", 2)]:
        ph = make_phantom((256, 256), kind, seed=seed, skull=False)
        assert dice(skull_strip(ph.image), ph.image > 0) > 0.98


def test_anisotropic_spacing_is_respected():
    ph = make_phantom((192, 192), "glioma", seed=4, skull=True)
    wide = np.repeat(ph.image, 2, axis=1)  # pixels half as wide
    mask = skull_strip(wide, spacing=(1.0, 0.5))
    assert dice(mask[:, ::2], skull_strip(ph.image)) > 0.97


def test_colin27_volume_against_bet(colin_path, colin_bet_path):
    (head,) = read(colin_path)
    (bet,) = read(colin_bet_path)
    mask = skull_strip(head.data, head.spacing)
    assert dice(mask, bet.data > 0) >= 0.95


def test_colin27_axial_slice_2d(colin_path, colin_bet_path):
    (head,) = read(colin_path)
    (bet,) = read(colin_bet_path)
    for z in (60, 90, 120):
        assert dice(skull_strip(head.data[z]), bet.data[z] > 0) > 0.93


def test_bet_output_stays_unchanged(colin_bet_path):
    (bet,) = read(colin_bet_path)
    assert dice(skull_strip(bet.data, bet.spacing), bet.data > 0) >= 0.98


def test_tightness_orders_mask_size():
    ph = make_phantom((256, 256), "none", seed=5)
    loose, tight = skull_strip(ph.image, tightness=0.2), skull_strip(ph.image, tightness=0.8)
    assert loose.sum() >= tight.sum()


def test_slices_mode_reports_progress():
    stack = np.stack([make_phantom((96, 96), "glioma", seed=s).image for s in range(3)])
    gen = iter_skull_strip(stack, mode="slices", method="classical")
    steps = []
    while True:
        try:
            steps.append(next(gen))
        except StopIteration as stop:
            mask = stop.value
            break
    # one step per slice, then one for enhancing lesions at the edge
    assert steps == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    assert mask.shape == stack.shape and all(mask[z].any() for z in range(3))
    np.testing.assert_array_equal(run_skull_strip(stack, mode="slices", method="classical"), mask)


def test_classical_volume_progress_moves_by_stage():
    from napari_brainseg.skullstrip import CLASSICAL_STAGES
    vol = np.stack([make_phantom((128, 128), "glioma", seed=1).image] * 40)
    gen = iter_skull_strip(vol, method="classical")
    steps = []
    while True:
        try:
            steps.append(next(gen))
        except StopIteration as stop:
            mask = stop.value
            break
    total = CLASSICAL_STAGES + 1
    assert steps == [(0, total), *((k, total) for k in range(1, total + 1))]
    assert mask.any()
    np.testing.assert_array_equal(mask, run_skull_strip(vol, method="classical"))


def test_apply_mask():
    img = np.arange(16.0).reshape(4, 4)
    m = np.zeros((4, 4), bool)
    m[1:3, 1:3] = True
    out = apply_mask(img, m)
    assert out[0, 0] == 0 and out[1, 1] == 5
    with pytest.raises(ValueError, match="shape"):
        apply_mask(img, m[:3])


@pytest.mark.parametrize(
    ("image", "kwargs", "match"),
    [
        (np.zeros((0, 0)), {}, "too small"),
        (np.ones((64, 64)), {}, "constant"),
        (np.ones((1, 1)), {}, "too small"),
        (np.ones((4, 8, 8, 8)), {}, "2D.*3D"),
        (np.full((64, 64), np.nan), {}, "NaN"),
        (np.random.default_rng(0).random((64, 64)), {"spacing": (1.0,)}, "spacing"),
        (np.random.default_rng(0).random((64, 64)), {"spacing": (1.0, -1.0)}, "spacing"),
        (np.random.default_rng(0).random((64, 64)), {"tightness": 2.0}, "tightness"),
        (np.random.default_rng(0).random((64, 64)), {"tightness": np.nan}, "tightness"),
        (np.random.default_rng(0).random((64, 64)), {"erode_mm": np.nan}, "erode_mm"),
        (np.random.default_rng(0).random((64, 64)), {"erode_mm": 1e9}, "erode_mm"),
        (np.random.default_rng(0).random((64, 64)), {"close_mm": -1.0}, "close_mm"),
    ],
)
def test_bad_input_gives_clear_error(image, kwargs, match):
    with pytest.raises(ValueError, match=match):
        skull_strip(image, **kwargs)


def test_non_numeric_image():
    with pytest.raises(TypeError):
        skull_strip(np.full((16, 16), "a"))


def test_blank_slice_gives_empty_mask():
    # A slice of pure noise-free background plus one tiny speck holds no brain.
    img = np.zeros((64, 64), np.float32)
    img[30:32, 30:32] = 1
    assert not ndi.binary_erosion(skull_strip(img)).any()

"""Tumour synthesis on real anatomy (napari_brainseg.synthesis), on a small synthetic head."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_brainseg.preprocess import estimate_pixel_mm
from napari_brainseg.synthesis import (
    TUMOUR_KINDS,
    Head,
    load_heads,
    save_heads,
    training_slice,
)
from napari_brainseg.synthesis.tumours import plan_lesions, synth_slab


def _ellipsoid(shape, centre, radii):
    g = np.indices(shape, dtype=np.float32)
    return sum(((g[i] - centre[i]) / radii[i]) ** 2 for i in range(3)) < 1


@pytest.fixture(scope="module")
def head():
    shape = (96, 104, 96)
    c = (48, 52, 50)
    scalp = _ellipsoid(shape, c, (44, 50, 45))
    brain = _ellipsoid(shape, c, (36, 42, 36))
    wm = _ellipsoid(shape, c, (30, 36, 30))
    img = np.where(scalp, 150.0, 0.0)
    img[_ellipsoid(shape, c, (40, 46, 40))] = 20  # skull, dark
    img[brain] = 60  # cortex
    img[wm] = 100
    return Head("toy", img.astype(np.float32), brain)


def test_head_landmarks(head):
    assert 95 < head.wm <= 100
    assert head.intracranial.sum() > head.brain.sum()
    assert (head.depth[tuple(head.deep.T)] >= 12).all()
    d = head.depth[tuple(head.cortex.T)]
    assert (d >= 4).all() and (d <= 20).all()
    assert abs(head.midline_x - 48) < 1
    assert head.brain[tuple(head.surface.T)].all()
    x, y, z = head.sella.astype(int)
    assert z < head.centroid[2] - 20  # under the brain's base


@pytest.mark.parametrize("kind", TUMOUR_KINDS)
def test_each_kind_is_placed_by_anatomy_and_labelled(head, kind):
    rng = np.random.default_rng(3)
    lesions = plan_lesions(head, kind, rng)
    assert lesions and all(les.kind == kind for les in lesions)
    les = lesions[0]
    depth = head.depth[tuple(np.clip(np.round(les.centre).astype(int), 0,
                                     np.array(head.brain.shape) - 1))]
    if kind == "glioma":
        assert depth >= 5  # deep in the brain
    if kind == "meningioma":
        assert depth <= 2  # on or outside the brain's surface
    slab = synth_slab(head, 2, int(les.centre[2]) - 1, 3, lesions, rng)
    assert slab.image.shape == (96, 104, 3) and slab.tumour.any()
    body = slab.tumour
    # enhancing lesions: brighter than white matter somewhere (ring or solid)
    assert slab.image[body].max() > 1.15 * head.wm
    if kind == "meningioma":
        assert slab.intracranial[body].all()  # inside the skull, never in the bone


def test_mass_effect_pushes_tissue_outwards_without_folding(head):
    from napari_brainseg.synthesis.tumours import _displace

    rng = np.random.default_rng(0)
    (les,) = plan_lesions(head, "glioma", rng)
    les.mass_effect = 0.6
    r = np.linspace(0, 4 * les.radius, 200)
    pts = les.centre[:, None] + np.array([1.0, 0, 0])[:, None] * r[None]
    src = _displace(pts.astype(np.float32), les)
    r_src = np.linalg.norm(src - les.centre[:, None], axis=0)
    assert (r_src <= r + 1e-4).all()  # tissue at r came from nearer the centre: pushed out
    assert (np.diff(r_src) > 0).all()  # monotone: tissue never folds over itself
    assert r_src[-1] == pytest.approx(r[-1], rel=1e-3)  # far away nothing moves
    z = int(les.centre[2])
    pushed = synth_slab(head, 2, z, 1, [les], np.random.default_rng(1), background=False)
    les.mass_effect = 0.0
    plain = synth_slab(head, 2, z, 1, [les], np.random.default_rng(1), background=False)
    np.testing.assert_array_equal(pushed.tumour, plain.tumour)
    assert not np.array_equal(pushed.image[~pushed.tumour], plain.image[~plain.tumour])


def test_training_slices_are_seeded_varied_and_on_the_grid(head):
    a = [training_slice([head], np.random.default_rng(7), size=128) for _ in range(1)]
    b = [training_slice([head], np.random.default_rng(7), size=128) for _ in range(1)]
    np.testing.assert_array_equal(a[0].image, b[0].image)
    rng = np.random.default_rng(11)
    slices = [training_slice([head], rng, size=128, phantom_fraction=0.0) for _ in range(24)]
    for s in slices:
        assert s.image.shape == (128, 128) and s.image.dtype == np.float32
        assert s.tumour.dtype == np.uint8 and set(np.unique(s.tumour)) <= {0, 1}
        assert np.isfinite(s.image).all()
    kinds = {s.kind for s in slices}
    assert "none" in kinds and len(kinds) >= 3
    assert {s.plane for s in slices} == {0, 1, 2} and max(s.thickness for s in slices) > 1
    with_tumour = [s for s in slices if s.kind != "none"]
    assert sum(s.tumour.any() for s in with_tumour) >= len(with_tumour) * 0.6
    assert not any(s.tumour.any() for s in slices if s.kind == "none")


def test_heads_round_trip_through_a_file(head, tmp_path):
    save_heads(tmp_path / "h.npz", [head])
    (back,) = load_heads(tmp_path / "h.npz")
    assert back.name == "toy"
    np.testing.assert_array_equal(back.brain, head.brain)
    np.testing.assert_allclose(back.image / back.wm, head.image / head.wm, atol=0.02)


def test_estimate_pixel_mm_from_the_head_extent():
    img = np.zeros((400, 400), np.float32)
    img[100:290, 120:270] = 100  # 190 x 150 pixels
    assert estimate_pixel_mm(img) == pytest.approx(1.0, abs=0.02)
    small = img[::2, ::2]
    assert estimate_pixel_mm(small) == pytest.approx(2.0, abs=0.05)
    assert estimate_pixel_mm(np.zeros((50, 50))) == 1.0
    with pytest.raises(ValueError, match="2D"):
        estimate_pixel_mm(np.zeros((4, 4, 4)))


def test_soft_edge_fades_the_enhancement_around_an_unchanged_label(head):
    rng = np.random.default_rng(5)
    (les,) = plan_lesions(head, "glioma", rng)
    les.core, les.oedema, les.mass_effect = 0.0, 1.0, 0.0
    z = int(les.centre[2])
    les.edge = 0.0
    sharp = synth_slab(head, 2, z, 1, [les], np.random.default_rng(1), background=False)
    les.edge = 4.0
    soft = synth_slab(head, 2, z, 1, [les], np.random.default_rng(1), background=False)
    np.testing.assert_array_equal(sharp.tumour, soft.tumour)  # label: where the fade is half-way
    ring = ndi.binary_dilation(soft.tumour[..., 0], iterations=1) & ~soft.tumour[..., 0]
    outside, inside = soft.image[..., 0][ring], sharp.image[..., 0][ring]
    assert (outside >= inside - 1e-3).all() and (outside > inside + 0.05 * head.wm).mean() > 0.5
    edge_in = soft.tumour[..., 0] & ~ndi.binary_erosion(soft.tumour[..., 0])
    assert soft.image[..., 0][edge_in].mean() < sharp.image[..., 0][edge_in].mean()

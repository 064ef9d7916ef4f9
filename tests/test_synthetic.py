import numpy as np
import pytest

from napari_brainseg.synthetic import iter_phantoms, make_phantom, write_sample_folder


def test_same_seed_same_phantom():
    a = make_phantom((96, 128), "glioma", seed=5)
    b = make_phantom((96, 128), "glioma", seed=5)
    np.testing.assert_array_equal(a.image, b.image)
    assert not np.array_equal(a.image, make_phantom((96, 128), "glioma", seed=6).image)


@pytest.mark.parametrize("kind", ["meningioma", "glioma", "pituitary"])
@pytest.mark.parametrize("shape", [(256, 256), (512, 800)])
def test_tumour_inside_brain_and_of_plausible_size(kind, shape):
    ph = make_phantom(shape, kind, seed=3)
    assert ph.image.shape == shape and ph.image.dtype == np.float32
    frac = ph.tumour.mean()
    assert 0.0005 < frac < 0.08
    assert ph.brain[ph.tumour > 0].all()  # the brain mask includes the tumour
    assert ph.tumour_type == kind


def test_tumours_look_like_their_type():
    # Meningioma and pituitary enhance homogeneously; glioma has a darker core inside its ring.
    for kind in ("meningioma", "pituitary"):
        ph = make_phantom((256, 256), kind, seed=1, noise=0.0)
        t = ph.image[ph.tumour > 0]
        wm = np.median(ph.image[ph.brain & (ph.tumour == 0)])
        assert np.median(t) > 1.2 * wm
    ph = make_phantom((256, 256), "glioma", seed=1, noise=0.0)
    t = ph.image[ph.tumour > 0]
    assert t.max() > 2.5 * np.percentile(t, 10)


def test_pituitary_is_midline():
    ph = make_phantom((256, 256), "pituitary", seed=4)
    _, xs = np.nonzero(ph.tumour)
    assert abs(xs.mean() - 128) < 256 * 0.1


def test_skull_stripped_is_zero_outside_brain():
    ph = make_phantom((128, 128), "none", seed=0, skull=False)
    assert (ph.image[~ph.brain] == 0).all()
    assert ph.tumour.sum() == 0


def test_with_skull_has_bright_scalp_outside_brain():
    ph = make_phantom((128, 128), "none", seed=0, skull=True)
    assert ph.image[~ph.brain].max() > np.median(ph.image[ph.brain])


def test_iter_and_folder(tmp_path):
    kinds = [p.tumour_type for p in iter_phantoms(8, shape=(64, 64))]
    assert kinds[:3] == ["meningioma", "glioma", "pituitary"] and kinds[7] == "none"
    paths = write_sample_folder(tmp_path, n=4, shape=(64, 64))
    assert len(paths) == 4 and all((tmp_path / "masks" / p.name).exists() for p in paths)


def test_too_small_shape():
    with pytest.raises(ValueError, match="too small"):
        make_phantom((16, 16))

"""Property-based tests (hypothesis): random shapes and values never raise unexpected exception
types; metrics stay in [0, 1]; losses stay finite."""

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from napari_brainseg.io import ReadError, read
from napari_brainseg.losses import LOSS_NAMES, make_loss
from napari_brainseg.metrics import confusion, hd95, scores

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,  # same examples in CI
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

shapes2d = st.tuples(st.integers(1, 24), st.integers(1, 24))


@SETTINGS
@given(shape=shapes2d, data=st.data())
def test_metrics_in_unit_range(shape, data):
    p = data.draw(arrays(np.bool_, shape))
    t = data.draw(arrays(np.bool_, shape))
    for value in scores(confusion(p, t)).values():
        assert 0.0 <= value <= 1.0
    h = hd95(p, t)
    assert np.isnan(h) or h >= 0


@SETTINGS
@given(n=st.integers(1, 3), h=st.integers(1, 12), w=st.integers(1, 12),
       name=st.sampled_from(LOSS_NAMES), scale=st.floats(0.01, 50), seed=st.integers(0, 10**6))
def test_losses_finite_on_extreme_logits(n, h, w, name, scale, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn((n, 1, h, w), generator=g) * scale
    target = (torch.rand((n, 1, h, w), generator=g) > 0.5).float()
    loss = make_loss(name, alpha=0.3 if name in ("focal", "tversky") else None)(logits, target)
    assert torch.isfinite(loss) and loss >= -1e-6


@SETTINGS
@given(blob=st.binary(min_size=0, max_size=400),
       suffix=st.sampled_from([".nii", ".nii.gz", ".png", ".jpg", ".tif", ".mat", ".dcm"]))
def test_readers_raise_only_read_error_on_random_bytes(tmp_path_factory, blob, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"random{suffix}"
    path.write_bytes(blob)
    try:
        vols = read(path)
    except ReadError:
        return
    for v in vols:  # if random bytes happen to decode, the result is still well-formed
        assert v.data.ndim in (2, 3) and np.isfinite(v.data).all()


@SETTINGS
@given(img=arrays(np.float64, st.tuples(st.integers(8, 40), st.integers(8, 40)),
                  elements=st.one_of(st.floats(-1e6, 1e6), st.just(np.nan), st.just(np.inf))))
def test_nifti_with_any_values_reads_finite_or_clear_error(tmp_path_factory, img):
    import nibabel as nib

    d = tmp_path_factory.mktemp("vals")
    nib.save(nib.Nifti1Image(img.astype(np.float32)[..., None], np.eye(4)), str(d / "a.nii"))
    try:
        (vol,) = read(d / "a.nii")
    except ReadError as exc:
        assert "NaN" in str(exc) or "too small" in str(exc)
        return
    assert np.isfinite(vol.data).all()

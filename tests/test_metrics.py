import numpy as np
import pytest

from napari_brainseg.metrics import Counts, confusion, evaluate, hd95, scores


def test_counts_and_scores():
    p = np.array([[1, 1, 0, 0]], bool)
    t = np.array([[1, 0, 1, 0]], bool)
    c = confusion(p, t)
    assert c == Counts(tp=1, fp=1, fn=1, tn=1)
    s = scores(c)
    assert s["precision"] == 0.5 and s["recall"] == 0.5 and s["f1"] == 0.5
    assert s["iou"] == pytest.approx(1 / 3) and s["accuracy"] == 0.5 and s["specificity"] == 0.5


@pytest.mark.parametrize(
    ("pred", "target", "expected"),
    [
        (0, 0, {"precision": 1, "recall": 1, "f1": 1, "iou": 1}),  # both empty: agreement
        (0, 1, {"precision": 0, "recall": 0, "f1": 0, "iou": 0}),  # missed tumour
        (1, 0, {"precision": 0, "recall": 1, "f1": 0, "iou": 0}),  # false alarm
    ],
)
def test_empty_mask_conventions(pred, target, expected):
    p = np.zeros((8, 8), bool)
    t = np.zeros((8, 8), bool)
    p[2:4, 2:4] = bool(pred)
    t[2:4, 2:4] = bool(target)
    s = scores(confusion(p, t))
    for k, v in expected.items():
        assert s[k] == v, k


def test_hd95_known_shift_in_mm():
    t = np.zeros((40, 40), bool)
    t[10:20, 10:20] = True
    p = np.roll(t, 3, axis=1)
    assert hd95(p, t) == pytest.approx(3.0)
    assert hd95(p, t, spacing=(1.0, 0.5)) == pytest.approx(1.5)
    assert hd95(t, t) == 0.0
    assert hd95(np.zeros_like(t), np.zeros_like(t)) == 0.0
    assert np.isnan(hd95(np.zeros_like(t), t))


def test_pooled_differs_from_per_image_and_matches_recount():
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(5):
        t = rng.random((16, 16)) > 0.8
        p = t ^ (rng.random((16, 16)) > 0.9)
        pairs.append((p, t))
    ev = evaluate(pairs)
    total = sum((confusion(p, t) for p, t in pairs), Counts())
    assert ev.counts == total
    assert ev.pooled["f1"] == pytest.approx(scores(total)["f1"])
    assert ev.per_image_mean["f1"] == pytest.approx(np.mean([scores(confusion(p, t))["f1"]
                                                             for p, t in pairs]))
    assert ev.n == 5
    assert abs(ev.pooled["f1"] - ev.per_image_mean["f1"]) > 1e-3  # they differ on these masks
    # A large tumour found exactly and a 1-pixel tumour missed: pooling weights pixels (one
    # miss among 101 tumour pixels), the per-image mean weights images (one of two failed).
    big = np.zeros((20, 20), bool)
    big[5:15, 5:15] = True
    tiny = np.zeros((20, 20), bool)
    tiny[2, 2] = True
    ev = evaluate([(big, big), (np.zeros_like(tiny), tiny)])
    assert ev.pooled["f1"] == pytest.approx(200 / 201)
    assert ev.per_image_mean["f1"] == pytest.approx(0.5)


def test_background_baseline_and_hd95_undefined():
    t = np.zeros((10, 10), bool)
    t[0, 0] = True
    ev = evaluate([(np.zeros_like(t), t), (t, t)])
    assert ev.pooled["background_accuracy"] == pytest.approx(198 / 200)
    assert ev.hd95_undefined == 1 and ev.per_image_mean["hd95"] == 0.0


def test_metrics_in_unit_range_on_random_masks():
    rng = np.random.default_rng(1)
    for _ in range(50):
        shape = tuple(rng.integers(1, 12, size=2))
        p, t = rng.random(shape) > rng.random(), rng.random(shape) > rng.random()
        for v in scores(confusion(p, t)).values():
            assert 0.0 <= v <= 1.0


def test_shape_mismatch():
    with pytest.raises(ValueError, match="differ in shape"):
        confusion(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="no images"):
        evaluate([])


def test_lesion_table_rows_largest_first_with_sizes_diameters_and_slices():
    from napari_brainseg.metrics import lesion_table

    mask = np.zeros((10, 20, 20), np.uint8)
    mask[2:5, 2:6, 2:4] = 1      # 3 x 4 x 2 = 24 voxels, slices 2-4
    mask[6, 10:13, 10] = 1       # 3 voxels on one slice, a line
    mask[7:10, 15:19, 12:18] = 1  # 3 x 4 x 6 = 72 voxels, slices 7-9
    prob = np.where(mask > 0, 0.9, 0.1).astype(np.float32)
    prob[6] = np.where(mask[6] > 0, 0.6, 0.0)
    rows = lesion_table(mask, spacing=(2.0, 0.5, 0.5), probability=prob)
    assert [r.voxels for r in rows] == [72, 24, 3] and [r.number for r in rows] == [1, 2, 3]
    big, mid, line = rows
    assert big.unit == "mm3" and big.size_mm == pytest.approx(72 * 0.5)
    assert big.slices() == (7, 9) and big.bbox == ((7, 9), (15, 18), (12, 17))
    assert big.centre == (8, 16, 14)  # numpy rounds the .5 centres to even
    # Corner to corner: 2 slices x 2 mm, 3 rows x 0.5 mm, 5 columns x 0.5 mm.
    assert big.diameter_mm == pytest.approx(np.sqrt(4**2 + 1.5**2 + 2.5**2))
    assert mid.mean_probability == pytest.approx(0.9)
    assert line.slices() == (6, 6) and line.diameter_mm == pytest.approx(1.0)
    assert line.mean_probability == pytest.approx(0.6)
    assert mask.max() == 1  # the mask itself is never relabelled


def test_lesion_table_2d_large_and_degenerate_components():
    from napari_brainseg.metrics import lesion_table

    mask = np.zeros((300, 300), bool)
    yy, xx = np.mgrid[:300, :300]
    mask[(yy - 100) ** 2 + (xx - 120) ** 2 <= 60**2] = True  # > 1000 edge points: hull path
    mask[250, 10:290] = True                                  # collinear: degenerate hull
    disc, line = lesion_table(mask, spacing=(0.5, 0.5))
    assert disc.unit == "mm2" and disc.size_mm == pytest.approx(np.pi * 30**2, rel=0.01)
    assert disc.diameter_mm == pytest.approx(60.0, abs=0.6)
    assert np.isnan(disc.mean_probability) and disc.centre == (100, 120)
    assert line.diameter_mm == pytest.approx(279 * 0.5)


def test_lesion_table_flat_lesion_in_a_volume_and_errors():
    from napari_brainseg.metrics import lesion_table

    vol = np.zeros((3, 200, 200), np.uint8)
    vol[1, 20:180, 20:180] = 1  # one slice, > 1000 surface points: a flat hull
    (flat,) = lesion_table(vol)
    assert flat.slices() == (1, 1)
    assert flat.diameter_mm == pytest.approx(np.hypot(159, 159))
    assert lesion_table(np.zeros((4, 4))) == []
    with pytest.raises(ValueError, match="spacing"):
        lesion_table(vol, spacing=(1, 1))
    with pytest.raises(ValueError, match="probability"):
        lesion_table(vol, probability=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="mask"):
        lesion_table(np.zeros(5))

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_brainseg.data import (
    EvalSet,
    Sample,
    TrainingSet,
    samples_from_arrays,
    samples_from_folder,
    split_samples,
)
from napari_brainseg.io import write_mat
from napari_brainseg.synthetic import make_phantom, write_sample_folder


def test_folder_of_pngs(tmp_path):
    write_sample_folder(tmp_path, n=5, shape=(64, 64))
    samples = samples_from_folder(tmp_path)
    assert len(samples) == 5 and len({s.group for s in samples}) == 5
    img, msk = samples[0].load()
    assert img.shape == (64, 64) and img.dtype == np.float32 and set(np.unique(msk)) <= {0, 1}


def test_mat_files_grouped_by_patient(tmp_path):
    rng = np.random.default_rng(0)
    for i, pid in enumerate(["A1", "A1", "B2", "C3"]):
        m = np.zeros((32, 32), np.uint8)
        m[5:9, 5:9] = 1
        write_mat(tmp_path / f"{i}.mat", rng.integers(0, 400, (32, 32)), m, label=1 + i % 3,
                  pid=pid)
    samples = samples_from_folder(tmp_path)
    assert [s.group for s in samples] == ["A1", "A1", "B2", "C3"]
    assert samples[0].tumour_type == "meningioma"
    for seed in range(5):
        train, val = split_samples(samples, 0.5, seed)
        assert not {s.group for s in train} & {s.group for s in val}
        assert len(train) + len(val) == 4 and val


def test_volume_gives_annotated_and_some_empty_slices(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    vol = np.random.default_rng(0).random((32, 32, 20)).astype(np.float32) + 1
    mask = np.zeros((32, 32, 20), np.uint8)
    mask[10:15, 10:15, 8:11] = 1  # three annotated slices (NIfTI z)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "images" / "v.nii.gz"))
    nib.save(nib.Nifti1Image(mask, np.eye(4)), str(tmp_path / "masks" / "v.nii.gz"))
    samples = samples_from_folder(tmp_path)
    with_tumour = [s for s in samples if s.load()[1].any()]
    assert len(with_tumour) == 3 and len(samples) == 6
    assert all(s.group == "v" for s in samples)


def test_folder_without_pairs_explains(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(ValueError, match="_mask"):
        samples_from_folder(tmp_path)


def test_samples_from_layers():
    img = np.random.default_rng(0).random((5, 32, 32))
    lab = np.zeros((5, 32, 32), np.uint8)
    lab[1, 3:6, 3:6] = 1
    lab[3, 3:6, 3:6] = 1
    s = samples_from_arrays(img, lab, group="scan")
    assert len(s) == 2 and s[0].load()[1].sum() == 9
    assert len(samples_from_arrays(img, lab, axis=2)) == 3
    assert len(samples_from_arrays(img[0], lab[1])) == 1
    with pytest.raises(ValueError, match="empty"):
        samples_from_arrays(img, np.zeros_like(lab))
    with pytest.raises(ValueError, match="differ in shape"):
        samples_from_arrays(img, lab[:, :31])


def test_single_group_splits_slices_and_bad_fraction():
    s = [Sample("one", image=np.ones((8, 8)), mask=np.zeros((8, 8))) for _ in range(10)]
    train, val = split_samples(s, 0.2, 0)
    assert len(val) == 2 and len(train) == 8
    assert split_samples(s, 0.0)[1] == []
    with pytest.raises(ValueError):
        split_samples(s, 1.0)


def test_training_set_is_deterministic_per_epoch_and_binary():
    phs = [make_phantom((80, 90), "glioma", seed=i) for i in range(3)]
    samples = [Sample(str(i), image=p.image, mask=p.tumour) for i, p in enumerate(phs)]
    ds = TrainingSet(samples, patch_size=64, augment=True, seed=3)
    a = ds[1]
    assert a[0].shape == (1, 64, 64) and a[1].shape == (1, 64, 64)
    assert set(torch.unique(a[1]).tolist()) <= {0.0, 1.0}
    b = ds[1]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    ds.set_epoch(1)
    assert not torch.equal(ds[1][0], a[0])
    small = TrainingSet([Sample("s", image=np.ones((20, 30)), mask=np.zeros((20, 30)))],
                        patch_size=32, augment=False)
    assert small[0][0].shape == (1, 32, 32)


def test_eval_set_keeps_full_size():
    p = make_phantom((70, 50), "pituitary", seed=0)
    img, msk = EvalSet([Sample("x", image=p.image, mask=p.tumour)])[0]
    assert img.shape == (1, 70, 50) and msk.sum() == p.tumour.sum()

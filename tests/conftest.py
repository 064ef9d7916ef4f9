"""Shared fixtures: real MRI from ../shared/data and small synthetic files."""

import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COLIN = SHARED / "colin27" / "ch2.nii.gz"
COLIN_BET = SHARED / "colin27" / "ch2bet.nii.gz"


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory):
    """Exported models (napari_brainseg.inference) go to a temporary cache, not the user's.

    Set in the environment, so CLI subprocesses share it.
    """
    import os

    old = os.environ.get("BRAINSEG_CACHE_DIR")
    os.environ["BRAINSEG_CACHE_DIR"] = str(tmp_path_factory.mktemp("onnx-cache"))
    yield
    if old is None:
        os.environ.pop("BRAINSEG_CACHE_DIR", None)
    else:
        os.environ["BRAINSEG_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def colin_path() -> Path:
    if not COLIN.exists():
        pytest.fail(f"real MRI not found at {COLIN}: put shared/ (with data/colin27) beside the "
                    "repository, as CI does")
    return COLIN


@pytest.fixture(scope="session")
def colin_bet_path() -> Path:
    if not COLIN_BET.exists():
        pytest.fail(f"real MRI not found at {COLIN_BET}: put shared/ beside the repository")
    return COLIN_BET


def make_dicom_series(folder: Path, n: int = 5, uid: str = "1.2.3.4.5", shuffle: bool = True,
                      slope: float = 1.0, intercept: float = 0.0, step: float = 2.0,
                      skip: tuple[int, ...] = ()) -> list[Path]:
    """Write an MR series of ``n`` 64x64 slices; slice k holds the constant value 10 * k."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    folder.mkdir(parents=True, exist_ok=True)
    order = list(range(n))
    if shuffle:
        order = order[::-1][1:] + order[-1:]
    paths = []
    for k in order:
        if k in skip:
            continue
        ds = dcmread(get_testdata_file("MR_small.dcm"))
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = f"{uid}.{k + 1}"
        ds.InstanceNumber = n - k  # deliberately the reverse of the position order
        ds.ImagePositionPatient = [-83.9063, -91.2, 6.6406 + step * k]
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.PixelData = np.full((64, 64), 10 * k, np.int16).tobytes()
        p = folder / f"IM{k:04d}"
        ds.save_as(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A small U-Net trained for a few seconds on 64x64 phantoms (shared by predict tests)."""
    from napari_brainseg.data import Sample
    from napari_brainseg.losses import LossConfig
    from napari_brainseg.model import UNetConfig
    from napari_brainseg.synthetic import make_phantom
    from napari_brainseg.train import TrainConfig, train

    kinds = ["meningioma", "glioma", "pituitary"]
    samples = []
    for s in range(16):
        ph = make_phantom((64, 64), kinds[s % 3], seed=s, skull=False)
        samples.append(Sample(f"p{s}", image=ph.image, mask=ph.tumour))
    out = tmp_path_factory.mktemp("model") / "tiny.pt"
    # Several pytest processes on one machine (developers running test files side by side)
    # share one trained copy: keyed by the code that makes it, so a change retrains it.
    import hashlib
    import shutil
    import tempfile

    import napari_brainseg

    src = Path(napari_brainseg.__file__).parent
    key = hashlib.sha256(Path(__file__).read_bytes())
    for name in ("train.py", "model.py", "data.py", "losses.py", "preprocess.py",
                 "synthetic.py", "distributed.py", "train_paths.py", "loss_config.py",
                 "devices.py"):
        key.update((src / name).read_bytes())
    cached = Path(tempfile.gettempdir()) / f"brainseg-tiny-model-{key.hexdigest()[:16]}.pt"
    if cached.is_file():
        shutil.copyfile(cached, out)
        return out
    cfg = TrainConfig(loss=LossConfig("dice+bce"), epochs=40, batch_size=4, lr=3e-3,
                      patch_size=64, augment=False, schedule="none", patience=None)
    train(samples, samples, out, cfg, UNetConfig(base_filters=8, dropout=(0.0,) * 5))
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
    shutil.copyfile(out, tmp)
    os.replace(tmp, cached)
    return out

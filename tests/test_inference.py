"""CPU backends (ONNX Runtime vs eager PyTorch) and mixed precision give the same segmentation."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import torch

from napari_brainseg import inference
from napari_brainseg.model import UNet, UNetConfig, load_checkpoint
from napari_brainseg.predict import BUILTIN_MODEL, Predictor, SegmentOptions
from napari_brainseg.synthetic import make_phantom

pytest.importorskip("onnxruntime")
KINDS = ["meningioma", "glioma", "pituitary"]


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    """Every test exports into its own cache and starts without sessions of earlier tests."""
    monkeypatch.setenv("BRAINSEG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BRAINSEG_BACKEND", raising=False)
    monkeypatch.setattr(inference, "_SESSIONS", {})
    monkeypatch.setattr(inference, "_EXPORTS", {})
    monkeypatch.setattr(inference, "_FAILED", set())


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum() + b.sum())
    return 1.0 if s == 0 else 2 * int((a & b).sum()) / s


def phantoms(shape, n, seed=100):
    return [make_phantom(shape, KINDS[s % 3], seed=seed + s, skull=False) for s in range(n)]


def compare(model_path, shape, n, **kw):
    """Probabilities and masks of the ONNX backend and of eager PyTorch on ``n`` phantoms."""
    opts = SegmentOptions(**kw)
    onnx = Predictor.from_checkpoint(model_path, opts, device="cpu", backend="onnx")
    eager = Predictor.from_checkpoint(model_path, opts, device="cpu", backend="torch")
    imgs = [p.image for p in phantoms(shape, n)]
    p_onnx, p_eager = onnx.probability(imgs), eager.probability(imgs)
    assert onnx._onnx is not None and onnx._onnx.session() is not None  # ONNX really ran
    assert eager._onnx is None
    masks = [(np.stack([pred.postprocess(p) for p in probs]) > 0)
             for pred, probs in ((onnx, p_onnx), (eager, p_eager))]
    return float(np.abs(p_onnx - p_eager).max()), dice(*masks), int(masks[1].sum())


@pytest.mark.parametrize("shape", [(64, 64), (70, 90)])  # 70 x 90: padded to 80 x 96 and back
def test_onnx_matches_eager_tiny_model(tiny_model, shape):
    diff, d, voxels = compare(tiny_model, shape, 6)
    assert diff <= 1e-4
    assert voxels > 100 and d >= 0.999


def test_onnx_matches_eager_builtin_model():
    diff, d, voxels = compare(BUILTIN_MODEL, (256, 256), 3)
    assert diff <= 1e-4
    assert voxels > 500 and d >= 0.999


def test_onnx_tiled_windows_match_eager(tiny_model):
    diff, d, _ = compare(tiny_model, (96, 80), 2, tile=48, overlap=0.25)
    assert diff <= 1e-4 and d >= 0.999


def test_export_cached_by_weights(tiny_model, monkeypatch, tmp_path):
    a = Predictor.from_checkpoint(tiny_model, device="cpu", backend="onnx")
    a.prepare(wait=True)
    files = list((tmp_path / "cache").glob("*.onnx"))
    assert len(files) == 1 and files[0] == a._onnx.path
    # a new session (process) loads the file instead of exporting again
    monkeypatch.setattr(inference, "_SESSIONS", {})
    monkeypatch.setattr(inference, "_EXPORTS", {})

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(inference, "export_onnx", no_export)
    b = Predictor.from_checkpoint(tiny_model, device="cpu", backend="onnx")
    b.prepare(wait=True)
    assert b._onnx.session() is not None and b._onnx.key == a._onnx.key
    # other weights, other key (a model changed in memory never uses a stale export)
    with torch.no_grad():
        b.model.head.bias += 1
    assert inference.model_key(b.model) != a._onnx.key


def test_export_failure_falls_back_to_torch_and_says_so_once(tiny_model, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(inference, "export_onnx", broken)
    img = [p.image for p in phantoms((64, 64), 2)]
    eager = Predictor.from_checkpoint(tiny_model, device="cpu", backend="torch").probability(img)
    with caplog.at_level(logging.WARNING, logger="napari_brainseg.inference"):
        for _ in range(3):
            pred = Predictor.from_checkpoint(tiny_model, device="cpu", backend="onnx")
            np.testing.assert_array_equal(pred.probability(img), eager)
    assert caplog.text.count("ONNX Runtime not used (RuntimeError: exporter broke)") == 1


def test_onnx_runs_one_slice_at_a_time_on_the_cpu(tiny_model):
    """A batch would leave its activations in ONNX Runtime's arena (1.6 GB for 8 x 512²)."""
    pred = Predictor.from_checkpoint(tiny_model, SegmentOptions(batch_size=4), device="cpu",
                                     backend="onnx")
    pred.prepare(wait=True)
    real = inference._SESSIONS[pred._onnx.key]
    shapes = []

    class Spy:
        def run(self, names, feed):
            shapes.append(feed["image"].shape)
            return real.run(names, feed)

    inference._SESSIONS[pred._onnx.key] = Spy()
    imgs = [p.image for p in phantoms((64, 64), 3)]
    prob = pred.probability(imgs)
    assert len(shapes) == 3 and all(s[0] == 1 for s in shapes)
    eager = Predictor.from_checkpoint(tiny_model, device="cpu", backend="torch").probability(imgs)
    assert np.abs(prob - eager).max() <= 1e-4


def test_runtime_failure_falls_back_to_torch(tiny_model, caplog):
    pred = Predictor.from_checkpoint(tiny_model, device="cpu", backend="onnx")
    pred.prepare(wait=True)

    class Broken:
        def run(self, *args):
            raise RuntimeError("bad input")

    inference._SESSIONS[pred._onnx.key] = Broken()
    img = [p.image for p in phantoms((64, 64), 1)]
    with caplog.at_level(logging.WARNING, logger="napari_brainseg.inference"):
        prob = pred.probability(img)
    eager = Predictor.from_checkpoint(tiny_model, device="cpu", backend="torch").probability(img)
    np.testing.assert_array_equal(prob, eager)
    assert "ONNX Runtime failed (RuntimeError: bad input)" in caplog.text
    assert pred._onnx.session() is None


def test_first_call_does_not_wait_for_the_export(tiny_model, monkeypatch):
    release, started = threading.Event(), threading.Event()
    real = inference.export_onnx

    def slow(model, path):
        started.set()
        assert release.wait(60)
        return real(model, path)

    monkeypatch.setattr(inference, "export_onnx", slow)
    pred = Predictor.from_checkpoint(tiny_model, device="cpu")  # backend auto
    img = [p.image for p in phantoms((64, 64), 1)]
    first = pred.probability(img)  # returns with PyTorch while the export is held back
    assert started.wait(60) and pred._onnx.session() is None
    release.set()
    pred.prepare(wait=True)
    assert pred._onnx.session() is not None
    assert np.abs(pred.probability(img) - first).max() <= 1e-4


def test_env_var_and_option_turn_onnx_off(tiny_model, monkeypatch):
    monkeypatch.setenv("BRAINSEG_BACKEND", "torch")
    pred = Predictor.from_checkpoint(tiny_model, device="cpu")
    pred.probability([np.ones((64, 64), np.float32)])
    assert pred.backend == "torch" and pred._onnx is None
    monkeypatch.delenv("BRAINSEG_BACKEND")
    pred = Predictor.from_checkpoint(tiny_model, device="cpu", backend="torch")
    pred.probability([np.ones((64, 64), np.float32)])
    assert pred._onnx is None
    with pytest.raises(ValueError, match="backend must be"):
        Predictor.from_checkpoint(tiny_model, device="cpu", backend="tensorrt")


def test_dropout_sampling_runs_torch():
    """MC dropout switches dropout layers to training mode: ONNX (exported in eval) must not run."""
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_filters=4, dropout=(0.5,) * 5))
    pred = Predictor(model, {"method": "zscore"}, device="cpu", backend="onnx")
    pred.prepare(wait=True)
    x = torch.randn(1, 1, 32, 32)
    with torch.inference_mode():
        assert pred._onnx_run(x) is not None
        model.down[0].block[2].train()  # its Dropout
        assert pred._onnx_run(x) is None
        torch.manual_seed(1)
        a = pred._run(x)
        torch.manual_seed(2)
        b = pred._run(x)
    assert not torch.equal(a, b)  # really sampled


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_masks_match_fp32(precision):
    """The GPU's mixed-precision path, run on a CPU: built-in model, masks agree (Dice >= 0.999)."""
    fp32 = Predictor.from_checkpoint(BUILTIN_MODEL, device="cpu", backend="torch")
    mixed = Predictor(load_checkpoint(BUILTIN_MODEL).model, fp32.normalisation, fp32.options,
                      device="cpu", precision=precision)
    mixed.pixel_mm = fp32.pixel_mm
    assert mixed.autocast is {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    imgs = [p.image for p in phantoms((256, 256), 3)]
    p32, pmx = fp32.probability(imgs), mixed.probability(imgs)
    assert pmx.dtype == np.float32
    assert mixed._onnx is None  # autocast always runs PyTorch
    m32 = np.stack([fp32.postprocess(p) for p in p32]) > 0
    mmx = np.stack([mixed.postprocess(p) for p in pmx]) > 0
    assert m32.sum() > 1000
    assert dice(mmx, m32) >= 0.999
    assert 0 < np.abs(pmx - p32).max() < 0.05  # reduced precision really ran, and stayed close


def test_mixed_precision_overflow_runs_fp32_again():
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_filters=4))
    with torch.no_grad():
        model.head.weight.mul_(1e6)  # logits far beyond fp16's 65504
    fp16 = Predictor(model, {"method": "zscore"}, device="cpu", precision="fp16")
    x = torch.randn(1, 1, 32, 32)
    with torch.inference_mode():
        prob = fp16._run(x)
        ref = torch.sigmoid(model(x))
    assert torch.isfinite(prob).all() and torch.equal(prob, ref)


def test_precision_auto_is_fp32_on_cpu(tiny_model, monkeypatch):
    assert Predictor.from_checkpoint(tiny_model, device="cpu").autocast is None
    monkeypatch.setenv("BRAINSEG_PRECISION", "bf16")
    assert Predictor.from_checkpoint(tiny_model, device="cpu").autocast is torch.bfloat16
    with pytest.raises(ValueError, match="precision must be"):
        Predictor(UNet(UNetConfig(base_filters=4)), device="cpu", precision="int8")

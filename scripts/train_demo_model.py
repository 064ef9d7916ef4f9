"""Train the built-in demo model (seeded, reproducible): phantoms + Colin27 with inserted lesions.

    python scripts/train_demo_model.py [--epochs 22] [--out src/napari_brainseg/models/demo_unet.pt]
    python scripts/train_demo_model.py --evaluate-only

The demo model is for demonstration: it learned from synthetic phantoms and synthetic lesions
painted into one real brain (Colin27, ../shared/data). It is no clinical tool; real use means
training on your own labelled scans.

Training data (all seeded):
- 240 phantoms: 160 at 256x256, 40 at 512x512, 40 at 512x800; half with skull, half stripped;
- Colin27 slices with one inserted lesion each (15 % left without): axial slices outside the
  held-out block, coronal and sagittal slices with the held-out block's rows cut out; with skull
  (ch2) and skull-stripped (ch2 inside the BET mask).
Held out for evaluation: phantoms of other seeds (256x256 and 512x800) and the axial block
z = 100-129 (display orientation) of Colin27 with lesions of other seeds.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from napari_brainseg.data import Sample, split_samples
from napari_brainseg.io import read
from napari_brainseg.losses import LossConfig
from napari_brainseg.metrics import evaluate
from napari_brainseg.model import UNetConfig, load_checkpoint
from napari_brainseg.synthetic import insert_lesion, make_phantom
from napari_brainseg.train import EpochReport, TrainConfig, iter_training

ROOT = Path(__file__).resolve().parents[1]
COLIN = ROOT.parent / "shared" / "data" / "colin27"
DEFAULT_OUT = ROOT / "src" / "napari_brainseg" / "models" / "demo_unet.pt"
HELD_OUT = (100, 130)  # axial display slices never trained on
MARGIN = 10  # and this many slices either side stay out of training too
KINDS = ["meningioma", "glioma", "pituitary"]


def colin_volumes():
    (head,) = read(COLIN / "ch2.nii.gz")
    (bet,) = read(COLIN / "ch2bet.nii.gz")
    brain = bet.data > 0
    stripped = np.where(brain, head.data, 0).astype(np.float32)
    return head.data, stripped, brain


def phantom_samples(seed0: int, n: int, shape, group: str):
    out = []
    for i in range(n):
        s = seed0 + i
        kind = "none" if i % 8 == 7 else KINDS[i % 3]
        ph = make_phantom(shape, kind, seed=s, skull=(i % 2 == 0))
        out.append(Sample(f"{group}{s}", image=ph.image, mask=ph.tumour, tumour_type=kind))
    return out


def _lesion_sample(img, brain, seed, group, with_lesion=True):
    if not with_lesion:
        return Sample(group, image=img.astype(np.float32), mask=np.zeros(img.shape, np.uint8))
    try:
        im, m, kind = insert_lesion(img, brain, "random", seed=seed)
    except ValueError:
        return None
    return Sample(group, image=im, mask=m, tumour_type=kind)


def colin_training_samples(seed: int = 0):
    head, stripped, brain = colin_volumes()
    lo, hi = HELD_OUT[0] - MARGIN, HELD_OUT[1] + MARGIN
    rng = np.random.default_rng(seed)
    out = []
    k = 0
    for vol_name, vol in (("skull", head), ("stripped", stripped)):
        for z in range(0, vol.shape[0], 2):  # axial, outside the held-out block
            if lo <= z < hi or brain[z].sum() < 1500:
                continue
            s = _lesion_sample(vol[z], brain[z], 1000 + k, f"colin-ax-{vol_name}-{k}",
                               rng.random() > 0.15)
            k += 1
            if s:
                out.append(s)
        for axis in (1, 2):  # coronal and sagittal, held-out rows cut out
            for i in range(0, vol.shape[axis], 3):
                sl, br = np.take(vol, i, axis), np.take(brain, i, axis)
                for part in (slice(0, lo), slice(hi, None)):
                    if br[part].sum() < 1500:
                        continue
                    s = _lesion_sample(sl[part], br[part], 1000 + k,
                                       f"colin-{axis}-{vol_name}-{k}", rng.random() > 0.15)
                    k += 1
                    if s:
                        out.append(s)
    return out


def colin_test_samples():
    head, stripped, brain = colin_volumes()
    out = []
    for vol_name, vol in (("skull", head), ("stripped", stripped)):
        for z in range(*HELD_OUT):
            s = _lesion_sample(vol[z], brain[z], 50_000 + z + (0 if vol_name == "skull" else 500),
                               f"test-{vol_name}")
            if s:
                out.append(s)
    return out


def training_set(seed: int = 0):
    phantoms = (phantom_samples(0, 160, (256, 256), "ph")
                + phantom_samples(200, 40, (512, 512), "ph")
                + phantom_samples(300, 40, (512, 800), "ph"))
    return phantoms + colin_training_samples(seed)


def predict_samples(model_path: Path, samples):
    from napari_brainseg.predict import Predictor

    predictor = Predictor.from_checkpoint(model_path)
    pairs = []
    for s in samples:
        img, msk = s.load()
        pairs.append((predictor.segment_slice(img).mask, msk))
    return pairs


def evaluate_model(model_path: Path) -> dict:
    results = {}
    tests = {
        "phantoms 256x256": phantom_samples(90_000, 60, (256, 256), "t"),
        "phantoms 512x800": phantom_samples(91_000, 30, (512, 800), "t"),
        "Colin27 held-out axial block": colin_test_samples(),
    }
    for name, samples in tests.items():
        t = time.perf_counter()
        ev = evaluate(predict_samples(model_path, samples), with_hd95=False)
        results[name] = ev
        print(f"{name:32s} n={ev.n:3d}  pooled Dice {ev.pooled['f1']:.4f}  precision "
              f"{ev.pooled['precision']:.4f}  recall {ev.pooled['recall']:.4f}  per-image Dice "
              f"{ev.per_image_mean['f1']:.3f} +- {ev.per_image_sd['f1']:.3f}  "
              f"({time.perf_counter() - t:.1f} s)", flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=22)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--work", type=Path, default=ROOT / "demo-output" / "demo-model")
    ap.add_argument("--base-filters", type=int, default=8)
    ap.add_argument("--evaluate-only", action="store_true")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    if not args.evaluate_only:
        samples = training_set()
        train_s, val_s = split_samples(samples, 0.1, seed=0)
        print(f"{len(train_s)} training and {len(val_s)} validation slices", flush=True)
        cfg = TrainConfig(loss=LossConfig("dice+bce"), epochs=args.epochs, batch_size=8,
                          lr=2e-3, patch_size=256, augment=True, seed=0, patience=8)
        work = args.work / "demo_unet.pt"
        resume = work.with_name("demo_unet.last.pt") if args.resume else None
        t0 = time.perf_counter()
        for item in iter_training(train_s, val_s, work, cfg,
                                  UNetConfig(base_filters=args.base_filters), resume=resume):
            if isinstance(item, EpochReport):
                print(f"epoch {item.epoch:3d} loss {item.train_loss:.4f} val loss "
                      f"{item.val_loss:.4f} val Dice {item.val_dice:.4f} lr {item.lr:.2g} "
                      f"{item.seconds:.0f}s total {time.perf_counter() - t0:.0f}s"
                      + (" *" if item.is_best else ""), flush=True)
        ck = load_checkpoint(work)
        from napari_brainseg.model import save_checkpoint

        training = dict(ck.training)
        training["demo"] = ("trained by scripts/train_demo_model.py on synthetic phantoms and "
                            "synthetic lesions in Colin27; for demonstration, not clinical use")
        save_checkpoint(args.out, ck.model, ck.normalisation, training, ck.metrics)
        print("wrote", args.out, f"({args.out.stat().st_size / 1e6:.1f} MB)")
    evaluate_model(args.out)


if __name__ == "__main__":
    main()

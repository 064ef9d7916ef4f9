"""The built-in tumour model on real scans, with default settings and with --tta.

    python benchmarks/real_scans.py [--model demo] [--no-tta] [--synthetic 120]

- Real tumours: the two contrast-enhanced T1 scans in ../shared/data/real (one patient, two
  time points; never trained on): Dice, precision, recall, and the false-positive volume outside
  the reference tumour.
- Healthy heads: false-positive volume on Colin27, ITK, ROBEX (training heads, in-sample) and
  MRHead (never trained on: held out).
- Held-out synthetic: synthetic tumours painted into MRHead (its brain from deepbet), slices in
  every plane, pooled Dice of the model alone.

Every scan goes through what ``brainseg segment SCAN OUT`` runs (``predict.segment_scan``:
learned skull strip for volumes, the model on 1 mm slices, the enhancement check). Two real
scans of one patient are a sanity check, not a clinical validation.
"""

import argparse
import time
from pathlib import Path

import numpy as np
from _bench import print_table

from napari_brainseg.io import read
from napari_brainseg.metrics import Counts, confusion, scores
from napari_brainseg.predict import Predictor, SegmentOptions, segment_scan

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL = SHARED / "real"
TUMOURS = {f"mrbraintumor{i} (CE-T1)": (REAL / f"mrbraintumor{i}_cet1.nii.gz",
                                        REAL / f"mrbraintumor{i}_cet1_tumour.nii.gz")
           for i in (1, 2)}
HEALTHY = {
    "Colin27 (training head)": SHARED / "colin27" / "ch2.nii.gz",
    "ITK T1 (training head)": REAL / "itk_t1_head.nii.gz",
    "ROBEX T1 (training head)": REAL / "robex_t1_head.nii.gz",
    "MRHead (held out)": REAL / "mrhead_t1.nii.gz",
}


def run(predictor: Predictor, path: Path):
    (vol,) = read(path)[:1]
    t = time.perf_counter()
    res = segment_scan(predictor, vol.data, vol.spacing, affine=vol.affine)
    return vol, res, time.perf_counter() - t


def _away_from(mask: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Predicted components that do not touch the reference tumour (false lesions, as opposed
    to a tumour drawn a little too large)."""
    from scipy import ndimage as ndi

    lab, _ = ndi.label(mask)
    touching = np.unique(lab[truth & mask])
    return (lab > 0) & ~np.isin(lab, touching)


def synthetic_dice(predictor: Predictor, n: int) -> tuple[float, float, int]:
    """Pooled Dice and per-slice mean Dice on synthetic tumours in MRHead (held out)."""
    import nibabel as nib

    from napari_brainseg.skullstrip_learned import strip_volume
    from napari_brainseg.synthesis import Head, training_slice
    from napari_brainseg.synthesis.anatomy import to_ras_1mm

    img = nib.load(str(REAL / "mrhead_t1.nii.gz"))
    data = np.asarray(img.dataobj, np.float32)
    brain = strip_volume(data, img.affine)
    head = Head("mrhead", to_ras_1mm(data, img.affine), to_ras_1mm(brain, img.affine, order=0))
    rng = np.random.default_rng(123_456)
    total, per = Counts(), []
    for _ in range(n):
        s = training_slice([head], rng, tumour_fraction=1.0, phantom_fraction=0.0)
        mask = predictor.segment_slice(s.image, (1.0, 1.0)).mask
        c = confusion(mask, s.tumour)
        total = total + c
        if s.tumour.any():
            per.append(scores(c)["f1"])
    return scores(total)["f1"], float(np.mean(per)), n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="demo")
    ap.add_argument("--no-tta", action="store_true")
    ap.add_argument("--synthetic", type=int, default=120, help="held-out synthetic slices")
    args = ap.parse_args()
    settings = {"default": SegmentOptions()}
    if not args.no_tta:
        settings["--tta"] = SegmentOptions(tta=True)
    rows = []
    for label, opts in settings.items():
        pred = Predictor.from_checkpoint(args.model, opts, device="cpu")
        for name, (scan, truth) in TUMOURS.items():
            vol, res, sec = run(pred, scan)
            gt = read(truth)[0].data > 0
            m = res.mask > 0
            c = confusion(m, gt)
            sc = scores(c)
            cm3 = float(np.prod(vol.spacing)) / 1000
            away = _away_from(m, gt)
            rows.append([label, name, f"{sc['f1']:.3f}", f"{sc['precision']:.3f}",
                         f"{sc['recall']:.3f}", f"{(m & ~gt).sum() * cm3:.2f}",
                         f"{away.sum() * cm3:.2f}", f"{sec:.1f}"])
            print(rows[-1], flush=True)
        for name, scan in HEALTHY.items():
            vol, res, sec = run(pred, scan)
            cm3 = float(np.prod(vol.spacing)) / 1000
            fp = f"{(res.mask > 0).sum() * cm3:.2f}"
            rows.append([label, name, "-", "-", "-", fp, fp, f"{sec:.1f}"])
            print(rows[-1], flush=True)
        if args.synthetic:
            pooled, mean, n = synthetic_dice(pred, args.synthetic)
            rows.append([label, f"synthetic tumours in MRHead, {n} slices (held out)",
                         f"{pooled:.3f} (per slice {mean:.3f})", "-", "-", "-", "-", "-"])
            print(rows[-1], flush=True)
    print()
    print_table(["settings", "scan", "Dice", "precision", "recall",
                 "false positives (cm³)", "of which apart from the tumour (cm³)", "seconds"],
                rows)


if __name__ == "__main__":
    main()

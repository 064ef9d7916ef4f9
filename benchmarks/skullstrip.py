"""Skull-strip quality and speed on Colin27 against the BET reference, beside two baselines.

    python benchmarks/skullstrip.py [--planes axial,coronal,sagittal] [--repeats 3]

Prints whole-volume Dice, 2D-mode Dice over slices with >= 1000 brain pixels in each plane
(median and 10th percentile), seconds per volume and per slice, and the ratios against the
baselines, all measured in this run.
"""

import argparse
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from napari_brainseg.io import read
from napari_brainseg.skullstrip import skull_strip

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "colin27"
PLANES = {"axial": 0, "coronal": 1, "sagittal": 2}


def otsu_baseline(img, spacing=None):
    """Otsu threshold + largest component + hole filling."""
    m = img > threshold_otsu(img)
    lab, n = ndi.label(m)
    if n == 0:
        return m
    m = lab == np.argmax(np.bincount(lab.ravel())[1:]) + 1
    return ndi.binary_fill_holes(m)


def erode_dilate_baseline(img, spacing=None, it=6):
    """Otsu, erode, largest component, dilate, fill holes (a few lines of scipy)."""
    m = img > threshold_otsu(img)
    e = ndi.binary_erosion(m, iterations=it)
    lab, n = ndi.label(e)
    if n == 0:
        return ndi.binary_fill_holes(m)
    e = lab == np.argmax(np.bincount(lab.ravel())[1:]) + 1
    return ndi.binary_fill_holes(ndi.binary_dilation(e, iterations=it) & m)


METHODS = {"brainseg": skull_strip, "otsu+lcc+fill": otsu_baseline,
           "erode/lcc/dilate": erode_dilate_baseline}


def dice(a, b):
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2.0 * np.logical_and(a, b).sum() / s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--planes", default="axial,coronal,sagittal")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    (head,) = read(DATA / "ch2.nii.gz")
    (bet,) = read(DATA / "ch2bet.nii.gz")
    ref = bet.data > 0
    img = head.data
    rows = {}
    for name, fn in METHODS.items():
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            mask = fn(img, head.spacing)
            times.append(time.perf_counter() - t)
        rows[name] = {"vol_dice": dice(mask, ref), "vol_s": float(np.median(times))}
        for plane in args.planes.split(","):
            ax = PLANES[plane]
            dices, secs = [], []
            for i in range(img.shape[ax]):
                r = np.take(ref, i, axis=ax)
                if r.sum() < 1000:
                    continue
                sl = np.take(img, i, axis=ax)
                sp = tuple(s for k, s in enumerate(head.spacing) if k != ax)
                t = time.perf_counter()
                m = fn(sl, sp)
                secs.append(time.perf_counter() - t)
                dices.append(dice(m, r))
            d = np.array(dices)
            rows[name][plane] = (float(np.median(d)), float(np.percentile(d, 10)), float(d.min()),
                                 len(d), float(np.median(secs)))
    planes = args.planes.split(",")
    print(f"Colin27 ch2 vs BET (ch2bet > 0); {img.shape} voxels, medians of {args.repeats} runs\n")
    hdr = f"{'method':18s} {'vol Dice':>8s} {'vol s':>7s}"
    for p in planes:
        hdr += f" | {p + ' med/p10/min (n)':>30s} {'s/slice':>8s}"
    print(hdr)
    for name, r in rows.items():
        line = f"{name:18s} {r['vol_dice']:8.4f} {r['vol_s']:7.2f}"
        for p in planes:
            med, p10, mn, n, s = r[p]
            line += f" | {med:9.4f} {p10:7.4f} {mn:7.4f} ({n:3d}) {s * 1000:6.1f}ms"
        print(line)
    ours = rows["brainseg"]
    print("\nratios (baseline time / brainseg time; >1 means brainseg is faster):")
    for name in list(METHODS)[1:]:
        r = rows[name]
        parts = [f"volume {r['vol_s'] / ours['vol_s']:.2f}x"]
        parts += [f"{p} slice {r[p][4] / ours[p][4]:.2f}x" for p in planes]
        print(f"  vs {name}: " + ", ".join(parts))


if __name__ == "__main__":
    main()

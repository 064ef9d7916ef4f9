"""Batch-segmenting a folder of 100 slices end to end vs the pure model time on the same slices.

    python benchmarks/batch_folder.py [--n 100] [--size 256] [--repeats 3]

Folders of PNG and of 2D NIfTI (.nii.gz) phantoms; the pipeline is ``iter_segment_folder``
(what ``brainseg segment`` and the Batch widget run: read, normalise, U-Net, post-process, write
the mask atomically, update results.csv). The baseline is ``Predictor.probability`` on the same
slices already in memory, one call per slice. Ratio = pipeline throughput / model throughput.
Model: the shipped demo U-Net (what a user runs first).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
from _bench import interleaved, print_table

from napari_brainseg.batch import iter_segment_folder
from napari_brainseg.predict import Predictor, SegmentOptions
from napari_brainseg.progress import drain
from napari_brainseg.synthetic import make_phantom


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    kinds = ["meningioma", "glioma", "pituitary"]
    images = [make_phantom((args.size, args.size), kinds[s % 3], seed=s, skull=False).image
              for s in range(args.n)]
    tmp = Path(tempfile.mkdtemp())
    (tmp / "png").mkdir()
    (tmp / "nii").mkdir()
    for k, im in enumerate(images):
        u8 = np.clip(im / im.max() * 255, 0, 255).astype(np.uint8)
        iio.imwrite(tmp / "png" / f"slice_{k:03d}.png", u8)
        nib.save(nib.Nifti1Image(im.astype(np.float32)[:, :, None], np.eye(4)),
                 str(tmp / "nii" / f"slice_{k:03d}.nii.gz"))
    pred = Predictor.from_checkpoint("demo", SegmentOptions(), device="cpu")

    def model_only():
        for im in images:
            pred.probability([im])

    def folder(kind):
        def run():
            out = tmp / f"out_{kind}"
            shutil.rmtree(out, ignore_errors=True)
            drain(iter_segment_folder(tmp / kind, out, pred))
        return run

    t = interleaved({"model only": model_only, "PNG folder": folder("png"),
                     "NIfTI folder": folder("nii")}, args.repeats)
    base = t["model only"]
    rows = [[k, f"{args.n}x{args.size}x{args.size}", args.n / v, f"{100 * base / v:.1f}%"]
            for k, v in t.items()]
    print_table(["pipeline", "slices", "slices/s", "of model throughput"], rows)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()

"""Training in napari's thread worker vs the plain generator: same work, side by side.

    xvfb-run -a python benchmarks/train_worker.py [--repeats 3]

Runs the same iter_training (same seed, data and settings) alternately as a plain loop and inside
``napari.qt.threading.create_worker`` with a Qt event loop spinning on the main thread, as the
Train widget does, and prints the median seconds and their ratio.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_brainseg.data import Sample
from napari_brainseg.model import UNetConfig
from napari_brainseg.synthetic import make_phantom
from napari_brainseg.train import TrainConfig, iter_training

KINDS = ["meningioma", "glioma", "pituitary"]


def job(tmp: Path, tag: str):
    samples = [Sample(f"p{s}", image=(p := make_phantom((128, 128), KINDS[s % 3], seed=s,
                                                         skull=False)).image, mask=p.tumour)
               for s in range(32)]
    cfg = TrainConfig(epochs=3, batch_size=8, patch_size=128, seed=0, patience=None)
    return iter_training(samples[:24], samples[24:], tmp / f"{tag}.pt", cfg,
                         UNetConfig(base_filters=8))


def plain(tmp: Path) -> float:
    t = time.perf_counter()
    for _ in job(tmp, "plain"):
        pass
    return time.perf_counter() - t


def in_worker(tmp: Path) -> float:
    from napari.qt import get_qapp
    from napari.qt.threading import create_worker
    from qtpy.QtCore import QEventLoop

    app = get_qapp()
    gen = job(tmp, "worker")
    loop = QEventLoop()
    seen = []

    def relay():
        return (yield from gen)

    t = time.perf_counter()
    worker = create_worker(relay)
    worker.yielded.connect(seen.append)  # the widget updates its plot/progress on these
    worker.finished.connect(loop.quit)
    worker.start()
    loop.exec()
    app.processEvents()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    plain(tmp)  # warm-up: imports, allocator
    p, w = [], []
    for _ in range(args.repeats):
        p.append(plain(tmp))
        w.append(in_worker(tmp))
    mp, mw = float(np.median(p)), float(np.median(w))
    print("3 epochs, 24 slices 128x128, batch 8, U-Net width 8; medians of", args.repeats)
    print(f"plain generator : {mp:6.2f} s")
    print(f"thread worker   : {mw:6.2f} s")
    print(f"worker / plain  : {mw / mp:6.3f}  (1.00 = no overhead)")


if __name__ == "__main__":
    main()

"""Training in napari's thread worker vs the plain generator: same work, side by side.

    xvfb-run -a python benchmarks/train_worker.py [--repeats 3]

Runs the same iter_training (same seed, data and settings) alternately as a plain loop and inside
``napari.qt.threading.create_worker`` with a Qt event loop spinning on the main thread, as the
Train widget does, and prints the median seconds and their ratio. Both arms time the same work:
the phantoms are made once, before any timing, and each timed section starts with building the
training generator (which does its set-up lazily, on the first step, inside the timing).
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


def make_samples() -> list[Sample]:
    """The 32 phantoms both arms train on (made once, outside every timed section)."""
    return [Sample(f"p{s}", image=(p := make_phantom((128, 128), KINDS[s % 3], seed=s,
                                                     skull=False)).image, mask=p.tumour)
            for s in range(32)]


def job(tmp: Path, tag: str, samples: list[Sample]):
    cfg = TrainConfig(epochs=3, batch_size=8, patch_size=128, seed=0, patience=None)
    return iter_training(samples[:24], samples[24:], tmp / f"{tag}.pt", cfg,
                         UNetConfig(base_filters=8))


def plain(tmp: Path, samples: list[Sample]) -> float:
    t = time.perf_counter()
    for _ in job(tmp, "plain", samples):
        pass
    return time.perf_counter() - t


def in_worker(tmp: Path, samples: list[Sample]) -> float:
    from napari.qt import get_qapp
    from napari.qt.threading import create_worker
    from qtpy.QtCore import QEventLoop, QThreadPool

    app = get_qapp()
    loop = QEventLoop()
    seen = []

    t = time.perf_counter()
    gen = job(tmp, "worker", samples)

    def relay():
        return (yield from gen)

    worker = create_worker(relay)
    worker.yielded.connect(seen.append)  # the widget updates its plot/progress on these
    worker.finished.connect(loop.quit)
    worker.start()
    loop.exec()
    QThreadPool.globalInstance().waitForDone()  # the runnable's last signal, before teardown
    app.processEvents()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    samples = make_samples()
    plain(tmp, samples)  # warm-ups: imports, allocator, Qt
    in_worker(tmp, samples)
    p, w = [], []
    for r in range(args.repeats):  # alternate which arm goes first, so drift hits both alike
        if r % 2:
            w.append(in_worker(tmp, samples))
            p.append(plain(tmp, samples))
        else:
            p.append(plain(tmp, samples))
            w.append(in_worker(tmp, samples))
    mp, mw = float(np.median(p)), float(np.median(w))
    print("3 epochs, 24 slices 128x128, batch 8, U-Net width 8; medians of", args.repeats)
    print("each run, in order (plain / worker):", " ".join(f"{a:.2f}/{b:.2f}"
                                                        for a, b in zip(p, w, strict=True)))
    print(f"plain generator : {mp:6.2f} s")
    print(f"thread worker   : {mw:6.2f} s")
    print(f"worker / plain  : {mw / mp:6.3f}  (1.00 = no overhead)")


if __name__ == "__main__":
    main()

"""Training data pipeline overhead: epochs from files vs the same steps fed from memory.

    python benchmarks/train_pipeline.py [--repeats 3]

(a) ``iter_training`` on a folder of phantom PNG pairs (reading, normalisation, tumour-biased
crops, augmentation; no validation) for 3 epochs; (b) the same model, optimizer, loss, batch
size and number of steps on batches already stacked in memory. Each step is timed from the
previous step's end, leaving out each epoch's first step (it follows the end-of-epoch
checkpoint write, which is not the data pipeline). Epoch 1 reads the files (cold); from epoch 2
the normalised slices come from TrainingSet's in-memory cache (warm). Two settings: the study's
U-Net (width 16) on 256-pixel patches (the default) and a CI-sized one (width 8, 128 px), where
the model is cheap and the pipeline matters most.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _bench import print_table

from napari_brainseg.data import TrainingSet, samples_from_folder
from napari_brainseg.losses import LossConfig, make_loss
from napari_brainseg.model import UNet, UNetConfig
from napari_brainseg.synthetic import write_sample_folder
from napari_brainseg.train import BatchProgress, TrainConfig, iter_training

EPOCHS = 3


def bench(tmp: Path, width: int, patch: int, n: int, repeats: int) -> list[list[object]]:
    folder = tmp / f"data{patch}"
    write_sample_folder(folder, n=n, seed=0, shape=(patch, patch), skull=False)
    samples = samples_from_folder(folder)
    cfg = TrainConfig(epochs=EPOCHS, batch_size=8, patch_size=patch, patience=None, seed=0,
                      schedule="none")
    ucfg = UNetConfig(base_filters=width)

    def pipeline() -> list[float]:
        per_epoch = [0.0] * EPOCHS
        t = time.perf_counter()
        for p in iter_training(samples, [], tmp / "m.pt", cfg, ucfg):
            now = time.perf_counter()
            if isinstance(p, BatchProgress) and p.step > 1:
                per_epoch[p.epoch - 1] += now - t
            t = now
        return per_epoch

    ts = TrainingSet(samples, patch, True, cfg.normalisation, 0)
    items = [ts[i] for i in range(len(ts))]
    batches = [(torch.stack([x for x, _ in items[k:k + 8]]),
                torch.stack([y for _, y in items[k:k + 8]])) for k in range(0, len(items), 8)]
    loss_fn = make_loss(LossConfig())

    def in_memory() -> list[float]:
        torch.manual_seed(0)
        model = UNet(ucfg).train()
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        per_epoch = [0.0] * EPOCHS
        for e in range(EPOCHS):
            for step, (img, msk) in enumerate(batches):
                t = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(img), msk)
                loss.backward()
                opt.step()
                float(loss.detach())  # as the trainer does for its running mean
                if step > 0:
                    per_epoch[e] += time.perf_counter() - t
        return per_epoch

    pipeline(), in_memory()  # warm-up
    runs: dict[str, list[list[float]]] = {"pipeline": [], "memory": []}
    for _ in range(repeats):
        runs["pipeline"].append(pipeline())
        runs["memory"].append(in_memory())
    steps = len(batches) - 1
    rows = []
    for label, epochs in (("epoch 1 (cold)", [0]), ("epochs 2-3 (warm)", [1, 2])):
        tp = statistics.median(sum(r[e] for e in epochs) for r in runs["pipeline"])
        tm = statistics.median(sum(r[e] for e in epochs) for r in runs["memory"])
        k = steps * len(epochs)
        rows.append([f"width {width}, {patch} px, {n} slices", label, k / tp, k / tm,
                     f"{100 * (1 - tm / tp):.1f}%"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    rows = bench(tmp, 16, 256, 32, args.repeats) + bench(tmp, 8, 128, 64, args.repeats)
    print_table(["setting (batch 8)", "epochs", "steps/s files", "steps/s memory",
                 "pipeline overhead"], rows)


if __name__ == "__main__":
    main()

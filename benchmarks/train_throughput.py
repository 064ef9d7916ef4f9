"""Training throughput: on-the-fly synthesis vs batches in memory; channels-last; torch.compile.

    python benchmarks/train_throughput.py [--rounds 3] [--steps 6] [--no-compile]

Everything at 256 px, batch 8, on the CPU with torch's default threads, in one process.

(a) **On-the-fly synthesis.** Samples made as ``scripts/train_tumour_model.py``'s ``SynthStream``
makes them (:func:`napari_brainseg.synthesis.training_slice` on the training heads, then the
inference normalisation), through a ``DataLoader`` with 0, 1 or 2 worker processes (prefetch 4,
as the script), feed training steps of that script's U-Net (width 16, batch norm, dropout 0-0.2,
AdamW, channels-last). Baseline: the same steps on batches made before the timing ("in memory").
"precomputed shards": the same samples written before the timing as shard files
(:mod:`napari_brainseg.synthesis.shards`, what ``--shards`` trains on), read memory-mapped and
shuffled in the training process (no worker). Each round makes its loaders afresh (an idle
worker of one arm never takes CPU from another) with the heads loaded before the workers fork
(the 10-15 s load of ``build/tumour-heads.npz`` is start-up, not throughput). "generation
only" is the rate of making samples in this process without training: what precomputing shards
costs, once.
Needs ``build/tumour-heads.npz`` (``python scripts/train_tumour_model.py --prepare``).

(b) **The training step.** The study U-Net (``UNetConfig()``: width 16, no batch norm, dropout),
Adam, Dice + BCE, on batches in memory: default (contiguous) layout vs channels-last (weights and
inputs) vs ``torch.compile`` of each (its warm-up, the first steps, is reported separately); and
the same U-Net with batch norm (as the built-in model) in both layouts, against its contiguous
layout.

Each arm runs ``--steps`` steps per round and the rounds interleave the arms (A B C, A B C, ...).
A step is timed from the end of the previous one, so waiting for data counts; each round's first
step is left out (loader start-up, first batch, compilation). Reported: the median over rounds of
each arm's samples/s, and its ratio to the baseline of the same run. Run ``uptime`` beside it: on
2 shared cores the absolute rates follow the load, the ratios much less.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from _bench import print_table

from napari_brainseg.losses import LossConfig, make_loss
from napari_brainseg.model import UNet, UNetConfig
from napari_brainseg.preprocess import DEFAULT_NORMALISATION, normalise

ROOT = Path(__file__).resolve().parents[1]
HEADS_FILE = ROOT / "build" / "tumour-heads.npz"
SIZE, BATCH = 256, 8
CL = torch.channels_last

Batch = tuple[torch.Tensor, torch.Tensor]


class Stream(torch.utils.data.IterableDataset):
    """Endless synthetic pairs, as SynthStream in scripts/train_tumour_model.py, heads given."""

    def __init__(self, heads: list, seed: int) -> None:
        self.heads, self.seed = heads, seed

    def __iter__(self) -> Iterator[Batch]:  # noqa: D105
        from napari_brainseg.synthesis import training_slice

        info = torch.utils.data.get_worker_info()
        if info is not None:  # a worker: one thread, the cores are the trainer's
            torch.set_num_threads(1)
        rng = np.random.default_rng([self.seed, 0, info.id if info else 0])
        while True:
            s = training_slice(self.heads, rng, SIZE)
            img = normalise(s.image, DEFAULT_NORMALISATION)
            yield torch.from_numpy(img[None]), torch.from_numpy(s.tumour[None].astype(np.float32))


class Trainer:
    """One model and optimiser; ``step(batch)`` runs one training step as the scripts do."""

    def __init__(self, cfg: UNetConfig, channels_last: bool, adamw: bool,
                 compile_: bool = False) -> None:
        torch.manual_seed(0)
        self.model = UNet(cfg).train()
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=CL)
        opt = torch.optim.AdamW if adamw else torch.optim.Adam
        self.opt = opt(self.model.parameters(), lr=1e-3)
        self.net = torch.compile(self.model) if compile_ else self.model
        self.loss_fn = make_loss(LossConfig())

    def step(self, batch: Batch) -> None:
        img, msk = batch
        if self.channels_last:
            img = img.contiguous(memory_format=CL)
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.net(img), msk)
        loss.backward()
        self.opt.step()
        float(loss.detach())  # as the trainers do for their running mean


def timed_steps(trainer: Trainer, batches: Iterator[Batch], steps: int) -> float:
    """Samples/s of ``steps`` steps after an untimed first one; data waiting counts."""
    trainer.step(next(batches))
    t = time.perf_counter()
    for _ in range(steps):
        trainer.step(next(batches))
    return steps * BATCH / (time.perf_counter() - t)


def interleave(arms: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Median over rounds of each arm's samples/s, the arms run in turn within each round."""
    rates: dict[str, list[float]] = {k: [] for k in arms}
    for r in range(rounds):
        for name, arm in arms.items():
            rates[name].append(arm())
            print(f"  round {r + 1} {name}: {rates[name][-1]:.2f} samples/s", flush=True)
    return {k: statistics.median(v) for k, v in rates.items()}


def synthesis(rounds: int, steps: int) -> list[list[object]]:
    from napari_brainseg.synthesis import load_heads

    if not HEADS_FILE.exists():
        raise SystemExit(f"{HEADS_FILE} is missing: run python scripts/train_tumour_model.py "
                         "--prepare first")
    t = time.perf_counter()
    heads = load_heads(HEADS_FILE)
    print(f"heads loaded in {time.perf_counter() - t:.1f} s", flush=True)
    cfg = UNetConfig(base_filters=16, batch_norm=True, dropout=(0, 0, 0.1, 0.1, 0.2))
    stream = Stream(heads, seed=0)
    it = iter(stream)
    samples = [next(it) for _ in range(BATCH * (steps + 1))]
    memory = [(torch.stack([x for x, _ in samples[k:k + BATCH]]),
               torch.stack([y for _, y in samples[k:k + BATCH]]))
              for k in range(0, len(samples), BATCH)]
    trainers = {w: Trainer(cfg, channels_last=True, adamw=True)
                for w in ("memory", "shards", 0, 1, 2)}
    # Precomputed shards (synthesis/shards.py, as train_tumour_model.py --shards reads them):
    # made before the timing, then memory-mapped; twice the samples a round uses.
    from napari_brainseg.synthesis.shards import ShardSet, write_shards

    shard_dir = Path(tempfile.mkdtemp(prefix="brainseg-shards-"))
    gen = iter(Stream(heads, seed=2))
    t = time.perf_counter()
    write_shards(shard_dir, lambda rng: tuple(v[0].numpy() for v in next(gen)),
                 2 * BATCH * (steps + 1), seed=2, per_shard=4 * BATCH)
    print(f"shards written in {time.perf_counter() - t:.1f} s", flush=True)
    shards = ShardSet(shard_dir)
    shard_rng = np.random.default_rng(0)

    def from_shards() -> float:
        batches = ((torch.from_numpy(x[:, None]), torch.from_numpy(y[:, None].astype(np.float32)))
                   for x, y in shards.batches(BATCH, shard_rng))
        return timed_steps(trainers["shards"], batches, steps)

    def on_the_fly(workers: int) -> Callable[[], float]:
        def arm() -> float:
            loader = torch.utils.data.DataLoader(
                stream, batch_size=BATCH, num_workers=workers,
                prefetch_factor=4 if workers else None)
            batches = iter(loader)
            try:
                return timed_steps(trainers[workers], batches, steps)
            finally:
                del batches  # shuts the workers down before the next arm
        return arm

    def generation() -> float:
        gen = iter(Stream(heads, seed=1))
        t = time.perf_counter()
        for _ in range(BATCH * 2):
            next(gen)
        return BATCH * 2 / (time.perf_counter() - t)

    arms = {"in memory": lambda: timed_steps(trainers["memory"], iter(memory), steps),
            "precomputed shards (memory-mapped, no worker)": from_shards,
            **{f"on the fly, {w} worker{'s' if w != 1 else ''}": on_the_fly(w) for w in (0, 1, 2)},
            "generation only (no training)": generation}
    rates = interleave(arms, rounds)
    shutil.rmtree(shard_dir, ignore_errors=True)
    base = rates["in memory"]
    return [[name, rate, "—" if name.startswith("generation") else f"{100 * rate / base:.0f}%"]
            for name, rate in rates.items()]


def training_step(rounds: int, steps: int, compile_: bool) -> tuple[list[list[object]],
                                                                      list[list[object]]]:
    gen = torch.Generator().manual_seed(0)
    memory = [(torch.rand(BATCH, 1, SIZE, SIZE, generator=gen),
               (torch.rand(BATCH, 1, SIZE, SIZE, generator=gen) > 0.9).float())
              for _ in range(steps + 1)]
    study, bn = UNetConfig(), UNetConfig(batch_norm=True)
    variants = {"contiguous (eager)": (study, False, False),
                "channels-last (eager)": (study, True, False)}
    if compile_:
        variants |= {"torch.compile, contiguous": (study, False, True),
                     "torch.compile, channels-last": (study, True, True)}
    variants |= {"with batch norm: contiguous": (bn, False, False),
                 "with batch norm: channels-last": (bn, True, False)}
    arms: dict[str, Callable[[], float]] = {}
    warmups: list[list[object]] = []
    for name, (cfg, cl, comp) in variants.items():
        trainer = Trainer(cfg, channels_last=cl, adamw=False, compile_=comp)
        if comp:  # compile now, so its seconds are reported apart from the rates
            t = time.perf_counter()
            try:
                for b in memory[:2]:
                    trainer.step(b)
            except Exception as exc:  # noqa: BLE001 (a failed compile is a result to report)
                warmups.append([name, f"failed after {time.perf_counter() - t:.0f} s: "
                                      f"{type(exc).__name__}: {str(exc)[:120]}"])
                continue
            warmups.append([name, f"{time.perf_counter() - t:.1f} s (first 2 steps)"])
        arms[name] = (lambda tr: lambda: timed_steps(tr, iter(memory), steps))(trainer)
    rates = interleave(arms, rounds)
    rows = []
    for name, rate in rates.items():
        base = rates["with batch norm: contiguous" if name.startswith("with batch norm")
                     else "contiguous (eager)"]
        rows.append([name, rate, rate / base])
    return rows, warmups


def main() -> None:
    global SIZE
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per arm and round")
    ap.add_argument("--no-compile", action="store_true", help="leave out torch.compile")
    ap.add_argument("--only", choices=("synthesis", "step"), help="run one part only")
    ap.add_argument("--size", type=int, default=SIZE, help="patch side (smaller: a smoke test)")
    args = ap.parse_args()
    SIZE = args.size
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    if args.only != "step":
        rows = synthesis(args.rounds, args.steps)
        print(f"\n(a) tumour-model U-Net (width 16, batch norm), {SIZE} px, batch 8, "
              "channels-last")
        print_table(["data", "samples/s", "of in-memory rate"], rows)
    if args.only != "synthesis":
        rows, warmups = training_step(args.rounds, args.steps, not args.no_compile)
        print(f"\n(b) study U-Net (width 16), {SIZE} px, batch 8, batches in memory")
        print_table(["training step", "samples/s", "vs contiguous"], rows)
        if warmups:
            print()
            print_table(["torch.compile", "warm-up"], warmups)


if __name__ == "__main__":
    main()

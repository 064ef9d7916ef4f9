"""A simulated user in the correction loop: uncertainty-ordered corrections against random ones.

    python benchmarks/correction_loop.py [--seeds 2] [--rounds 5] [--k 8] [--plot PNG]
        [--strategies uncertainty,diverse,random]

Data: synthetic contrast-enhanced tumours on three real heads (Colin27, ITK, ROBEX from
../shared/data, or build/tumour-heads.npz when ``scripts/train_tumour_model.py --prepare`` made
it), any plane, 1-7 mm thick, 2 mm pixels on a 128 x 128 grid. Per seed:

1. a width-8 U-Net is trained on a few labelled slices (``--start``);
2. a pool of unlabelled slices (their truth hidden) and a held-out test set are drawn;
3. each round the "user" corrects ``k`` pool slices (the prediction replaced by the truth),
   chosen (a) by uncertainty (:mod:`napari_brainseg.uncertainty`, 4-flip TTA, the most
   uncertain slices first), (b) by uncertainty with diversity (``diverse``: suggestive
   annotation, :func:`napari_brainseg.uncertainty.select_slices`, the 2k most uncertain
   slices narrowed to the k that best represent the pool by the model's bottleneck features)
   or (c) at random; then the model is fine-tuned from its current
   weights on every slice corrected so far plus replay of the starting slices
   (:func:`napari_brainseg.correction.finetune`), and Dice on the test set is measured.

Printed: test Dice against the number of corrected slices for each strategy (mean and range
over the seeds), the error rate (misclassified pixels per slice) of the slices each strategy
picks against the pool's average, how many corrected slices each ordered strategy needs to reach
the random order's final Dice, and CPU minutes per round. Everything is seeded; the strategies
of a seed share its data, its starting model and its fine-tuning seeds.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from _bench import print_table

from napari_brainseg.correction import Correction, FinetuneConfig, finetune
from napari_brainseg.data import Sample
from napari_brainseg.losses import LossConfig
from napari_brainseg.model import UNetConfig
from napari_brainseg.predict import Predictor, SegmentOptions
from napari_brainseg.preprocess import DEFAULT_NORMALISATION, normalise
from napari_brainseg.synthesis import load_head, load_heads, training_slice
from napari_brainseg.train import TrainConfig, train
from napari_brainseg.uncertainty import (
    UncertaintyOptions,
    encoder_features,
    select_slices,
    uncertainty,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
HEADS_FILE = ROOT / "build" / "tumour-heads.npz"
PIXEL_MM = 2.0
STRATEGIES = ("uncertainty", "diverse", "random")
COLOURS = {"uncertainty": "tab:orange", "diverse": "tab:green", "random": "tab:blue"}


def heads():
    if HEADS_FILE.is_file():
        return load_heads(HEADS_FILE)
    real = SHARED / "real"
    return [load_head("colin27", SHARED / "colin27" / "ch2.nii.gz",
                      SHARED / "colin27" / "ch2bet.nii.gz"),
            load_head("itk", real / "itk_t1_head.nii.gz", real / "itk_t1_head_brainmask.nii.gz"),
            load_head("robex", real / "robex_t1_head.nii.gz",
                      real / "robex_t1_head_brainmask.nii.gz")]


def draw(hs, rng, n):
    """``n`` synthetic (image, truth) pairs at 2 mm on 128 x 128 (1 mm 256 grid, 2x2 means)."""
    out = []
    for _ in range(n):
        s = training_slice(hs, rng, size=256, phantom_fraction=0.0)
        img = s.image.reshape(128, 2, 128, 2).mean(axis=(1, 3)).astype(np.float32)
        msk = (s.tumour.reshape(128, 2, 128, 2).mean(axis=(1, 3)) >= 0.5).astype(np.uint8)
        out.append((img, msk))
    return out


def dice_and_errors(pred, pairs):
    """Pooled Dice over ``pairs`` and misclassified pixels of each slice."""
    inter = total = 0
    errors = []
    for (_img, truth), m in zip(pairs, pred, strict=True):
        inter += int(np.logical_and(m, truth).sum())
        total += int(m.sum() + truth.sum())
        errors.append(int((m.astype(bool) != truth.astype(bool)).sum()))
    return (1.0 if total == 0 else 2 * inter / total), np.array(errors)


def predict(model_path, pairs):
    p = Predictor.from_checkpoint(model_path, SegmentOptions(min_area_mm2=0), device="cpu")
    return [p.segment_slice(img, (PIXEL_MM, PIXEL_MM)).mask for img, _ in pairs]


def run_seed(seed, hs, args, work):
    rng = np.random.default_rng(seed)
    t0, wall0 = time.process_time(), time.time()
    start = draw(hs, rng, args.start)
    pool = draw(hs, rng, args.pool)
    test = draw(hs, rng, args.test)
    gen_min = (time.process_time() - t0) / 60
    samples = [Sample(f"s{i}", image=img, mask=m) for i, (img, m) in enumerate(start)]
    base = work / f"seed{seed}.pt"
    torch.manual_seed(seed)
    train(samples, samples[: max(2, len(samples) // 4)], base,
          TrainConfig(loss=LossConfig("dice+bce"), epochs=args.start_epochs, batch_size=8,
                      lr=3e-3, patch_size=128, schedule="none", patience=None, seed=seed),
          UNetConfig(base_filters=8))
    replay_pairs = [(normalise(img, DEFAULT_NORMALISATION), m) for img, m in start]

    def replay(r):
        return replay_pairs[int(r.integers(len(replay_pairs)))]

    curves, picked_err, round_min = {}, {}, []
    for strategy in args.strategies:
        model, chosen = base, []
        d, _ = dice_and_errors(predict(model, test), test)
        curve = [(0, d)]
        ratios = []
        pick_rng = np.random.default_rng([seed, 1])
        for r in range(args.rounds):
            t = time.process_time()
            left = [i for i in range(len(pool)) if i not in chosen]
            _, err = dice_and_errors(predict(model, [pool[i] for i in left]),
                                     [pool[i] for i in left])
            if strategy in ("uncertainty", "diverse"):
                pred = Predictor.from_checkpoint(model, device="cpu")
                scores = [uncertainty(pred, pool[i][0], (PIXEL_MM, PIXEL_MM),
                                      options=UncertaintyOptions("tta", 4)).score for i in left]
                pick = list(np.argsort(-np.array(scores), kind="stable")[: args.k])
            if strategy == "diverse":
                # the features of every pool slice: corrected ones count as covered
                feats = np.concatenate([
                    encoder_features(pred, [img for img, _ in pool[a:a + 32]],
                                     (PIXEL_MM, PIXEL_MM)) for a in range(0, len(pool), 32)])
                all_scores = np.zeros(len(pool))
                all_scores[left] = scores
                picked = select_slices(all_scores, feats, args.k, labelled=chosen,
                                       candidates=args.candidates)
                pick = [left.index(i) for i in picked]
            elif strategy == "random":
                pick = list(pick_rng.choice(len(left), args.k, replace=False))
            ratios.append(err[pick].mean() / max(err.mean(), 1e-9))
            chosen += [left[j] for j in pick]
            corrections = [Correction(pool[i][0], pool[i][1]) for i in chosen]
            res = finetune(model, corrections, work / f"s{seed}-{strategy}-r{r + 1}.pt", replay,
                           FinetuneConfig(steps=args.steps, batch_size=8, lr=1e-3, patch=128,
                                          replay_fraction=0.5, holdout_fraction=0.0,
                                          seed=seed * 100 + r))
            model = res.path
            d, _ = dice_and_errors(predict(model, test), test)
            curve.append((len(chosen), d))
            round_min.append((time.process_time() - t) / 60)
        curves[strategy] = curve
        picked_err[strategy] = ratios
    return curves, picked_err, round_min, gen_min, ((time.process_time() - t0) / 60,
                                                    (time.time() - wall0) / 60)


def _seed_job(seed, args, work):
    torch.set_num_threads(args.threads)
    return run_seed(seed, heads(), args, work)


def slices_to_reach(curve, target):
    """Corrected slices at which ``curve`` first reaches ``target`` (linear between rounds)."""
    for (n0, d0), (n1, d1) in zip(curve, curve[1:], strict=False):
        if d0 >= target:
            return n0
        if d1 >= target:
            return n0 + (n1 - n0) * (target - d0) / (d1 - d0)
    return float("inf") if curve[-1][1] < target else curve[-1][0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--first-seed", type=int, default=0,
                    help="seeds FIRST .. FIRST+SEEDS-1 (to add seeds to an earlier run)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--k", type=int, default=8, help="slices corrected per round")
    ap.add_argument("--start", type=int, default=48, help="labelled slices of the first model")
    ap.add_argument("--start-epochs", type=int, default=100)
    ap.add_argument("--pool", type=int, default=160)
    ap.add_argument("--test", type=int, default=80)
    ap.add_argument("--steps", type=int, default=80, help="fine-tuning steps per round")
    ap.add_argument("--plot", type=Path, help="write the Dice curves as a PNG")
    ap.add_argument("--save", type=Path, help="write each seed's curves and picks as JSON")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (1 on a busy machine)")
    ap.add_argument("--candidates", type=int, default=2,
                    help="diverse: choose k of the candidates x k most uncertain slices")
    ap.add_argument("--jobs", type=int, default=1, help="seeds run in parallel processes")
    ap.add_argument("--strategies", default=",".join(STRATEGIES),
                    help="comma-separated, from " + ", ".join(STRATEGIES) + " (random needed)")
    args = ap.parse_args()
    args.strategies = [x.strip() for x in args.strategies.split(",") if x.strip()]
    bad = [x for x in args.strategies if x not in STRATEGIES]
    if bad or "random" not in args.strategies:
        ap.error(f"--strategies: choose from {', '.join(STRATEGIES)}, random included")
    torch.set_num_threads(args.threads)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.jobs == 1:
            hs = heads()
            for seed in seeds:
                results.append(run_seed(seed, hs, args, Path(tmp)))
                print(f"seed {seed} done: {results[-1][4][0]:.1f} CPU min, "
                      f"{results[-1][4][1]:.1f} min wall", flush=True)
        else:  # seeds in parallel processes, each with --threads torch threads
            job = functools.partial(_seed_job, args=args, work=Path(tmp))
            with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("fork")) as ex:
                for seed, res in zip(seeds, ex.map(job, seeds), strict=True):
                    results.append(res)
                    print(f"seed {seed} done: {res[4][0]:.1f} CPU min, {res[4][1]:.1f} min "
                          "wall", flush=True)
    rows = []
    n_rounds = args.rounds + 1
    for strategy in args.strategies:
        for r in range(n_rounds):
            ds = [res[0][strategy][r][1] for res in results]
            n = results[0][0][strategy][r][0]
            err = "" if r == 0 else f"{np.mean([res[1][strategy][r - 1] for res in results]):.2f}x"
            rows.append([strategy, n, f"{np.mean(ds):.3f}", f"{min(ds):.3f}-{max(ds):.3f}", err])
    print("\nTest Dice against corrected slices (mean, range over "
          f"{args.seeds} seeds); picked error = misclassified pixels per picked slice "
          "/ pool mean\n")
    print_table(["strategy", "corrected slices", "test Dice", "range", "picked error"], rows)
    print()
    for strategy in args.strategies:
        if strategy == "random":
            continue
        need = [slices_to_reach(res[0][strategy], res[0]["random"][-1][1])
                / res[0]["random"][-1][0] for res in results]
        print(f"{strategy} order reaches the random order's final Dice with "
              f"{', '.join(f'{x:.2f}' for x in need)} x its corrected slices (per seed; "
              f"median {np.median(need):.2f}, {sum(x <= 0.5 for x in need)}/{len(need)} "
              "seeds at most 0.5)")
    for strategy in args.strategies:
        per_seed = [np.mean(res[1][strategy]) for res in results]
        print(f"picked error, {strategy}: {np.mean(per_seed):.2f}x the pool mean (per seed "
              f"{', '.join(f'{x:.2f}' for x in per_seed)})")
    mins = [m for res in results for m in res[2]]
    print(f"CPU minutes per round (uncertainty scoring + fine-tune + test): median "
          f"{np.median(mins):.2f}, max {max(mins):.2f}; data generation "
          f"{np.mean([res[3] for res in results]):.1f} min per seed")
    if args.save:
        args.save.write_text(json.dumps([
            {"seed": seed, "curves": res[0], "picked_error": res[1], "cpu_min": res[4][0]}
            for seed, res in zip(seeds, results, strict=True)], indent=1, default=float))
        print(f"per-seed results: {args.save}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
        for strategy in args.strategies:
            colour = COLOURS[strategy]
            n = [p[0] for p in results[0][0][strategy]]
            ds = np.array([[p[1] for p in res[0][strategy]] for res in results])
            ax.plot(n, ds.mean(axis=0), "o-", color=colour, label=f"{strategy} order")
            ax.fill_between(n, ds.min(axis=0), ds.max(axis=0), color=colour, alpha=0.2)
        ax.set_xlabel("corrected slices")
        ax.set_ylabel("test Dice")
        ax.set_title(f"Simulated correction loop ({args.seeds} seeds, range shaded)")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()

"""Train the built-in tumour model on synthetic CE-T1 tumours in real heads (seeded, resumable).

    python scripts/train_tumour_model.py --prepare            # heads -> build/tumour-heads.npz
    python scripts/train_tumour_model.py --steps 2400 --out build/tumour_unet.pt
    python scripts/train_tumour_model.py --resume ...         # go on from OUT.last.pt
    python scripts/train_tumour_model.py --exclude itk ...    # leave one head out

Training heads: Colin27, ITK T1 head, ROBEX T1 head (../shared/data, with their brain masks).
MRHead and the two tumour scans are never trained on: MRHead's false positives and the tumour
scans' Dice are the held-out figures of ``benchmarks/real_scans.py``.

Every sample is drawn fresh by :func:`napari_brainseg.synthesis.training_slice` in DataLoader
workers (any plane, 1-7 mm thick, glioma / meningioma / metastases / pituitary or no tumour, CE-T1
background, acquisition variety), so there is no epoch and no over-fitting to a fixed set.
Worker ``w`` of run segment ``r`` (0 for a fresh run, +1 per resume) draws from
``default_rng([seed, r, w])``: a run is reproducible given the same worker count. The model works
on 1 mm pixels (``training["pixel_mm"]``); the Predictor resamples every slice to that grid.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from napari_brainseg.losses import LossConfig, make_loss
from napari_brainseg.model import UNet, UNetConfig, load_checkpoint, save_checkpoint
from napari_brainseg.preprocess import DEFAULT_NORMALISATION, normalise

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
HEADS_FILE = ROOT / "build" / "tumour-heads.npz"
HEADS = {
    "colin27": (SHARED / "colin27" / "ch2.nii.gz", SHARED / "colin27" / "ch2bet.nii.gz"),
    "itk": (SHARED / "real" / "itk_t1_head.nii.gz",
            SHARED / "real" / "itk_t1_head_brainmask.nii.gz"),
    "robex": (SHARED / "real" / "robex_t1_head.nii.gz",
              SHARED / "real" / "robex_t1_head_brainmask.nii.gz"),
}
PIXEL_MM = 1.0
SIZE = 256
MODEL_CARD = (
    "Built-in tumour model. Trained only on synthetic contrast-enhanced T1 tumours (glioma, "
    "meningioma, metastases, pituitary macroadenoma) painted into three real, healthy T1 heads "
    "(Colin27, ITK, ROBEX) with synthetic contrast enhancement of vessels, dura, sinuses, choroid "
    "plexus and pituitary, 1-7 mm slices, all planes, bias and noise; by "
    "scripts/train_tumour_model.py. For contrast-enhanced T1 only; T2/FLAIR/non-contrast T1 "
    "give unreliable results. Validated on two real CE-T1 scans of one patient (a sanity "
    "check, not a clinical validation); a first pass to correct, not a diagnostic tool."
)


def prepare(out: Path, exclude: list[str]) -> None:
    from napari_brainseg.synthesis import load_head, save_heads

    heads = [load_head(n, img, msk) for n, (img, msk) in HEADS.items() if n not in exclude]
    out.parent.mkdir(parents=True, exist_ok=True)
    save_heads(out, heads)
    print("wrote", out, f"{out.stat().st_size / 1e6:.1f} MB:", [h.name for h in heads])


#: Where the built-in model lives (napari_brainseg.predict.BUILTIN_MODEL).
BUILTIN = ROOT / "src" / "napari_brainseg" / "models" / "tumour_unet.pt"
#: The enhancement check: a component whose 90th-percentile intensity is under this multiple of
#: the white matter's is dropped. Chosen on the training heads: their healthy structures that the
#: model marked (brainstem, thalamus, basal ganglia) reached at most 1.42 x.
MIN_ENHANCEMENT = 1.5
#: The built-in model's threshold (``predict.model_options``): the one of 0.5-0.9 whose
#: predicted / true tumour area was closest to 1 on 150 synthetic tumours in MRHead (held out
#: of training; rng seed 2026, not the held-out test set's): 0.5 gave 1.0055, 0.6 0.9964.
SHIPPED_THRESHOLD = 0.6


#: How the shipped model was made (recorded in its checkpoint; the README says the same).
SHIPPED_RECIPE = (
    "stage 1: 531 steps, batch 32, lr 2e-3, seed 0, 15 workers, GPU (H200), enhancement "
    "1.12-2.0 x; stage 2: --init stage 1, 672 steps, batch 32, lr 1.5e-3, seed 1, GPU; "
    "stage 3: --init stage 2, 1537 steps, batch 8, lr 5e-4, seed 2, 1 worker, 2-core CPU, "
    "current synthesis (enhancement 1.2-2.2 x, 45 % tumour-free). Stage 3 was chosen over "
    "stage 2 by held-out synthetic Dice on MRHead (0.936 vs 0.916). "
    "stage 4: --init stage 3, 443 steps (--minutes 75), batch 8, lr 4e-4, seed 3, 1 worker, "
    "2-core CPU, synthesis with dural sinuses and choroid glomera placed by anatomy "
    "(synthesis/venous.py); held-out synthetic Dice on MRHead with that synthesis 0.904 vs "
    "stage 3's 0.890."
)


def install(src: Path) -> None:
    ck = load_checkpoint(src)
    training = dict(ck.training)
    if training.get("task") != "tumour":
        raise SystemExit(f"{src} is not a tumour model from this script")
    training["min_enhancement"] = MIN_ENHANCEMENT
    training["threshold"] = SHIPPED_THRESHOLD
    training["builtin"] = True
    training["recipe"] = SHIPPED_RECIPE
    save_checkpoint(BUILTIN, ck.model, ck.normalisation, training, ck.metrics)
    print("installed", src, "as", BUILTIN, f"({BUILTIN.stat().st_size / 1e6:.1f} MB)")


def synth_pair(heads: list, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One training pair, normalised like inference: (image float32, tumour uint8)."""
    from napari_brainseg.synthesis import training_slice

    s = training_slice(heads, rng, SIZE)
    return normalise(s.image, DEFAULT_NORMALISATION), s.tumour


def write_shard_set(heads_file: Path, exclude: list[str], folder: Path, n: int, seed: int,
                    first: int) -> None:
    from napari_brainseg.synthesis import load_heads
    from napari_brainseg.synthesis.shards import PER_SHARD, write_shards

    heads = [h for h in load_heads(heads_file) if h.name not in exclude]
    t = time.perf_counter()
    paths = write_shards(folder, lambda rng: synth_pair(heads, rng), n, seed,
                         {"size": SIZE, "heads": [h.name for h in heads],
                          "script": "scripts/train_tumour_model.py"}, first=first)
    print(f"{len(paths)} shards of up to {PER_SHARD} samples in {folder} "
          f"({time.perf_counter() - t:.0f} s)", flush=True)


class ShardStream(torch.utils.data.IterableDataset):
    """Endless batches from precomputed shards (``--shards``), shuffled each pass."""

    def __init__(self, folder: Path, batch: int, seed: int, segment: int) -> None:
        self.folder, self.batch, self.seed, self.segment = folder, batch, seed, segment

    def __iter__(self):  # noqa: D105
        from napari_brainseg.synthesis.shards import ShardSet

        rng = np.random.default_rng([self.seed, self.segment, 99])
        for x, y in ShardSet(self.folder).batches(self.batch, rng):
            yield torch.from_numpy(x[:, None]), torch.from_numpy(y[:, None].astype(np.float32))


class SynthStream(torch.utils.data.IterableDataset):
    """Endless synthetic (image, mask) pairs, normalised like inference."""

    def __init__(self, heads_file: Path, exclude: list[str], seed: int, segment: int) -> None:
        self.heads_file, self.exclude, self.seed, self.segment = heads_file, exclude, seed, segment

    def __iter__(self):  # noqa: D105
        from napari_brainseg.synthesis import load_heads

        info = torch.utils.data.get_worker_info()
        if info is not None:  # a worker process; with --workers 0 this is the training process
            torch.set_num_threads(1)
        wid = info.id if info else 0
        heads = [h for h in load_heads(self.heads_file) if h.name not in self.exclude]
        rng = np.random.default_rng([self.seed, self.segment, wid])
        while True:
            img, tumour = synth_pair(heads, rng)
            yield torch.from_numpy(img[None]), torch.from_numpy(tumour[None].astype(np.float32))


def lr_at(step: int, total: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prepare", action="store_true", help="write the heads file and stop")
    ap.add_argument("--heads", type=Path, default=HEADS_FILE)
    ap.add_argument("--exclude", nargs="*", default=[], choices=list(HEADS))
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "tumour_unet.pt")
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=0.0,
                    help="fit the run into this wall time: after 60 steps the step count is cut "
                         "to what the measured rate allows (the checkpoint records the steps "
                         "done; rerun with --steps N to reproduce); 0 = no limit")
    ap.add_argument("--save-every", type=int, default=200)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--install", type=Path, metavar="CHECKPOINT",
                    help="make CHECKPOINT the built-in model (adds the inference settings) "
                         "and stop")
    ap.add_argument("--init", type=Path, help="start from this checkpoint's weights (fine-tune)")
    ap.add_argument("--write-shards", type=Path, metavar="DIR",
                    help="make --samples training pairs into shard files in DIR and stop "
                         "(several processes may share the work with --first-shard)")
    ap.add_argument("--samples", type=int, default=4096)
    ap.add_argument("--first-shard", type=int, default=0)
    ap.add_argument("--shards", type=Path, metavar="DIR",
                    help="train on precomputed shards (from --write-shards) instead of "
                         "synthesising on the fly: no worker takes the cores from training")
    args = ap.parse_args()
    if args.write_shards:
        write_shard_set(args.heads, args.exclude, args.write_shards, args.samples, args.seed,
                        args.first_shard)
        return
    if args.prepare:
        prepare(args.heads, args.exclude)
        return
    if args.install:
        install(args.install)
        return
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = UNetConfig(base_filters=args.width, batch_norm=True, dropout=(0, 0, 0.1, 0.1, 0.2))
    model = UNet(cfg).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    last = args.out.with_suffix(".last.pt")
    step, segment, log = 0, 0, []
    if args.resume and last.is_file():
        ck = load_checkpoint(last)
        model.load_state_dict(ck.model.state_dict())
        opt.load_state_dict(ck.optimizer)
        step, segment = int(ck.resume["step"]), int(ck.resume["segment"]) + 1
        log = list(ck.resume.get("log", []))
        print(f"resumed at step {step} (segment {segment})", flush=True)
    if args.init and not args.resume:
        model.load_state_dict(load_checkpoint(args.init).model.state_dict())
        print("weights from", args.init, flush=True)
    loss_cfg = LossConfig("dice+bce")
    loss_fn = make_loss(loss_cfg)
    if args.shards:
        loader = ShardStream(args.shards, args.batch, args.seed, segment)
    else:
        loader = torch.utils.data.DataLoader(
            SynthStream(args.heads, args.exclude, args.seed, segment), batch_size=args.batch,
            num_workers=args.workers, persistent_workers=args.workers > 0,
            prefetch_factor=4 if args.workers > 0 else None, pin_memory=device.type == "cuda")
    t0 = time.perf_counter()
    amp = device.type == "cuda"

    def save(path: Path, final: bool) -> None:
        training = {
            "task": "tumour", "pixel_mm": PIXEL_MM, "size": SIZE, "steps": step,
            "batch": args.batch, "lr": args.lr, "seed": args.seed, "workers": args.workers,
            "loss": loss_cfg.to_dict(), "heads": [n for n in HEADS if n not in args.exclude],
            "script": "scripts/train_tumour_model.py", "model_card": MODEL_CARD,
            "contrast": "contrast-enhanced T1",
            "seconds": round(time.perf_counter() - t0, 1), "device": device.type,
            "init": str(args.init) if args.init else None,
            "shards": str(args.shards) if args.shards else None,
        }
        save_checkpoint(path, model, DEFAULT_NORMALISATION, training,
                        {"train_loss_last100": float(np.mean(log[-100:])) if log else None},
                        optimizer=None if final else opt.state_dict(),
                        resume=None if final else {"step": step, "segment": segment,
                                                   "log": log[-2000:]})

    model.train()
    for x, y in loader:
        if step >= args.steps:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr)
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        log.append(float(loss.detach()))
        if step % 25 == 0 or step == 1:
            el = time.perf_counter() - t0
            print(f"step {step}/{args.steps} loss {np.mean(log[-25:]):.4f} "
                  f"lr {opt.param_groups[0]['lr']:.2e} {el:.0f}s ({step / el:.2f} step/s)",
                  flush=True)
        if step % args.save_every == 0:
            save(last, final=False)
        if step == 40:
            t40 = time.perf_counter()
        if args.minutes and step == 100:  # rate measured after the workers' start-up
            rate = 60 / (time.perf_counter() - t40)
            fit = int(rate * (args.minutes * 60 - (time.perf_counter() - t0)) * 0.97) + step
            if fit < args.steps:
                print(f"{rate:.2f} step/s: {fit} steps fit in {args.minutes} min "
                      f"(asked {args.steps})", flush=True)
                args.steps = fit
    save(last, final=False)
    if step >= args.steps:
        model.eval()
        save(args.out, final=True)
        print("wrote", args.out, flush=True)
    (args.out.with_suffix(".log.json")).write_text(json.dumps({"loss": log}))


if __name__ == "__main__":
    main()

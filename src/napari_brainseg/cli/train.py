"""``brainseg train`` (and the corrected samples it can train on)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from ._common import _err


def _cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_brainseg.data import samples_from_folder, split_samples
    from napari_brainseg.losses import LossConfig
    from napari_brainseg.model import CheckpointError, UNetConfig
    from napari_brainseg.train import (
        BatchProgress,
        EpochReport,
        TrainConfig,
        ValidationProgress,
        distributed_from_env,
        iter_training,
    )

    try:
        loss = LossConfig(args.loss, alpha=args.alpha, gamma=args.gamma, beta=args.beta,
                          pos_weight=args.pos_weight)
        cfg = TrainConfig(loss=loss, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          patch_size=args.patch_size, augment=not args.no_augment,
                          patience=args.patience or None, seed=args.seed, device=args.device,
                          deterministic=args.deterministic)
        samples = (_corrected_samples(args.data, args.labels_from) if args.labels_from
                   else samples_from_folder(args.data))
        train_s, val_s = split_samples(samples, args.val_split, args.seed)
    except ValueError as exc:
        _err(str(exc))
        return 2
    from napari_brainseg.train import check_output_path, last_path_for

    out = Path(args.out)
    try:
        check_output_path(out)  # a folder or an unwritable place would lose the first epoch
    except ValueError as exc:
        _err(f"--out {exc}")
        return 2
    existing = [p for p in (out, last_path_for(out)) if p.exists()]
    if existing and not args.overwrite and not args.resume:
        _err(f"{existing[0]} exists: a trained model is never replaced silently; choose another "
             "--out, add --overwrite, or continue it with --resume")
        return 2
    ddp = distributed_from_env()  # under torchrun: rank 0 prints, every rank trains
    say = print if ddp is None or ddp.is_main else (lambda *a, **k: None)
    where = "" if ddp is None else f" across {ddp.world} processes (DistributedDataParallel)"
    say(f"training on {len(train_s)} slices, validating on {len(val_s)} "
        f"({len({s.group for s in samples})} patients/volumes); loss {loss.name}{where}")
    model_cfg = UNetConfig(base_filters=args.base_filters)
    bar = None
    epochs_saved = 0  # by this process: before the first, no .last.pt of this run exists
    try:
        gen = iter_training(train_s, val_s, args.out, cfg, model_cfg, init=args.init,
                            resume=args.resume)
        while True:
            try:
                item = next(gen)
            except StopIteration as done:
                result = done.value
                break
            if isinstance(item, BatchProgress):
                if bar is None:  # the epoch's batches, then its validation batches
                    bar = tqdm(total=item.steps + item.val_steps, desc=f"epoch {item.epoch}",
                               leave=False, disable=args.quiet or say is not print)
                bar.set_postfix_str(f"{item.samples_per_s:.1f} samples/s", refresh=False)
                bar.update(1)
            elif isinstance(item, ValidationProgress) and bar is not None:
                bar.set_description_str(f"epoch {item.epoch} validation")
                bar.update(1)
            elif isinstance(item, EpochReport):
                epochs_saved += 1
                if bar is not None:
                    bar.close()
                    bar = None
                star = " *" if item.is_best else ""
                val = (f"val loss {item.val_loss:.4f}  val Dice {item.val_dice:.4f}  "
                       f"P {item.val_precision:.3f} R {item.val_recall:.3f}"
                       if math.isfinite(item.val_dice) else "no validation slices")
                say(f"epoch {item.epoch:3d}/{item.epochs}  loss {item.train_loss:.4f}  "
                    f"{val}  lr {item.lr:.2g}  "
                    f"{item.seconds:.1f}s  {item.samples_per_s:.1f} samples/s{star}",
                    flush=True)
    except CheckpointError as exc:
        _err(str(exc))
        return 2
    except (ValueError, FloatingPointError) as exc:
        _err(str(exc))
        return 1
    except OSError as exc:  # e.g. the disk filled up while saving a checkpoint
        _err(f"could not save the checkpoint ({exc.strerror or exc}: "
             f"{exc.filename or args.out}); free space or choose another --out, then resume "
             "from the last saved epoch")
        return 1
    except KeyboardInterrupt:
        if epochs_saved or args.resume:
            again = "" if epochs_saved else " (no new epoch was finished)"
            _err(f"interrupted{again}; continue with --resume {last_path_for(out)}")
        else:
            _err("interrupted before the first epoch finished; nothing was saved, run the "
                 "same command again to start over")
        return 130
    finally:
        if ddp is not None:
            import torch.distributed as dist

            dist.destroy_process_group()
    how = " (stopped early)" if result.stopped_early else ""
    if any(math.isfinite(r.val_dice) for r in result.history):
        score = f"best epoch {result.best_epoch} (validation Dice {result.best_score:.4f})"
    else:  # nothing held out: the model is the last epoch's, its score minus the train loss
        score = (f"epoch {result.best_epoch} (no validation slices; train loss "
                 f"{-result.best_score:.4f})")
    say(f"{score}{how}: {result.best_path}; last epoch with optimizer state: "
        f"{result.last_path}")
    if ddp is not None:
        print(f"rank {ddp.rank}/{ddp.world}: final weights sha256 {result.weights_sha256}",
              flush=True)
    return 0


def _corrected_samples(scans: str, results: str) -> list[Any]:
    """Training samples of ``train SCANS --labels-from RESULTS``: corrected predictions only.

    Says how many predictions were taken and how many skipped (not marked corrected, or no scan
    of that name in SCANS).
    """
    from napari_brainseg.batch_inputs import corrected_pairs
    from napari_brainseg.data import samples_from_pairs
    from napari_brainseg.io import Pair, ReadError

    if not Path(scans).exists():
        raise ValueError(f"{scans}: no such file or folder (with --labels-from, DATA is the "
                         "folder of scans that was segmented)")
    try:
        found = corrected_pairs(scans, results)
    except ReadError as exc:
        raise ValueError(str(exc)) from exc
    line = (f"--labels-from {results}: {len(found.pairs)} corrected prediction(s) paired with "
            f"their scans; {len(found.not_corrected)} not marked corrected, skipped")
    if found.no_scan:
        names = ", ".join(p.name for p in found.no_scan[:3])
        more = f" and {len(found.no_scan) - 3} more" if len(found.no_scan) > 3 else ""
        line += (f"; {len(found.no_scan)} corrected without a scan of that name in {scans}, "
                 f"skipped ({names}{more})")
    print(line)
    if not found.pairs:
        raise ValueError(
            f"{results}: no corrected predictions to train on. Open a NAME_pred file in napari "
            "(with this plugin), correct it, and save it over itself (File > Save Selected "
            "Layers): the plugin marks it corrected in NAME_pred.ext.json. DATA must be the "
            "folder that was segmented into RESULTS.")
    samples = samples_from_pairs([Pair(scan, pred) for scan, pred in found.pairs])
    if not samples:
        raise ValueError(f"{results}: the corrected predictions could not be read with their "
                         "scans (see the warnings above)")
    return samples


# --------------------------------------------------------------------------- segment

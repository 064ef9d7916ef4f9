"""Training a U-Net: a generator that yields progress, so the CLI, tests and widgets share it.

``iter_training(...)`` yields a :class:`BatchProgress` after every batch, a
:class:`ValidationProgress` after every validation batch and an :class:`EpochReport` after every
epoch, and returns a :class:`TrainResult`. ``train(...)`` runs it
to the end. Two checkpoints are written atomically after each epoch:

- ``OUT`` (e.g. ``model.pt``): the best epoch so far, by validation Dice; without a validation
  set, the latest epoch (a refit trains exactly the epochs it was given and keeps that model);
- ``OUT.last.pt``: the latest epoch with optimizer, scheduler and early-stopping state, for
  ``resume``. A run stopped mid-epoch (cancel, crash, power cut) leaves the previous epoch's files
  intact and loadable.

Runs are reproducible on a CPU: the batch order, the augmentation and dropout are drawn from
``(seed, epoch)`` only, so resuming from ``OUT.last.pt`` ends with the same weights as an
uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader

from .data import EvalSet, Sample, TrainingSet
from .devices import Device, check_device, pick_device
from .distributed import (  # noqa: F401 (Distributed: part of this module's API)
    Distributed,
    check_batch_size,
    distributed_from_env,
    rank_device,
    rank_share,
    sum_over_ranks,
    wrap,
)
from .losses import LossConfig, make_loss
from .metrics import Counts, confusion, scores
from .model import (
    Checkpoint,
    CheckpointError,
    UNet,
    UNetConfig,
    load_checkpoint,
    save_checkpoint,
)
from .preprocess import DEFAULT_NORMALISATION
from .progress import drain
from .train_paths import check_output_path, check_resume_target, last_path_for

log = logging.getLogger(__name__)

#: Training patch sides allowed (pixels); the CLI and the Train widget use the same bounds.
MIN_PATCH, MAX_PATCH = 16, 2048


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes
    ----------
    loss : LossConfig
        The loss and its parameters (default Dice + BCE).
    epochs : int
        Maximum number of epochs.
    batch_size : int
        Patches per step.
    lr : float
        Adam learning rate (the study: 1e-3).
    patch_size : int
        Side of the square training patches (images are cropped or padded to it).
    augment : bool
        Flips, small rotations/scaling, intensity and gamma changes.
    schedule : {"plateau", "cosine", "none"}
        Learning-rate schedule: halve after 5 epochs without a lower validation loss, cosine
        decay, or constant.
    patience : int or None
        Stop when validation Dice has not improved for this many epochs (None: never).
    seed : int
        Seed of everything random.
    deterministic : bool
        Ask PyTorch for deterministic kernels (slower on some devices).
    device : {"auto", "cpu", "cuda", "mps"}
        ``auto`` picks CUDA, then Apple MPS, then the CPU.
    threshold : float
        Probability threshold for the validation metrics.
    normalisation : dict
        Intensity normalisation (stored in the checkpoint; see ``preprocess.normalise``).
    """

    loss: LossConfig = field(default_factory=LossConfig)
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    patch_size: int = 256
    augment: bool = True
    schedule: Literal["plateau", "cosine", "none"] = "plateau"
    patience: int | None = 10
    seed: int = 0
    deterministic: bool = False
    device: Device = "auto"
    threshold: float = 0.5
    normalisation: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_NORMALISATION))

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if not 0 < self.lr <= 1:  # also refuses NaN
            raise ValueError(f"learning rate must be in (0, 1], got {self.lr}")
        if not MIN_PATCH <= self.patch_size <= MAX_PATCH:
            # a patch is allocated per slice per step: 10**6 pixels a side would never fit
            raise ValueError(f"patch_size must be between {MIN_PATCH} and {MAX_PATCH} pixels, "
                             f"got {self.patch_size}")
        if self.schedule not in ("plateau", "cosine", "none"):
            raise ValueError(f"schedule must be plateau, cosine or none, got {self.schedule!r}")
        check_device(self.device)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for checkpoints and JSON."""
        d = asdict(self)
        d["loss"] = self.loss.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`."""
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}  # checkpoints add run facts (n_train...)
        loss = d.get("loss", {})
        if not isinstance(loss, dict):
            raise ValueError(f"the loss is stored as {type(loss).__name__} {loss!r:.30}, not as "
                             "its settings (a dict with name, alpha, gamma...)")
        d["loss"] = LossConfig(**loss)
        return cls(**d)


@dataclass(frozen=True)
class BatchProgress:
    """One optimisation step done (``val_steps``: validation batches that follow the epoch)."""

    epoch: int
    step: int
    steps: int
    loss: float
    val_steps: int = 0
    samples_per_s: float = math.nan  # of this epoch's steps so far (see EpochReport)


@dataclass(frozen=True)
class ValidationProgress:
    """One validation batch of an epoch done (after its ``BatchProgress`` steps)."""

    epoch: int
    step: int
    steps: int


@dataclass(frozen=True)
class EpochReport:
    """One epoch done. Validation fields are NaN without a validation set.

    ``samples_per_s``: training slices per second of the epoch's optimisation steps (reading,
    augmenting, forward, backward, update; not validation or checkpoint writing), counted over
    all processes of a distributed run. NaN in the history of runs from before it was recorded.
    """

    epoch: int
    epochs: int
    train_loss: float
    val_loss: float
    val_dice: float
    val_precision: float
    val_recall: float
    lr: float
    seconds: float
    is_best: bool
    samples_per_s: float = math.nan


@dataclass(frozen=True)
class TrainResult:
    """What a run produced."""

    best_path: Path
    last_path: Path
    best_epoch: int
    best_score: float
    epochs_run: int
    cancelled: bool
    stopped_early: bool
    history: list[EpochReport]
    weights_sha256: str = ""  # of the final weights (equal on every rank of a DDP run)


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a model's parameters and buffers (a fingerprint to compare runs or ranks)."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


#: The clock of the samples/s figures (seconds, monotonic; tests replace it with a scripted one).
_clock = time.perf_counter


def training_memory_format(device: torch.device, config: UNetConfig) -> torch.memory_format:
    """Memory layout of the weights and batches in training steps of a ``config`` model.

    Channels-last on a CPU: ``benchmarks/train_throughput.py`` measured the study U-Net's
    training step (256 px, batch 8, 2 cores) at 1.23x the contiguous layout's samples/s
    (``torch.compile``: 1.08x after 46-118 s of compiling). Not with batch norm: its step gained
    1.13x, but torch's channels-last batch-norm kernel for CPU training loses precision (against
    float64: forward error 1.2e-4 vs 5.7e-6 contiguous on activations of mean 3, sd 0.05; U-Net
    gradients 2-8 % off vs under 0.3 %). The default layout elsewhere (not measured).
    Channels-last changes the order of floating-point sums, so weights agree with the default
    layout's to rounding, not bit for bit, and dropout, drawn in memory order, drops other units:
    equally random, and reproducible from the seed as before.
    """
    if device.type == "cpu" and not config.batch_norm:
        return torch.channels_last
    return torch.contiguous_format


def _evaluate(model: UNet, loader: DataLoader, loss_fn: Any, device: torch.device,
              threshold: float, epoch: int = 0,
              ) -> Generator[ValidationProgress, None, tuple[float, dict[str, float]]]:
    model.eval()
    total_loss, n = 0.0, 0
    counts = Counts()
    layout = training_memory_format(device, model.config)
    with torch.inference_mode():
        for k, (img, msk) in enumerate(loader, start=1):
            img, msk = img.to(device).contiguous(memory_format=layout), msk.to(device)
            logits = model(img)
            total_loss += float(loss_fn(logits, msk)) * img.shape[0]
            n += img.shape[0]
            pred = torch.sigmoid(logits) > threshold
            counts = counts + confusion(pred.cpu().numpy(), (msk > 0.5).cpu().numpy())
            yield ValidationProgress(epoch, k, len(loader))
    return total_loss / max(n, 1), scores(counts)


@dataclass(frozen=True)
class _ResumeState:
    """What a ``.last.pt`` restores, validated."""

    config: TrainConfig
    epoch: int
    best_score: float
    best_epoch: int
    bad_epochs: int
    best_loss: float
    history: list[EpochReport]
    scheduler: dict[str, Any] | None


def _resume_state(ck: Checkpoint, name: str, cfg: TrainConfig) -> _ResumeState:
    """Validate a checkpoint's resume state; a crafted or damaged one is a CheckpointError."""
    r = ck.resume or {}

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{name}: the resume state is unusable ({what}); the file was "
                               "edited or damaged. Resume from another .last.pt or train again.")

    def number(key: str, kind: type, default: Any = None) -> Any:
        value = r.get(key, default)
        if value is None:
            raise bad(f"no {key!r}")
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                kind is int and (not float(value).is_integer() or value < 0)):
            raise bad(f"{key!r} is {value!r:.30}")
        return kind(value)

    epoch = number("epoch", int)
    state = dict(epoch=epoch, best_score=number("best_score", float),
                 best_epoch=number("best_epoch", int), bad_epochs=number("bad_epochs", int),
                 best_loss=number("best_loss", float, math.inf))
    history_raw = r.get("history", [])
    names = [f.name for f in fields(EpochReport)]
    needed = set(names) - {"samples_per_s"}  # not in the history of older runs
    if not isinstance(history_raw, list) or len(history_raw) > epoch or not all(
            isinstance(h, dict) and needed <= set(h) <= set(names)
            and all(isinstance(v, int | float) for v in h.values()) for h in history_raw):
        raise bad(f"the history is not a list of epoch records ({', '.join(names)})")
    scheduler = r.get("scheduler")
    if scheduler is not None and not isinstance(scheduler, dict):
        raise bad("the scheduler state is not a dict")
    try:
        saved = TrainConfig.from_dict(ck.training)
    except (TypeError, ValueError, KeyError) as exc:
        raise bad(f"training settings: {exc}") from exc
    return _ResumeState(config=replace(saved, epochs=cfg.epochs, device=cfg.device),
                        history=[EpochReport(**h) for h in history_raw], scheduler=scheduler,
                        **state)


@dataclass
class _Best:
    """Best-model tracking and the early-stopping count (what a ``.last.pt`` carries on).

    Best = highest validation Dice, ties broken by a lower validation loss. Early stopping counts
    epochs in which neither improved: a Dice still stuck at 0 while the loss falls is progress,
    not a plateau.
    """

    score: float = -math.inf
    epoch: int = 0
    loss: float = math.inf  # breaks ties of the score (Dice is 0 for a while early on)
    bad_epochs: int = 0

    def update(self, epoch: int, score: float, loss: float, select: bool = True) -> bool:
        """Record an epoch's score and monitored loss; return whether it is the best so far.

        ``select=False`` (no validation set: nothing to select on) makes every epoch the best,
        so the model kept is the one trained to the end.
        """
        is_best = not select or score > self.score + 1e-6 or (
            abs(score - self.score) <= 1e-6 and loss < self.loss)
        improved = score > self.score + 1e-4 or loss < self.loss - 1e-4
        if is_best:
            self.score, self.epoch = score, epoch
        self.loss = min(self.loss, loss)
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        return is_best

    def to_resume(self) -> dict[str, Any]:
        """The resume-state entries (see :func:`_resume_state`)."""
        return {"best_score": self.score, "best_epoch": self.epoch,
                "bad_epochs": self.bad_epochs, "best_loss": self.loss}


@dataclass
class _Start:
    """Where a run starts: a new model, a fine-tuned one (``init``) or a resumed run."""

    model: UNet
    config: TrainConfig
    first_epoch: int = 1
    best: _Best = field(default_factory=_Best)
    history: list[EpochReport] = field(default_factory=list)
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None


def _restore(cfg: TrainConfig, out: Path, model_config: UNetConfig | None,
             init: str | Path | None, resume: str | Path | None) -> _Start:
    """Restore state: a resumed run, a checkpoint to fine-tune, or a new seeded model.

    A resume brings back the run's model, settings (with this run's ``epochs`` and ``device``),
    counters and optimiser states; ``init`` brings the weights and the intensity normalisation
    they learned on.
    """
    if resume is not None:
        name = Path(resume).name
        ck = load_checkpoint(resume)
        if not ck.resume:
            raise ValueError(f"{name} has no resume state; pass the .last.pt file")
        check_resume_target(resume, out)
        state = _resume_state(ck, name, cfg)
        if state.epoch + 1 > state.config.epochs:
            raise CheckpointError(
                f"{name} already finished {state.epoch} "
                f"epoch{'s' if state.epoch != 1 else ''} and --epochs is "
                f"{state.config.epochs}: nothing to resume. Its model is {out.name}; to train "
                f"longer, resume with more epochs (e.g. --epochs {state.epoch + 10})"
            )
        return _Start(ck.model, state.config, state.epoch + 1,
                      _Best(state.best_score, state.best_epoch, state.best_loss,
                            state.bad_epochs), state.history, ck.optimizer, state.scheduler)
    if init is not None:
        ck = load_checkpoint(init)
        if ck.normalisation:
            # The weights learned on intensities normalised this way; the default would feed
            # the fine-tuned model a different input distribution.
            cfg = replace(cfg, normalisation=dict(ck.normalisation))
        return _Start(ck.model, cfg)
    torch.manual_seed(cfg.seed)
    return _Start(UNet(model_config or UNetConfig()), cfg)


def _optimiser(model: UNet, cfg: TrainConfig, start: _Start,
               resume: str | Path | None) -> tuple[torch.optim.Optimizer, Any]:
    """Adam and the learning-rate schedule, with a resumed run's saved states loaded."""
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler: Any = None
    if cfg.schedule == "plateau":
        # On the loss, not the Dice: Dice sits at 0 for the first epochs while the model is still
        # learning, and a plateau scheduler fed that would starve it of learning rate.
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5,
                                                               patience=5)
    elif cfg.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    try:
        if start.optimizer:
            optimizer.load_state_dict(start.optimizer)
        if scheduler is not None and start.scheduler:
            scheduler.load_state_dict(start.scheduler)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise CheckpointError(
            f"{Path(str(resume)).name}: the saved optimizer or scheduler state does not fit "
            f"this model ({type(exc).__name__}: {str(exc)[:80]}); the file was edited or "
            "damaged. Resume from another .last.pt, or start from it with --init"
        ) from exc
    return optimizer, scheduler


def _train_epoch(net: torch.nn.Module, model: UNet, train_set: TrainingSet, loss_fn: Any,
                 optimizer: torch.optim.Optimizer, cfg: TrainConfig, epoch: int,
                 device: torch.device, ddp: Distributed | None, val_steps: int,
                 stop: threading.Event | None,
                 ) -> Generator[BatchProgress, None, tuple[float, float] | None]:
    """Run one epoch of optimisation steps; return its mean loss and samples/s (None: stopped).

    The batch order and the dropout are drawn from ``(seed, epoch)`` only, so a resumed run
    repeats an uninterrupted one. Under DDP the loss is the mean over every rank's slices, and
    samples/s counts the whole global batch of each step.
    """
    train_set.set_epoch(epoch)
    order = torch.randperm(len(train_set),
                           generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
    torch.manual_seed(cfg.seed * 1_000_003 + epoch  # dropout: reproducible per epoch
                      + (ddp.rank * 7919 if ddp is not None else 0))
    model.train()
    steps = math.ceil(len(train_set) / cfg.batch_size)
    running, seen = 0.0, 0
    busy, trained = 0.0, 0  # seconds inside this epoch's steps, samples (all ranks) they took
    layout = training_memory_format(device, model.config)
    for step in range(steps):
        if stop is not None and stop.is_set():
            return None
        t0 = _clock()
        idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size].tolist()
        trained += len(idx)
        if ddp is not None:
            idx = rank_share(idx, order.tolist(), ddp)
        batch = [train_set[i] for i in idx]
        img = torch.stack([b[0] for b in batch]).to(device).contiguous(memory_format=layout)
        msk = torch.stack([b[1] for b in batch]).to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(img), msk)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss became {float(loss)} at epoch {epoch}; lower the learning "
                "rate or check the images for extreme values"
            )
        loss.backward()
        optimizer.step()
        running += float(loss.detach()) * len(idx)
        seen += len(idx)
        busy += _clock() - t0
        yield BatchProgress(epoch, step + 1, steps, float(loss.detach()), val_steps=val_steps,
                            samples_per_s=_rate(trained, busy))
    if ddp is not None:
        running, seen = sum_over_ranks(running, seen, device)
    return running / max(seen, 1), _rate(trained, busy)


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else math.nan


def _save_epoch(out: Path, model: UNet, cfg: TrainConfig, training_meta: dict[str, Any],
                report: EpochReport, optimizer: torch.optim.Optimizer, scheduler: Any,
                best: _Best, history: list[EpochReport]) -> None:
    """Save: ``OUT`` when the epoch is the best, and ``OUT.last.pt`` with the resume state."""
    metrics = {"epoch": report.epoch, "train_loss": report.train_loss,
               "val_loss": report.val_loss, "val_dice": report.val_dice,
               "val_precision": report.val_precision, "val_recall": report.val_recall}
    if report.is_best:  # checkpoints copy the weights to the CPU themselves
        save_checkpoint(out, model, cfg.normalisation, training_meta, metrics)
    save_checkpoint(
        last_path_for(out), model, cfg.normalisation, training_meta, metrics,
        optimizer=optimizer.state_dict(),
        resume={"epoch": report.epoch, **best.to_resume(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "history": [asdict(h) for h in history]},
    )


def iter_training(
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample],
    out: str | Path,
    config: TrainConfig | None = None,
    model_config: UNetConfig | None = None,
    init: str | Path | None = None,
    resume: str | Path | None = None,
    stop: threading.Event | None = None,
) -> Generator[BatchProgress | ValidationProgress | EpochReport, None, TrainResult]:
    """Train a U-Net, yielding progress; see the module docstring.

    Parameters
    ----------
    train_samples, val_samples : sequence of Sample
        Training and validation slices (validation may be empty).
    out : path
        Best-model checkpoint path; the last-epoch checkpoint goes beside it.
    config : TrainConfig, optional
        Training settings (defaults: Dice + BCE, 30 epochs, batch 8, Adam 1e-3, patches 256).
    model_config : UNetConfig, optional
        Architecture of a new model (default: the study's U-Net). Ignored with ``init``/``resume``.
    init : path, optional
        Fine-tune: start from this checkpoint's weights (fresh optimizer).
    resume : path, optional
        Continue an interrupted run from its ``.last.pt`` checkpoint (same data and config).
    stop : threading.Event, optional
        Set it to stop after the current batch (a widget's Cancel).

    Launched by ``torchrun`` with more than one process, training is data-parallel
    (:mod:`napari_brainseg.distributed`): every step's global batch of ``batch_size`` slices is
    split across the ranks and their gradients are averaged, so the run follows the
    single-process one; only rank 0 writes checkpoints. Without torchrun nothing changes.
    """
    cfg = config or TrainConfig()
    out = Path(out)
    ddp = distributed_from_env()
    check_batch_size(cfg.batch_size, ddp)
    device = rank_device(pick_device(cfg.device), ddp)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    check_output_path(out)
    start = _restore(cfg, out, model_config, init, resume)
    model, cfg, best, history = start.model, start.config, start.best, start.history
    model.to(device=device, memory_format=training_memory_format(device, model.config))
    net = wrap(model, device, ddp)
    loss_fn = make_loss(cfg.loss)
    optimizer, scheduler = _optimiser(model, cfg, start, resume)
    train_set = TrainingSet(train_samples, cfg.patch_size, cfg.augment, cfg.normalisation,
                            cfg.seed)
    val_loader = DataLoader(EvalSet(val_samples, cfg.normalisation), batch_size=1) \
        if val_samples else None
    if not train_set.any_tumour():
        log.warning("every training mask is empty (no tumour pixel in %d slices): the model "
                    "will learn to find nothing; check the masks' values and pairing",
                    len(train_set))
    training_meta = cfg.to_dict()
    training_meta.update({"n_train": len(train_samples), "n_val": len(val_samples),
                          "init": str(init) if init else None})
    stopped_early = False
    epoch = start.first_epoch - 1
    for epoch in range(start.first_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        trained = yield from _train_epoch(net, model, train_set, loss_fn, optimizer, cfg,
                                          epoch, device, ddp,
                                          0 if val_loader is None else len(val_loader), stop)
        if trained is None:  # cancelled mid-epoch: the previous epoch's files stand
            return _result(out, best, epoch - 1, True, False, history)
        train_loss, samples_per_s = trained
        if val_loader is not None:
            val_loss, val = yield from _evaluate(model, val_loader, loss_fn, device,
                                                 cfg.threshold, epoch)
            score, monitored_loss = val["f1"], val_loss
        else:
            val_loss, val = math.nan, dict.fromkeys(("f1", "precision", "recall"), math.nan)
            score, monitored_loss = -train_loss, train_loss
        lr = optimizer.param_groups[0]["lr"]
        if cfg.schedule == "plateau":
            scheduler.step(monitored_loss)
        elif scheduler is not None:
            scheduler.step()
        is_best = best.update(epoch, score, monitored_loss, select=val_loader is not None)
        report = EpochReport(epoch, cfg.epochs, train_loss, val_loss, val["f1"], val["precision"],
                             val["recall"], lr, time.perf_counter() - t0, is_best,
                             samples_per_s)
        history.append(report)
        if ddp is None or ddp.is_main:
            _save_epoch(out, model, cfg, training_meta, report, optimizer, scheduler, best,
                        history)
        yield report
        if cfg.patience is not None and best.bad_epochs >= cfg.patience:
            stopped_early = True
            break
    return replace(_result(out, best, epoch, False, stopped_early, history),
                   weights_sha256=weights_digest(model))


def _result(out: Path, best: _Best, epochs_run: int, cancelled: bool, stopped_early: bool,
            history: list[EpochReport]) -> TrainResult:
    return TrainResult(out, last_path_for(out), best.epoch, float(best.score), epochs_run,
                       cancelled, stopped_early, list(history))


def train(*args: Any, **kwargs: Any) -> TrainResult:
    """Run :func:`iter_training` to the end and return its result."""
    return drain(iter_training(*args, **kwargs))

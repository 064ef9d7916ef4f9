"""Training data: (image, mask) slices from folders or napari layers, splits and augmentation.

A :class:`Sample` is one 2D slice and where it comes from; files are read only when a slice is
needed (a two-volume cache avoids re-reading a NIfTI for each of its slices), so a large folder is
never held in memory. Groups (patient id from figshare ``PID``, or one volume / file) keep every
slice of a patient on one side of a split.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812
from torch.utils.data import Dataset

from .io import Pair, ReadError, Volume, find_pairs, read, stem, suffix_of
from .preprocess import annotated_indices, normalise

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    """One training slice.

    Attributes
    ----------
    group : str
        Patient or volume id: a split never puts one group on both sides.
    image_path, mask_path : Path or None
        Files to read (figshare ``.mat`` holds both); None for in-memory samples.
    index : int or None
        Slice index along axis 0 of a volume (display orientation), None for a 2D file.
    image, mask : np.ndarray or None
        In-memory ``(Y, X)`` arrays (from napari layers) instead of files.
    tumour_type : str or None
        From the file's metadata when known (figshare label).
    """

    group: str
    image_path: Path | None = None
    mask_path: Path | None = None
    index: int | None = None
    image: np.ndarray | None = field(default=None, repr=False, compare=False)
    mask: np.ndarray | None = field(default=None, repr=False, compare=False)
    tumour_type: str | None = None

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(image, mask)``: ``(Y, X)`` float32 and uint8 {0, 1}."""
        if self.image is not None and self.mask is not None:
            img, msk = self.image, self.mask
        else:
            if self.image_path is None:
                raise ValueError("a Sample needs image and mask arrays or an image_path")
            img_vol, msk_vol = _load_pair(self.image_path, self.mask_path)
            img, msk = img_vol.data, msk_vol.data
            if self.index is not None:
                img, msk = img[self.index], msk[self.index]
        return np.asarray(img, np.float32), (np.asarray(msk) > 0).astype(np.uint8)


_CACHE: OrderedDict[tuple[str, str], tuple[Volume, Volume]] = OrderedDict()
_CACHE_SIZE = 2


def _load_pair(image_path: Path, mask_path: Path | None) -> tuple[Volume, Volume]:
    key = (str(image_path), str(mask_path))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    vols = read(image_path, with_mask=False)  # the mask is mask_path (a .mat carries its own)
    image = vols[0]
    if suffix_of(Path(image_path)) == ".mat":
        if len(vols) < 2:
            raise ReadError(f"{Path(image_path).name}: no tumorMask in this .mat file")
        mask = vols[1]
    else:
        if mask_path is None:
            raise ReadError(f"{Path(image_path).name}: no mask to train on")
        mvols = read(mask_path)
        mask = mvols[0]
        if mask.data.shape != image.data.shape:
            raise ReadError(
                f"{Path(mask_path).name}: mask shape {mask.data.shape} does not match image "
                f"{image.data.shape}"
            )
    _CACHE[key] = (image, mask)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return image, mask


def samples_from_folder(folder: str | Path, max_empty_ratio: float = 1.0) -> list[Sample]:
    """Training slices of a folder in the README's pairing convention.

    2D files give one sample each (figshare ``.mat`` files are grouped by their ``PID``). Volumes
    give their annotated slices along axis 0, plus up to ``max_empty_ratio`` times as many
    tumour-free slices spread evenly (so the model also learns what is not tumour).

    Raises
    ------
    ValueError
        When the folder holds no image/mask pair, with the naming rule in the message.
    """
    folder = Path(folder)
    samples = samples_from_pairs(find_pairs(folder), max_empty_ratio)
    if not samples:
        raise ValueError(
            f"{folder}: no image/mask pairs to train on. Name masks NAME_mask.png beside "
            "NAME.png, or put images/ and masks/ folders with the same file names (see README)."
        )
    return samples


def samples_from_pairs(pairs: Sequence[Pair], max_empty_ratio: float = 1.0) -> list[Sample]:
    """Training slices of given ``(image, mask)`` pairs, as :func:`samples_from_folder` takes them.

    A pair without a mask, or whose files cannot be read, is left out (logged). Used for pairs
    found otherwise than by the folder convention, e.g. scans with their corrected predictions
    (``brainseg train --labels-from``).
    """
    samples: list[Sample] = []
    unpaired = 0
    for pair in pairs:
        if pair.mask is None:
            unpaired += 1
            continue
        try:
            vols = read(pair.image, with_mask=False)  # the pair names its mask
        except ReadError as exc:
            log.warning("skipping %s", exc)
            continue
        image = vols[0]
        tumour_type = image.metadata.get("tumour_type")
        group = str(image.metadata.get("patient_id") or stem(pair.image))
        if pair.mask == pair.image:  # a figshare .mat carries its mask (if it has one)
            mask = vols[1] if len(vols) > 1 else None
        else:
            try:
                mask = read(pair.mask)[0]
            except ReadError as exc:
                log.warning("skipping %s", exc)
                continue
        if mask is not None and mask.data.shape != image.data.shape:
            log.warning("skipping %s: mask of shape %s does not match its image %s of shape %s. "
                        "Masks must have the image's size.", pair.mask.name, mask.data.shape,
                        pair.image.name, image.data.shape)
            continue
        if image.ndim == 2 or mask is None:
            samples.append(Sample(group, pair.image, pair.mask, None, tumour_type=tumour_type))
            continue
        annotated = annotated_indices(mask.data)
        empty = [i for i in range(image.data.shape[0]) if i not in set(annotated)
                 and image.data[i].max() > image.data[i].min()]
        n_empty = min(len(empty), int(math.ceil(max_empty_ratio * len(annotated))))
        picks = [empty[int(k)] for k in np.linspace(0, len(empty) - 1, n_empty)] if n_empty else []
        for i in sorted(set(annotated) | set(picks)):
            samples.append(Sample(group, pair.image, pair.mask, i, tumour_type=tumour_type))
    if unpaired:
        log.warning("%d image(s) without a mask were left out", unpaired)
    return samples


def samples_from_arrays(image: np.ndarray, labels: np.ndarray, group: str = "layer",
                        axis: int = 0) -> list[Sample]:
    """Training slices from an image and its labels (napari layers).

    A 2D pair gives one sample; a volume gives the slices along ``axis`` where the labels hold
    anything (the slices the user annotated or corrected).
    """
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.shape != labels.shape:
        raise ValueError(
            f"image {image.shape} and labels {labels.shape} differ in shape; the labels layer "
            "must be drawn on this image"
        )
    if image.ndim == 2:
        return [Sample(group, image=image, mask=labels)]
    if image.ndim != 3:
        raise ValueError(f"expected a 2D or 3D image, got shape {image.shape}")
    idx = annotated_indices(labels, axis)
    if not idx:
        raise ValueError("the labels layer is empty: paint the tumour on at least one slice")
    return [Sample(f"{group}", image=np.take(image, i, axis), mask=np.take(labels, i, axis))
            for i in idx]


def split_indices(groups: Sequence[str], val_fraction: float,
                  seed: int = 0) -> tuple[list[int], list[int]]:
    """Split item indices into training and validation by group (patient / volume), seeded.

    With a single group the split falls back to items, with a warning (slices of one volume are
    correlated, so validation scores are then optimistic).
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(groups)
    if val_fraction == 0 or n < 2:
        return list(range(n)), []
    names = sorted(set(groups))
    rng = np.random.default_rng(seed)
    if len(names) >= 2:
        order = rng.permutation(len(names))
        n_val = min(len(names) - 1, max(1, round(val_fraction * len(names))))
        val_groups = {names[i] for i in order[:n_val]}
        return ([i for i in range(n) if groups[i] not in val_groups],
                [i for i in range(n) if groups[i] in val_groups])
    log.warning("one patient/volume only: validating on held-out slices of it")
    order = rng.permutation(n)
    val_idx = set(order[:max(1, round(val_fraction * n))].tolist())
    return [i for i in range(n) if i not in val_idx], sorted(val_idx)


def split_samples(samples: Sequence[Sample], val_fraction: float,
                  seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Split samples into training and validation by group; see :func:`split_indices`."""
    train, val = split_indices([s.group for s in samples], val_fraction, seed)
    return [samples[i] for i in train], [samples[i] for i in val]


# --------------------------------------------------------------------------- patients


def groups_from_csv(path: str | Path) -> dict[str, str]:
    """Read a file-to-patient table: a CSV with a header row naming ``file`` and ``patient``.

    ``file`` is an image's file name (``P01_s3.png``) or its path relative to the data folder
    (``images/P01_s3.png``); ``patient`` any id. Other columns are ignored.

    Raises
    ------
    ValueError
        When the file cannot be read, lacks those columns, or lists one file twice with two
        patients.
    """
    import csv

    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
            if "file" not in columns or "patient" not in columns:
                raise ValueError(
                    f"{path}: the groups CSV needs a header row with the columns 'file' and "
                    f"'patient' (found {list(reader.fieldnames or [])}); e.g. 'file,patient' "
                    "then one line per image such as 'P01_s3.png,P01'"
                )
            table: dict[str, str] = {}
            for line, row in enumerate(reader, start=2):
                key = (row.get(columns["file"]) or "").strip().replace("\\", "/")
                patient = (row.get(columns["patient"]) or "").strip()
                if not key and not patient:
                    continue
                if not key or not patient:
                    raise ValueError(f"{path}, line {line}: give both a file and a patient")
                if table.setdefault(key, patient) != patient:
                    raise ValueError(f"{path}, line {line}: {key} is listed with two patients "
                                     f"({table[key]} and {patient}); keep one")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the groups CSV ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: the groups CSV is not UTF-8 text; save it as CSV") from exc
    if not table:
        raise ValueError(f"{path}: the groups CSV lists no files")
    return table


def regroup(samples: Sequence[Sample], root: str | Path, table: dict[str, str] | None = None,
            pattern: str | None = None) -> list[Sample]:
    r"""Samples with their patient (``group``) taken from a table or from their file names.

    Parameters
    ----------
    samples : sequence of Sample
        Samples read from files under ``root`` (in-memory samples keep their group).
    root : path
        The data folder, for table keys given as relative paths.
    table : dict, optional
        File name or relative path -> patient (see :func:`groups_from_csv`). Every file must be
        listed.
    pattern : str, optional
        A regular expression searched in each file name; its first group (or the whole match
        when it has no group) is the patient, e.g. ``^(P\d+)_`` for ``P01_s3.png``.

    Raises
    ------
    ValueError
        A file the table does not list or the pattern does not match (the first few are
        named), an invalid pattern, or a table name that fits files in several folders.
    """
    import re

    if table is not None and pattern is not None:
        raise ValueError("give either a groups table or a file-name pattern, not both")
    if table is None and pattern is None:
        return list(samples)
    root = Path(root)
    regex = None
    if pattern is not None:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"--group-by {pattern!r} is not a valid regular expression "
                             f"({exc})") from exc
    by_name: dict[str, set[Path]] = {}
    for s in samples:
        if s.image_path is not None:
            by_name.setdefault(Path(s.image_path).name, set()).add(Path(s.image_path))
    out: list[Sample] = []
    missing: list[str] = []
    for s in samples:
        if s.image_path is None:
            out.append(s)
            continue
        path = Path(s.image_path)
        try:
            rel = path.relative_to(root).as_posix()
        except ValueError:
            rel = path.name
        group: str | None = None
        if regex is not None:
            m = regex.search(path.name)
            if m is not None:
                group = m.group(1) if regex.groups else m.group(0)
        elif table is not None:
            group = table.get(rel)
            if group is None and path.name in table:
                if len(by_name[path.name]) > 1:
                    raise ValueError(
                        f"the groups CSV names {path.name}, which fits files in several "
                        "folders; give paths relative to the data folder instead"
                    )
                group = table[path.name]
        if not group:
            missing.append(rel)
            continue
        out.append(replace(s, group=group))
    if missing:
        shown = ", ".join(sorted(set(missing))[:5])
        more = len(set(missing)) - min(5, len(set(missing)))
        what = (f"the pattern {pattern!r} does not match (or matches an empty patient in)"
                if regex is not None else "the groups CSV does not list")
        raise ValueError(f"{what} {len(set(missing))} file(s): {shown}"
                         + (f" and {more} more" if more else "")
                         + "; every file needs its patient")
    return out


def single_slice_groups(samples: Sequence[Sample]) -> bool:
    """Whether every patient/volume holds exactly one slice (and there are several).

    Then the grouping says nothing: if several files come from one patient, their slices can
    land in different folds, and per-image statistics treat them as independent.
    """
    groups: dict[str, int] = {}
    for s in samples:
        groups[s.group] = groups.get(s.group, 0) + 1
    return len(samples) > 1 and all(n == 1 for n in groups.values())


# --------------------------------------------------------------------------- torch datasets


def _augment(img: torch.Tensor, msk: torch.Tensor,
             rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Flips, small rotation and scaling (one resampling), intensity scale/shift and gamma."""
    if rng.random() < 0.5:
        img, msk = img.flip(-1), msk.flip(-1)
    if rng.random() < 0.5:
        img, msk = img.flip(-2), msk.flip(-2)
    if rng.random() < 0.7:
        angle = math.radians(rng.uniform(-10, 10))
        scale = rng.uniform(0.9, 1.1)
        c, s = math.cos(angle) / scale, math.sin(angle) / scale
        theta = torch.tensor([[[c, -s, 0.0], [s, c, 0.0]]], dtype=torch.float32)
        grid = F.affine_grid(theta, [1, 1, *img.shape[-2:]], align_corners=False)
        img = F.grid_sample(img[None], grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)[0]
        msk = F.grid_sample(msk[None], grid, mode="nearest", padding_mode="zeros",
                            align_corners=False)[0]
    img = img * float(rng.uniform(0.9, 1.1)) + float(rng.uniform(-0.1, 0.1))
    if rng.random() < 0.5:
        gamma = float(np.exp(rng.uniform(-0.25, 0.25)))
        img = img.clamp(min=0) ** gamma
    return img, msk


def _crop_or_pad(img: np.ndarray, msk: np.ndarray, size: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` window; half the time centred on a tumour pixel when there is one."""
    h, w = img.shape
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        pads = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))
        img, msk = np.pad(img, pads), np.pad(msk, pads)
        h, w = img.shape
    if msk.any() and rng.random() < 0.5:
        ys, xs = np.nonzero(msk)
        k = rng.integers(len(ys))
        y0 = int(np.clip(ys[k] - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0, h - size))
        x0 = int(np.clip(xs[k] - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0, w - size))
    else:
        y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return img[y0:y0 + size, x0:x0 + size], msk[y0:y0 + size, x0:x0 + size]


CACHE_BYTES = 2 * 1024**3  # normalised training slices kept in memory (about 1,000 at 800x512)


class TrainingSet(Dataset):
    """Normalised, cropped and augmented ``(1, P, P)`` patches of training samples.

    Randomness comes from ``(seed, epoch, index)`` only, so an interrupted and resumed run sees
    exactly the same batches as an uninterrupted one. Call :meth:`set_epoch` each epoch.
    """

    def __init__(self, samples: Sequence[Sample], patch_size: int = 256, augment: bool = True,
                 normalisation: dict[str, Any] | None = None, seed: int = 0) -> None:
        if not samples:
            raise ValueError("no training samples")
        self.samples = list(samples)
        self.patch_size = int(patch_size)
        self.augment = augment
        self.normalisation = normalisation
        self.seed = seed
        self.epoch = 0
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cached_bytes = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of this epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def _slice(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``i`` read and normalised.

        Kept in memory after the first epoch while the cache stays under ``CACHE_BYTES``
        (benchmarks/train_pipeline.py measures what reading costs a training step).
        """
        if i in self._cache:
            return self._cache[i]
        img, msk = self.samples[i].load()
        img = normalise(img, self.normalisation)
        size = img.nbytes + msk.nbytes
        if self._cached_bytes + size <= CACHE_BYTES:
            self._cache[i] = (img, msk)
            self._cached_bytes += size
        return img, msk

    def any_tumour(self) -> bool:
        """Whether any training mask holds a tumour pixel (reads slices until one does)."""
        return any(self._slice(i)[1].any() for i in range(len(self)))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        img, msk = self._slice(i)
        img, msk = _crop_or_pad(img, msk, self.patch_size, rng)
        ti = torch.from_numpy(img.copy())[None]  # a copy: the cached slice must stay intact
        tm = torch.from_numpy(msk.copy()).float()[None]
        if self.augment:
            ti, tm = _augment(ti, tm, rng)
        return ti, tm


class EvalSet(Dataset):
    """Whole normalised slices (any size) with their masks, for validation and testing."""

    def __init__(self, samples: Sequence[Sample], normalisation: dict[str, Any] | None = None):
        self.samples = list(samples)
        self.normalisation = normalisation

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, msk = self.samples[i].load()
        ti = torch.from_numpy(normalise(img, self.normalisation))[None]
        return ti, torch.from_numpy(msk).float()[None]


def add_training_pair(folder: str | Path, image: np.ndarray, labels: np.ndarray, name: str,
                      like: Any = None) -> tuple[Path, Path]:
    """Save an image and its (corrected) labels into a training folder, never overwriting.

    Writes ``folder/images/NAME.EXT`` and ``folder/masks/NAME.EXT`` (NIfTI for volumes, keeping
    the scan's geometry from ``like``; TIFF image + PNG mask for 2D). When ``NAME`` is taken,
    ``NAME_2``, ``NAME_3``, ... are used instead.

    Returns
    -------
    tuple of Path
        The image and mask paths written.
    """
    from .io import write_image, write_labels
    from .naming import is_never_input

    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.shape != labels.shape:
        raise ValueError(f"image {image.shape} and labels {labels.shape} differ in shape")
    if not labels.any():
        raise ValueError("the labels are empty: paint or correct the tumour first")
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._") or "pair"
    if is_never_input(Path(f"{safe}.tif")):  # "scan_pred", "x_mask": never read as a scan
        safe = f"{safe}_image"
    img_ext, mask_ext = (".nii.gz", ".nii.gz") if image.ndim == 3 else (".tif", ".png")
    k = 1
    while True:
        base = safe if k == 1 else f"{safe}_{k}"
        taken = [p for p in (folder / "images").iterdir() if stem(p) == base] + [
            p for p in (folder / "masks").iterdir() if stem(p) == base]
        if not taken:
            break
        k += 1
    img_path = write_image(folder / "images" / f"{base}{img_ext}", image.astype(np.float32),
                           like=like)
    mask_path = write_labels(folder / "masks" / f"{base}{mask_ext}",
                             (labels > 0).astype(np.uint8), like=like)
    return img_path, mask_path

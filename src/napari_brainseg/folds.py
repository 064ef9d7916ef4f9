"""The study's partition: patient-grouped outer folds, a published fold file, inner splits.

No patient (group of slices) is ever in two folds; see :mod:`napari_brainseg.study` for the
protocol these serve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .data import Sample, split_indices

if TYPE_CHECKING:
    from .study import StudyConfig


def make_folds(samples: Sequence[Sample], k: int, seed: int = 0) -> list[list[int]]:
    """Assign sample indices to ``k`` folds by group, balancing tumour types and sizes.

    Groups are shuffled (seeded), then placed largest first into the fold that currently holds
    the fewest samples of that group's main tumour type (ties: fewest samples overall).
    """
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.group, []).append(i)
    if len(groups) < k:
        raise ValueError(
            f"{len(groups)} patients/volumes cannot fill {k} folds; use fewer folds or more data"
        )
    rng = np.random.default_rng(seed)
    names = list(groups)
    rng.shuffle(names)
    names.sort(key=lambda g: -len(groups[g]))  # stable: shuffled order within equal sizes

    def main_type(g: str) -> str:
        types = [samples[i].tumour_type or "unknown" for i in groups[g]]
        return max(set(types), key=types.count)

    folds: list[list[int]] = [[] for _ in range(k)]
    by_type = [dict[str, int]() for _ in range(k)]
    for g in names:
        t = main_type(g)
        best = min(range(k), key=lambda f: (by_type[f].get(t, 0), len(folds[f]), f))
        folds[best].extend(groups[g])
        by_type[best][t] = by_type[best].get(t, 0) + len(groups[g])
    return [sorted(f) for f in folds]


#: More fold numbers than any dataset of slices has: a larger ``cvind`` is not read.
_MAX_FOLD_ENTRIES = 10_000_000


def read_fold_file(path: str | Path, variable: str = "cvind") -> np.ndarray:
    """Read a fold-number vector from a MATLAB file (the figshare set's ``cvind.mat``).

    Row or column vectors are accepted, in MATLAB v5 (scipy.io) or v7.3 (HDF5, via h5py).

    Returns
    -------
    np.ndarray
        ``(N,)`` int64 fold numbers as stored (the figshare set: 1-5), in file-number order.

    Raises
    ------
    ValueError
        When the file cannot be read, lacks ``variable``, or holds something other than a
        vector of whole numbers.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--folds-file {path}: no such file")
    try:
        if h5py.is_hdf5(str(path)):
            with h5py.File(str(path), "r") as f:
                if variable not in f or not isinstance(f[variable], h5py.Dataset):
                    raise ValueError(f"{path.name}: no variable '{variable}' (it holds "
                                     f"{sorted(f.keys())}); the figshare set's cvind.mat "
                                     f"holds '{variable}'")
                ds = f[variable]
                if int(np.prod(ds.shape, dtype=np.int64)) > _MAX_FOLD_ENTRIES:
                    raise ValueError(f"{path.name}: '{variable}' claims {ds.shape} entries, "
                                     "more than any set of slices")
                values = np.array(ds)
        else:
            import scipy.io

            from .formats.mat5 import check_mat5_claims

            check_mat5_claims(path)  # sizes from the headers before scipy allocates anything
            try:
                mat = scipy.io.loadmat(str(path), variable_names=[variable])
            except Exception as exc:
                raise ValueError(f"{path.name}: not a readable MATLAB file ({exc})") from exc
            if variable not in mat:
                raise ValueError(f"{path.name}: no variable '{variable}'; the figshare set's "
                                 f"cvind.mat holds '{variable}'")
            values = np.asarray(mat[variable])
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if values.dtype.kind not in "iuf" or sum(s > 1 for s in values.shape) > 1:
        raise ValueError(f"{path.name}: '{variable}' must be a row or column vector of fold "
                         f"numbers, got {values.dtype} of shape {values.shape}")
    values = values.reshape(-1)
    if not values.size or not np.all(np.isfinite(values)) or \
            not np.all(values == np.round(values)):
        raise ValueError(f"{path.name}: '{variable}' must hold whole fold numbers (1, 2, ...)")
    return values.astype(np.int64)


def folds_from_file(samples: Sequence[Sample], path: str | Path,
                    variable: str = "cvind") -> list[int]:
    """The fold of each sample (0-based) from a fold file, for a figshare-style folder.

    Fold file entry ``i`` (1-based) is the fold number of the file ``i.mat``, as in the
    figshare brain-tumour set, whose ``cvind.mat`` numbers 3,064 slices ``1.mat`` ...
    ``3064.mat`` into folds 1-5. Fold ``k`` becomes test fold ``k - 1``.

    Raises
    ------
    ValueError
        When a sample's file is not named by a number, when the numbers are not exactly
        ``1 .. N`` for the file's ``N`` entries (missing or extra files are named), or when the
        fold numbers are not ``1 .. K`` with every fold used.
    """
    path = Path(path)
    folds = read_fold_file(path, variable)
    numbers: list[int] = []
    unnumbered: list[str] = []
    for s in samples:
        name = Path(s.image_path).name if s.image_path is not None else None
        base = name.split(".")[0] if name else ""
        if not base.isdigit() or s.index is not None:
            unnumbered.append(name or "an in-memory slice")
        else:
            numbers.append(int(base))
    if unnumbered:
        raise ValueError(
            f"--folds-file {path.name} numbers the files 1.mat ... {len(folds)}.mat (the "
            f"figshare set's names), but the data hold {len(unnumbered)} other slice(s), e.g. "
            f"{', '.join(sorted(unnumbered)[:3])}; use it with the figshare folder as published"
        )
    have = set(numbers)
    if len(have) != len(numbers):
        dup = sorted(n for n in have if numbers.count(n) > 1)[:5]
        raise ValueError(f"the data hold several files numbered {dup} (e.g. 5.mat in two "
                         "folders); give one figshare folder")
    want = set(range(1, len(folds) + 1))
    if have != want:
        missing = sorted(want - have)
        extra = sorted(have - want)
        parts = []
        if missing:
            parts.append(f"{len(missing)} numbered file(s) it lists are missing or unreadable "
                         f"({', '.join(f'{n}.mat' for n in missing[:5])}"
                         f"{', ...' if len(missing) > 5 else ''})")
        if extra:
            parts.append(f"{len(extra)} file(s) are beyond its numbering "
                         f"({', '.join(f'{n}.mat' for n in extra[:5])}"
                         f"{', ...' if len(extra) > 5 else ''})")
        raise ValueError(
            f"--folds-file {path.name} holds {len(folds)} fold numbers but the data hold "
            f"{len(numbers)} numbered files: {'; '.join(parts)}. The split is only reproduced "
            "on the complete, unrenamed set"
        )
    used = sorted(set(folds.tolist()))
    if used != list(range(1, len(used) + 1)) or len(used) < 2:
        raise ValueError(f"{path.name}: fold numbers must be 1 .. K with every fold used and "
                         f"K >= 2, got {used[:10]}")
    return [int(folds[n - 1]) - 1 for n in numbers]


def split_groups(samples: Sequence[Sample], fold_of: Sequence[int]) -> int:
    """How many patients/volumes a given fold assignment puts in more than one fold."""
    seen: dict[str, set[int]] = {}
    for s, f in zip(samples, fold_of, strict=True):
        seen.setdefault(s.group, set()).add(int(f))
    return sum(len(v) > 1 for v in seen.values())


def patient_numbers(samples: Sequence[Sample]) -> list[int]:
    """Each sample's patient as a number (order of first appearance): no identifier leaves."""
    first: dict[str, int] = {}
    return [first.setdefault(s.group, len(first)) for s in samples]


@dataclass(frozen=True)
class CellPlan:
    """The data of one (fold, loss) cell: indices for tuning and for the final test."""

    fold: int
    inner_train: list[int]
    inner_val: list[int]
    train: list[int]
    test: list[int]


def plan(samples: Sequence[Sample], config: StudyConfig,
         fold_of: Sequence[int] | None = None) -> list[CellPlan]:
    """Outer folds and inner tuning splits (the same for every loss, so losses are paired).

    ``fold_of`` gives each sample's test fold (0-based, e.g. from :func:`folds_from_file`)
    instead of :func:`make_folds`; it must use exactly ``config.folds`` folds.
    """
    if fold_of is None:
        folds = make_folds(samples, config.folds, config.seed)
    else:
        if len(fold_of) != len(samples):
            raise ValueError(f"{len(fold_of)} fold numbers for {len(samples)} samples")
        k = max(fold_of) + 1 if len(fold_of) else 0
        if k != config.folds or min(fold_of, default=0) < 0:
            raise ValueError(f"the fold file holds {k} folds but the study is set to "
                             f"{config.folds}; leave out --folds (it follows the file)")
        folds = [[i for i, f in enumerate(fold_of) if f == k_] for k_ in range(k)]
    plans = []
    for f, test in enumerate(folds):
        test_set = set(test)
        train = [i for i in range(len(samples)) if i not in test_set]
        inner_t, inner_v = split_indices([samples[i].group for i in train],
                                         config.inner_val_fraction, config.seed + f)
        plans.append(CellPlan(f, [train[i] for i in inner_t], [train[i] for i in inner_v],
                              train, sorted(test)))
    return plans

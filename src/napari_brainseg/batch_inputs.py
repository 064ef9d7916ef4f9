"""The inputs of batch runs: the scans of a folder, and corrected predictions paired with scans.

Pairing by name is :mod:`napari_brainseg.naming`'s; this module walks folders with it. It never
imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import provenance
from .formats.dicom import is_dicom_file
from .io import ReadError, find_pairs
from .naming import (
    DICOM_SUFFIXES,
    is_never_input,
    is_prediction,
    legacy_prediction_paths,
    prediction_paths,
    suffix_of,
)
from .volume import list_files


def list_inputs(path: str | Path,
                exclude: str | Path | None = None) -> list[tuple[Path, Path | None]]:
    """Inputs of a batch run: ``(scan, ground-truth mask or None)``.

    A file is itself; a folder is searched recursively for images (masks by the pairing convention
    are used as ground truth, never segmented) and DICOM series (one input per folder). Anything
    under ``exclude`` (the run's output folder, when it lies strictly inside the input folder) is
    left out, so a re-run never segments its own outputs. An output folder that is the input
    folder itself (or holds it) excludes nothing: the outputs' names (``NAME_pred``, overlays)
    already keep them out.
    """
    path = Path(path)
    if exclude is not None and path.is_dir():
        ex, root = Path(exclude).resolve(), path.resolve()
        if ex == root or not ex.is_relative_to(root):
            return list_inputs(path)
        return [(src, gt) for src, gt in list_inputs(path)
                if not src.resolve().is_relative_to(ex)]
    if path.is_file():
        pairs = find_pairs(path.parent, recursive=False)
        gt = next((p.mask for p in pairs if p.image == path), None)
        return [(path, gt if gt != path else None)]
    if not path.is_dir():
        raise ReadError(f"{path}: no such file or folder")
    out: list[tuple[Path, Path | None]] = [(p.image, p.mask if p.mask != p.image else None)
                                           for p in find_pairs(path)]
    # A DICOM SEG of an earlier run (NAME_pred.dcm) is an output, not a series to segment.
    dicom_dirs = sorted({f.parent for f in list_files(path)
                         if not is_never_input(f) and is_dicom_file(f)})
    out += [(d, None) for d in dicom_dirs]
    return out


@dataclass(frozen=True)
class CorrectedPredictions:
    """The predictions of a results folder, sorted for training (:func:`corrected_pairs`).

    Attributes
    ----------
    pairs : list of (Path, Path)
        ``(scan, corrected prediction)``: training pairs.
    not_corrected : list of Path
        Predictions not marked corrected (skipped).
    no_scan : list of Path
        Corrected predictions with no scan of that name in the scans folder (skipped).
    """

    pairs: list[tuple[Path, Path]]
    not_corrected: list[Path]
    no_scan: list[Path]


def corrected_pairs(scans: str | Path, results: str | Path) -> CorrectedPredictions:
    """Pair the corrected predictions in ``results`` with their scans in ``scans``.

    A prediction belongs to the scan that ``brainseg segment SCANS RESULTS`` names so (same
    sub-folders, ``NAME_pred`` or the old ``NAME_tumour``; :mod:`napari_brainseg.naming`):
    pairing is by name, because sidecars never record input paths. Only predictions *marked
    corrected* are paired: their sidecar ``NAME_pred.ext.json`` says ``"corrected": true``, which
    the napari writer records when an edited prediction is saved
    (:func:`napari_brainseg.provenance.record_correction`). Series of multi-series inputs
    (``NAME_seriesK_pred``) have no single scan and count as ``no_scan``.
    """
    scans, results = Path(scans), Path(results)
    if not results.is_dir():
        raise ValueError(f"{results}: not a folder; --labels-from takes the results folder of "
                         "'brainseg segment' (holding NAME_pred files)")
    owner: dict[Path, Path] = {}
    for src, dest in prediction_paths([s for s, _ in list_inputs(scans, exclude=results)],
                                      scans, results).items():
        for name in (dest, *legacy_prediction_paths(dest)):
            owner[name] = src
    found = [p for p in list_files(results) if is_prediction(p)
             and suffix_of(p) not in DICOM_SUFFIXES]  # a DICOM SEG is another copy
    pairs, not_corrected, no_scan = [], [], []
    for pred in found:
        if not provenance.is_corrected(pred):
            not_corrected.append(pred)
        elif pred in owner:
            pairs.append((owner[pred], pred))
        else:
            no_scan.append(pred)
    return CorrectedPredictions(pairs, not_corrected, no_scan)

"""Batch runs over files and folders: inputs, output names, overlays, ``results.csv``.

:func:`iter_segment_folder` yields one :class:`FileResult` per file (ok / skipped / failed with the
reason), writes masks in the input's format (NIfTI keeps the scan's affine) and keeps
``results.csv`` up to date after every file, so the CLI and the batch widget share it. Every
scan goes through :func:`napari_brainseg.predict.iter_segment_scan`.
"""

from __future__ import annotations

import csv
import errno
import io as _io
import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scipy import ndimage as ndi

from . import provenance
from .formats.dicom import is_dicom_file
from .formats.dicom_seg import write_dicom_seg
from .io import (
    ReadError,
    Volume,
    atomic_write,
    find_pairs,
    read,
    write_labels,
)
from .metrics import Counts, confusion, scores
from .naming import (
    DICOM_SUFFIXES,
    PREDICTION_SUFFIX,
    dicom_seg_path,
    existing_prediction,
    is_never_input,
    is_prediction,
    legacy_prediction_paths,
    overlay_path,
    prediction_paths,
    series_prediction_path,
    suffix_of,
)
from .predict import Predictor, iter_segment_scan, tumour_size
from .progress import drain
from .provenance import SIDECAR_SUFFIX
from .volume import SEGMENT_BYTES_PER_VOXEL, check_memory, list_files, reading_for

if TYPE_CHECKING:
    from .uncertainty import UncertaintyOptions

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- folders


@dataclass(frozen=True)
class FileResult:
    """The outcome for one input file of a batch run."""

    source: Path
    status: Literal["ok", "skipped", "failed"]
    output: Path | None = None
    voxels: int = 0
    size_mm: float = 0.0
    unit: str = ""
    seconds: float = 0.0
    error: str = ""
    dice: float | None = None
    counts: Counts | None = field(default=None, repr=False)
    #: Uncertain volume (mm³) or area (mm²) when uncertainty was asked for
    #: (:mod:`napari_brainseg.uncertainty`), and the most uncertain slice's index.
    uncertainty: float | None = None
    uncertain_slice: int | None = None

    def row(self) -> dict[str, Any]:
        r"""One results.csv row (file names that are not UTF-8 are written with \x escapes)."""
        return {
            "file": _text(self.source), "status": self.status,
            "output": _text(self.output) if self.output else "",
            "tumour_voxels": self.voxels,
            "tumour_area_mm2": f"{self.size_mm:.2f}" if self.unit == "mm2" else "",
            "tumour_volume_mm3": f"{self.size_mm:.2f}" if self.unit == "mm3" else "",
            "seconds": f"{self.seconds:.3f}",
            "dice_vs_mask": "" if self.dice is None else f"{self.dice:.4f}",
            "uncertainty": "" if self.uncertainty is None else f"{self.uncertainty:.2f}",
            "most_uncertain_slice": "" if self.uncertain_slice is None
            else self.uncertain_slice,
            "error": _text(self.error),
        }


def _text(value: str | Path) -> str:
    r"""``value`` as valid UTF-8 text: bytes of a non-UTF-8 file name become ``\xe9`` escapes.

    Such names reach Python as lone surrogates, which no UTF-8 file can hold.
    """
    try:
        return os.fsencode(str(value)).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


CSV_FIELDS = ["file", "status", "output", "tumour_voxels", "tumour_area_mm2",
              "tumour_volume_mm3", "seconds", "dice_vs_mask", "uncertainty",
              "most_uncertain_slice", "error"]


def list_inputs(path: str | Path,
                exclude: str | Path | None = None) -> list[tuple[Path, Path | None]]:
    """Inputs of a batch run: ``(scan, ground-truth mask or None)``.

    A file is itself; a folder is searched recursively for images (masks by the pairing convention
    are used as ground truth, never segmented) and DICOM series (one input per folder). Anything
    under ``exclude`` (the run's output folder, when it lies inside the input folder) is left out,
    so a re-run never segments its own outputs.
    """
    path = Path(path)
    if exclude is not None and path.is_dir():
        ex = Path(exclude).resolve()
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


RED, GREEN = (255, 40, 40), (40, 220, 40)


def write_overlay(path: Path, image: np.ndarray,
                  outlines: Sequence[tuple[np.ndarray, tuple[int, int, int]]]) -> Path:
    """Write a quick-look PNG: a 2D slice in grey with each mask's outline in its colour.

    A volume shows the slice where the first mask is largest.
    """
    import imageio.v3 as iio

    if image.ndim == 3:
        first = outlines[0][0] if outlines else np.zeros(image.shape, bool)
        z = int(np.argmax(first.reshape(first.shape[0], -1).sum(1))) if first.any() else \
            image.shape[0] // 2
        image = image[z]
        outlines = [(m[z], c) for m, c in outlines]
    lo, hi = np.percentile(image, [1, 99.5])
    grey = np.clip((image - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    for mask, colour in outlines:
        m = mask > 0
        rgb[m & ~ndi.binary_erosion(m)] = colour
    return atomic_write(path, lambda tmp: iio.imwrite(str(tmp), rgb, extension=".png"))


def check_output_folder(out_dir: str | Path) -> None:
    """Refuse, before any scan is read, an output folder that cannot be written.

    Creates the folder (and its parents) when missing, then writes and removes a probe file.

    Raises
    ------
    ValueError
        ``out_dir`` is a file, or the folder cannot be created or written (read-only, no
        permission, full), with a message that names it.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir}: is a file; the output must be a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".brainseg-", suffix=".probe", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"{out_dir}: cannot write there ({exc.strerror or exc}); make the "
                         "folder writable or choose another output folder") from exc


def write_results_csv(path: Path, results: Sequence[FileResult]) -> None:
    """Write ``results.csv`` atomically (one row per input, :data:`CSV_FIELDS`).

    Raises
    ------
    OSError
        The file could not be written (full disk, read-only folder); the old table, if any, is
        left whole.
    """
    _write_rows(path, [r.row() for r in results])


def _write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, restval="", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    text = buf.getvalue()
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _describe(exc: BaseException, src: Path) -> str:
    """One line naming the input file and what went wrong with it."""
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        text = (f"its output name ({len(src.name)}-character input name + "
                f"'{PREDICTION_SUFFIX}') is too long "
                "for the file system; give the input a shorter name.")
    elif isinstance(exc, OSError) and exc.strerror:
        where = f" {Path(exc.filename).name}" if exc.filename else ""
        text = (f"cannot write{where}: {exc.strerror}. Check that the output folder is "
                "writable and not full, or choose another.")
    else:
        text = str(exc).replace("\n", " ")
    return text if text.startswith(f"{src.name}:") else f"{src.name}: {text}"


def _skipped(src: Path, dest: Path) -> FileResult:
    """The result for an input whose output already exists (kept as it is)."""
    try:
        vol = read(dest)[0]
    except ReadError:
        return FileResult(src, "skipped", dest, error=f"{dest.name} is in the way and is not a "
                          "readable mask; kept (use overwrite to replace it)")
    n, size, unit = tumour_size(vol.data, vol.spacing)
    return FileResult(src, "skipped", dest, n, size, unit, 0.0,
                      "mask exists (use overwrite to redo)")


def iter_segment_folder(
    inputs: str | Path,
    output: str | Path,
    predictor: Predictor,
    skull_strip: bool | None = None,
    overwrite: bool = False,
    overlays: bool = False,
    axis: int = 0,
    items: Sequence[tuple[Path, Path | None]] | None = None,
    on_slices: Callable[[int, int], None] | None = None,
    uncertainty: UncertaintyOptions | None = None,
    part: tuple[int, int] | None = None,
    dicom_seg: bool = False,
) -> Generator[FileResult, None, list[FileResult]]:
    """Segment every scan of a file or folder, yielding one :class:`FileResult` per file.

    Masks go to ``output`` (mirroring sub-folders) as ``NAME_pred`` in the input's format
    (every name: :mod:`napari_brainseg.naming`):
    NIfTI and DICOM inputs give NIfTI on the scan's own grid and affine, 2D images give PNG/TIFF.
    A file whose mask already exists (or an old ``NAME_tumour`` one) is skipped unless
    ``overwrite``; a file that fails is reported and the run goes on. Where a ground-truth mask
    is paired with a scan, Dice against it is recorded. ``output/results.csv`` is rewritten
    atomically at least every second and at the end. ``on_slices(done, total)``, if given, is
    called as the slices of each scan are segmented (the skull strip counts as a tenth), for a
    progress bar inside the file bar.

    Files are processed one after another: overlapping reads and writes with the model in a
    thread was measured slower on a 2-core CPU (the I/O thread stalls torch's own threads), so
    the per-file overhead is kept small instead (benchmarks/batch_folder.py).

    ``items`` are the inputs as :func:`list_inputs` gave them, when the caller listed them
    already (to count them): a folder is then paired once, not twice.

    With ``uncertainty`` (see :mod:`napari_brainseg.uncertainty`) each file also gets its
    uncertainty score and most uncertain slice in ``results.csv``, at the cost of that many
    extra model passes per slice.

    ``part=(I, N)`` segments only part I of N of the inputs (:func:`select_part`: the same split
    in every process) and keeps its table in ``results.partI.csv``; :func:`merge_parts`
    combines the parts' tables into ``results.csv``. Output names are chosen from *all* the
    inputs, so each part names its masks as one whole run would.

    With ``dicom_seg`` each DICOM series also gets a DICOM SEG beside its mask
    (:func:`napari_brainseg.naming.dicom_seg_path`, :mod:`napari_brainseg.formats.dicom_seg`)
    that references the source images; other inputs get a note saying that none was written.
    A skipped file whose SEG is missing gets it from its existing mask.
    """
    root = Path(inputs)
    out_dir = Path(output)
    check_output_folder(out_dir)
    items = list(items) if items is not None else list_inputs(root, exclude=out_dir)
    rec = run_record(predictor, skull_strip=skull_strip, axis=axis, uncertainty=uncertainty)
    table = out_dir / results_csv_name(part)
    _write_provenance(table.with_name(table.name + SIDECAR_SUFFIX),
                      rec if part is None else {**rec, "part": {"index": part[0],
                                                                "of": part[1]}})
    results: list[FileResult] = []
    csv_at = 0.0
    dests = prediction_paths([src for src, _ in items], root, out_dir)
    if part is not None:
        items = select_part(items, root, part)
    for k, (src, truth) in enumerate(items):
        t0 = time.perf_counter()
        dest = dests[src]
        overlay = overlay_path(dest, out_dir) if overlays else None
        # A prediction of an earlier run, under today's name or the old NAME_tumour one.
        done_before = existing_prediction(dest)
        try:
            if done_before is not None and not overwrite:
                res = _skipped(src, done_before)
                if overlay is not None and not overlay.exists() and res.error.startswith(
                        "mask exists"):  # a run stopped between the mask and its overlay
                    image = _scan_of(read(src, with_mask=False), src)
                    write_overlay(overlay, image.data, [(read(done_before)[0].data, RED)])
                    res = replace(res, error="mask exists (use overwrite to redo); its missing "
                                  "overlay was written")
                if dicom_seg and res.error.startswith("mask exists"):
                    res = _missing_seg(res, src, dest, rec)
            else:
                # A scan too large to segment is refused from its header, before it is read.
                with reading_for("segmenting", SEGMENT_BYTES_PER_VOXEL):
                    vols = read(src, with_mask=False)  # list_inputs paired the truth already
                images = [v for v in vols if v.kind == "image"]
                if len(images) > 1:  # a DICOM folder with several series: each one
                    done = list(_segment_series(src, dest, images, predictor, skull_strip,
                                                overlays, out_dir, overwrite, axis, on_slices,
                                                uncertainty, rec, dicom_seg))
                    for r in done[:-1]:
                        results.append(r)
                        yield r
                    res = done[-1]
                else:
                    gt, gt_note = _ground_truth(truth, src)
                    res, save = _segment_loaded(src, dest, vols, gt, predictor, skull_strip,
                                                overlay, axis, t0, on_slices, uncertainty, rec,
                                                dicom_seg, overwrite)
                    if gt_note:
                        res = replace(res, error=f"{gt_note}; {res.error}" if res.error
                                      else gt_note)
                    save()
        except (ReadError, ValueError, OSError, RuntimeError, MemoryError) as exc:
            res = FileResult(src, "failed", None, seconds=time.perf_counter() - t0,
                             error=_describe(exc, src))
            log.info("failed: %s", res.error)  # the caller reports it (CLI line, widget table)
        results.append(res)
        if k == len(items) - 1 or time.perf_counter() - csv_at >= 1.0:
            _try_write_csv(table, results)
            csv_at = time.perf_counter()
        yield res
    if not items:
        _try_write_csv(table, results)
    return results


# --------------------------------------------------------------------------- parts


def parse_part(text: str) -> tuple[int, int]:
    """``"I/N"`` (part I of N, counted from 1) as ``(I, N)``.

    Raises
    ------
    ValueError
        Not two whole numbers with ``1 <= I <= N``; the message says what is expected.
    """
    head, sep, tail = str(text).partition("/")
    try:
        index, count = int(head), int(tail)
    except ValueError:
        index = count = 0
    if not sep or count < 1 or not 1 <= index <= count:
        raise ValueError(f"--part must be I/N with 1 <= I <= N (e.g. 1/4 ... 4/4 for four "
                         f"processes), got {text!r}")
    return index, count


def results_csv_name(part: tuple[int, int] | None = None) -> str:
    """``results.csv``, or ``results.partI.csv`` for part I of a split run."""
    return "results.csv" if part is None else f"results.part{part[0]}.csv"


def select_part(items: Sequence[tuple[Path, Path | None]], root: str | Path,
                part: tuple[int, int]) -> list[tuple[Path, Path | None]]:
    """Part ``I`` of ``N`` of a run's inputs: every N-th input, starting with the I-th.

    The inputs are ordered by their path below ``root`` (as bytes, so locale and file system
    order do not matter), so independent processes given the same folder agree on the split
    however they spell it; taking every N-th spreads large and small scans over the parts.
    The parts are disjoint and together hold every input once.
    """
    index, count = part
    root = Path(root)

    def key(item: tuple[Path, Path | None]) -> bytes:
        src = item[0]
        try:
            rel = src.relative_to(root) if root.is_dir() else Path(src.name)
        except ValueError:
            rel = src
        return os.fsencode(str(rel))

    return sorted(items, key=key)[index - 1::count]


_PART_TABLE = re.compile(r"results\.part([1-9][0-9]*)\.csv")


def part_tables(out_dir: str | Path) -> dict[int, Path]:
    """The part tables (``results.partI.csv``) in an output folder, by part number."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return {}
    found = {}
    for p in out_dir.iterdir():
        m = _PART_TABLE.fullmatch(p.name)
        if m and p.is_file():
            found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def merge_parts(inputs: str | Path, output: str | Path,
                items: Sequence[tuple[Path, Path | None]] | None = None) -> list[dict[str, str]]:
    """Combine the part tables of a split run (``--part I/N``) into one ``results.csv``.

    Rows come in the order one plain run writes them. ``results.csv`` is written atomically
    (with the parts' provenance as ``results.csv.json``); only then are the part tables and
    their ``.json`` removed. Returns the rows.

    Raises
    ------
    ValueError
        No part tables; a part is missing (named, with the command that makes it); two parts
        list the same input (both named: parts of different splits); or the parts do not
        cover exactly the inputs (some named). Nothing is written or removed then.
    """
    root, out_dir = Path(inputs), Path(output)
    tables = part_tables(out_dir)
    if not tables:
        raise ValueError(f"{out_dir}: no part tables (results.partI.csv) to merge; run "
                         "'brainseg segment IN OUT --part I/N' for every part first")
    items = list(items) if items is not None else list_inputs(root, exclude=out_dir)
    records: dict[int, dict[str, Any]] = {}
    for i, path in tables.items():
        try:
            data = json.loads(path.with_name(path.name + SIDECAR_SUFFIX).read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("part"), dict):
            records[i] = data
    counts = sorted({int(r["part"].get("of", 0)) for r in records.values()})
    if len(counts) > 1:
        raise ValueError(f"{out_dir}: the part tables come from different splits (N = "
                         f"{', '.join(map(str, counts))}); delete the stale results.part*.csv "
                         "files and run the parts of one split again")
    if counts:
        n = max(counts[0], max(tables))
        missing = [i for i in range(1, n + 1) if i not in tables]
        if missing:
            names = ", ".join(f"{i}/{n}" for i in missing)
            raise ValueError(f"{out_dir}: part{'s' if len(missing) > 1 else ''} {names} "
                             f"missing (no results.part{missing[0]}.csv); run 'brainseg "
                             f"segment {root} {out_dir} --part {missing[0]}/{n}' (and any other "
                             "missing part) with the same options, then merge again")
    rows: dict[str, dict[str, str]] = {}
    where: dict[str, int] = {}
    for i, path in tables.items():
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                name = row.get("file", "")
                if name in where:
                    raise ValueError(f"{out_dir}: {name} is in both results.part{where[name]}"
                                     f".csv and results.part{i}.csv, so the parts overlap "
                                     "(runs with different N?); delete the stale part tables "
                                     "and run the parts of one split again")
                rows[name], where[name] = row, i
    order = [_text(src) for src, _ in items]
    absent = [name for name in order if name not in rows]
    extra = [name for name in rows if name not in set(order)]
    if absent or extra:
        def few(names: list[str]) -> str:
            return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3
                                           else "")
        problem = (f"{len(absent)} input(s) are in no part table ({few(absent)})" if absent
                   else "")
        if extra:
            problem += ("; " if problem else "") + (
                f"the part tables list {len(extra)} file(s) that are not inputs of {root} "
                f"({few(extra)}; were the parts run on another folder or spelling of it?)")
        raise ValueError(f"{out_dir}: cannot merge: {problem}. Run the missing parts, or "
                         "delete the results.part*.csv files and segment again")
    merged = [rows[name] for name in order]
    _write_rows(out_dir / "results.csv", merged)
    if records:
        rec = dict(next(iter(records.values())))
        rec.pop("part", None)
        _write_provenance(out_dir / f"results.csv{SIDECAR_SUFFIX}", rec)
    for path in tables.values():
        for p in (path, path.with_name(path.name + SIDECAR_SUFFIX)):
            p.unlink(missing_ok=True)
    return merged


def run_record(predictor: Predictor | None, **options: Any) -> dict[str, Any]:
    """The provenance record of a batch run (see :mod:`.provenance`): version, model, options."""
    opts = {k: (asdict(v) if is_dataclass(v) and not isinstance(v, type) else v)
            for k, v in options.items()}
    if hasattr(predictor, "record"):
        return predictor.record(**opts)  # type: ignore[union-attr]
    return provenance.record(options=opts)


def _write_provenance(path: Path, rec: dict[str, Any]) -> None:
    """Write a provenance file unless a user's file has that name (then say so, once)."""
    try:
        if provenance.write_json(path, rec) is None:
            log.warning("%s exists and was not written by napari-brainseg; left as it is, so "
                        "this run's provenance is not recorded there", path)
    except OSError as exc:  # a full disk must not stop the batch (results.csv says more)
        log.info("%s not written: %s", path, exc.strerror or exc)


def _try_write_csv(path: Path, results: Sequence[FileResult]) -> None:
    """Update the table, or log why not.

    A full disk must not stop the batch: the next update, or the caller's final
    :func:`write_results_csv`, tries again.
    """
    try:
        write_results_csv(path, results)
    except OSError as exc:
        log.info("%s not updated: %s", path, exc.strerror or exc)


def _segment_series(src: Path, dest: Path, images: list[Volume], predictor: Predictor,
                    skull_strip: bool | None, overlays: bool, out_dir: Path, overwrite: bool,
                    axis: int, on_slices: Callable[[int, int], None] | None = None,
                    uncertainty: UncertaintyOptions | None = None,
                    rec: dict[str, Any] | None = None, dicom_seg: bool = False,
                    ) -> Generator[FileResult, None, None]:
    """Segment every series of a multi-series input: ``NAME_seriesK_pred.nii.gz`` each."""
    for j, image in enumerate(images, start=1):
        t0 = time.perf_counter()
        d = series_prediction_path(dest, j)
        what = f"series {j} of {len(images)}"
        if image.metadata.get("series_description"):
            what += f" ({image.metadata['series_description']})"
        try:
            done_before = existing_prediction(d)
            if done_before is not None and not overwrite:
                res = _skipped(src, done_before)
            else:
                overlay = overlay_path(d, out_dir) if overlays else None
                res, save = _segment_loaded(src, d, [image], None, predictor, skull_strip,
                                            overlay, axis, t0, on_slices, uncertainty, rec,
                                            dicom_seg, overwrite)
                save()
        except (ValueError, OSError, RuntimeError, MemoryError) as exc:
            res = FileResult(src, "failed", None, seconds=time.perf_counter() - t0,
                             error=_describe(exc, src))
        yield replace(res, error=f"{what}; {res.error}" if res.error else what)


def _scan_of(vols: list[Volume], src: Path) -> Volume:
    """The image among what was read; a mask or prediction given as input is a clear error."""
    for v in vols:
        if v.kind == "image":
            return v
    if is_prediction(src):
        raise ReadError(f"{src.name}: this is a prediction of this package (labels), not a "
                        "scan; give the scan itself.")
    raise ReadError(f"{src.name}: this is a mask (labels), not a scan; give the scan itself "
                    "(its mask is found by the pairing convention).")


def _ground_truth(truth: Path | None, src: Path) -> tuple[np.ndarray | None, str]:
    """The optional ground-truth mask, or None and a note saying why it cannot be used.

    A broken ground truth never stops its scan from being segmented.
    """
    if truth is None or truth == src:
        return None, ""
    try:
        return read(truth)[0].data, ""
    except (ReadError, ValueError, OSError) as exc:
        return None, f"{src.name}: ground-truth mask not used ({exc}); no Dice"


def _segment_loaded(src: Path, dest: Path, vols: list[Volume], gt: np.ndarray | None,
                    predictor: Predictor, skull_strip: bool | None, overlay: Path | None,
                    axis: int, t0: float, on_slices: Callable[[int, int], None] | None = None,
                    uncertainty: UncertaintyOptions | None = None,
                    rec: dict[str, Any] | None = None, dicom_seg: bool = False,
                    overwrite: bool = False,
                    ) -> tuple[FileResult, Callable[[], None]]:
    """Segment one read input; return its result and the function that writes its outputs.

    With ``rec`` (a provenance record) the mask carries it: a NIfTI header's ``descrip`` holds
    its short form, and ``MASK.json`` beside the mask the whole record. With ``dicom_seg`` a
    DICOM series also gets its DICOM SEG (never over an existing one without ``overwrite``).
    """
    image = _scan_of(vols, src)
    # Refuse before the model allocates its copies, with advice, rather than die of memory.
    check_memory(image.data.size, SEGMENT_BYTES_PER_VOXEL, src, what="segmenting",
                 limit=2**62)
    steps = iter_segment_scan(predictor, image.data, image.spacing, affine=image.affine,
                              geometry_known=image.has_geometry, skull_strip=skull_strip,
                              axis=axis)
    seg_total = [1]

    def seg_step(step: tuple[int, int]) -> None:
        seg_total[0] = step[1]
        if on_slices is not None:
            on_slices(*step)

    res = drain(steps, seg_step)
    mask, n, size, unit = res.mask, res.voxels, res.size_mm, res.unit
    u_score = u_slice = None
    if uncertainty is not None:
        from .uncertainty import iter_uncertainty

        u_steps = iter_uncertainty(predictor, image.data, image.spacing,
                                   brain_mask=res.brain, axis=axis, options=uncertainty,
                                   geometry_known=image.has_geometry)
        u = drain(u_steps, None if on_slices is None else  # after the segmentation's slices
                  lambda s: on_slices(seg_total[0] + s[0], seg_total[0] + s[1]))
        u_score = u.score
        ranked = u.ranked_slices()
        u_slice = ranked[0] if ranked and image.data.ndim == 3 else None
    if gt is None and len(vols) > 1 and vols[1].kind == "labels":
        gt = vols[1].data  # figshare .mat carries its mask
    dice = counts = None
    note = ""
    if gt is not None and np.shape(gt) == mask.shape:
        counts = confusion(mask, gt)
        dice = scores(counts)["f1"]
    elif gt is not None:
        note = (f"ground-truth mask of shape {np.shape(gt)} does not match the scan "
                f"{mask.shape}; no Dice")
    if res.warning:
        note = f"{note}; {res.warning}" if note else res.warning
    for warning in reversed(image.warnings):  # what the reader changed (values, slices left out)
        note = f"{warning}; {note}" if note else warning
    seg_dest, seg_note = _seg_plan(image, dest, dicom_seg, overwrite)
    if seg_note:
        note = f"{note}; {seg_note}" if note else seg_note

    def save() -> None:
        write_labels(dest, mask, like=image, spacing=image.spacing,
                     description=provenance.nifti_description(rec) if rec else None)
        if rec:
            _write_provenance(provenance.sidecar_path(dest), rec)
        if overlay is not None:
            write_overlay(overlay, image.data, [(mask, RED)])
        if seg_dest is not None:
            write_dicom_seg(mask, image, seg_dest, overwrite=True, provenance=rec)

    return FileResult(src, "ok", dest, n, size, unit, time.perf_counter() - t0, note, dice,
                      counts, u_score, u_slice), save


def _seg_plan(image: Volume, dest: Path, dicom_seg: bool,
              overwrite: bool) -> tuple[Path | None, str]:
    """Where the DICOM SEG of ``dest`` goes (None: none), and the note that says why not."""
    if not dicom_seg:
        return None, ""
    if image.metadata.get("format") != "dicom":
        return None, "not a DICOM series, so no DICOM SEG (--dicom-seg) was written"
    seg = dicom_seg_path(dest)
    if seg.exists() and not overwrite:
        return None, f"{seg.name} exists; kept (use overwrite to replace it)"
    return seg, ""


def _missing_seg(res: FileResult, src: Path, dest: Path, rec: dict[str, Any]) -> FileResult:
    """A skipped DICOM series whose SEG is missing (a run without it): write it from its mask."""
    seg = dicom_seg_path(dest)
    if seg.exists() or not dest.exists():
        return res
    images = [v for v in read(src, with_mask=False) if v.kind == "image"]
    if len(images) != 1 or images[0].metadata.get("format") != "dicom":
        return res
    write_dicom_seg(read(dest)[0].data, images[0], seg, provenance=rec)
    return replace(res, error=f"{res.error}; its missing DICOM SEG was written")


def summarise(results: Sequence[FileResult]) -> dict[str, Any]:
    """Counts by status and pooled metrics over the files that had a ground-truth mask."""
    out: dict[str, Any] = {s: sum(r.status == s for r in results)
                           for s in ("ok", "skipped", "failed")}
    with_truth = [r.counts for r in results if r.counts is not None]
    if with_truth:
        total = sum(with_truth, Counts())
        out["pooled"] = scores(total)
        out["n_with_truth"] = len(with_truth)
        out["background_accuracy"] = (total.tn + total.fp) / total.total if total.total \
            else math.nan
    return out

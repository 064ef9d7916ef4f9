"""Batch runs over files and folders: segment every scan, write masks, overlays and the table.

:func:`iter_segment_folder` yields one :class:`~napari_brainseg.results_table.FileResult` per file
(ok / skipped / failed with the reason), writes masks in the input's format (NIfTI keeps the
scan's affine) and keeps ``results.csv`` up to date after every file, so the CLI and the batch
widget share it. Every scan goes through :func:`napari_brainseg.predict.iter_segment_scan`. The
inputs are :mod:`.batch_inputs`'s, the table and split runs :mod:`.results_table`'s.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, is_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage as ndi

from . import provenance
from .batch_inputs import list_inputs
from .formats.dicom_seg import write_dicom_seg
from .io import ReadError, Volume, atomic_write, read, write_labels
from .metrics import Counts, confusion, scores
from .naming import (
    PREDICTION_SUFFIX,
    dicom_seg_path,
    existing_prediction,
    is_prediction,
    overlay_path,
    prediction_paths,
    series_prediction_path,
)
from .predict import Predictor, iter_segment_scan, tumour_size
from .progress import drain
from .provenance import SIDECAR_SUFFIX
from .results_table import (
    FileResult,
    results_csv_name,
    select_part,
    try_write_csv,
    write_provenance,
)
from .volume import SEGMENT_BYTES_PER_VOXEL, check_memory, reading_for

if TYPE_CHECKING:
    from .uncertainty import UncertaintyOptions

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- folders


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
    n, size, unit = tumour_size(vol.data, vol.spacing, known=vol.has_geometry)
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
    write_provenance(table.with_name(table.name + SIDECAR_SUFFIX),
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
            try_write_csv(table, results)
            csv_at = time.perf_counter()
        yield res
    if not items:
        try_write_csv(table, results)
    return results


def run_record(predictor: Predictor | None, **options: Any) -> dict[str, Any]:
    """The provenance record of a batch run (see :mod:`.provenance`): version, model, options."""
    opts = {k: (asdict(v) if is_dataclass(v) and not isinstance(v, type) else v)
            for k, v in options.items()}
    if hasattr(predictor, "record"):
        return predictor.record(**opts)  # type: ignore[union-attr]
    return provenance.record(options=opts)


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
            if _two_valued(v.data):
                raise ReadError(
                    f"{src.name}: holds only two values, 0 and {float(v.data.max()):g}: a mask, "
                    "not a scan, so it was not segmented. Name a tumour mask NAME_mask beside "
                    "its scan NAME (then it is the scan's ground truth) and a brain mask "
                    "NAME_brain_mask, or move it out of the input folder.")
            return v
    if is_prediction(src):
        raise ReadError(f"{src.name}: this is a prediction of this package (labels), not a "
                        "scan; give the scan itself.")
    raise ReadError(f"{src.name}: this is a mask (labels), not a scan; give the scan itself "
                    "(its mask is found by the pairing convention).")


def _two_valued(data: np.ndarray) -> bool:
    """Whether an image holds 0 and one other value only (a binary mask under a scan's name).

    No MRI does: even a skull-stripped one has many intensities inside the brain.
    """
    top = data.max()
    if top == 0 or not (data == 0).any():
        return False
    return not bool(((data != 0) & (data != top)).any())  # bool temporaries, no copy of the scan


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

    file_rec = rec
    if rec and "options" in rec and rec["options"].get("skull_strip", False) is None:
        # "auto" is decided per scan (volumes stripped, 2D slices not): a mask's own record
        # says what happened to it, so it can be traced without knowing the rule
        file_rec = {**rec, "options": {**rec["options"], "skull_strip": res.brain is not None}}

    def save() -> None:
        write_labels(dest, mask, like=image, spacing=image.spacing,
                     description=provenance.nifti_description(file_rec) if file_rec else None)
        if file_rec:
            write_provenance(provenance.sidecar_path(dest), file_rec)
        if overlay is not None:
            write_overlay(overlay, image.data, [(mask, RED)])
        if seg_dest is not None:
            write_dicom_seg(mask, image, seg_dest, overwrite=True, provenance=file_rec)

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

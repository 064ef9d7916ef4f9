"""``brainseg segment``: folders, ``--part`` runs and their merge."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import _err


def _cmd_segment(args: argparse.Namespace) -> int:
    from napari_brainseg.results_table import parse_part, part_tables

    out = Path(args.output)
    try:
        part = parse_part(args.part) if args.part is not None else None
    except ValueError as exc:
        _err(str(exc))
        return 2
    if part is not None and args.merge:
        _err("--merge combines the parts' tables after all --part runs: give one or the other")
        return 2
    if args.merge or (part is None and part_tables(out)):
        return _merge_parts(args)  # torch-free: merging tables loads no model
    from tqdm import tqdm

    from napari_brainseg.batch import check_output_folder, iter_segment_folder, summarise
    from napari_brainseg.batch_inputs import list_inputs
    from napari_brainseg.io import ReadError
    from napari_brainseg.model import CheckpointError
    from napari_brainseg.naming import PREDICTION_SUFFIX, suffix_of
    from napari_brainseg.predict import Predictor, SegmentOptions
    from napari_brainseg.results_table import results_csv_name, select_part, write_results_csv

    if out.exists() and not out.is_dir():
        _err(f"{out}: is a file; OUTPUT must be a folder (masks and results.csv go inside it)")
        return 2
    if not out.exists() and suffix_of(out):
        _err(f"{out}: looks like a file name; OUTPUT must be a folder (masks are named "
             f"NAME{PREDICTION_SUFFIX} inside it). Give a folder, e.g. results/")
        return 2
    try:
        if args.dicom_seg:  # say it once, before the model loads, not once per series
            from napari_brainseg.formats.dicom_seg import require_highdicom

            require_highdicom()
        opts = SegmentOptions(threshold=args.threshold, tta=args.tta,
                              min_area_mm2=args.min_area, keep=args.keep,
                              batch_size=args.batch_size)
        predictor = Predictor.from_checkpoint(args.model, opts, device=args.device)
        # ONNX Runtime from the first slice, so a run's masks never depend on when a first
        # export finished (a few seconds, once per model and machine; cached after).
        predictor.prepare(wait=True)
        u_opts = None
        if args.uncertainty:
            from napari_brainseg.uncertainty import UncertaintyOptions

            u_opts = UncertaintyOptions(args.uncertainty, args.uncertainty_passes or
                                        (4 if args.uncertainty == "tta" else 8))
        items = list_inputs(args.input, exclude=args.output)  # paired once, used by the run
        n_inputs = len(items)
        if part is not None:  # the bar counts this part's files
            n_part = len(select_part(items, Path(args.input), part))
    except (CheckpointError, ValueError, ReadError, FileNotFoundError, ImportError) as exc:
        _err(str(exc))
        return 2
    if n_inputs == 0:
        _err(f"{args.input}: no scans found{_only_outputs(Path(args.input))}")
        return 2
    try:
        check_output_folder(out)  # read-only or unwritable: say so once, not once per scan
    except ValueError as exc:
        _err(str(exc))
        return 2
    results = []
    if part is not None:
        n_inputs = n_part
    with tqdm(total=n_inputs, desc="segment", unit="file", disable=args.quiet) as bar, \
            tqdm(desc="slices", unit="slice", leave=False, disable=args.quiet) as slice_bar:

        def on_slices(done: int, total: int) -> None:  # the scan being segmented
            if total != slice_bar.total or done < slice_bar.n:  # the next scan
                slice_bar.reset(total=total)
            slice_bar.n = done
            slice_bar.refresh()

        gen = iter_segment_folder(args.input, args.output, predictor,
                                  skull_strip=args.skull_strip, overwrite=args.overwrite,
                                  overlays=args.overlays, axis=args.axis, items=items,
                                  on_slices=on_slices, uncertainty=u_opts, part=part,
                                  dicom_seg=args.dicom_seg)
        for r in gen:
            results.append(r)
            bar.update(1)
            if r.status == "failed":
                tqdm.write(f"brainseg: error: {r.error}", file=sys.stderr)
            elif r.status == "ok" and r.error:
                name = r.source.name
                note = r.error if r.error.startswith(f"{name}:") else f"{name}: {r.error}"
                tqdm.write(f"brainseg: warning: {note}", file=sys.stderr)
    if part is not None and not results:  # more parts than scans: its empty table is written
        print(f"part {part[0]}/{part[1]}: no inputs fall in this part; table: "
              f"{out / results_csv_name(part)}")
        return 0
    width = max(len(str(r.source)) for r in results)
    rows = results
    if u_opts is not None:  # review order: the least certain first
        rows = sorted(results, key=lambda r: -1.0 if r.uncertainty is None else r.uncertainty,
                      reverse=True)
    u_head = "  uncertainty (slice)" if u_opts is not None else ""
    print(f"{'file':{width}s}  status   tumour          Dice   seconds{u_head}")
    for r in rows:
        counts = r.unit in ("px", "vox")  # no pixel size in the file: a count, no decimals
        size = (" " * 13 if r.status == "failed" else
                f"{r.voxels:9d} {r.unit:<3}" if counts else f"{r.size_mm:9.1f} {r.unit}")
        dice = f"{r.dice:.3f}" if r.dice is not None else "  -  "
        u = ""
        if r.uncertainty is not None:
            where = "" if r.uncertain_slice is None else f" ({r.uncertain_slice})"
            u = f"  {r.uncertainty:9.1f} {r.unit}{where}"
        print(f"{str(r.source):{width}s}  {r.status:7s}  {size}  {dice}  {r.seconds:7.2f}{u}")
    s = summarise(results)
    table = out / results_csv_name(part)
    try:  # the batch updates it as it goes; this final write also says if that failed
        write_results_csv(table, results)
    except OSError as exc:
        state = "not updated" if table.exists() else "not written"
        table_error = f"{table}: {state} ({exc.strerror or exc}); the table is printed above"
    else:
        table_error = ""
    print(f"\n{s['ok']} segmented, {s['skipped']} skipped (already done), {s['failed']} failed; "
          f"table: {table if not table_error else 'not written'}")
    if "pooled" in s:
        p = s["pooled"]
        print(f"pooled over {s['n_with_truth']} files with a ground-truth mask: Dice (F1) "
              f"{p['f1']:.4f}, precision {p['precision']:.4f}, recall {p['recall']:.4f}, pixel "
              f"accuracy {p['accuracy']:.4f} (all-background baseline "
              f"{s['background_accuracy']:.4f})")
    if table_error:
        _err(table_error)
    return 1 if s["failed"] or table_error else 0


def _only_outputs(folder: Path) -> str:
    """Why a folder gave no scans when it holds only predictions, masks or overlays."""
    from napari_brainseg.naming import is_never_input
    from napari_brainseg.volume import ReadError, is_supported_file, list_files

    try:
        files = list_files(folder) if folder.is_dir() else []
    except ReadError:
        return ""
    outputs = [f for f in files if is_supported_file(f) and is_never_input(f)]
    if not outputs:
        return ""
    return (f" ({len(outputs)} file(s) there, e.g. {outputs[0].name}, are predictions, masks or "
            "overlays, which are never segmented again); give the folder of scans")


def _merge_parts(args: argparse.Namespace) -> int:
    """``segment --merge`` (or a plain run finding part tables): one results.csv from the parts."""
    from napari_brainseg.io import ReadError
    from napari_brainseg.results_table import merge_parts, part_tables

    out = Path(args.output)
    n_parts = len(part_tables(out))
    try:
        rows = merge_parts(args.input, out)
    except (ValueError, ReadError, OSError) as exc:
        if args.merge:
            _err(str(exc))
        else:  # the user asked to segment: say how to leave the split run behind too
            _err(f"{out} holds the tables of a split run (--part), so this run merges them "
                 f"first: {exc}; or, to segment everything in one run instead, delete "
                 f"{out / 'results.part*.csv'}")
        return 2
    counts = {s: sum(r.get("status") == s for r in rows) for s in ("ok", "skipped", "failed")}
    # Only a plain run that found part tables needs telling that it segmented nothing.
    note = "" if args.merge else (" (this run merged the parts' tables and segmented nothing; "
                                  "run it again with --overwrite to redo every scan)")
    print(f"merged {n_parts} part tables into {out / 'results.csv'}: {counts['ok']} segmented, "
          f"{counts['skipped']} skipped, {counts['failed']} failed{note}")
    return 1 if counts["failed"] else 0


# --------------------------------------------------------------------------- study

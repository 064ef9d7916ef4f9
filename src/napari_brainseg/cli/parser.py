"""The argument parser and ``main``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from napari_brainseg import __version__
from napari_brainseg.devices import DEVICES
from napari_brainseg.loss_config import LOSS_NAMES

from ._common import _err, check_ranges, log
from .basic import _cmd_info, _cmd_sample_data, _cmd_skull_strip
from .segment import _cmd_segment
from .study import _cmd_study
from .train import _cmd_train


def _path(text: str) -> str:
    """A path argument with a leading ``~`` expanded.

    The shell expands ``~`` only at the start of a word: ``--model=~/unet.pt`` or a quoted
    ``"~/scans"`` reach the command as they are, and would name a folder called ``~``.
    """
    return os.path.expanduser(text)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (kept importable for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="brainseg",
        description="Brain MRI skull stripping and tumour segmentation (napari-brainseg).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("info", help="read files or folders and print what was found")
    p.add_argument("paths", nargs="+", type=_path,
                   help="NIfTI, DICOM, .mat, PNG/TIFF files or folders")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("sample-data", help="write a folder of synthetic phantoms with masks")
    p.add_argument("out", type=_path, help="output folder (images/ and masks/ are created in it)")
    p.add_argument("--n", type=int, default=12, help="number of phantoms (default 12)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", default="256x256", help="HEIGHTxWIDTH in pixels (default 256x256)")
    p.add_argument("--skull", action="store_true",
                   help="keep scalp and skull (default: skull-stripped, like the study's images)")
    p.set_defaults(func=_cmd_sample_data)

    p = sub.add_parser("skull-strip", help="write brain masks (and optionally stripped images)",
                       description="Skull stripping, offline. The default learned method runs "
                       "deepbet on volumes and the built-in 2D U-Net on single slices; "
                       "--method classical is thresholds and morphology. INPUT is a file or a "
                       "folder; OUTPUT a mask file (one input) or a folder.")
    p.add_argument("input", type=_path, help="scan file, DICOM series folder, or a folder of scans")
    p.add_argument("output", type=_path, help="mask file (e.g. brain.nii.gz) or output folder")
    p.add_argument("--masked", action="store_true", help="also write the skull-stripped image")
    p.add_argument("--mode", choices=["auto", "3d", "slices"], default="auto",
                   help="auto: 3D for volumes, 2D for slices; slices: each slice on its own "
                   "(default auto)")
    p.add_argument("--method", choices=["learned", "classical"], default="learned",
                   help="learned: deepbet for volumes, the built-in 2D U-Net for slices; "
                   "classical: thresholds and morphology (default learned)")
    p.add_argument("--tightness", type=float, default=None,
                   help="classical method: 0-1, higher gives a tighter mask (default 0.5)")
    p.add_argument("--erode-mm", type=float, default=None,
                   help="classical method: erosion depth that cuts brain-skull bridges, mm "
                   "(default 5)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_skull_strip)

    p = sub.add_parser("train", help="train (or fine-tune) a U-Net on image/mask pairs",
                       description="DATA is a folder in the README's pairing convention "
                       "(NAME + NAME_mask, images/ + masks/, or figshare .mat files). With "
                       "--labels-from RESULTS, DATA is the folder of scans that 'brainseg "
                       "segment DATA RESULTS' segmented, and the labels are the predictions in "
                       "RESULTS that were corrected in napari and saved (marked corrected in "
                       "their NAME_pred.ext.json); DATA's own masks are not used.")
    p.add_argument("data", type=_path,
                   help="training folder (with --labels-from: the scans folder)")
    p.add_argument("--labels-from", default=None, metavar="RESULTS_DIR", type=_path,
                   help="train on the corrected predictions of this results folder, each paired "
                        "by name with its scan in DATA; predictions not marked corrected are "
                        "skipped and counted")
    p.add_argument("--out", required=True, type=_path,
                   help="best-model checkpoint (e.g. model.pt)")
    p.add_argument("--loss", default="dice+bce",
                   choices=LOSS_NAMES, help="training loss (default dice+bce)")
    p.add_argument("--alpha", type=float, default=None,
                   help="focal: tumour weight (default none: unweighted); tversky: FP weight "
                   "(default 0.3)")
    p.add_argument("--gamma", type=float, default=2.0, help="focal gamma (default 2)")
    p.add_argument("--beta", type=float, default=None,
                   help="tversky FN weight (default 1 - alpha)")
    p.add_argument("--pos-weight", type=float, default=None,
                   help="BCE tumour weight (default 1: unweighted)")
    p.add_argument("--epochs", type=int, default=30, help="maximum epochs (default 30)")
    p.add_argument("--batch-size", type=int, default=8, help="slices per batch (default 8)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--val-split", type=float, default=0.2,
                   help="fraction of patients/volumes held out for validation (default 0.2)")
    p.add_argument("--patch-size", type=int, default=256,
                   help="square training crops, pixels (default 256)")
    p.add_argument("--no-augment", action="store_true", help="no flips, rotations or intensity "
                   "changes during training")
    p.add_argument("--patience", type=int, default=10,
                   help="stop after this many epochs without a better validation Dice or loss "
                   "(default 10; 0: never)")
    p.add_argument("--base-filters", type=int, default=16,
                   help="U-Net width (default 16, as in the study)")
    p.add_argument("--init", default=None, type=_path, help="fine-tune from this checkpoint")
    p.add_argument("--resume", default=None, type=_path,
                   help="continue from a .last.pt checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out model and its .last.pt")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms only (slower; same weights on every run)")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where to train (default auto: CUDA, then MPS, then CPU)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("segment", help="segment tumours in a scan or a folder of scans",
                       description="Writes OUTPUT/NAME_pred masks in the input's format "
                       "(NIfTI keeps the scan's affine) and OUTPUT/results.csv.")
    p.add_argument("input", type=_path,
                   help="scan file, DICOM series folder, or a folder (recursive)")
    p.add_argument("output", type=_path, help="output folder")
    p.add_argument("--model", default="demo", type=_path,
                   help="checkpoint file, or 'demo' for the built-in model (default; trained on "
                        "synthetic tumours in contrast-enhanced T1, see the README's model card)")
    p.add_argument("--skull-strip", action=argparse.BooleanOptionalAction, default=None,
                   help="strip the skull first (learned skull strip), so that no tumour is "
                        "reported in the eyes, scalp or vessels outside the brain (default: "
                        "volumes yes, single 2D slices no; --no-skull-strip for volumes that "
                        "are already stripped)")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation (4x slower)")
    p.add_argument("--uncertainty", nargs="?", const="tta", choices=["tta", "mc-dropout"],
                   help="also score each file's uncertainty (uncertain mm³/mm² and the most "
                        "uncertain slice, in results.csv) to review the least certain first: "
                        "tta = 4 flips (default when given), mc-dropout = dropout samples; "
                        "costs that many extra model passes (default off)")
    p.add_argument("--uncertainty-passes", type=int, default=None,
                   help="passes for --uncertainty (tta 2-4, default 4; mc-dropout 2-64, "
                        "default 8)")
    p.add_argument("--threshold", type=float, default=None,
                   help="tumour probability above which a pixel is tumour (default: the "
                        "model's own, 0.6 for the built-in model, 0.5 for a model that "
                        "records none)")
    p.add_argument("--min-area", type=float, default=10.0,
                   help="remove components smaller than this many mm² per slice (default 10)")
    p.add_argument("--keep", choices=["all", "largest"], default="all",
                   help="all tumour components, or only the largest (3D for volumes; default all)")
    p.add_argument("--axis", type=int, default=0, choices=[0, 1, 2],
                   help="slice volumes along this axis (default 0: axial in display orientation)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="slices per forward pass (default 8; a CPU runs one at a time)")
    p.add_argument("--overlays", action="store_true", help="also write OUTPUT/overlays/*.png")
    p.add_argument("--dicom-seg", action="store_true",
                   help="also write each DICOM series' mask as a DICOM SEG referencing the "
                        "series (NAME_pred.dcm beside the mask; opens in 3D Slicer and PACS "
                        "viewers; needs highdicom: pip install \"napari-brainseg[dicom]\"); "
                        "other inputs get a note")
    p.add_argument("--overwrite", action="store_true", help="redo files already segmented")
    p.add_argument("--part", default=None, metavar="I/N",
                   help="segment only part I of N of the inputs (a fixed split by path, the "
                        "same in every process: run I = 1..N as N jobs, e.g. a SLURM array), "
                        "writing OUTPUT/results.partI.csv; combine with --merge")
    p.add_argument("--merge", action="store_true",
                   help="combine the parts' results.partI.csv into OUTPUT/results.csv (a plain "
                        "run that finds part tables does the same); refuses when a part is "
                        "missing or two overlap")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where to run the model (default auto: CUDA, then MPS, then CPU)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser("study", help="k-fold cross-validation comparing losses (the study)",
                       description="Repeats the published BCE-vs-Focal comparison on your data: "
                       "patient-grouped folds, tuning on inner splits, a report with statistics. "
                       "Run the same command again to resume.")
    p.add_argument("data", type=_path, help="training folder (pairing convention)")
    p.add_argument("--out", required=True, type=_path,
                   help="study folder (report, per-fold files)")
    p.add_argument("--losses", nargs="+", default=None,
                   help="losses to compare (default: bce focal dice tversky)")
    p.add_argument("--folds", type=int, default=None, help="outer folds (default 5)")
    p.add_argument("--epochs", type=int, default=None,
                   help="maximum epochs per tuning run (default 30; tuned per fold)")
    p.add_argument("--alpha", action="append", metavar="LOSS=A,B",
                   help="alphas of a loss tried first, e.g. focal=none,0.25,0.75 (repeatable)")
    p.add_argument("--trials", type=int, default=None,
                   help="Optuna trials per fold and loss (default 6; quick preset 2)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage shared by workers, e.g. postgresql://user@host/db "
                   "(default: sqlite in the study folder)")
    p.add_argument("--worker", action="store_true",
                   help="join a study other processes or machines run on the same --storage")
    p.add_argument("--batch-size", type=int, default=None, help="slices per batch (default 8)")
    p.add_argument("--lr", type=float, default=None,
                   help="centre of the tuned learning-rate range lr/3..3 lr (default 1e-3)")
    p.add_argument("--patch-size", type=int, default=None,
                   help="square training crops, pixels (default 256; quick preset 128)")
    p.add_argument("--base-filters", type=int, default=None,
                   help="U-Net width (default 16 as in the study; quick preset 8)")
    p.add_argument("--groups", default=None, metavar="FILE.csv", type=_path,
                   help="which patient each file belongs to: a CSV with the header "
                   "'file,patient' (file name or path relative to DATA); every file must be "
                   "listed (default: figshare PID, else one patient per file or volume)")
    p.add_argument("--group-by", default=None, metavar="REGEX",
                   help="the patient is the first group of REGEX searched in each file name, "
                   "e.g. '^(P\\d+)_' for P01_s3.png")
    p.add_argument("--folds-file", default=None, metavar="cvind.mat", type=_path,
                   help="take the outer folds from the figshare set's cvind.mat (one fold "
                   "number per numbered file 1.mat ... N.mat) instead of making them")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quick", action="store_true",
                   help="CPU preset for trying it out: bce vs focal, width 8, 30 epochs, 128 px")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_study)
    for command in sub.choices.values():  # -v also after the command (brainseg info -v x)
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="log more detail")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``brainseg`` command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    problem = check_ranges(args.command, args)
    if problem:
        _err(problem)
        return 2
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 prints as \xe9
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    # The package's warnings go to this command's stderr (not through the root logger, which
    # an embedding program or pytest may already have configured).
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    old_level, old_propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO if args.verbose else logging.WARNING)
    log.propagate = False
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        log.propagate = old_propagate

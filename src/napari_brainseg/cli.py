"""The ``brainseg`` command line: an adapter over the core (torch is imported lazily).

Exit codes: 0 success, 1 some inputs failed (each reported on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__

log = logging.getLogger("napari_brainseg")


def _err(message: str) -> None:
    print(f"brainseg: error: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- info


def _cmd_info(args: argparse.Namespace) -> int:
    from .io import ReadError, read

    failed = 0
    for path in args.paths:
        try:
            volumes = read(path)
        except ReadError as exc:
            _err(str(exc))
            failed += 1
            continue
        for vol in volumes:
            extra = ", ".join(f"{k}={vol.metadata[k]}" for k in ("tumour_type", "patient_id",
                                                                 "modality") if k in vol.metadata)
            data = vol.data
            spacing = " x ".join(f"{s:.3g}" for s in vol.spacing)
            print(f"{path}: {vol.kind} '{vol.name}' shape={data.shape} dtype={data.dtype} "
                  f"spacing={spacing} mm range=[{data.min():.4g}, {data.max():.4g}]"
                  + (f" {extra}" if extra else ""))
            for w in vol.warnings:
                print(f"  warning: {w}")
    return 1 if failed else 0


# --------------------------------------------------------------------------- sample-data


def _cmd_sample_data(args: argparse.Namespace) -> int:
    from .synthetic import write_sample_folder

    shape = tuple(int(s) for s in args.size.lower().split("x"))
    if len(shape) != 2:
        _err(f"--size must look like 256x256, got {args.size!r}")
        return 2
    paths = write_sample_folder(Path(args.out), n=args.n, seed=args.seed, shape=shape,
                                skull=args.skull)
    print(f"wrote {len(paths)} phantom images and masks to {args.out}/images and "
          f"{args.out}/masks (seed {args.seed}, {shape[0]}x{shape[1]})")
    return 0


# --------------------------------------------------------------------------- parser


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
    p.add_argument("paths", nargs="+", help="NIfTI, DICOM, .mat, PNG/TIFF files or folders")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("sample-data", help="write a folder of synthetic phantoms with masks")
    p.add_argument("out", help="output folder (images/ and masks/ are created in it)")
    p.add_argument("--n", type=int, default=12, help="number of phantoms (default 12)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", default="256x256", help="HEIGHTxWIDTH in pixels (default 256x256)")
    p.add_argument("--skull", action="store_true",
                   help="keep scalp and skull (default: skull-stripped, like the study's images)")
    p.set_defaults(func=_cmd_sample_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``brainseg`` command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

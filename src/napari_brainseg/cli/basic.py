"""``brainseg info``, ``sample-data`` and ``skull-strip``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_brainseg.progress import drain

from ._common import _err


def _cmd_info(args: argparse.Namespace) -> int:
    from napari_brainseg.batch_inputs import list_inputs
    from napari_brainseg.io import FolderOfVolumesError, ReadError, read

    failed = 0
    paths = list(args.paths)
    while paths:
        path = paths.pop(0)
        try:
            volumes = read(path)
        except FolderOfVolumesError:
            # a folder of volumes is no stack (the viewer opens it so), but the folder
            # `segment` takes: list its scans one by one, as segment sees them
            scans = [str(src) for src, _ in list_inputs(path)]
            print(f"{path}: {len(scans)} scans, each on its own:")
            paths[:0] = scans
            continue
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
    from napari_brainseg.synthetic import write_sample_folder

    try:
        shape = tuple(int(s) for s in args.size.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 2 or min(shape) < 32 or max(shape) > 4096:
        _err(f"--size must look like 256x256 (each side 32 to 4096), got {args.size!r}")
        return 2
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        _err(f"{out}: is a file; OUT must be a folder (images/ and masks/ are created in it)")
        return 2
    try:
        paths = write_sample_folder(out, n=args.n, seed=args.seed, shape=shape, skull=args.skull)
    except OSError as exc:  # read-only folder, full disk, images/ is a file
        _err(f"{exc.filename or out}: cannot write the phantoms there ({exc.strerror or exc})")
        return 1
    print(f"wrote {len(paths)} phantom images and masks to {args.out}/images and "
          f"{args.out}/masks (seed {args.seed}, {shape[0]}x{shape[1]})")
    return 0


# --------------------------------------------------------------------------- skull-strip


def _cmd_skull_strip(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_brainseg.io import ReadError, find_pairs, read, write_image, write_labels
    from napari_brainseg.naming import (
        brain_mask_path,
        colliding_names,
        stripped_images,
        stripped_path,
        suffix_of,
    )
    from napari_brainseg.skullstrip import apply_mask, iter_skull_strip

    src = Path(args.input)
    if not src.exists():
        _err(f"{src}: no such file or folder")
        return 2
    pairs = [] if src.is_file() else find_pairs(src)
    # a file, or a folder that is one DICOM series, else every image of the folder
    inputs = [p.image for p in pairs] or [src]
    dest = Path(args.output)
    if src.is_dir() and dest.resolve() != src.resolve() and \
            dest.resolve().is_relative_to(src.resolve()):
        # OUTPUT inside the scans' folder (scans/out): its stripped images are outputs, not
        # scans; a re-run stripped them again into scans/out/out/, and so on at every run
        inputs = [p for p in inputs if not p.resolve().is_relative_to(dest.resolve())]
        if not inputs:
            _err(f"{src}: no scans found outside the output folder {dest}")
            return 2
    # --masked into the scans' own folder wrote NAME_brain_stripped beside NAME: an output of
    # an earlier run, not another scan (stripping it again gave NAME_brain_stripped_brain_mask)
    derived = stripped_images(inputs)
    for p, q in derived.items():
        print(f"{p}: skipped, the skull-stripped image of {q.name} (written by --masked)")
    inputs = [p for p in inputs if p not in derived]
    if len(inputs) > 1 and (dest.is_file() or (not dest.exists() and suffix_of(dest))):
        what = "is a file" if dest.is_file() else "looks like a file name"
        _err(f"{dest}: {what}, but {src} holds {len(inputs)} scans: give an output folder "
             "(each scan's mask is named NAME_brain_mask inside it), e.g. masks/")
        return 2
    collide = colliding_names(inputs)  # scan.png + scan.jpg: scan_png_brain_mask, ...
    single = len(inputs) == 1 and not Path(args.output).is_dir() and Path(args.output).suffix
    failed = 0
    params = ({"tightness": args.tightness, "erode_mm": args.erode_mm}
              if args.method == "classical" else {})
    if args.method == "learned" and (args.tightness is not None or args.erode_mm is not None):
        _err("--tightness and --erode-mm tune the classical method; add --method classical")
        return 2
    params = {k: v for k, v in params.items() if v is not None}
    bar = tqdm(inputs, desc="skull strip", unit="file", disable=args.quiet or len(inputs) < 2)
    for path in bar:
        try:
            vol = next(v for v in read(path) if v.kind == "image")
            if single:
                out = Path(args.output)
            else:
                out = brain_mask_path(args.output, vol.name, path, vol.ndim,
                                      root=src if src.is_dir() else None,
                                      qualify=path in collide)
            outs = [out]
            if args.masked:
                outs.append(stripped_path(out))
            # Never write over the input, whatever --overwrite says; other files only with it.
            clash = [o for o in outs if o.resolve() == Path(path).resolve()]
            if clash:
                raise ValueError(f"output {clash[0]} would replace the input; choose another "
                                 "output name or folder")
            # Existing outputs are kept without --overwrite; a run stopped between the mask and
            # the stripped image is completed (from the mask on disk) on the next run.
            keep = set() if args.overwrite else {o for o in outs if o.exists()}
            if len(keep) == len(outs):
                print(f"{path}: skipped, {out} exists (use --overwrite)")
                continue
            if out in keep:
                mask = next(iter(read(out, with_mask=False))).data > 0
                if mask.shape != vol.data.shape:
                    raise ValueError(f"existing mask {out.name} has shape {mask.shape}, not the "
                                     f"scan's {vol.data.shape}; use --overwrite to redo it")
            else:
                steps = iter_skull_strip(vol.data, vol.spacing, mode=args.mode,
                                         method=args.method, affine=vol.affine, **params)
                with tqdm(desc=f"{path.name}", unit="step", leave=False,
                          disable=args.quiet) as stage_bar:  # inside the file bar

                    def show(step: tuple[int, int], bar: Any = stage_bar) -> None:
                        bar.n, bar.total = step
                        bar.refresh()

                    mask = drain(steps, show)
                write_labels(out, mask.astype("uint8"), like=vol, spacing=vol.spacing)
            written = [o for o in outs if o not in keep]
            if args.masked and outs[1] not in keep:
                write_image(outs[1], apply_mask(vol.data, mask), like=vol, spacing=vol.spacing)
            line = f"{path}: brain {int(mask.sum()):,} voxels -> {', '.join(map(str, written))}"
            if keep:
                line += f" (kept existing {', '.join(o.name for o in sorted(keep))})"
            print(line)
        except ReadError as exc:  # its message names the file
            failed += 1
            _err(str(exc))
        except (ValueError, TypeError, OSError) as exc:
            failed += 1
            _err(f"{path.name}: {exc}")
    if failed and len(inputs) > 1:
        _err(f"{failed} of {len(inputs)} input(s) failed")
    return 1 if failed else 0


# --------------------------------------------------------------------------- train

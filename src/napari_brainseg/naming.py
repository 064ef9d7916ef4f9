"""Every file name this package writes or recognises, in one table.

Pure Python (no numpy, torch or napari): the batch runs, the skull-strip command, the readers,
the napari writer and training all ask this module, so a name means the same thing everywhere.

========================  ===========================================  =========================
What                      Name                                         Written by / read as
========================  ===========================================  =========================
prediction (tumour mask)  ``OUT/<sub-folders>/NAME_pred.nii.gz``       ``brainseg segment``,
                          (NIfTI and DICOM inputs), ``NAME_pred.png``  the Batch tab; reopens as
                          / ``.tif`` (2D images)                       Labels "NAME prediction"
... two inputs, one name  ``NAME_jpg_pred.png``, ``NAME_dicom_pred``   (``scan.png`` + ``scan.jpg``)
... multi-series input    ``NAME_seriesK_pred.nii.gz``                 one per series, K from 1
... as DICOM SEG          ``NAME_pred.dcm`` beside the NIfTI mask      ``--dicom-seg`` (DICOM
                                                                       series); never an input
old prediction            ``NAME_tumour.ext``                          earlier versions; read
                                                                       as a prediction
overlay (quick look)      ``OUT/overlays/<sub-folders>/NAME_pred``     ``--overlays``; a picture,
                          ``_overlay.png``                             never a scan or labels
provenance sidecar        ``FILE.json`` beside ``FILE``                every mask and
                          (``NAME_pred.nii.gz.json``, ``results.csv``  ``results.csv``; a
                          ``.json``)                                   corrected prediction's
                                                                       says ``"corrected"``
brain mask                ``OUT/<sub-folders>/NAME_brain_mask``        ``brainseg skull-strip``;
                          ``.nii.gz`` / ``.png`` / ``.tif``            Labels "NAME brain mask"
skull-stripped image      the brain mask's name with ``mask`` ->       ``skull-strip --masked``
                          ``stripped`` (``NAME_brain_stripped``)
ground truth              ``NAME_mask.ext`` beside ``NAME.ext``, or    the user; Labels "NAME
                          ``images/NAME.ext`` + ``masks/NAME.ext``     ground truth"
                          (or ``labels/``)
========================  ===========================================  =========================

Predictions, ground truth, brain masks and overlays are never inputs to segment: a re-run over a
folder that holds them (today's ``_pred`` or the old ``_tumour`` names) leaves them alone. A
prediction is never ground truth, whatever folder it lies in (``masks/scan_pred.png`` is still a
prediction), so pairing, training and Dice never take a model's own output as the truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

NIFTI_SUFFIXES = (".nii", ".nii.gz")
MAT_SUFFIXES = (".mat",)
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SUPPORTED_SUFFIXES = NIFTI_SUFFIXES + MAT_SUFFIXES + DICOM_SUFFIXES + RASTER_SUFFIXES
_LONGEST_FIRST = tuple(sorted(SUPPORTED_SUFFIXES, key=len, reverse=True))  # .nii.gz before .gz

#: Ground truth beside its scan: ``NAME_mask.ext``.
MASK_SUFFIX = "_mask"
#: Folders of ground truth beside an ``images/`` folder (same file names).
MASK_DIRS = ("masks", "labels")
IMAGE_DIRS = ("images",)
#: This package's tumour predictions: ``NAME_pred.ext``.
PREDICTION_SUFFIX = "_pred"
#: What predictions were called before (``NAME_tumour.ext``, earlier versions). Kept so that a
#: user's old results folder still reopens as prediction labels, is never taken for ground truth,
#: is never segmented again, and counts as "already done" on a re-run into it.
LEGACY_PREDICTION_SUFFIXES = ("_tumour",)
PREDICTION_SUFFIXES = (PREDICTION_SUFFIX, *LEGACY_PREDICTION_SUFFIXES)
#: Brain masks of ``brainseg skull-strip``: ``NAME_brain_mask.ext`` (labels, never tumour truth).
BRAIN_MASK_SUFFIX = "_brain_mask"
#: Skull-stripped images: the brain mask's final word ``mask`` becomes ``stripped``.
STRIPPED_WORD = "stripped"
#: Overlay PNGs (pictures for a quick look): ``overlays/NAME_pred_overlay.png``.
OVERLAY_DIR = "overlays"
OVERLAY_SUFFIX = "_overlay"
#: Provenance sidecar: the file's full name plus ``.json``.
SIDECAR_SUFFIX = ".json"
#: Series K of a multi-series input: ``NAME_seriesK`` before the prediction suffix.
SERIES_WORD = "_series"
#: A prediction as a DICOM SEG (``--dicom-seg``): the NIfTI mask's name with this suffix.
DICOM_SEG_SUFFIX = ".dcm"


# --------------------------------------------------------------------------- parts of a name


def stem(path: str | Path) -> str:
    """Return the file name without its (possibly double) suffix: ``a.nii.gz`` -> ``a``."""
    path = Path(path)
    name = path.name
    lower = name.lower()
    for suffix in _LONGEST_FIRST:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def suffix_of(path: str | Path) -> str:
    """Return the lower-case suffix this package knows, ``.nii.gz`` included, or ``''``."""
    name = Path(path).name.lower()
    for suffix in _LONGEST_FIRST:
        if name.endswith(suffix):
            return suffix
    return ""


# --------------------------------------------------------------------------- what a file is


def prediction_suffix(path: str | Path) -> str | None:
    """The prediction suffix ``path``'s stem ends with (``_pred``, or the old ``_tumour``)."""
    s = stem(path)
    return next((x for x in PREDICTION_SUFFIXES if s.endswith(x) and len(s) > len(x)), None)


def is_prediction(path: str | Path) -> bool:
    """Whether ``path`` is a tumour prediction of this package (``NAME_pred``, ``NAME_tumour``).

    An overlay (``NAME_pred_overlay.png``) is not: it is a picture.
    """
    return prediction_suffix(path) is not None and not is_overlay(path)


def is_overlay(path: str | Path) -> bool:
    """Whether ``path`` is an overlay PNG (``NAME_pred_overlay.png``), or an old one.

    Old runs wrote overlays as ``overlays/<sub-folders>/NAME_tumour.png``: a prediction name
    under an ``overlays`` folder, which is a picture too.
    """
    p = Path(path)
    if stem(p).endswith(OVERLAY_SUFFIX):
        return True
    return (OVERLAY_DIR in p.parent.parts and prediction_suffix(p) is not None
            and suffix_of(p) == ".png")


def is_brain_mask(path: str | Path) -> bool:
    """Whether ``path`` is a brain mask (``NAME_brain_mask``): labels, never tumour truth."""
    return stem(path).endswith(BRAIN_MASK_SUFFIX)


def is_ground_truth(path: str | Path) -> bool:
    """Whether ``path`` is a ground-truth tumour mask by the pairing convention.

    ``NAME_mask.ext``, or any file under a ``masks/`` or ``labels/`` folder, except this
    package's own predictions and brain masks wherever they lie.
    """
    p = Path(path)
    if is_prediction(p) or is_brain_mask(p) or is_overlay(p):
        return False
    return stem(p).endswith(MASK_SUFFIX) or p.parent.name.lower() in MASK_DIRS


def is_labels(path: str | Path) -> bool:
    """Whether ``path`` holds labels (a prediction, ground truth or brain mask), not a scan."""
    p = Path(path)
    return not is_overlay(p) and (is_prediction(p) or is_brain_mask(p) or is_ground_truth(p))


def is_never_input(path: str | Path) -> bool:
    """Whether ``path`` is never a scan to segment or train on: labels or an overlay."""
    return is_labels(path) or is_overlay(path)


def base_name(path: str | Path) -> str:
    """The NAME of ``NAME_pred.ext``, ``NAME_mask.ext``, ``NAME_brain_mask.ext``, ``NAME.ext``."""
    s = stem(path)
    for suffix in (*PREDICTION_SUFFIXES, BRAIN_MASK_SUFFIX, MASK_SUFFIX):
        if s.endswith(suffix) and len(s) > len(suffix):
            return s[: -len(suffix)]
    return s


def layer_name(path: str | Path) -> str:
    """The napari layer name of a file: ``NAME prediction``, ``NAME ground truth``, ...

    Predictions and ground truth never share a name (nor a colour: see the reader), so a
    prediction is never read as the truth in the viewer.
    """
    p = Path(path)
    if is_overlay(p):
        return stem(p)
    if is_prediction(p):
        return f"{base_name(p)} prediction"
    if is_brain_mask(p):
        return f"{base_name(p)} brain mask"
    if stem(p).endswith(MASK_SUFFIX):
        return f"{base_name(p)} ground truth"
    return stem(p)


def ground_truth_names(image: str | Path, suffixes: Sequence[str]) -> list[str]:
    """File names that would be the ground truth of ``image`` beside it: ``NAME_mask.ext``."""
    s = stem(image)
    return [f"{s}{MASK_SUFFIX}{x}" for x in suffixes]


# --------------------------------------------------------------------------- outputs


def prediction_ext(source: str | Path) -> str:
    """The format of ``source``'s prediction: NIfTI for NIfTI and DICOM, else PNG or TIFF."""
    source = Path(source)
    suffix = suffix_of(source)
    if source.is_dir() or suffix in DICOM_SUFFIXES or suffix in NIFTI_SUFFIXES:
        return ".nii.gz"
    return ".tif" if suffix in (".tif", ".tiff") else ".png"


def prediction_path(source: str | Path, root: str | Path, out_dir: str | Path,
                    qualify: bool = False) -> Path:
    """Where the prediction of ``source`` goes: mirrored folders, ``NAME_pred`` + its format.

    ``root`` is the input the run was given (a folder's sub-folders are mirrored under
    ``out_dir``). ``qualify`` adds the input's own format to the name (``scan_jpg_pred.png``):
    used for inputs whose plain names would collide (``scan.png`` and ``scan.jpg``).
    """
    source, root, out_dir = Path(source), Path(root), Path(out_dir)
    ext = prediction_ext(source)
    name = source.name if source.is_dir() else stem(source)
    if qualify:
        kind = "dicom" if source.is_dir() else suffix_of(source).strip(".").replace(".", "_")
        name = f"{name}_{kind or 'file'}"
    try:
        rel = source.parent.relative_to(root) if root.is_dir() else Path()
    except ValueError:
        rel = Path()
    return out_dir / rel / f"{name}{PREDICTION_SUFFIX}{ext}"


def prediction_paths(sources: Sequence[Path], root: str | Path,
                     out_dir: str | Path) -> dict[Path, Path]:
    """The prediction path of every input of a run, with no two inputs sharing one.

    Inputs whose plain names collide (same stem in one folder, other formats; compared without
    case, as on macOS and Windows) all get their format in the name, whatever the order; so
    does an input whose plain name is another's qualified one (``scan_png.png`` beside
    ``scan.png`` and ``scan.jpg``: ``scan_png_png_pred.png``).
    """
    dests = {src: prediction_path(src, root, out_dir) for src in sources}
    qualified: set[Path] = set()
    while True:  # a qualified name may meet a plain one (scan_png.png beside scan.png, .jpg)
        seen: dict[str, int] = {}
        for dest in dests.values():
            seen[str(dest).lower()] = seen.get(str(dest).lower(), 0) + 1
        clash = [src for src, dest in dests.items()
                 if seen[str(dest).lower()] > 1 and src not in qualified]
        if not clash:
            return dests
        for src in clash:
            dests[src] = prediction_path(src, root, out_dir, qualify=True)
            qualified.add(src)


def legacy_prediction_paths(dest: str | Path) -> list[Path]:
    """The old names of prediction ``dest`` (``NAME_tumour.ext`` for ``NAME_pred.ext``)."""
    dest = Path(dest)
    head, tail = _split_prediction(dest)
    return [dest.with_name(f"{head}{old}{tail}") for old in LEGACY_PREDICTION_SUFFIXES]


def existing_prediction(dest: str | Path) -> Path | None:
    """``dest`` when it exists, else the first of its old names that does, else None.

    A name the file system refuses (too long) is a file that does not exist.
    """
    for p in (Path(dest), *legacy_prediction_paths(dest)):
        try:
            if p.exists():
                return p
        except OSError:
            continue
    return None


def series_prediction_path(dest: str | Path, index: int) -> Path:
    """Series ``index`` (from 1) of a multi-series input: ``NAME_seriesK_pred.nii.gz``."""
    dest = Path(dest)
    head, tail = _split_prediction(dest)
    return dest.with_name(f"{head}{SERIES_WORD}{index}{PREDICTION_SUFFIX}{tail}")


def overlay_path(dest: str | Path, out_dir: str | Path) -> Path:
    """The overlay PNG of prediction ``dest``: ``overlays/<sub-folders>/NAME_pred_overlay.png``.

    The sub-folders are ``dest``'s below ``out_dir``.
    """
    dest, out_dir = Path(dest), Path(out_dir)
    try:
        rel = dest.parent.relative_to(out_dir)
    except ValueError:
        rel = Path()
    return out_dir / OVERLAY_DIR / rel / f"{stem(dest)}{OVERLAY_SUFFIX}.png"


def dicom_seg_path(dest: str | Path) -> Path:
    """The DICOM SEG written beside prediction ``dest``: its name with ``.dcm``.

    ``out/exam_pred.nii.gz`` -> ``out/exam_pred.dcm``; a SEG is a prediction (``NAME_pred``),
    so a re-run never takes it for a DICOM series to segment.
    """
    dest = Path(dest)
    return dest.with_name(stem(dest) + DICOM_SEG_SUFFIX)


def sidecar_path(path: str | Path) -> Path:
    """The JSON provenance sidecar of a written file: its full name plus ``.json``."""
    p = Path(path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def brain_mask_path(out_dir: str | Path, name: str, source: str | Path, ndim: int,
                    root: str | Path | None = None, qualify: bool = False) -> Path:
    """Where ``brainseg skull-strip`` writes the brain mask of ``source`` in a folder.

    ``NAME_brain_mask.nii.gz`` for NIfTI and DICOM inputs (the mask carries the scan's
    geometry), ``.png`` for other 2D images, ``.tif`` for other volumes. With ``root`` (the
    folder the run was given), ``source``'s sub-folders below it are mirrored under ``out_dir``,
    as for predictions: ``p01/t1.nii.gz`` and ``p02/t1.nii.gz`` get a mask each. ``qualify``
    adds the input's format to the name (``scan_jpg_brain_mask.png``), as for predictions, for
    inputs whose plain names collide (``scan.png`` and ``scan.jpg``; see
    :func:`colliding_names`).
    """
    source = Path(source)
    suffix = suffix_of(source)
    if qualify:
        kind = "dicom" if source.is_dir() else suffix.strip(".").replace(".", "_")
        name = f"{name}_{kind or 'file'}"
    if suffix in NIFTI_SUFFIXES or source.is_dir() or suffix in (*DICOM_SUFFIXES, ""):
        ext = ".nii.gz"
    else:
        ext = ".png" if ndim == 2 else ".tif"
    rel = Path()
    if root is not None:
        try:
            rel = source.parent.relative_to(root)
        except ValueError:
            pass
    return Path(out_dir) / rel / f"{name}{BRAIN_MASK_SUFFIX}{ext}"


def colliding_names(sources: Sequence[Path]) -> set[Path]:
    """The inputs whose plain output names would collide: one name in one folder, other formats.

    Also an input whose plain name is another's qualified one (``scan_png.png`` beside
    ``scan.png`` and ``scan.jpg``). Compared without case (as on macOS and Windows), like
    :func:`prediction_paths`.
    """
    def key(p: Path, qualify: bool) -> tuple[str, str]:
        name = p.name if p.is_dir() else stem(p)
        if qualify:  # as brain_mask_path qualifies it
            kind = "dicom" if p.is_dir() else suffix_of(p).strip(".").replace(".", "_")
            name = f"{name}_{kind or 'file'}"
        return str(p.parent).lower(), name.lower()

    qualified: set[Path] = set()
    while True:  # a qualified name may meet a plain one (scan_png.png beside scan.png, .jpg)
        keys = {src: key(src, src in qualified) for src in sources}
        seen: dict[tuple[str, str], int] = {}
        for k in keys.values():
            seen[k] = seen.get(k, 0) + 1
        clash = {src for src, k in keys.items() if seen[k] > 1 and src not in qualified}
        if not clash:
            return qualified
        qualified |= clash


def is_stripped_image_of(path: str | Path, scan: str | Path) -> bool:
    """Whether ``path`` is the skull-stripped image of ``scan`` written beside it.

    ``skull-strip --masked`` into the scans' own folder writes ``t1_brain_stripped.nii.gz``
    beside ``t1.nii.gz``; a re-run must not take that output for another scan to strip.
    """
    path, scan = Path(path), Path(scan)
    if path.parent != scan.parent or path == scan:
        return False
    return stem(path) in _stripped_stems(scan)


def _stripped_stems(scan: Path) -> set[str]:
    """The stems ``skull-strip --masked`` gives the stripped image of ``scan`` beside it."""
    mask = brain_mask_path(scan.parent, scan.name if scan.is_dir() else stem(scan), scan, 2)
    qualified = brain_mask_path(scan.parent, stem(mask)[: -len(BRAIN_MASK_SUFFIX)], scan, 2,
                                qualify=True)  # scan_png_brain_mask: see colliding_names
    return {stem(stripped_path(m)) for m in (mask, qualified)}


def stripped_images(inputs: Sequence[Path]) -> dict[Path, Path]:
    """The inputs that are the stripped image of another input beside them, with that scan.

    :func:`is_stripped_image_of` over every pair, in one pass over the inputs (a folder of
    thousands of scans is not compared pair by pair).
    """
    owner: dict[tuple[Path, str], Path] = {}
    for scan in inputs:
        for s in _stripped_stems(Path(scan)):
            owner.setdefault((Path(scan).parent, s), Path(scan))
    found = {}
    for p in inputs:
        scan = owner.get((Path(p).parent, stem(p)))
        if scan is not None and scan != Path(p):
            found[Path(p)] = scan
    return found


def stripped_path(mask_path: str | Path) -> Path:
    """Where the skull-stripped image of a brain mask goes (``brainseg skull-strip --masked``).

    One rule for every name: beside the mask, with the mask's name and its final word ``mask``
    replaced by ``stripped``, or ``_stripped`` added when the name does not end in ``mask``:

    - ``ch2_brain_mask.nii.gz`` -> ``ch2_brain_stripped.nii.gz``
    - ``brain_mask.nii.gz`` -> ``brain_stripped.nii.gz``
    - ``head.nii.gz`` -> ``head_stripped.nii.gz``

    A NIfTI mask gives a NIfTI image; any other format a TIFF (it holds the scan's intensities,
    which a PNG cannot).
    """
    mask_path = Path(mask_path)
    name = stem(mask_path)
    ext = ".nii.gz" if suffix_of(mask_path) in NIFTI_SUFFIXES else ".tif"
    head = name[:-4]
    if name.lower().endswith("mask") and (head == "" or head[-1] in "_-. "):
        return mask_path.with_name(f"{head}{STRIPPED_WORD}{ext}")
    return mask_path.with_name(f"{name}_{STRIPPED_WORD}{ext}")


def _split_prediction(dest: Path) -> tuple[str, str]:
    """``NAME_pred.nii.gz`` -> ``("NAME", ".nii.gz")`` (any prediction suffix)."""
    s, ext = stem(dest), dest.name[len(stem(dest)):]
    suffix = prediction_suffix(dest)
    if suffix is None:
        raise ValueError(f"{dest.name}: not a prediction name (NAME{PREDICTION_SUFFIX}.ext)")
    return s[: -len(suffix)], ext

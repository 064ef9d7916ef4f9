"""Where an output came from: package version, model file SHA-256 and the options used.

Every output of ``brainseg segment`` and ``brainseg study`` records one such record, so that a
result can be traced months later:

- a mask's NIfTI header ``descrip`` (80 bytes: :func:`nifti_description`, e.g.
  ``napari-brainseg 0.1.0 model sha256:3f2a9c1d``);
- a JSON sidecar beside each written mask, ``NAME_pred.nii.gz.json`` (:func:`sidecar_path`);
- ``results.csv.json`` beside ``results.csv``, by the same rule (a comment line inside the CSV
  would trip CSV readers);
- the study's ``config.json`` (key ``provenance``).

A prediction the user corrected in the viewer and saved through the plugin's writer is *marked
corrected*: its sidecar gets ``"corrected": true``, ``"corrected_slices"`` (how many slices
differ from the model's prediction) and ``"corrected_slice_indices"`` (:func:`record_correction`).
``brainseg train --labels-from RESULTS`` trains only on predictions so marked
(:func:`is_corrected`).

Records never hold patient identifiers: no input paths or file names, no patient ids; only the
model file's *name* (models are named by their trainer, not after patients) and its hash. A
provenance file is only ever written over one this package wrote (:func:`is_ours`), never over a
user's file of the same name.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__
from .naming import SIDECAR_SUFFIX as SIDECAR_SUFFIX
from .naming import sidecar_path as _sidecar_path

#: The NIfTI-1 ``descrip`` field holds at most 80 bytes.
DESCRIP_BYTES = 80

_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file as 64 hex digits (cached by path, size and modification time)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def record(model_path: str | Path | None = None, options: Mapping[str, Any] | None = None,
           model_label: str | None = None) -> dict[str, Any]:
    """A provenance record (JSON-ready).

    Parameters
    ----------
    model_path : path, optional
        The model checkpoint used; its SHA-256 and file name are recorded.
    options : mapping, optional
        The options that shaped the output (threshold, post-processing, ...), JSON-ready
        values only. Never pass input paths here.
    model_label : str, optional
        How the user named the model (``demo`` for the built-in one).

    Returns
    -------
    dict
        ``software``, ``version``, ``python``, ``created`` (UTC, ISO 8601), and when given
        ``model`` (``file``, ``sha256``, ``label``) and ``options``.
    """
    out: dict[str, Any] = {
        "software": "napari-brainseg",
        "version": __version__,
        "python": platform.python_version(),
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    }
    if model_path is not None:
        out["model"] = {"file": Path(model_path).name, "sha256": file_sha256(model_path)}
        if model_label is not None:
            out["model"]["label"] = model_label
    if options is not None:
        out["options"] = json.loads(json.dumps(dict(options), default=str))
    return out


def nifti_description(rec: Mapping[str, Any]) -> bytes:
    """The short form of a record for a NIfTI header's 80-byte ``descrip``.

    ``napari-brainseg 0.1.0 model sha256:3f2a9c1d thr 0.5`` (the first 16 hex digits of the
    model hash, then the threshold when known), ASCII, at most :data:`DESCRIP_BYTES` bytes.
    """
    parts = [f"{rec.get('software', 'napari-brainseg')} {rec.get('version', __version__)}"]
    model = rec.get("model") or {}
    if model.get("sha256"):
        parts.append(f"model sha256:{model['sha256'][:16]}")
    threshold = (rec.get("options") or {}).get("threshold")
    if isinstance(threshold, (int, float)):
        parts.append(f"thr {threshold:g}")
    text = " ".join(parts).encode("ascii", "replace")
    return text[:DESCRIP_BYTES]


def sidecar_path(mask_path: str | Path) -> Path:
    """The JSON sidecar of a written mask: the mask's full name plus ``.json``."""
    return _sidecar_path(mask_path)


def is_ours(path: str | Path) -> bool:
    """Whether ``path`` is a provenance file this package wrote (so it may be replaced)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and data.get("software") == "napari-brainseg"


def write_json(path: str | Path, rec: Mapping[str, Any]) -> Path | None:
    """Write a provenance record to ``path`` atomically, never over someone else's file.

    A file of that name that this package did not write (see :func:`is_ours`) is left alone:
    nothing is written and None is returned (the caller may say so).
    """
    from .volume import atomic_write

    path = Path(path)
    if path.exists() and not is_ours(path):
        return None
    text = json.dumps(dict(rec), indent=2, sort_keys=True) + "\n"
    return atomic_write(path, lambda t: Path(t).write_text(text, encoding="utf-8"))


def write_sidecar(mask_path: str | Path, rec: Mapping[str, Any]) -> Path | None:
    """Write ``rec`` beside a mask as ``MASK.json`` (see :func:`write_json`)."""
    return write_json(sidecar_path(mask_path), rec)


def read_ours(path: str | Path) -> dict[str, Any] | None:
    """The record in ``path`` when it is a provenance file this package wrote, else None."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("software") == "napari-brainseg" else None


def is_corrected(mask_path: str | Path) -> bool:
    """Whether the prediction ``mask_path`` is marked corrected (its sidecar says so)."""
    rec = read_ours(sidecar_path(mask_path))
    return bool(rec and rec.get("corrected") is True)


def record_correction(mask_path: str | Path, corrected: Sequence[int],
                      origin: str | Path | None = None,
                      model: str | Path | None = None) -> Path | None:
    """Write ``MASK.json`` saying whether a saved prediction was corrected, and where.

    Parameters
    ----------
    mask_path : path
        The labels file just saved.
    corrected : sequence of int
        Indices of the slices (along the axis the prediction was made on; ``[0]`` for a 2D
        image) where the saved labels differ from the prediction they started from.
    origin : path, optional
        The prediction file the labels were opened from, when they were: its record (version,
        model, options) is carried over.
    model : path, optional
        The model that made the prediction when no record exists yet (a prediction made in the
        viewer): its file name and SHA-256 are recorded when it is a file.

    Returns
    -------
    Path or None
        The sidecar written, or None when a user's file of that name was left alone.

    Notes
    -----
    Corrections add up: a prediction marked corrected stays corrected when it is opened, edited
    and saved again, and ``corrected_slices`` counts every slice changed in any of those saves.
    """
    side = sidecar_path(mask_path)
    base = read_ours(side)
    if base is None and origin is not None:
        base = read_ours(sidecar_path(origin))
    if base is None:
        known = model is not None and Path(model).is_file()
        base = record(model_path=model if known else None)
        if model is not None and not known:
            base["model"] = {"label": Path(str(model)).name}
    before = set(base.get("corrected_slice_indices") or []) if base.get("corrected") else set()
    indices = sorted(before | {int(i) for i in corrected})
    rec = {**base, "corrected": bool(indices), "corrected_slices": len(indices),
           "corrected_slice_indices": indices}
    return write_json(side, rec)

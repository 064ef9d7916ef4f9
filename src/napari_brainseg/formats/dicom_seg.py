"""DICOM SEG: a tumour mask as a DICOM Segmentation that references its source series.

A SEG object opens over its series in 3D Slicer (with its DICOM extension, QuantitativeReporting)
and in PACS viewers: every frame names the source image (SOP Instance UID) it lies on, and carries
that image's position, so it lines up without any NIfTI round trip.

The mask is given as the package shows a DICOM series: in display orientation, as
:func:`napari_brainseg.formats.dicom.read_dicom` returned the volume. It is mapped back to the
source's own images (:func:`napari_brainseg.formats.dicom.display_to_instances`) before
writing. Needs the optional ``highdicom`` (``pip install "napari-brainseg[dicom]"``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_brainseg import __version__
from napari_brainseg.formats.dicom import display_to_instances, read_dicom, volume_from_datasets
from napari_brainseg.naming import dicom_seg_path
from napari_brainseg.volume import Volume, atomic_write

__all__ = ["dicom_seg_path", "display_to_instances", "require_highdicom", "write_dicom_seg"]

log = logging.getLogger(__name__)

#: The one segment's label, as viewers list it.
SEGMENT_LABEL = "Tumour"
#: Display colour of the segment, RGB 0-255: the red of the package's overlays.
SEGMENT_RGB = (255, 0, 0)
#: The SEG's series number is the source's plus this (viewers sort series by number).
SERIES_NUMBER_OFFSET = 1000
#: DICOM LO (long string) values hold at most 64 characters.
_LO = 64


def write_dicom_seg(
    mask: np.ndarray,
    source: Volume | str | Path | Sequence[Any],
    path: str | Path,
    *,
    overwrite: bool = False,
    provenance: Mapping[str, Any] | None = None,
    series_description: str = "Tumour segmentation (napari-brainseg)",
) -> Path:
    """Write ``mask`` as a binary DICOM SEG with one segment, "Tumour", over its source series.

    Parameters
    ----------
    mask : np.ndarray
        Labels of the series in display layout: the shape of the volume the reader returned,
        ``(Z, Y, X)`` (or ``(Y, X)`` for a single image); every non-zero value is tumour.
    source : Volume, path or sequence of pydicom Dataset
        The series the mask labels: the DICOM :class:`~napari_brainseg.volume.Volume` that
        ``mask`` was made on (its metadata names the images); a folder or file holding exactly
        one series; or that series' datasets, with pixel data, as ``pydicom.dcmread`` gives them.
    path : str or Path
        The SEG file to write (``.dcm``).
    overwrite : bool
        Replace ``path`` if it exists. Without it an existing file is never touched.
    provenance : mapping, optional
        A record from :func:`napari_brainseg.provenance.record`: its version, model hash and
        options go into the segment's algorithm parameters.
    series_description : str
        The SEG series' description, as PACS lists it (at most 64 characters kept).

    Returns
    -------
    Path
        ``path``, written atomically.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError
        The mask does not fit the series, the source is not one DICOM series, or the series lacks
        what a SEG must reference (SOP Instance UIDs, positions); the message says which.
    ImportError
        ``highdicom`` is not installed; the message gives the command.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path.name}: exists; not replaced (pass overwrite=True, or "
                              "--overwrite on the command line, to replace it)")
    hd = require_highdicom()
    volume, datasets = _source(source)
    frames = display_to_instances(np.asarray(mask), volume) != 0  # (instance or frame, row, col)
    seg = _segmentation(hd, frames, datasets, volume.name, provenance, series_description)
    written = atomic_write(path, lambda tmp: seg.save_as(str(tmp)))
    log.info("DICOM SEG written: %s (%d tumour voxels)", path.name, int(frames.sum()))
    return written


def require_highdicom() -> Any:
    """The highdicom module, or an ImportError that gives the command that installs it."""
    try:
        import highdicom
    except ImportError as exc:
        raise ImportError(
            "DICOM SEG export needs highdicom: pip install \"napari-brainseg[dicom]\" "
            "(or pip install highdicom)"
        ) from exc
    return highdicom


def _source(source: Volume | str | Path | Sequence[Any]) -> tuple[Volume, list[Any]]:
    """The source volume and its datasets, one per entry of ``dicom_instances``, same order."""
    import pydicom

    if isinstance(source, Volume):
        volume = source
    elif isinstance(source, (str, Path)):
        volumes = read_dicom(Path(source))
        if len(volumes) != 1:
            raise ValueError(
                f"{Path(source).name}: holds {len(volumes)} DICOM series; a SEG references one. "
                "Pass the Volume of the series the mask labels, or a folder with that series only."
            )
        volume = volumes[0]
    else:
        given = list(source)
        if not given or not all(isinstance(ds, pydicom.Dataset) for ds in given):
            raise TypeError("source must be a DICOM Volume, a folder or file path, or a "
                            "non-empty sequence of pydicom Datasets")
        pairs = [(Path(str(getattr(ds, "filename", "") or f"image{i}")), ds)
                 for i, ds in enumerate(given)]
        volume = volume_from_datasets(pairs, "DICOM series")
        by_uid = {str(getattr(ds, "SOPInstanceUID", "")): ds for ds in given}
        return volume, [by_uid[uid] for uid in _instance_uids(volume)]
    if volume.metadata.get("format") != "dicom" or not volume.metadata.get("dicom_files"):
        raise ValueError(f"{volume.name}: not a DICOM series read by this package (no source "
                         "images to reference); a DICOM SEG can only label a DICOM series")
    uids = _instance_uids(volume)
    datasets = []
    for f, uid in zip(volume.metadata["dicom_files"], uids, strict=True):
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise ValueError(f"{Path(f).name}: the source image cannot be read again "
                             f"({exc}); the SEG needs the series as it was read") from exc
        if str(getattr(ds, "SOPInstanceUID", "")) != uid:
            raise ValueError(f"{Path(f).name}: is no longer the image that was read (its SOP "
                             "Instance UID changed); read the series again")
        datasets.append(ds)
    return volume, datasets


def _instance_uids(volume: Volume) -> tuple[str, ...]:
    uids = tuple(volume.metadata.get("dicom_instances") or ())
    if not uids or any(not u for u in uids):
        raise ValueError(f"{volume.name}: some images have no SOP Instance UID; a DICOM SEG "
                         "references each image by it. Export the series again from its source")
    if len(set(uids)) != len(uids):
        raise ValueError(f"{volume.name}: several images share one SOP Instance UID (copies "
                         "of one image?); a DICOM SEG needs each image once")
    return uids


def _segmentation(hd: Any, frames: np.ndarray, datasets: list[Any], name: str,
                  provenance: Mapping[str, Any] | None, series_description: str) -> Any:
    from pydicom.sr.codedict import codes

    rec = dict(provenance or {})
    version = str(rec.get("version") or __version__)
    params = {"software": f"napari-brainseg {version}"}
    model = rec.get("model") or {}
    if model.get("sha256"):
        params["model_sha256"] = str(model["sha256"])
    if model.get("file"):
        params["model_file"] = str(model["file"])
    for key, value in sorted((rec.get("options") or {}).items()):
        if value is not None:
            params[str(key)] = str(value)
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=SEGMENT_LABEL,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="napari-brainseg", version=version[:_LO],
            family=codes.cid7162.ArtificialIntelligence, parameters=params),
        anatomic_regions=[codes.SCT.Brain],
        display_color=hd.color.CIELabColor.from_rgb(*SEGMENT_RGB),
    )
    ds0 = datasets[0]
    try:
        number = int(getattr(ds0, "SeriesNumber", 0) or 0) + SERIES_NUMBER_OFFSET
    except (TypeError, ValueError):
        number = SERIES_NUMBER_OFFSET
    pixels = frames if len(datasets) > 1 or frames.shape[0] > 1 else frames[0]
    try:
        return hd.seg.Segmentation(
            source_images=datasets,
            pixel_array=pixels.astype(np.uint8),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[segment],
            series_instance_uid=hd.UID(),
            series_number=min(number, 2**31 - 1),
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="napari-brainseg",
            manufacturer_model_name="napari-brainseg",
            software_versions=version[:_LO],
            device_serial_number=str(model.get("sha256", "none"))[:16] or "none",
            content_label="TUMOUR",
            content_description=f"napari-brainseg {version} tumour"[:_LO],
            series_description=series_description[:_LO],
            # A scan without tumour still gets a SEG that says so (all frames, all zero):
            # a SEG with no frame at all is not valid.
            omit_empty_frames=bool(frames.any()),
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ValueError(f"{name}: cannot make a DICOM SEG from this series ({exc}). A SEG "
                         "needs the images' positions, orientation and frame of reference; "
                         "export the series again with full headers") from exc

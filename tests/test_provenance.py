"""Every output says where it came from: version, model SHA-256, options; no patient names."""

import json

import nibabel as nib
import numpy as np
import pytest

from napari_brainseg import __version__
from napari_brainseg.batch import iter_segment_folder
from napari_brainseg.cli import main
from napari_brainseg.predict import Predictor, SegmentOptions
from napari_brainseg.progress import drain
from napari_brainseg.provenance import (
    DESCRIP_BYTES,
    file_sha256,
    nifti_description,
    record,
    sidecar_path,
)
from napari_brainseg.synthetic import make_phantom, write_sample_folder

PATIENT = "Doe_Jane_1950"  # a patient's name in the input file name must not reach a record


def _scan(folder):
    vol = np.stack([make_phantom((64, 64), "glioma", seed=s, skull=False).image
                    for s in range(4)], axis=-1)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{PATIENT}.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.diag([0.9, 0.9, 3.0, 1.0])), str(path))
    return path


def test_nifti_mask_sidecar_and_results_record_version_model_and_options(tiny_model, tmp_path):
    src = _scan(tmp_path / "in")
    pred = Predictor.from_checkpoint(tiny_model, SegmentOptions(threshold=0.4, keep="largest"))
    (res,) = drain(iter_segment_folder(src, tmp_path / "out", pred, skull_strip=False))
    sha = file_sha256(tiny_model)
    descrip = nib.load(str(res.output)).header["descrip"].item()
    assert descrip == f"napari-brainseg {__version__} model sha256:{sha[:16]} thr 0.4".encode()
    side = json.loads(sidecar_path(res.output).read_text())
    table = json.loads((tmp_path / "out" / "results.csv.json").read_text())
    for rec in (side, table):
        assert rec["software"] == "napari-brainseg" and rec["version"] == __version__
        assert rec["model"] == {"file": "tiny.pt", "sha256": sha}
        assert rec["options"]["threshold"] == 0.4 and rec["options"]["keep"] == "largest"
        assert rec["options"]["skull_strip"] is False and rec["options"]["axis"] == 0
    for text in (sidecar_path(res.output).read_text(),
                 (tmp_path / "out" / "results.csv.json").read_text(), descrip.decode()):
        assert PATIENT not in text and str(tmp_path) not in text


def test_builtin_model_png_masks_and_never_over_a_users_file(tmp_path, capsys):
    write_sample_folder(tmp_path / "in", n=2, shape=(64, 64))
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.csv.json").write_text('{"mine": true}')  # a user's file of that name
    code = main(["segment", str(tmp_path / "in"), str(out), "-q", "--no-skull-strip"])
    assert code == 0
    assert (out / "results.csv.json").read_text() == '{"mine": true}'
    assert "results.csv.json exists and was not written by napari-brainseg" in \
        capsys.readouterr().err
    masks = sorted((out / "images").glob("*_pred.png"))
    assert len(masks) == 2
    rec = json.loads(sidecar_path(masks[0]).read_text())
    assert rec["model"]["label"] == "demo" and len(rec["model"]["sha256"]) == 64
    # Re-run with --overwrite and another threshold: its own sidecars are replaced
    assert main(["segment", str(tmp_path / "in"), str(out), "-q", "--no-skull-strip",
                 "--overwrite", "--threshold", "0.7"]) == 0
    assert json.loads(sidecar_path(masks[0]).read_text())["options"]["threshold"] == 0.7


def test_a_masks_sidecar_says_whether_its_scan_was_skull_stripped(tiny_model, tmp_path,
                                                                   monkeypatch):
    # the default (auto: volumes yes, 2D slices no) used to be recorded as "skull_strip": null
    import napari_brainseg.skullstrip as ss

    def fake_strip(image, spacing, **kw):
        yield 1, 1
        return np.ones(np.shape(image), bool)

    monkeypatch.setattr(ss, "iter_skull_strip", fake_strip)
    _scan(tmp_path / "in")
    write_sample_folder(tmp_path / "in", n=1, shape=(64, 64))
    out = tmp_path / "out"
    pred = Predictor.from_checkpoint(tiny_model)
    results = drain(iter_segment_folder(tmp_path / "in", out, pred))
    stripped = {r.output.name: json.loads(sidecar_path(r.output).read_text())["options"]
                ["skull_strip"] for r in results}
    assert stripped == {f"{PATIENT}_pred.nii.gz": True, "phantom_0000_meningioma_pred.png": False}
    # the run's own record keeps the rule it was given
    assert json.loads((out / "results.csv.json").read_text())["options"]["skull_strip"] is None


def test_a_users_file_where_a_sidecar_goes_is_kept(tiny_model, tmp_path):
    src = _scan(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    user = out / f"{PATIENT}_pred.nii.gz.json"
    user.write_text("notes")
    pred = Predictor.from_checkpoint(tiny_model)
    (res,) = drain(iter_segment_folder(src, out, pred, skull_strip=False))
    assert res.status == "ok" and sidecar_path(res.output) == user
    assert user.read_text() == "notes"


def test_nifti_description_fits_80_bytes():
    rec = record(options={"threshold": 0.5})
    rec["version"] = "1.2.3.dev456+g0123456789abcdef.d20250101"
    rec["model"] = {"sha256": "ab" * 32}
    text = nifti_description(rec)
    assert len(text) <= DESCRIP_BYTES and text.startswith(b"napari-brainseg 1.2.3")
    assert nifti_description(record()) == f"napari-brainseg {__version__}".encode()


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_write_labels_description(tmp_path, ext):
    from napari_brainseg.io import write_labels

    p = write_labels(tmp_path / f"m{ext}", np.zeros((3, 4, 5), np.uint8),
                     description="x" * 100)
    assert nib.load(str(p)).header["descrip"].item() == b"x" * 80

"""The dependency rules of shared/STYLE.md, checked in a clean interpreter."""

import subprocess
import sys

CORE_NUMPY = ["naming", "provenance", "io", "volume", "formats.nifti", "formats.dicom",
              "formats.figshare", "formats.raster", "preprocess", "synthetic", "skullstrip",
              "metrics", "study_report", "synthesis", "synthesis.anatomy", "synthesis.tumours",
              "synthesis.acquisition", "batch_inputs", "results_table", "segment_options"]
CORE_ALL = CORE_NUMPY + ["cli", "model", "losses", "data", "train", "predict", "batch", "study",
                         "tuning",
                         "skullstrip_learned"]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout
    return set(out.split())


def test_core_and_cli_import_no_gui():
    imports = "\n".join(f"import napari_brainseg.{m}" for m in CORE_ALL)
    mods = _modules_after(imports)
    for banned in ("napari", "qtpy", "PyQt6", "magicgui", "vispy"):
        assert banned not in mods, f"{banned} imported by the core"


def test_numpy_layer_imports_no_torch():
    imports = "\n".join(f"import napari_brainseg.{m}" for m in CORE_NUMPY)
    mods = _modules_after(imports + "\nimport napari_brainseg")
    assert "torch" not in mods


def test_classical_skull_strip_loads_no_torch():
    mods = _modules_after(
        "import numpy as np\nfrom napari_brainseg.skullstrip import run_skull_strip\n"
        "from napari_brainseg.synthetic import make_phantom\n"
        "run_skull_strip(make_phantom((64, 64), 'none', seed=0).image, method='classical')"
    )
    assert "torch" not in mods and "deepbet" not in mods


def test_cli_help_loads_no_torch():
    mods = _modules_after(
        "import contextlib, io\nfrom napari_brainseg.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n        main(['--help'])\n    except SystemExit:\n        pass"
    )
    assert "torch" not in mods and "napari" not in mods


def test_reader_adapter_loads_no_torch():
    mods = _modules_after("from napari_brainseg._reader import get_reader")
    assert "torch" not in mods


def test_writer_adapter_loads_no_torch():
    mods = _modules_after("from napari_brainseg._writer import write_labels_layer")
    assert "torch" not in mods


def test_segment_merge_loads_no_torch(tmp_path):
    """Merging the part tables of a split run only reads and writes tables: no model, no torch."""
    mods = _modules_after(
        "import contextlib, io\nfrom napari_brainseg.cli import main\n"
        "with contextlib.redirect_stderr(io.StringIO()):\n"
        f"    assert main(['segment', {str(tmp_path)!r}, {str(tmp_path / 'out')!r},"
        " '--merge']) == 2"
    )
    assert "torch" not in mods

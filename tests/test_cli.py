import subprocess
import sys

import numpy as np

from napari_brainseg.cli import main


def test_info_on_real_head(colin_path, capsys):
    assert main(["info", str(colin_path)]) == 0
    out = capsys.readouterr().out
    assert "shape=(181, 217, 181)" in out and "spacing=1 x 1 x 1 mm" in out


def test_info_reports_bad_file_and_exits_1(tmp_path, capsys):
    (tmp_path / "bad.nii").write_text("nope" * 100)
    assert main(["info", str(tmp_path / "bad.nii")]) == 1
    err = capsys.readouterr().err
    assert "bad.nii" in err and "Traceback" not in err


def test_sample_data_then_info(tmp_path, capsys):
    assert main(["sample-data", str(tmp_path / "s"), "--n", "3", "--size", "64x80"]) == 0
    assert main(["info", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "shape=(3, 64, 80)" in out and "labels" in out


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "napari_brainseg.cli", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "sample-data" in out.stdout


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out
    np.testing.assert_equal(1, 1)

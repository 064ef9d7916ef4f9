import subprocess
import sys

import numpy as np
import pytest

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


def test_info_on_a_folder_of_volumes_lists_each_scan(tmp_path, capsys):
    # the folder segment takes; info refused it ("is a volume; only folders of 2D slices...")
    import nibabel as nib

    from napari_brainseg.io import FolderOfVolumesError, read

    for name, depth in (("a", 3), ("b", 4)):
        nib.save(nib.Nifti1Image(np.zeros((8, 8, depth), np.float32), np.eye(4)),
                 str(tmp_path / f"{name}.nii.gz"))
    (tmp_path / "c.nii.gz").write_bytes(b"broken")
    with pytest.raises(FolderOfVolumesError):  # the viewer's reader: no stack of volumes
        read(tmp_path)
    assert main(["info", str(tmp_path)]) == 1  # c.nii.gz is broken, and said so
    out, err = capsys.readouterr()
    assert f"{tmp_path}: 3 scans, each on its own" in out
    assert "a.nii.gz: image 'a' shape=(3, 8, 8)" in out and "b.nii.gz: image 'b'" in out
    assert "c.nii.gz" in err and "Traceback" not in err


def test_sample_data_then_info(tmp_path, capsys):
    assert main(["sample-data", str(tmp_path / "s"), "--n", "3", "--size", "64x80"]) == 0
    assert main(["info", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "shape=(3, 64, 80)" in out and "labels" in out


def test_a_tilde_the_shell_left_alone_means_home(tmp_path, monkeypatch, capsys):
    # "--model=~/unet.pt" and quoted "~/scans" reach the command unexpanded; they used to name
    # a folder called "~" in the working folder ("unet.pt: no such checkpoint file")
    from napari_brainseg.cli.parser import build_parser

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "home").mkdir()
    assert main(["sample-data", "~/phantoms", "--n", "1", "--size", "64x64"]) == 0
    assert len(list((tmp_path / "home" / "phantoms" / "images").iterdir())) == 1
    assert not (tmp_path / "~").exists()
    assert main(["info", "~/phantoms"]) == 0
    args = build_parser().parse_args(["segment", "~/in", "~/out", "--model=~/unet.pt"])
    assert [args.input, args.output, args.model] == [str(tmp_path / "home" / x)
                                                     for x in ("in", "out", "unet.pt")]
    args = build_parser().parse_args(["train", "d", "--out=~/m.pt", "--init=~/a.pt"])
    home = tmp_path / "home"
    assert (args.out, args.init) == (str(home / "m.pt"), str(home / "a.pt"))
    assert build_parser().parse_args(["segment", "a", "b"]).model == "demo"


@pytest.mark.parametrize(("argv", "verbose"), [
    (["info", "x"], False), (["-v", "info", "x"], True), (["info", "-v", "x"], True),
    (["segment", "a", "b", "--verbose"], True),
])
def test_verbose_before_or_after_the_command(argv, verbose):
    # "brainseg info -v x" was "unrecognized arguments: -v"
    from napari_brainseg.cli.parser import build_parser

    assert build_parser().parse_args(argv).verbose is verbose


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "napari_brainseg.cli", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "sample-data" in out.stdout


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out
    np.testing.assert_equal(1, 1)


def test_skull_strip_single_nifti_keeps_affine(colin_path, tmp_path, capsys):
    import nibabel as nib

    out = tmp_path / "brain_mask.nii.gz"
    assert main(["skull-strip", str(colin_path), str(out), "--masked"]) == 0
    mask = nib.load(str(out))
    src = nib.load(str(colin_path))
    assert mask.shape == src.shape
    np.testing.assert_allclose(mask.affine, src.affine)
    assert 1_400_000 < int(np.asarray(mask.dataobj).sum()) < 2_000_000
    masked = tmp_path / "brain_stripped.nii.gz"
    assert masked.exists() and nib.load(str(masked)).shape == src.shape


def test_skull_strip_folder_continues_past_bad_files(tmp_path, capsys):
    assert main(["sample-data", str(tmp_path / "in"), "--n", "3", "--size", "96x96",
                 "--skull"]) == 0
    (tmp_path / "in" / "images" / "broken.png").write_bytes(b"not a png")
    code = main(["skull-strip", str(tmp_path / "in"), str(tmp_path / "out"), "-q"])
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "1 of 4" in err
    # sub-folders are mirrored, as for predictions: images/NAME -> out/images/NAME_brain_mask
    assert len(list((tmp_path / "out" / "images").glob("*_brain_mask.png"))) == 3


def test_skull_strip_folder_gives_scans_of_one_name_in_two_folders_a_mask_each(tmp_path, capsys):
    import imageio.v3 as iio

    from napari_brainseg.synthetic import make_phantom

    for k, patient in enumerate(["p01", "p02"]):  # the usual layout: one folder per patient
        (tmp_path / "in" / patient).mkdir(parents=True)
        img = make_phantom((96, 96), "none", seed=k, skull=True).image
        iio.imwrite(tmp_path / "in" / patient / "t1.png", np.clip(img, 0, 255).astype(np.uint8))
    args = ["skull-strip", str(tmp_path / "in"), str(tmp_path / "out"), "--method", "classical",
            "-q"]
    assert main(args) == 0
    masks = sorted(p.relative_to(tmp_path / "out").as_posix()
                   for p in (tmp_path / "out").rglob("*.png"))
    assert masks == ["p01/t1_brain_mask.png", "p02/t1_brain_mask.png"]  # was one, p02 skipped
    assert "exists" not in capsys.readouterr().out


def test_skull_strip_folder_with_one_name_in_two_formats_writes_both(tmp_path, capsys):
    # scan.png + scan.jpg both mapped to scan_brain_mask.png: the second was "skipped, exists"
    import imageio.v3 as iio

    from napari_brainseg.synthetic import make_phantom

    (tmp_path / "in").mkdir()
    img = np.clip(make_phantom((96, 96), "none", seed=0, skull=True).image, 0, 255)
    for ext in ("png", "jpg"):
        iio.imwrite(tmp_path / "in" / f"scan.{ext}", img.astype(np.uint8))
    args = ["skull-strip", str(tmp_path / "in"), str(tmp_path / "in"), "--method", "classical",
            "--masked", "-q"]
    assert main(args) == 0
    names = sorted(p.name for p in (tmp_path / "in").iterdir())
    assert names == ["scan.jpg", "scan.png", "scan_jpg_brain_mask.png",
                     "scan_jpg_brain_stripped.tif", "scan_png_brain_mask.png",
                     "scan_png_brain_stripped.tif"]
    assert main(args) == 0  # the re-run strips neither again, nor its stripped images
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == names


def test_skull_strip_rerun_into_the_scans_folder_leaves_its_stripped_images_alone(tmp_path,
                                                                                 capsys):
    assert main(["sample-data", str(tmp_path / "in"), "--n", "2", "--size", "96x96",
                 "--skull"]) == 0
    images = tmp_path / "in" / "images"
    args = ["skull-strip", str(images), str(images), "--masked", "--method", "classical", "-q"]
    assert main(args) == 0
    before = sorted(p.name for p in images.iterdir())
    assert len(before) == 6  # 2 scans, 2 masks, 2 stripped images
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in images.iterdir()) == before  # no NAME_brain_stripped_brain_mask
    assert out.count("the skull-stripped image of") == 2 and out.count("exists") == 2


def test_skull_strip_rerun_into_a_folder_inside_the_scans_leaves_its_outputs_alone(tmp_path,
                                                                                    capsys):
    # skull-strip scans scans/out --masked: a re-run took out/NAME_brain_stripped for scans
    # and wrote out/out/NAME_brain_stripped_brain_mask, one level deeper at every run
    assert main(["sample-data", str(tmp_path / "in"), "--n", "2", "--size", "96x96",
                 "--skull"]) == 0
    images = tmp_path / "in" / "images"
    args = ["skull-strip", str(images), str(images / "out"), "--masked", "--method",
            "classical", "-q"]
    assert main(args) == 0
    before = sorted(p.relative_to(images).as_posix() for p in images.rglob("*"))
    assert len([p for p in before if p.startswith("out/")]) == 4  # 2 masks, 2 stripped images
    capsys.readouterr()
    assert main(args) == 0
    assert sorted(p.relative_to(images).as_posix() for p in images.rglob("*")) == before
    assert capsys.readouterr().out.count("exists") == 2  # each scan's outputs, kept


def test_skull_strip_never_overwrites_without_flag(tmp_path, capsys):
    main(["sample-data", str(tmp_path / "in"), "--n", "1", "--size", "96x96", "--skull"])
    out = tmp_path / "m.png"
    out.write_bytes(b"user file")
    img = next((tmp_path / "in" / "images").iterdir())
    assert main(["skull-strip", str(img), str(out)]) == 0
    assert out.read_bytes() == b"user file"
    assert "exists" in capsys.readouterr().out
    assert main(["skull-strip", str(img), str(out), "--overwrite"]) == 0
    assert out.read_bytes() != b"user file"


def test_skull_strip_masked_never_replaces_the_input(tmp_path, capsys):
    import tifffile

    from napari_brainseg.synthetic import make_phantom

    src = tmp_path / "head_stripped.tif"
    tifffile.imwrite(src, make_phantom((96, 96), "none", seed=0, skull=True).image)
    before = src.read_bytes()
    # The stripped image of mask head_mask.tif would be called head_stripped.tif: the input.
    code = main(["skull-strip", str(src), str(tmp_path / "head_mask.tif"), "--masked",
                 "--overwrite", "-q"])
    assert code == 1 and "would replace the input" in capsys.readouterr().err
    assert src.read_bytes() == before and not (tmp_path / "head_mask.tif").exists()


def test_skull_strip_masked_keeps_existing_outputs_and_completes_the_rest(tmp_path, capsys):
    import tifffile

    main(["sample-data", str(tmp_path / "in"), "--n", "1", "--size", "96x96", "--skull"])
    img = next((tmp_path / "in" / "images").iterdir())
    (tmp_path / "b_stripped.tif").write_bytes(b"user file")
    assert main(["skull-strip", str(img), str(tmp_path / "b_mask.png"), "--masked"]) == 0
    assert "kept existing b_stripped.tif" in capsys.readouterr().out
    assert (tmp_path / "b_stripped.tif").read_bytes() == b"user file"
    assert (tmp_path / "b_mask.png").exists()
    # A run stopped after the mask: the next run writes the stripped image from that mask.
    (tmp_path / "b_stripped.tif").unlink()
    mask_bytes = (tmp_path / "b_mask.png").read_bytes()
    assert main(["skull-strip", str(img), str(tmp_path / "b_mask.png"), "--masked"]) == 0
    assert (tmp_path / "b_mask.png").read_bytes() == mask_bytes
    stripped = tifffile.imread(tmp_path / "b_stripped.tif")
    assert stripped.shape == (96, 96) and (stripped > stripped.min()).any()
    assert main(["skull-strip", str(img), str(tmp_path / "b_mask.png"), "--masked"]) == 0
    assert "skipped" in capsys.readouterr().out


def test_skull_strip_method_options(tmp_path, capsys):
    main(["sample-data", str(tmp_path / "in"), "--n", "1", "--size", "96x96", "--skull"])
    img = next((tmp_path / "in" / "images").iterdir())
    assert main(["skull-strip", str(img), str(tmp_path / "a.png"), "--tightness", "0.3"]) == 2
    assert "--method classical" in capsys.readouterr().err
    assert main(["skull-strip", str(img), str(tmp_path / "a.png"), "--method", "classical",
                 "--tightness", "0.3"]) == 0
    assert (tmp_path / "a.png").exists()


def test_train_never_replaces_a_model_silently(tmp_path, capsys):
    main(["sample-data", str(tmp_path / "d"), "--n", "4", "--size", "64x64"])
    out = tmp_path / "model.pt"
    out.write_bytes(b"my precious model")
    code = main(["train", str(tmp_path / "d"), "--out", str(out), "--epochs", "1"])
    assert code == 2 and "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"my precious model"


@pytest.mark.parametrize("command", ["skull-strip", "train", "segment", "study"])
def test_every_option_in_help_says_what_it_does(command, capsys):
    import argparse

    from napari_brainseg.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    bare = [a.option_strings[-1] for a in sub.choices[command]._actions
            if a.option_strings and not a.help]
    assert bare == [], f"options without help text: {bare}"
    # an option with a default says what it is (flags and choices listed by argparse aside)
    unstated = [a.option_strings[-1] for a in sub.choices[command]._actions
                if a.option_strings and a.default not in (None, False, argparse.SUPPRESS)
                and "default" not in a.help]
    assert unstated == [], f"options whose help does not state their default: {unstated}"



def test_train_prints_samples_per_second(tmp_path, capsys, monkeypatch):
    """From a scripted clock: every step takes 0.5 s, so 4 slices in 2 steps are 4 samples/s."""
    import itertools
    import re

    import napari_brainseg.train as train_mod

    main(["sample-data", str(tmp_path / "d"), "--n", "4", "--size", "64x64"])
    ticks = itertools.count(0.0, 0.5)  # a step reads the clock at its start and at its end
    monkeypatch.setattr(train_mod, "_clock", lambda: next(ticks))
    capsys.readouterr()
    code = main(["train", str(tmp_path / "d"), "--out", str(tmp_path / "m.pt"), "--epochs", "1",
                 "--val-split", "0", "--batch-size", "2", "--patch-size", "32",
                 "--base-filters", "4", "-q"])
    out = capsys.readouterr().out
    assert code == 0 and "training on 4 slices" in out
    assert re.search(r"epoch +1/1 .* 4\.0 samples/s", out), out
    # --val-split 0 holds nothing out: no "val Dice nan", no "validation Dice -<train loss>"
    assert "no validation slices" in out and "nan" not in out and "Dice -" not in out, out

def _interrupting_training(epochs_before: int):
    """A stand-in for iter_training that finishes ``epochs_before`` epochs, then gets Ctrl-C."""
    from napari_brainseg.train import EpochReport

    def fake(*args, **kwargs):
        for e in range(1, epochs_before + 1):
            yield EpochReport(e, 5, 1.0, 1.0, 0.0, 0.0, 0.0, 1e-3, 0.1, True)
        raise KeyboardInterrupt
    return fake


@pytest.mark.parametrize("epochs_before", [0, 2])
def test_ctrl_c_advises_resume_only_when_an_epoch_was_saved(tmp_path, capsys, monkeypatch,
                                                            epochs_before):
    import napari_brainseg.train as train_mod

    main(["sample-data", str(tmp_path / "d"), "--n", "4", "--size", "64x64"])
    monkeypatch.setattr(train_mod, "iter_training", _interrupting_training(epochs_before))
    capsys.readouterr()
    code = main(["train", str(tmp_path / "d"), "--out", str(tmp_path / "m.pt"), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 130 and len(err.splitlines()) == 1, err
    if epochs_before:
        assert f"--resume {tmp_path / 'm.last.pt'}" in err
    else:
        assert "--resume" not in err and "nothing was saved" in err


def test_every_numeric_option_has_bounds():
    import argparse

    from napari_brainseg.cli import RANGES, build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    unbounded = [f"{cmd} --{a.dest}" for cmd, p in sub.choices.items() for a in p._actions
                 if a.type in (int, float) and not a.choices and a.dest not in RANGES.get(cmd, {})]
    assert unbounded == [], "add these options to cli.RANGES"


def test_option_bounds_match_the_core():
    from napari_brainseg.cli import RANGES
    from napari_brainseg.skullstrip import MAX_MM
    from napari_brainseg.train import MAX_PATCH, MIN_PATCH

    assert RANGES["skull-strip"]["erode_mm"].high == MAX_MM
    for command in ("train", "study"):
        b = RANGES[command]["patch_size"]
        assert (b.low, b.high) == (MIN_PATCH, MAX_PATCH)


@pytest.mark.parametrize("argv, message", [
    (["skull-strip", "a.png", "b.png", "--tightness", "2"], "--tightness must be between 0 and 1"),
    (["segment", "a.png", "out", "--threshold", "0"], "--threshold must be above 0 and below 1"),
    (["segment", "a.png", "out", "--batch-size", "0"], "--batch-size must be between 1 and 512"),
    (["train", "d", "--out", "m.pt", "--gamma", "-1"], "--gamma must be between 0 and 10"),
    (["train", "d", "--out", "m.pt", "--val-split", "nan"], "--val-split must be between"),
    (["train", "d", "--out", "m.pt", "--pos-weight", "0"], "--pos-weight must be above 0"),
    (["study", "d", "--out", "s", "--folds", "1000"], "--folds must be between 2 and 50"),
    (["study", "d", "--out", "s", "--alpha", "focal=inf"], "--alpha values must be between"),
    (["sample-data", "s", "--n", "0"], "--n must be between 1 and 10000"),
    (["sample-data", "s", "--size", "99999x64"], "each side 32 to 4096"),
])
def test_numeric_options_out_of_range_exit_2_before_any_work(tmp_path, capsys, monkeypatch,
                                                             argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []

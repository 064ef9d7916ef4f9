"""Faults: a training process killed with SIGKILL resumes to the same weights as an
uninterrupted run; a killed batch run re-runs only the remaining files."""

import os
import signal
import subprocess
import sys
import time

import torch

from napari_brainseg.model import load_checkpoint
from napari_brainseg.synthetic import write_sample_folder
from napari_brainseg.train import last_path_for

TRAIN_ARGS = ["--epochs", "12", "--batch-size", "2", "--patch-size", "64", "--base-filters", "4",
              "--val-split", "0.25", "--seed", "3", "-q"]


def _brainseg(*args):
    return [sys.executable, "-m", "napari_brainseg.cli", *args]


def test_sigkill_mid_training_resumes_to_same_weights(tmp_path):
    write_sample_folder(tmp_path / "data", n=8, shape=(64, 64))
    full = subprocess.run(_brainseg("train", str(tmp_path / "data"), "--out",
                                    str(tmp_path / "full.pt"), *TRAIN_ARGS),
                          capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr

    out = tmp_path / "killed.pt"
    last = last_path_for(out)
    proc = subprocess.Popen(_brainseg("train", str(tmp_path / "data"), "--out", str(out),
                                      *TRAIN_ARGS), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline:
        if last.exists() and load_checkpoint(last).resume["epoch"] >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    epoch_at_kill = load_checkpoint(last).resume["epoch"]  # the file is whole: atomic writes
    assert 2 <= epoch_at_kill < 12

    resumed = subprocess.run(_brainseg("train", str(tmp_path / "data"), "--out", str(out),
                                       *TRAIN_ARGS, "--resume", str(last)),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a = load_checkpoint(last_path_for(tmp_path / "full.pt")).model.state_dict()
    b = load_checkpoint(last).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_killed_batch_run_redoes_only_the_rest(tmp_path, tiny_model):
    write_sample_folder(tmp_path / "in", n=6, shape=(64, 64))
    args = _brainseg("segment", str(tmp_path / "in"), str(tmp_path / "out"), "--model",
                     str(tiny_model), "-q")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    masks = tmp_path / "out" / "images"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(masks.glob("*_tumour.png"))) < 2:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = {p.name: p.stat().st_mtime_ns for p in masks.glob("*_tumour.png")}
    assert 2 <= len(done_before) <= 6
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    after = {p.name: p.stat().st_mtime_ns for p in masks.glob("*_tumour.png")}
    assert len(after) == 6
    assert all(after[n] == t for n, t in done_before.items())  # finished files were not redone
    rows = (tmp_path / "out" / "results.csv").read_text().splitlines()[1:]
    assert sum(",skipped," in r for r in rows) == len(done_before)

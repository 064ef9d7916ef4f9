"""Faults: a training process killed with SIGKILL resumes to the same weights as an
uninterrupted run; a killed batch run re-runs only the remaining files; a read-only output
folder (as an unprivileged user) and a full disk (a small tmpfs) for real, where the machine
allows it."""

import os
import signal
import subprocess
import sys
import time

import pytest
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
    # The run kills itself with SIGKILL at the first optimiser step after epoch 2 was saved:
    # mid-epoch, at the same point on any machine (no race with a polling parent).
    killer = (
        "import os, signal, sys, torch\n"
        "from pathlib import Path\n"
        f"last = Path({str(last)!r})\n"
        "step = torch.optim.Adam.step\n"
        "def killing_step(self, *a, **k):\n"
        # torch.load only: building a model would draw from the RNG the run replays
        "    if last.exists() and torch.load(last, weights_only=True)['resume']['epoch'] >= 2:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return step(self, *a, **k)\n"
        "torch.optim.Adam.step = killing_step\n"
        "from napari_brainseg.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", killer, "train", str(tmp_path / "data"),
                           "--out", str(out), *TRAIN_ARGS], capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    epoch_at_kill = load_checkpoint(last).resume["epoch"]  # the file is whole: atomic writes
    assert epoch_at_kill == 2

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
    while time.time() < deadline and len(list(masks.glob("*_pred.png"))) < 2:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = {p.name: p.stat().st_mtime_ns for p in masks.glob("*_pred.png")}
    assert 2 <= len(done_before) <= 6
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    after = {p.name: p.stat().st_mtime_ns for p in masks.glob("*_pred.png")}
    assert len(after) == 6
    assert all(after[n] == t for n, t in done_before.items())  # finished files were not redone
    rows = (tmp_path / "out" / "results.csv").read_text().splitlines()[1:]
    assert sum(",skipped," in r for r in rows) == len(done_before)


def _run_as_nobody() -> bool:
    """Whether this process can run a command as an unprivileged user (root with setpriv)."""
    import shutil

    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("setpriv") is not None


@pytest.fixture
def shared_dir():
    """A folder an unprivileged user can read (pytest's tmp_path is private to its owner)."""
    import shutil
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="brainseg-faults-"))
    base.chmod(0o755)
    yield base
    for p in base.rglob("*"):  # read-only folders made by the test
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(base)


@pytest.mark.skipif(not _run_as_nobody(), reason="needs root and setpriv to drop privileges")
def test_read_only_output_folder_for_real(shared_dir, tiny_model):
    """As an unprivileged user, a read-only OUTPUT is refused up front, once (not per scan),
    by segment and by train, before any work."""
    import shutil

    write_sample_folder(shared_dir / "in", n=3, shape=(64, 64))
    shutil.copy(tiny_model, shared_dir / "model.pt")
    out = shared_dir / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    out.chmod(0o555)
    home = shared_dir / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    # the user's own cache (the suite's ONNX export cache belongs to root)
    env = {**os.environ, "HOME": str(home), "BRAINSEG_CACHE_DIR": str(home / "cache")}
    runs = {
        "segment": _brainseg("segment", str(shared_dir / "in"), str(out), "--model",
                             str(shared_dir / "model.pt"), "-q"),
        "train": _brainseg("train", str(shared_dir / "in"), "--out", str(out / "m.pt"), "-q",
                           "--epochs", "1"),
    }
    for what, argv in runs.items():
        r = subprocess.run(nobody + argv, capture_output=True, text=True, timeout=300, env=env)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, (what, r.stderr)
        assert "Permission denied" in lines[0] and "Traceback" not in r.stderr, (what, lines)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def _mount_tmpfs(path, size: str) -> bool:
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True)
    return r.returncode == 0


def test_full_disk_for_real(tmp_path, tiny_model):
    """On a full file system (a small tmpfs) every scan fails with a clear line, the run goes
    on, results.csv is said to be unwritten (the table is printed), nothing half-written is
    left, and no traceback."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if not (hasattr(os, "geteuid") and os.geteuid() == 0) or not _mount_tmpfs(disk, "200k"):
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        write_sample_folder(tmp_path / "in", n=3, shape=(64, 64))
        (disk / "out").mkdir()
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)  # fill it up (unbuffered)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        r = subprocess.run(_brainseg("segment", str(tmp_path / "in"), str(disk / "out"),
                                     "--model", str(tiny_model), "-q"),
                           capture_output=True, text=True, timeout=300)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert all(line.startswith("brainseg: error: ") for line in lines), lines
        assert sum("No space left on device" in line for line in lines) == 4, lines  # 3 + csv
        assert "results.csv: not written" in lines[-1]
        assert "0 segmented, 0 skipped (already done), 3 failed; table: not written" in r.stdout
        assert [p for p in (disk / "out").rglob("*") if p.is_file()] == []  # no temp files
    finally:
        subprocess.run(["umount", str(disk)], check=True)

"""DistributedDataParallel through torchrun: 2 CPU processes (gloo, localhost) on phantoms."""

import os
import re
import subprocess
import sys
from pathlib import Path

from napari_brainseg.model import load_checkpoint
from napari_brainseg.synthetic import write_sample_folder

LOSS = re.compile(r"epoch\s+(\d+)/\d+\s+loss ([0-9.]+)")


def _train(cmd, out: Path, data: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["train", str(data), "--out", str(out), "--epochs", "4", "--batch-size", "4",
            "--patch-size", "64", "--base-filters", "4", "--seed", "3", "-q"]
    run = subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_two_cpu_processes_train_like_one(tmp_path):
    data = tmp_path / "data"
    write_sample_folder(data, n=12, seed=0, shape=(64, 64), skull=False)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node", "2", "-m", "napari_brainseg.cli"]
    (tmp_path / "ddp").mkdir()
    ddp_out = _train(torchrun, tmp_path / "ddp" / "model.pt", data)
    single_out = _train([sys.executable, "-m", "napari_brainseg.cli"],
                        tmp_path / "single.pt", data)

    # both ranks end with the same weights
    digests = dict(re.findall(r"rank (\d)/2: final weights sha256 ([0-9a-f]{64})", ddp_out))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], ddp_out
    # only rank 0 wrote, in the usual format: one best and one last checkpoint
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["model.last.pt", "model.pt"]
    ck = load_checkpoint(tmp_path / "ddp" / "model.last.pt")
    assert ck.training["epochs"] == 4 and ck.config.base_filters == 4
    # rank 0 alone printed the epoch lines
    assert len(LOSS.findall(ddp_out)) == 4 and "across 2 processes" in ddp_out
    # the loss falls as in the single-process run (same global batches; gradients averaged)
    ddp_loss = [float(v) for _, v in LOSS.findall(ddp_out)]
    one_loss = [float(v) for _, v in LOSS.findall(single_out)]
    assert ddp_loss[-1] < ddp_loss[0] and one_loss[-1] < one_loss[0]
    for a, b in zip(ddp_loss, one_loss, strict=True):
        assert abs(a - b) <= 0.05 * b, (ddp_loss, one_loss)


def test_a_short_last_batch_is_padded_so_every_rank_gets_a_share():
    from napari_brainseg.distributed import Distributed, rank_share

    order = list(range(10))
    assert [rank_share(order[8:], order, Distributed(r, 3, r)) for r in range(3)] == \
        [[8], [9], [0]]
    assert [rank_share(order[:4], order, Distributed(r, 2, r)) for r in range(2)] == \
        [[0, 2], [1, 3]]

"""Precomputed shards of synthetic training pairs (synthesis/shards.py)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_brainseg.synthesis.shards import ShardSet, write_shards


def make(rng):
    img = rng.normal(size=(16, 16)).astype(np.float32)
    return img, (img > 1).astype(np.uint8)


def test_shards_are_written_mapped_and_drawn_shuffled(tmp_path):
    paths = write_shards(tmp_path, make, n=5, seed=3, info={"size": 16}, per_shard=2)
    assert [p.name for p in paths] == [f"shard-0000{k}.image.npy" for k in range(3)]
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically, nothing left over
    shards = ShardSet(tmp_path)
    assert len(shards) == 5
    assert isinstance(shards.images[0], np.memmap)  # mapped from disk, not read whole
    rng = np.random.default_rng(0)
    seen = []
    batches = shards.batches(2, rng)
    for _ in range(4):  # two passes of two batches (the odd sample waits for the next pass)
        x, y = next(batches)
        assert x.shape == (2, 16, 16) and x.dtype == np.float32 and y.dtype == np.uint8
        np.testing.assert_array_equal(y, (x > 1).astype(np.uint8))  # pairs stay together
        seen += [tuple(np.round(v, 2).ravel()[:4]) for v in x]
    assert len(set(seen)) >= 4  # shuffled across shards, not one shard over and over
    with pytest.raises(ValueError, match="fewer than a batch of 8"):
        next(shards.batches(8, rng))  # never an endless loop that yields nothing


def test_shards_split_across_processes_equal_one_run(tmp_path):
    write_shards(tmp_path / "one", make, n=6, seed=1, per_shard=2)
    write_shards(tmp_path / "split", make, n=2, seed=1, per_shard=2, first=0)
    write_shards(tmp_path / "split", make, n=4, seed=1, per_shard=2, first=1)
    for k in range(3):
        a = np.load(tmp_path / "one" / f"shard-0000{k}.image.npy")
        b = np.load(tmp_path / "split" / f"shard-0000{k}.image.npy")
        np.testing.assert_array_equal(a, b)


def test_existing_shards_are_kept(tmp_path):
    write_shards(tmp_path, make, n=4, seed=1, per_shard=2)
    before = (tmp_path / "shard-00000.image.npy").stat().st_mtime_ns
    calls = []
    write_shards(tmp_path, lambda rng: calls.append(1) or make(rng), n=6, seed=1, per_shard=2)
    assert (tmp_path / "shard-00000.image.npy").stat().st_mtime_ns == before
    assert len(calls) == 2  # only the new third shard was made

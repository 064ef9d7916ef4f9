"""Precomputed shards of synthetic training pairs: generation paid once, training never waits.

On a 2-core CPU, making samples on the fly (0.14 s each) takes the cores from the training
steps: with 0-2 DataLoader workers training ran at 75-79 % of its rate on batches already in
memory (``benchmarks/train_throughput.py``). A shard set is made once (in parallel, anywhere,
even while nothing trains) and read back memory-mapped, so a training step only copies a batch.

The price is a finite set: samples repeat once per pass over the set instead of never. Make
more shards (a new ``seed``) for a long run.

Layout of a shard folder: ``shard-00000.tumour.npy`` (``(n, size, size)`` uint8) and
``shard-00000.image.npy`` (float16, already normalised like inference; written last, so a shard
whose image file exists is complete), each written atomically, plus ``shards.json`` (what made
them). ``.npy`` files are memory-mapped, not read into memory. numpy only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from napari_brainseg.volume import atomic_write

#: Samples per shard file (at 256² about 64 MB of float16 images and 32 MB of labels).
PER_SHARD = 512


def write_shards(folder: Path, make: Callable[[np.random.Generator], tuple[np.ndarray,
                                                                            np.ndarray]],
                 n: int, seed: int, info: dict | None = None, per_shard: int = PER_SHARD,
                 first: int = 0) -> list[Path]:
    """Write ``n`` samples ``make(rng) -> (image, tumour)`` into shard files in ``folder``.

    Shard ``k`` draws from ``default_rng([seed, k])``, so shards can be made by separate
    processes (``first`` = the first shard's number) and the set is the same however it was
    split. Existing shard files are kept (a stopped run goes on where it stopped).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(first, first + -(-n // per_shard)):
        path = folder / f"shard-{k:05d}.image.npy"
        out.append(path)
        if path.is_file():
            continue
        rng = np.random.default_rng([seed, k])
        count = min(per_shard, first * per_shard + n - k * per_shard)
        pairs = [make(rng) for _ in range(count)]
        images = np.stack([p[0] for p in pairs]).astype(np.float16)
        tumours = np.stack([p[1] for p in pairs]).astype(np.uint8)
        atomic_write(folder / f"shard-{k:05d}.tumour.npy", lambda tmp, t=tumours: np.save(tmp, t))
        atomic_write(path, lambda tmp, i=images: np.save(tmp, i))
    meta = {"seed": seed, "per_shard": per_shard, **(info or {})}
    atomic_write(folder / "shards.json", lambda tmp: Path(tmp).write_text(json.dumps(meta)))
    return out


class ShardSet:
    """All samples of a shard folder, memory-mapped; :meth:`batches` draws them shuffled."""

    def __init__(self, folder: Path) -> None:
        paths = sorted(Path(folder).glob("shard-*.image.npy"))
        if not paths:
            raise FileNotFoundError(f"no shard-*.image.npy files in {folder}")
        self.images = [np.load(p, mmap_mode="r") for p in paths]
        self.tumours = [np.load(str(p).replace(".image.npy", ".tumour.npy"), mmap_mode="r")
                        for p in paths]
        self.index = [(s, i) for s, im in enumerate(self.images) for i in range(len(im))]

    def __len__(self) -> int:
        return len(self.index)

    def batches(self, batch: int, rng: np.random.Generator) -> Iterator[tuple[np.ndarray,
                                                                              np.ndarray]]:
        """Endless ``(images float32 (B, S, S), tumours uint8 (B, S, S))``, each pass shuffled."""
        if len(self) < batch:  # a pass would yield nothing, forever
            raise ValueError(f"{len(self)} samples in the shards, fewer than a batch of {batch}; "
                             "write more with --write-shards")
        while True:
            order = rng.permutation(len(self.index))
            for k in range(0, len(order) - batch + 1, batch):
                pick = [self.index[j] for j in order[k:k + batch]]
                yield (np.stack([self.images[s][i] for s, i in pick]).astype(np.float32),
                       np.stack([self.tumours[s][i] for s, i in pick]))

"""Peak memory (RSS) while segmenting a 512 x 512 x 200 volume.

    python benchmarks/memory.py [--slices 200]

Runs in a fresh interpreter: builds the volume (float32, 200 MiB), then segments it slice by
slice with the study's U-Net (width 16) as ``brainseg segment`` and the Segment widget do. Peak
RSS comes from ``getrusage``; the baseline is the RSS just before segmenting (interpreter,
torch, the volume), so the difference is what segmenting costs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _bench import print_table

CHILD = """
import json, resource, sys, time
import numpy as np, torch
from napari_brainseg.model import UNet, UNetConfig
from napari_brainseg.predict import Predictor, SegmentOptions

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024

n = int(sys.argv[1])
torch.manual_seed(0)
rng = np.random.default_rng(0)
volume = rng.normal(100, 20, (n, 512, 512)).astype(np.float32)
model = UNet(UNetConfig(base_filters=16))
pred = Predictor(model, {"method": "percentile"}, SegmentOptions(), device="cpu")
pred.probability([volume[0]])  # allocator warm-up: one slice
before = rss_mb()
t = time.perf_counter()
res = pred.segment_volume(volume, (1.0, 1.0, 1.0))
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"before": before, "peak": peak, "seconds": seconds,
                  "volume_mb": volume.nbytes / 2**20}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, default=200)
    args = ap.parse_args()
    out = subprocess.run([sys.executable, "-c", CHILD, str(args.slices)], capture_output=True,
                         text=True, check=True).stdout
    r = json.loads(out)
    print_table(["volume", "RSS before (MB)", "peak RSS (MB)", "segmenting adds (MB)",
                 "seconds"],
                [[f"512x512x{args.slices} float32 ({r['volume_mb']:.0f} MB)", r["before"],
                  r["peak"], r["peak"] - r["before"], r["seconds"]]])


if __name__ == "__main__":
    main()

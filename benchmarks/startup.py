"""Start-up cost: ``brainseg --help`` and napari's loading of the plugin manifest and reader.

    python benchmarks/startup.py [--repeats 7]

Each measurement is a fresh interpreter (median wall time), beside the bare interpreter start
(``python -c pass``) as the baseline. The manifest/reader run discovers the plugin through npe2,
asks the reader for a .nii.gz path and opens Colin27 when ../shared is present, and reports
whether torch got imported (it must not: the reader path is numpy-only).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _bench import print_table

COLIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "colin27" / "ch2.nii.gz"

READER = """
import json, sys, time
t = time.perf_counter()
from npe2 import PluginManager
pm = PluginManager.instance()
pm.discover()
manifest = pm.get_manifest("napari-brainseg")
from napari_brainseg._reader import get_reader
reader = get_reader(sys.argv[1])
t_manifest = time.perf_counter() - t
layers = reader(sys.argv[1]) if reader is not None and sys.argv[1] != "x.nii.gz" else []
print(json.dumps({"manifest": t_manifest, "total": time.perf_counter() - t,
                  "torch": "torch" in sys.modules, "layers": len(layers)}))
"""


def wall(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    brainseg = shutil.which("brainseg") or str(Path(sys.executable).with_name("brainseg"))
    target = str(COLIN) if COLIN.exists() else "x.nii.gz"
    runs: dict[str, list[float]] = {"python -c pass": [], "brainseg --help": [],
                                    "plugin manifest + reader (fresh python)": []}
    info = {}
    for _ in range(args.repeats):
        runs["python -c pass"].append(wall([sys.executable, "-c", "pass"])[0])
        runs["brainseg --help"].append(wall([brainseg, "--help"])[0])
        t, out = wall([sys.executable, "-c", READER, target])
        runs["plugin manifest + reader (fresh python)"].append(t)
        info = json.loads(out)
    torch_help = json.loads(wall([sys.executable, "-c", "import sys; from napari_brainseg.cli "
                                  "import build_parser; build_parser().format_help(); "
                                  "import json; print(json.dumps('torch' in sys.modules))"])[1])
    base = statistics.median(runs["python -c pass"])
    rows = [[k, statistics.median(v), statistics.median(v) - base] for k, v in runs.items()]
    print_table(["command", "seconds", "over bare python"], rows)
    print(f"\nin-process: manifest discovery + get_reader {info['manifest']:.3f} s; with "
          f"reading {Path(target).name} ({info['layers']} layer) {info['total']:.3f} s; "
          f"torch imported by the reader path: {info['torch']}; by `brainseg --help`: "
          f"{torch_help}")


if __name__ == "__main__":
    main()

"""The network on a CPU: eager PyTorch vs ONNX Runtime vs torch.jit.freeze, quiet and busy.

    python benchmarks/cpu_backends.py [--repeats 5] [--slices 4] [--size 512]

Model only (normalised 512 x 512 slices already in memory, one slice per forward pass as
``Predictor`` runs a CPU), the study's U-Net (width 16, seeded random weights: speed does not
depend on the weights), all in this process, interleaved rounds, medians:
- eager: ``Predictor._run`` with ``backend="torch"`` (inference_mode, channels-last): the path
  before ONNX Runtime was adopted
- onnx: ``Predictor._run`` with ``backend="onnx"`` (the exported graph in ONNX Runtime, 2 threads,
  no spinning): the default now
- jit.freeze: the same network traced, frozen and ``optimize_for_inference`` (oneDNN), channels-last
- monai: MONAI ``BasicUNet`` (16..256) eager, whole image: another network of the same widths
- reported separately (quiet only, against eager and onnx): MONAI's ``sliding_window_inference``
  (256 x 256 windows, overlap 0.25, Gaussian, batch 4) of that network, as MONAI's tutorials
  run 2D inference: nine overlapping windows of a different network, not a like-for-like pass
Then the same under load: two busy-loop processes spin on the cores during the timed rounds,
as other programs do on a user's laptop. Also prints the largest probability difference of
each path against eager, and the whole pipeline (``Predictor.probability``) per backend.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile

import numpy as np
import torch
from _bench import interleaved, print_table

from napari_brainseg.inference import ProbabilityNet, pad_to_multiple
from napari_brainseg.model import UNet, UNetConfig
from napari_brainseg.predict import Predictor, SegmentOptions
from napari_brainseg.synthetic import make_phantom


def _spin(stop) -> None:  # a busy loop: another program using a core
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--no-monai", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("BRAINSEG_CACHE_DIR", tempfile.mkdtemp())  # a fresh export
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_filters=16)).eval()
    opts = SegmentOptions(tile=None)
    eager = Predictor(model, {"method": "zscore"}, opts, device="cpu", backend="torch")
    onnx = Predictor(model, {"method": "zscore"}, opts, device="cpu", backend="onnx")
    onnx.prepare(wait=True)
    assert onnx._onnx is not None and onnx._onnx.session() is not None, "ONNX not ready"
    imgs = [make_phantom((args.size, args.size), "glioma", seed=s, skull=False).image
            for s in range(args.slices)]
    xs = [torch.from_numpy(((i - i.mean()) / i.std()).astype(np.float32))[None, None]
          for i in imgs]
    example = torch.zeros(1, 1, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        net = ProbabilityNet(model).to(memory_format=torch.channels_last)
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(
            torch.jit.trace(net, example).eval()))
        for _ in range(2):  # the profiling runs of the frozen graph
            frozen(pad_to_multiple(xs[0], 16).contiguous(memory_format=torch.channels_last))
    fns = {
        "eager (before)": lambda: [eager._run(x) for x in xs],
        "onnx runtime (default now)": lambda: [onnx._run(x) for x in xs],
        "jit.freeze + oneDNN": lambda: [frozen(pad_to_multiple(x, 16).contiguous(
            memory_format=torch.channels_last)) for x in xs],
    }
    if not args.no_monai:
        from monai.networks.nets import BasicUNet

        monai_net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=1,
                              features=(16, 32, 64, 128, 256, 16)).eval()
        fns["monai BasicUNet, whole image"] = lambda: [torch.sigmoid(monai_net(x)) for x in xs]
    with torch.inference_mode():
        ref = torch.cat([eager._run(x) for x in xs])
        diff = {"onnx runtime (default now)": torch.cat([onnx._run(x) for x in xs]),
                "jit.freeze + oneDNN": torch.cat([frozen(pad_to_multiple(x, 16))[..., :args.size,
                                                                               :args.size]
                                                  for x in xs])}
        for k, v in diff.items():
            print(f"{k}: max |p - p_eager| = {float((v - ref).abs().max()):.2e}")
        rows = []
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average "
              f"before: {os.getloadavg()[0]:.1f}")
        quiet = interleaved(fns, args.repeats)
        stop = mp.Event()
        spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(2)]
        for p in spinners:
            p.start()
        try:
            busy = interleaved(fns, args.repeats)
        finally:
            stop.set()
            for p in spinners:
                p.join()
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        base_q, base_b = quiet["eager (before)"], busy["eager (before)"]
        ort_q, ort_b = quiet["onnx runtime (default now)"], busy["onnx runtime (default now)"]
        n = len(xs)
        for k in fns:
            rows.append([k, n / quiet[k], quiet[k] / n, quiet[k] / base_q, quiet[k] / ort_q,
                         n / busy[k], busy[k] / n, busy[k] / base_b, busy[k] / ort_b])
    print_table(["model only, 512x512, batch 1", "slices/s", "s/slice", "x eager time",
                 "x onnx time", "busy: slices/s", "busy: s/slice", "busy: x eager",
                 "busy: x onnx"], rows)
    if not args.no_monai:
        from monai.inferers import sliding_window_inference

        def sliding():
            return [torch.sigmoid(sliding_window_inference(x, (256, 256), 4, monai_net,
                                                           overlap=0.25, mode="gaussian"))
                    for x in xs]

        with torch.inference_mode():
            sw = interleaved({"eager": fns["eager (before)"],
                              "onnx": fns["onnx runtime (default now)"],
                              "sliding": sliding}, args.repeats)
        print(f"\nseparately: MONAI sliding window (256x256, overlap 0.25) of BasicUNet "
              f"{n / sw['sliding']:.2f} slices/s; its time / eager "
              f"{sw['sliding'] / sw['eager']:.2f}, / onnx {sw['sliding'] / sw['onnx']:.2f}")
    pipe = interleaved({"torch": lambda: eager.probability(imgs),
                        "onnx": lambda: onnx.probability(imgs)}, args.repeats)
    print(f"\nwhole Predictor.probability ({n} slices, normalise + model): torch "
          f"{n / pipe['torch']:.2f} slices/s, onnx {n / pipe['onnx']:.2f} slices/s "
          f"(onnx time / torch time {pipe['onnx'] / pipe['torch']:.2f})")


if __name__ == "__main__":
    main()

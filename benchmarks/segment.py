"""Segmenting one slice: our Predictor vs plain eager PyTorch vs MONAI's sliding-window pipeline.

    python benchmarks/segment.py [--repeats 5]

All on this CPU with the default thread count, in the same process, interleaved:
- ours: ``Predictor.probability`` (normalise, then the default CPU backend: ONNX Runtime, see
  benchmarks/cpu_backends.py for it against eager PyTorch and torch.jit.freeze; whole image)
- eager: the same weights called plainly (``torch.no_grad``, default memory layout)
- monai: ``monai.inferers.sliding_window_inference`` (256x256 windows, overlap 0.25, batch 4)
  with a MONAI ``BasicUNet`` of the same channel widths (16, 32, 64, 128, 256), as MONAI's
  tutorials run 2D inference; and the same pipeline on *our* weights, whose masks are compared
  with ours (Dice) to show the speed is not bought with accuracy.
The model is the study's U-Net (base 16, 4 levels) with seeded random weights; speed does not
depend on the weights. FLOPs are counted by ``torch.utils.flop_counter``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _bench import interleaved, print_table
from peak import peaks

from napari_brainseg.model import UNet, UNetConfig
from napari_brainseg.predict import Predictor, SegmentOptions
from napari_brainseg.synthetic import make_phantom


def gflop(model: torch.nn.Module, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(x)
    return fc.get_total_flops() / 1e9 / x.shape[0]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * (a & b).sum() / s)


def main() -> None:
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import BasicUNet

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_filters=16)).eval()
    eager = UNet(UNetConfig(base_filters=16)).eval()
    eager.load_state_dict(model.state_dict())
    monai_net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=1,
                          features=(16, 32, 64, 128, 256, 16)).eval()
    pred = Predictor(model, {"method": "percentile"}, SegmentOptions(tile=None), device="cpu")
    pred.prepare(wait=True)  # ONNX Runtime (the default CPU path) from the first round
    peak = peaks(args.repeats)["conv peak"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; conv peak "
          f"{peak:.0f} GFLOP/s")
    rows = []
    for shape in ((512, 512), (800, 512)):
        for batch in (1, 8):
            imgs = [make_phantom(shape, "glioma", seed=s, skull=False).image
                    for s in range(batch)]
            x = torch.from_numpy(np.stack([(i - i.mean()) / i.std() for i in imgs])[:, None]
                                 .astype(np.float32))

            def ours(imgs=imgs):
                return pred.probability(imgs)

            def plain(x=x):
                with torch.no_grad():
                    return torch.sigmoid(eager(x))

            def monai(x=x):
                with torch.no_grad():
                    return torch.sigmoid(sliding_window_inference(
                        x, (256, 256), 4, monai_net, overlap=0.25, mode="gaussian"))

            def monai_ours(x=x):
                with torch.no_grad():
                    return torch.sigmoid(sliding_window_inference(
                        x, (256, 256), 4, eager, overlap=0.25, mode="gaussian"))

            t = interleaved({"ours": ours, "eager": plain, "monai": monai,
                             "monai+our weights": monai_ours}, args.repeats)
            g_ours, g_monai = gflop(model, x[:1]), gflop(monai_net, x[:1])
            for name, sec in t.items():
                g = g_monai if name == "monai" else g_ours
                rows.append([f"{shape[0]}x{shape[1]}", batch, name, batch / sec, g,
                             g * batch / sec, f"{100 * g * batch / sec / peak:.0f}%",
                             t["monai"] / sec, t["eager"] / sec])
    print_table(["slice", "batch", "pipeline", "slices/s", "GFLOP/slice", "GFLOP/s",
                 "of conv peak", "x MONAI", "x eager"], rows)
    accuracy(sliding_window_inference)


def accuracy(sliding_window_inference) -> None:
    """Equal accuracy: the shipped demo model through our path and through MONAI's pipeline."""
    from napari_brainseg.preprocess import normalise

    # MONAI's masks below are thresholded at 0.5: ours too, so the comparison is like for like
    # (the built-in model's own default is 0.6, see predict.model_options)
    demo = Predictor.from_checkpoint("demo", SegmentOptions(threshold=0.5, tile=None),
                                     device="cpu")
    demo.prepare(wait=True)
    kinds = ["meningioma", "glioma", "pituitary"]
    phs = [make_phantom((512, 512), kinds[s % 3], seed=500 + s, skull=False) for s in range(9)]
    truth = np.stack([p.tumour > 0 for p in phs])
    ours = np.stack([demo.segment_slice(p.image).mask > 0 for p in phs])
    x = torch.from_numpy(np.stack([normalise(p.image, demo.normalisation) for p in phs])[:, None])
    with torch.no_grad():
        prob = torch.sigmoid(sliding_window_inference(x, (256, 256), 4, demo.model.float(),
                                                      overlap=0.25, mode="gaussian"))
        whole = torch.sigmoid(sliding_window_inference(x, tuple(x.shape[-2:]), 1,
                                                       demo.model.float()))
    monai = prob.numpy()[:, 0] > 0.5
    monai_whole = whole.numpy()[:, 0] > 0.5
    print(f"\nAccuracy, demo model on 9 held-out 512x512 phantoms (pooled Dice vs truth): "
          f"ours {dice(ours, truth):.4f} (with its post-processing); MONAI whole image "
          f"{dice(monai_whole, truth):.4f}, agreement with ours {dice(ours, monai_whole):.4f}; "
          f"MONAI sliding window 256² {dice(monai, truth):.4f}, agreement with ours "
          f"{dice(ours, monai):.4f} (windows a quarter of the slice: the built-in model was "
          "trained on whole slices and loses their context). The MONAI rows are the network "
          "alone on the stored pixels; ours resamples to the model's 1 mm grid and applies the "
          "min-enhancement rule, hole filling and the small-component filter")

if __name__ == "__main__":
    main()

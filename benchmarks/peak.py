"""Peak fp32 GFLOP/s of this CPU: a 2048x2048 matmul and a 3x3 conv (64 -> 64 channels, 256x256).

    python benchmarks/peak.py

The physical reference the segmentation benchmark divides by (default torch thread count).
"""

from __future__ import annotations

import torch
from _bench import median_seconds, print_table


def peaks(repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of matmul and of the conv in both memory layouts (the best conv is the peak)."""
    torch.manual_seed(0)
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = {"matmul": 2 * n**3 / median_seconds(lambda: a @ b, repeats) / 1e9}
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval()
    x = torch.randn(1, 64, 256, 256)
    flops = 2 * 64 * 64 * 9 * 256 * 256
    with torch.inference_mode():
        out["conv3x3 (NCHW)"] = flops / median_seconds(lambda: conv(x), repeats) / 1e9
        conv_cl = conv.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        out["conv3x3 (channels-last)"] = flops / median_seconds(lambda: conv_cl(x_cl),
                                                                repeats) / 1e9
    out["conv peak"] = max(out["conv3x3 (NCHW)"], out["conv3x3 (channels-last)"])
    return out


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print_table(["kernel", "GFLOP/s"], list(peaks().items()))


if __name__ == "__main__":
    main()

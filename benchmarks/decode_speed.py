"""Heatmap decoding speed on the CPU: MSRA, DARK as poserenet decodes it (blurring only around
each maximum), and DARK on whole maps (its reference formulation), in one run.

    python benchmarks/decode_speed.py [--batch 32] [--threads 1]

Trained-like heatmaps (shifted peak mixtures plus noise), 17 joints at 64x48 (256x192 inputs)
and at PoseReNet's 128x96; prints milliseconds per batch, the ratio to whole-map DARK, and the
largest keypoint difference between the two DARK computations.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_codec import full_map_dark  # noqa: E402

from poserenet.codec import HeatmapCodec  # noqa: E402


def timed(fn, repeat: int = 20) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    for resolution in (1, 2):
        codec = HeatmapCodec((256, 192), (64, 48), sigma=2.0, dark=True).at_resolution(resolution)
        kp = rng.uniform([0, 0], [192, 256], size=(args.batch, 17, 2))
        hm = torch.from_numpy(codec.encode(kp, np.ones(kp.shape[:2]))[0])
        hm = 0.7 * hm + 0.3 * torch.roll(hm, 3, -1) + 0.02 * torch.rand(hm.shape)
        msra = HeatmapCodec(codec.input_hw, codec.heatmap_hw, codec.sigma, dark=False)
        full = timed(lambda c=codec, h=hm: full_map_dark(c, h))
        fast = timed(lambda c=codec, h=hm: c.decode(h))
        plain = timed(lambda c=msra, h=hm: c.decode(h))
        diff = (codec.decode(hm)[0] - full_map_dark(codec, hm)).abs().max().item()
        h, w = codec.heatmap_hw
        print(f"{args.batch} x 17 maps of {h}x{w}, {args.threads} thread(s):")
        print(f"  DARK, whole maps       {full:8.2f} ms")
        print(f"  DARK, poserenet        {fast:8.2f} ms  {full / fast:6.1f}x faster  (max difference {diff:.1e} px)")
        print(f"  MSRA (quarter offset)  {plain:8.2f} ms  {full / plain:6.1f}x faster")


if __name__ == "__main__":
    main()

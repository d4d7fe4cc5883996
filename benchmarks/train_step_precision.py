"""Training-step speed on the CPU in float32 and bfloat16 autocast, contiguous and channels_last,
as ratios against float32 contiguous, in one run.

    python benchmarks/train_step_precision.py [--model simplebaseline_r18] [--input 128x96] [--batch 32] [--steps 5]

Forward + backward + Adam step on a batch of random crops already in memory (the data pipeline
is measured by benchmarks/train_throughput.py). Whether bfloat16 keeps the accuracy is a
training run: `poserenet train lspet_simplebaseline_r18_128x96 --set train.amp=bf16` against the
same run in float32 (the README has both).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from poserenet import create_model
from poserenet.loss import JointsMSELoss


def step_seconds(args: argparse.Namespace, amp: str, layout: str, x: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> float:
    """Median seconds of one training step of a fresh model in this precision and layout."""
    model = create_model(args.model, 17).train()
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    images = x.contiguous(memory_format=fmt)
    times = []
    for i in range(args.steps + 1):  # the first is a warm-up
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
            out = model(images)
        loss = JointsMSELoss()(out.float(), target, weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="simplebaseline_r18")
    p.add_argument("--input", default="128x96")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    h, w = (int(v) for v in args.input.split("x"))
    print(f"{args.model} at {h}x{w}, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")  # fmt: skip
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, h, w)
    target = torch.rand(args.batch, 17, h // 4, w // 4)
    weight = torch.ones(args.batch, 17)
    rates = {}
    for amp in ("fp32", "bf16"):
        for layout in ("contiguous", "channels_last"):
            rates[(amp, layout)] = args.batch / step_seconds(args, amp, layout, x, target, weight)
    base = rates[("fp32", "contiguous")]
    for (amp, layout), r in rates.items():
        print(f"{amp:<5} {layout:<14} {r:7.1f} samples/s  ({r / base:.2f}x)")


if __name__ == "__main__":
    main()

"""CPU latency of PoseReNet on top of a backbone, as a ratio in one run.

    python benchmarks/poserenet_overhead.py [--model hrnet_w32] [--input 256x192] [--batch 1 8] [--repeat 10]

Each variant (the backbone alone, then the backbone + PoseReNet with each aggregation) is timed
in eval mode under torch.inference_mode, interleaved round by round so that machine noise falls
on all alike; the median over rounds is reported with its ratio to the backbone alone, beside
the parameter and GFLOP ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from poserenet import create_model
from poserenet.complexity import measure
from poserenet.models import AGGREGATIONS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="hrnet_w32")
    p.add_argument("--input", default="256x192")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeat", type=int, default=10, help="timed rounds per variant")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    hw = tuple(int(v) for v in args.input.split("x"))
    torch.manual_seed(0)
    variants = {"backbone": create_model(args.model, 17).eval()}
    for agg in AGGREGATIONS:
        m = create_model(args.model, 17, poserenet={"aggregation": agg}).eval()
        m.backbone.load_state_dict(variants["backbone"].state_dict())
        variants[f"+PoseReNet ({agg})"] = m
    cost = {name: measure(m, hw) for name, m in variants.items()}
    base = cost["backbone"]
    print(f"{args.model} at {hw[0]}x{hw[1]}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}")
    print(f"{'variant':<26} {'params':>8} {'GFLOPs':>7} | " + " | ".join(f"batch {b}: ms (ratio)" for b in args.batch))
    rows = {name: [] for name in variants}
    for b in args.batch:
        x = torch.randn(b, 3, *hw)
        times = {name: [] for name in variants}
        with torch.inference_mode():
            for m in variants.values():  # warm-up
                m(x)
            for _ in range(args.repeat):
                for name, m in variants.items():
                    t = time.perf_counter()
                    m(x)
                    times[name].append(time.perf_counter() - t)
        ref = statistics.median(times["backbone"])
        for name in variants:
            med = statistics.median(times[name])
            rows[name].append(f"{1000 * med:9.1f} ({med / ref:.3f}x)")
    for name, cells in rows.items():
        c = cost[name]
        print(f"{name:<26} {c.params / base.params:7.4f}x {c.gflops / base.gflops:6.3f}x | " + " | ".join(cells))


if __name__ == "__main__":
    main()

"""Which bounds training: the data pipeline or the training step? Samples/s of each, in one run.

    python benchmarks/train_throughput.py [--model simplebaseline_r50] [--input 256x192] [--workers 0 1 2]

Data: the training DataLoader of LSPET (../shared/data/lspet; read, crop, augment, encode
targets, collate) with each worker count, on its own. Training: forward + backward + Adam step
of the model on a batch already in memory. Also on a GPU (CUDA) when one is present, with
--amp bf16 to see what mixed precision buys.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from poserenet.config import load_config
from poserenet.distributed import EpochSampler
from poserenet.loss import JointsMSELoss
from poserenet.pipeline import build_dataset, build_meta, build_model, load_split
from poserenet.train import supervised_loss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="simplebaseline_r50")
    p.add_argument("--input", default="256x192")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batches", type=int, default=20, help="batches timed for the data pipeline")
    p.add_argument("--steps", type=int, default=3, help="training steps timed")
    p.add_argument("--amp", default="none", choices=["none", "bf16"])
    p.add_argument("--lspet", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "lspet"))
    args = p.parse_args()
    h, w = (int(v) for v in args.input.split("x"))
    cfg = load_config("lspet_simplebaseline_r18_128x96", [f"data.root={args.lspet}", f"model.name={args.model}", f"data.input_hw=[{h}, {w}]",
                                                          "codec.sigma=2.0"])  # fmt: skip
    meta = build_meta(cfg)
    ds = build_dataset(cfg, meta, load_split(cfg, meta, "train"), train=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"{args.model} at {h}x{w}, batch {args.batch}, {device}, {torch.get_num_threads()} threads; LSPET {len(ds)} people")

    data_rates = {}
    for workers in args.workers:
        loader = DataLoader(ds, args.batch, sampler=EpochSampler(len(ds)), num_workers=workers, drop_last=True,
                            persistent_workers=workers > 0, pin_memory=device.type == "cuda")  # fmt: skip
        it = iter(loader)
        next(it)  # start the workers
        t = time.perf_counter()
        for _ in range(args.batches):
            batch = next(it)
        data_rates[workers] = args.batches * args.batch / (time.perf_counter() - t)
        print(f"data pipeline, {workers} worker(s): {data_rates[workers]:8.1f} samples/s")

    model = build_model(cfg, meta).to(device).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    images = batch["image"].to(device)
    amp = torch.bfloat16 if args.amp == "bf16" else None

    def step() -> None:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out = model(images)
        loss = supervised_loss(out, batch, JointsMSELoss(), {}, device)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_rate = args.steps * args.batch / (time.perf_counter() - t)
    print(f"training steps ({args.amp}):      {train_rate:8.1f} samples/s")
    best = max(data_rates.values())
    bound = "the training step" if train_rate < best else "the data pipeline"
    print(f"bound by {bound}: data/train = {best / train_rate:.1f}x with the best worker count")


if __name__ == "__main__":
    main()

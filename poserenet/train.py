"""Training: Adam + multi-step LR, a checkpoint every epoch, `--resume`, validation, logs.

Files in the run directory (all written atomically, so an interrupted run never leaves a
half-written file): `config.yaml`, `last.pth`, `best.pth` (best val AP), `log.jsonl` (one line
per epoch), `results_val.json` (COCO keypoint results) and `metrics.json`.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from .checkpoint import read_training_checkpoint, save_atomic
from .config import Config, save_config
from .errors import PoseDataError
from .evaluate import evaluate_model
from .loss import JointsMSELoss
from .pipeline import build_dataset, build_meta, build_model, check_output_size, load_split, resolve_device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def supervised_loss(
    outputs: torch.Tensor | dict[str, torch.Tensor],
    batch: dict[str, torch.Tensor],
    criterion: nn.Module,
    output_weights: dict[str, float],
    device: torch.device,
) -> torch.Tensor:
    """Sum of the weighted losses of every supervised output, each against the target of its
    resolution (the batch holds `target`, `target_1`, ... at 1x, 2x, ...)."""
    if not isinstance(outputs, dict):
        outputs = {"heatmaps": outputs}
    targets = {}
    for key in batch:
        if key.startswith("target") and not key.startswith("target_weight"):
            t = batch[key]
            targets[tuple(t.shape[-2:])] = (t, batch[key.replace("target", "target_weight", 1)])
    total = torch.zeros((), device=device)
    for name, pred in outputs.items():
        w = output_weights.get(name, 1.0)
        if w == 0:
            continue
        if tuple(pred.shape[-2:]) not in targets:
            raise ValueError(f"output {name!r} has {tuple(pred.shape[-2:])} heatmaps; targets exist for {sorted(targets)}")
        t, tw = targets[tuple(pred.shape[-2:])]
        total = total + w * criterion(pred, t.to(device, non_blocking=True), tw.to(device, non_blocking=True))
    return total


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    device: torch.device,
    desc: str,
    output_weights: dict[str, float],
    progress: bool = True,
) -> dict[str, float]:
    model.train()
    total, count, start = 0.0, 0, time.perf_counter()
    bar = tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch")
    for batch in bar:
        images = batch["image"].to(device, non_blocking=True)
        loss = supervised_loss(model(images), batch, criterion, output_weights, device)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: the loss became {loss.item()}; lower train.lr or check the data")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = images.shape[0]
        total += loss.item() * n
        count += n
        bar.set_postfix(loss=f"{total / count:.2e}", img_s=f"{count / (time.perf_counter() - start):.0f}")
    elapsed = time.perf_counter() - start
    return {"loss": total / max(count, 1), "images": count, "seconds": elapsed, "images_per_s": count / max(elapsed, 1e-9)}


def train(
    cfg: Config,
    resume: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    on_start: Callable[[nn.Module, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train and validate as `cfg` says; returns the last validation metrics.

    `resume` continues from a checkpoint written by an earlier run (`last.pth`).
    `on_start(model, context)` is called once before the first epoch (the demo uses it to
    score the untrained model).
    """
    seed_everything(cfg.train.seed)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    out_dir = cfg.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "config.yaml")

    meta = build_meta(cfg)
    model = build_model(cfg, meta).to(device)  # before the data: config mistakes surface at once
    check_output_size(model, cfg)
    train_data = load_split(cfg, meta, "train")
    val_data = load_split(cfg, meta, "val")
    if not train_data.instances:
        raise PoseDataError(f"{train_data.ann_file}: no people with labelled keypoints to train on")
    train_ds = build_dataset(cfg, meta, train_data, train=True)
    log(f"data: {len(train_ds)} train people ({train_data.ann_file}), {len(val_data.instances)} val people ({val_data.ann_file})")

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(cfg.train.lr_steps), cfg.train.lr_factor)
    criterion = JointsMSELoss()
    start_epoch, best_ap, metrics = 0, -math.inf, {}
    if resume:
        ckpt = read_training_checkpoint(resume)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch, best_ap, metrics = ckpt["epoch"], ckpt.get("best_ap", -math.inf), ckpt.get("metrics", {})
        if "rng" in ckpt:
            torch.set_rng_state(ckpt["rng"])
        log(f"resumed from {resume} at epoch {start_epoch}")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {cfg.model.name} {cfg.model.kwargs or ''} {n_params / 1e6:.2f}M params, input {cfg.data.input_hw[0]}x{cfg.data.input_hw[1]}, device {device}")
    if on_start is not None:
        on_start(model, {"meta": meta, "val_data": val_data, "train_data": train_data, "device": device})

    for epoch in range(start_epoch, cfg.train.epochs):
        train_ds.set_epoch(epoch)
        shuffle = torch.Generator().manual_seed(cfg.train.seed * 100003 + epoch)
        loader = DataLoader(
            train_ds,
            batch_size=cfg.train.batch_size,
            shuffle=True,
            generator=shuffle,
            num_workers=cfg.data.num_workers,
            pin_memory=device.type == "cuda",
            drop_last=len(train_ds) > cfg.train.batch_size,
        )
        lr = optimizer.param_groups[0]["lr"]
        desc = f"epoch {epoch + 1}/{cfg.train.epochs}"
        stats = train_one_epoch(model, loader, optimizer, criterion, device, desc, cfg.loss.output_weights, progress)
        scheduler.step()
        last = epoch + 1 == cfg.train.epochs
        record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, **{f"train_{k}": v for k, v in stats.items()}}
        msg = f"epoch {epoch + 1}/{cfg.train.epochs}  lr {lr:.1e}  loss {stats['loss']:.3e}  {stats['images_per_s']:.0f} img/s"
        evaluated = last or (epoch + 1) % cfg.train.val_every == 0
        if evaluated:
            metrics = evaluate_model(model, cfg, meta, val_data, device, out_dir, progress)
            record.update({f"val_{k}": v for k, v in metrics.items()})
            msg += f"  val AP {100 * metrics['AP']:.1f}  PCK@{cfg.eval.pck_threshold:g} {100 * metrics[f'PCK@{cfg.eval.pck_threshold:g}']:.1f}"
        ckpt = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch + 1,
            "config": cfg.to_dict(),
            "keypoints": list(meta.keypoints),
            "metrics": metrics,
            "best_ap": best_ap,
            "rng": torch.get_rng_state(),
        }
        if evaluated and metrics["AP"] > best_ap:
            best_ap = ckpt["best_ap"] = metrics["AP"]
            save_atomic(ckpt, out_dir / "best.pth")
        save_atomic(ckpt, out_dir / "last.pth")
        with open(out_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        log(msg)
    return metrics

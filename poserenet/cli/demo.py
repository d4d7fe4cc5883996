"""`poserenet demo`: synthetic data -> train a small model on the CPU -> metrics and a picture."""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .common import add_overrides, print_table

if TYPE_CHECKING:
    import torch

    from ..config import Config

DEMO_CONFIG = "synth_r18slim_128x96_dark"


def cmd_demo(args: argparse.Namespace) -> int:
    """Synthetic data (cached) -> train a small model for a few minutes -> evaluate -> PNG."""
    from ..config import load_config
    from ..evaluate import evaluate_model, mean_pose_baseline, score, to_coco_results
    from ..synth import generate, is_generated
    from ..train import train

    overrides = [f"data.root={args.data}", f"train.out_dir={args.out}"] + args.overrides
    if args.epochs:
        overrides.append(f"train.epochs={args.epochs}")
    cfg = load_config(DEMO_CONFIG, overrides)
    t0 = time.perf_counter()
    if not is_generated(args.data, args.num_train, args.num_val, args.seed):
        print(f"generating synthetic data in {args.data} ({args.num_train} train + {args.num_val} val images)")
        generate(args.data, args.num_train, args.num_val, args.seed, progress=not args.quiet)
    else:
        print(f"using cached synthetic data in {args.data}")

    before: dict[str, float] = {}
    baseline: dict[str, float] = {}

    def score_baselines(model: torch.nn.Module, ctx: dict[str, Any]) -> None:
        meta, val = ctx["meta"], ctx["val_data"]
        before.update(evaluate_model(model, cfg, meta, val, ctx["device"], progress=False))
        coords, scores = mean_pose_baseline(ctx["train_data"], val)
        results = to_coco_results(val.instances, coords, scores, meta, tuple(cfg.data.input_hw), nms="none")
        baseline.update(score(val, meta, results, coords, cfg.eval.pck_threshold))
        print(f"untrained model: val AP {100 * before['AP']:.1f}; mean pose in each box: val AP {100 * baseline['AP']:.1f}")

    t_train = time.perf_counter()
    after = train(cfg, progress=not args.quiet, on_start=score_baselines)
    minutes = (time.perf_counter() - t_train) / 60
    png = _draw_predictions(cfg, Path(args.out) / "predictions.png", n=args.images)
    print()
    rows = [
        {"run": "untrained", **before},
        {"run": "mean pose in each box", **baseline},
        {"run": f"trained {cfg.train.epochs} epochs ({minutes:.1f} min)", **after},
    ]
    print_table(rows, cfg)
    print(f"\nval: {cfg.data.path(cfg.data.val_ann)} (ground-truth boxes, flip test {'on' if cfg.eval.flip_test else 'off'})")
    print(f"predictions drawn: {png}")
    print(f"checkpoint: {cfg.out_dir / 'last.pth'}   total time {(time.perf_counter() - t0) / 60:.1f} min")
    return 0


def _draw_predictions(cfg: Config, path: Path, n: int = 12) -> Path:
    """Draw the predictions of `results_val.json` on the first `n` val images."""
    from ..datasets import read_image
    from ..pipeline import build_meta
    from ..visualize import prediction_grid, save_rgb

    meta = build_meta(cfg)
    results = json.loads((cfg.out_dir / "results_val.json").read_text())
    gt = json.loads(cfg.data.path(cfg.data.val_ann).read_text())
    by_image: dict[int, list] = defaultdict(list)
    for r in results:
        kp = np.asarray(r["keypoints"], dtype=np.float64).reshape(-1, 3)
        by_image[r["image_id"]].append((kp[:, :2], kp[:, 2]))
    shown = [img for img in gt["images"] if img["id"] in by_image][:n]
    images = [read_image(str(cfg.data.path(cfg.data.val_images) / img["file_name"])) for img in shown]
    grid = prediction_grid(images, [by_image[img["id"]] for img in shown], meta)
    save_rgb(path, grid)
    return path


def add_commands(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("demo", help="synthetic data -> train a small model on the CPU -> metrics and a picture")
    d.add_argument("--out", default="runs/demo", help="run directory (default: runs/demo)")
    d.add_argument("--data", default="data/synth", help="synthetic data cache (default: data/synth)")
    d.add_argument("--num-train", type=int, default=3000, help="synthetic training images")
    d.add_argument("--num-val", type=int, default=300, help="synthetic validation images")
    d.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    d.add_argument("--epochs", type=int, default=0, help="override the demo config's epochs")
    d.add_argument("--images", type=int, default=12, help="validation images to draw")
    d.add_argument("--quiet", action="store_true")
    add_overrides(d)
    d.set_defaults(func=cmd_demo)

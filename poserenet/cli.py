"""Command line: `poserenet train|eval|demo|data`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .config import Config, load_config
from .errors import ConfigError, PoseDataError

DEMO_CONFIG = "synth_r18slim_128x96_dark"
TABLE_COLUMNS = ["run", "AP", "AP50", "AP75", "APM", "APL", "AR", "PCK@0.2"]


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=10 (repeatable)")


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    cfg = load_config(args.config, args.overrides)
    resume = args.resume
    if resume == "auto":
        resume = cfg.out_dir / "last.pth"
    metrics = train(cfg, resume=resume, progress=not args.quiet)
    _print_table([{"run": cfg.name, **metrics}], cfg)
    print(f"run directory: {cfg.out_dir}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .checkpoint import load_weights, read_state_dict
    from .pipeline import build_meta, build_model, load_split, resolve_device
    from .train import evaluate_model

    cfg = load_config(args.config, args.overrides)
    if args.no_flip:
        cfg.eval.flip_test = False
    meta = build_meta(cfg)
    model = build_model(cfg, meta)
    load_weights(model, read_state_dict(args.checkpoint), source=f"{args.checkpoint} ({cfg.model.name}, {cfg.data.keypoints})")
    device = resolve_device(cfg.train.device)
    data = load_split(cfg, meta, "val")
    # Beside the checkpoint, in a folder of its own: the training run's own files stay as they are.
    out_dir = Path(args.out) if args.out else Path(args.checkpoint).parent / f"eval_{Path(args.checkpoint).stem}"
    metrics = evaluate_model(model.to(device), cfg, meta, data, device=device, out_dir=out_dir, progress=not args.quiet)
    print(f"{cfg.data.path(cfg.data.val_ann)}: {len(data.instances)} people, ground-truth boxes, flip test {'on' if cfg.eval.flip_test else 'off'}")
    _print_table([{"run": f"{cfg.name} ({Path(args.checkpoint).name})", **metrics}], cfg)
    print(f"results: {out_dir / 'results_val.json'}  metrics: {out_dir / 'metrics.json'}")
    return 0


def _print_table(rows: list[dict[str, Any]], cfg: Config) -> None:
    from .evaluate import format_table

    pck_key = f"PCK@{cfg.eval.pck_threshold:g}"
    cols = [c if c != "PCK@0.2" else pck_key for c in TABLE_COLUMNS]
    print(format_table(rows, cols))


def cmd_complexity(args: argparse.Namespace) -> int:
    """Params, GFLOPs (official HRNet counting) and true GMACs, with and without PoseReNet."""
    from dataclasses import replace

    from .complexity import measure
    from .models import MODELS, PoseReNetConfig, create_model
    from .pipeline import build_meta

    rows = []
    for spec in args.models:
        if spec in MODELS:
            name, kwargs, k, hw, plugin = spec, {}, 17, (256, 192), PoseReNetConfig(enabled=True)
        else:
            cfg = load_config(spec, args.overrides)
            name, kwargs, hw = cfg.model.name, cfg.model.kwargs, tuple(cfg.data.input_hw)
            k = build_meta(cfg).num_keypoints
            plugin = replace(cfg.model.poserenet, enabled=True)
        if args.input:
            hw = _parse_hw(args.input)
        for with_plugin in (False, True):
            c = measure(create_model(name, k, poserenet=plugin if with_plugin else None, **kwargs), hw)
            rows.append({
                "model": name, "input": f"{hw[0]}x{hw[1]}", "poserenet": with_plugin,
                "params_m": round(c.params_m, 3), "gflops": round(c.gflops, 3), "gmacs": round(c.gmacs, 3),
            })  # fmt: skip
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    from .evaluate import format_table

    shown = [{**r, "poserenet": "+" if r["poserenet"] else "-", "params_m": f"{r['params_m']:.2f}",
              "gflops": f"{r['gflops']:.2f}", "gmacs": f"{r['gmacs']:.2f}"} for r in rows]  # fmt: skip
    print(format_table(shown, ["model", "input", "poserenet", "params_m", "gflops", "gmacs"]))
    print("gflops: multiply-adds / 1024^3 as the official HRNet code counts them (a transposed convolution "
          "counted at every output pixel); gmacs: true multiply-adds / 1e9")  # fmt: skip
    return 0


def _parse_hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        return h, w
    except ValueError:
        raise ConfigError(f"--input {text}: expected HEIGHTxWIDTH, e.g. 256x192") from None


def cmd_data_synth(args: argparse.Namespace) -> int:
    from .synth import generate

    paths = generate(args.out, args.num_train, args.num_val, args.seed, progress=not args.quiet)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Synthetic data (cached) -> train a small model for a few minutes -> evaluate -> PNG."""
    from .evaluate import mean_pose_baseline, score, to_coco_results
    from .pipeline import load_split
    from .synth import generate, is_generated
    from .train import evaluate_model, train

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
        before.update(evaluate_model(model, cfg, meta, val, ctx["val_ds"], ctx["device"], progress=False))
        coords, scores = mean_pose_baseline(load_split(cfg, meta, "train"), val)
        baseline.update(score(val, meta, coords, scores, to_coco_results(val, coords, scores), cfg.eval.pck_threshold))
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
    _print_table(rows, cfg)
    print(f"\nval: {cfg.data.path(cfg.data.val_ann)} (ground-truth boxes, flip test {'on' if cfg.eval.flip_test else 'off'})")
    print(f"predictions drawn: {png}")
    print(f"checkpoint: {cfg.out_dir / 'last.pth'}   total time {(time.perf_counter() - t0) / 60:.1f} min")
    return 0


def _draw_predictions(cfg: Config, path: Path, n: int = 12) -> Path:
    """Draw the predictions of `results_val.json` on the first `n` val images."""
    from .datasets import read_image
    from .pipeline import build_meta
    from .visualize import prediction_grid, save_rgb

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="poserenet", description="Top-down 2D human pose estimation with the PoseReNet plug-in.")
    p.add_argument("--version", action="version", version=f"poserenet {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train (and validate) a model from a config")
    t.add_argument("config", help="a YAML config file, or the name of a shipped one")
    t.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                   help="continue from a checkpoint (default: the run directory's last.pth)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_overrides(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a checkpoint on the config's validation set")
    e.add_argument("config")
    e.add_argument("checkpoint")
    e.add_argument("--out", help="where to write results_val.json and metrics.json (default: eval_<checkpoint name>/ beside it)")
    e.add_argument("--no-flip", action="store_true", help="no flip test")
    e.add_argument("--quiet", action="store_true")
    _add_overrides(e)
    e.set_defaults(func=cmd_eval)

    d = sub.add_parser("demo", help="synthetic data -> train a small model on the CPU -> metrics and a picture")
    d.add_argument("--out", default="runs/demo", help="run directory (default: runs/demo)")
    d.add_argument("--data", default="data/synth", help="synthetic data cache (default: data/synth)")
    d.add_argument("--num-train", type=int, default=3000, help="synthetic training images")
    d.add_argument("--num-val", type=int, default=300, help="synthetic validation images")
    d.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    d.add_argument("--epochs", type=int, default=0, help="override the demo config's epochs")
    d.add_argument("--images", type=int, default=12, help="validation images to draw")
    d.add_argument("--quiet", action="store_true")
    _add_overrides(d)
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser("complexity", help="params and GFLOPs of models or configs, with and without PoseReNet")
    c.add_argument("models", nargs="+", metavar="CONFIG_OR_MODEL_NAME")
    c.add_argument("--input", help="input size HxW (default: the config's, or 256x192 for a model name)")
    c.add_argument("--json", action="store_true", help="one JSON object per row")
    _add_overrides(c)
    c.set_defaults(func=cmd_complexity)

    data = sub.add_parser("data", help="dataset tools")
    dsub = data.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("synth", help="write the synthetic person-keypoint dataset (COCO format)")
    s.add_argument("--out", required=True)
    s.add_argument("--num-train", type=int, default=3000)
    s.add_argument("--num-val", type=int, default=300)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_data_synth)
    return p


def _one_line(e: Exception) -> str:
    """The message itself, also for an error re-raised from a DataLoader worker (whose text
    carries the worker's traceback)."""
    text = str(e)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if last.startswith(("poserenet.", "FileNotFoundError")) else last
    return text


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (PoseDataError, ConfigError, FileNotFoundError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

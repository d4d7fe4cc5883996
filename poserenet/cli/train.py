"""`poserenet train` and `poserenet boost`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from .common import add_overrides, format_table, print_table


def cmd_train(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..train import train

    cfg = load_config(args.config, args.overrides)
    resume = args.resume
    if resume == "auto":
        resume = cfg.out_dir / "last.pth"
    metrics = train(cfg, resume=resume, progress=not args.quiet)
    print_table([{"run": cfg.name, **metrics}], cfg)
    print(f"run directory: {cfg.out_dir}")
    return 0


def cmd_boost(args: argparse.Namespace) -> int:
    """Attach PoseReNet to a trained model (starting exactly where it is), train it, and report
    the base and boosted metrics in one table."""
    from ..checkpoint import load_weights, read_checkpoint_file, read_state_dict
    from ..config import config_from_dict, load_config
    from ..evaluate import evaluate_model
    from ..files import write_json_atomic
    from ..models import PoseReNetConfig, create_model
    from ..pipeline import build_meta, load_split, resolve_device
    from ..train import train

    base = Path(args.base)
    overrides = ["model.poserenet.enabled=true", "model.poserenet.zero_init=true", f"model.pretrained={base.resolve()}",
                 "model.pretrained_scope=all", f"train.freeze={args.freeze}", f"train.backbone_lr_factor={args.backbone_lr_factor}",
                 f"model.poserenet.aggregation={args.aggregation or PoseReNetConfig.aggregation}", *(["train.epochs=%d" % args.epochs] if args.epochs else [])]  # fmt: skip
    # A backbone that trains keeps its own heatmaps supervised (otherwise the plug-in's lifted
    # loss pulls it away from what made it good, measured on LSPET); a frozen one learns nothing
    # from that loss, so it is left out of the reported loss.
    overrides.append(f"loss.output_weights={{backbone: {0.0 if args.freeze == 'backbone' else 1.0}}}")
    if args.config:
        cfg = load_config(args.config, overrides)
    else:  # our own checkpoints carry their config
        raw = read_checkpoint_file(base)
        if not isinstance(raw, dict) or "config" not in raw:
            raise ConfigError(f"{base}: has no config inside; give --config (the data and model of the base)")
        cfg = config_from_dict(raw["config"], str(base), overrides)
    # A run directory of its own, whatever the base's config says: the base run stays untouched.
    cfg.train.out_dir = args.out or f"runs/{cfg.name}_boost"
    if args.overrides:  # the user's --set come last
        cfg = config_from_dict(cfg.to_dict(), "--set", args.overrides)
    if cfg.out_dir.resolve() == base.resolve().parent:
        raise ConfigError(f"{cfg.out_dir}: is the base model's run directory; boost into another (--out)")
    meta = build_meta(cfg)
    device = resolve_device(cfg.train.device)
    base_model = create_model(cfg.model.name, meta.num_keypoints, **cfg.model.kwargs)
    load_weights(base_model, read_state_dict(base), source=f"{base} (base {cfg.model.name})")
    val = load_split(cfg, meta, "val")
    print(f"scoring the base model on {val.ann_file}")
    before = evaluate_model(base_model.to(device), cfg, meta, val, device, progress=not args.quiet)
    after = train(cfg, progress=not args.quiet)
    pck = f"PCK@{cfg.eval.pck_threshold:g}"
    cols = ["run", "AP", "AP50", "AP75", "APM", "APL", "AR", pck]
    p = cfg.model.poserenet
    rows = [{"run": f"base ({base.name})", **before},
            {"run": f"+ PoseReNet ({p.aggregation}, freeze {cfg.train.freeze}, {cfg.train.epochs} epochs)", **after}]  # fmt: skip
    delta = {"run": "change", **{c: f"{100 * (after[c] - before[c]):+.1f}" for c in cols[1:] if c in before and c in after}}
    print()
    print(format_table(rows + [delta], cols))
    print(f"boxes: {after.get('boxes')}; run directory: {cfg.out_dir}")
    write_json_atomic(cfg.out_dir / "boost.json", {"base": before, "boosted": after, "base_checkpoint": str(base)})
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train (and validate) a model from a config")
    t.add_argument("config", help="a YAML config file, or the name of a shipped one")
    t.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                   help="continue from a checkpoint (default: the run directory's last.pth)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    add_overrides(t)
    t.set_defaults(func=cmd_train)

    bo = sub.add_parser("boost", help="attach PoseReNet to a trained model, train it, compare with the base")
    bo.add_argument("base", metavar="BASE_CHECKPOINT", help="a trained model: ours, or an official HRNet/SimpleBaseline state dict")
    bo.add_argument("--config", help="data, model and training of the boost (default: the base checkpoint's own)")
    bo.add_argument("--freeze", choices=["backbone", "head", "none"], default="backbone",
                    help="backbone: only the plug-in trains (default); head: also the backbone's output layers; none: all")
    bo.add_argument("--backbone-lr-factor", type=float, default=0.1, help="backbone learning rate x this when it trains (default 0.1)")
    bo.add_argument("--aggregation", help="PoseReNet's aggregation: average, gate, lifted or fusion (default: the documented default)")
    bo.add_argument("--epochs", type=int, default=0)
    bo.add_argument("--out", help="run directory (default runs/<config>_boost)")
    bo.add_argument("--quiet", action="store_true")
    add_overrides(bo)
    bo.set_defaults(func=cmd_boost)

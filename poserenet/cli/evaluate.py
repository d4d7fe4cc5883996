"""`poserenet eval`, `metrics`, `table` and `complexity`: scores of checkpoints, results files,
runs and models."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, PoseDataError
from .common import add_overrides, format_table, print_pckh, print_table

if TYPE_CHECKING:
    from ..config import Config


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint (ours, or an official state dict) on the config's validation set or
    on any COCO-style file, with ground-truth or detector boxes."""
    from ..checkpoint import load_weights, read_state_dict
    from ..config import load_config
    from ..evaluate import evaluate_model
    from ..files import write_json_atomic
    from ..pipeline import build_meta, build_model, load_split, resolve_device

    overrides = list(args.overrides)
    if args.ann:
        overrides += [f"data.val_ann={Path(args.ann).resolve()}"]
    if args.images:
        overrides += [f"data.val_images={Path(args.images).resolve()}"]
    if args.det_boxes:
        overrides += ["eval.boxes=detections", f"eval.det_file={Path(args.det_boxes).resolve()}"]
    if args.gt_boxes:
        overrides += ["eval.boxes=ground_truth"]
    if args.flip is not None:
        overrides += [f"eval.flip_test={str(args.flip).lower()}"]
    if args.backend:
        overrides += [f"eval.backend={args.backend}"]
    cfg = load_config(args.config, overrides)
    meta = build_meta(cfg)
    model = build_model(cfg, meta)
    load_weights(model, read_state_dict(args.checkpoint), source=f"{args.checkpoint} ({cfg.model.name}, {cfg.data.keypoints})")
    device = resolve_device(cfg.train.device)
    data = load_split(cfg, meta, "val")
    # Beside the checkpoint, in a folder of its own: the training run's own files stay as they are.
    out_dir = Path(args.out) if args.out else Path(args.checkpoint).parent / f"eval_{Path(args.checkpoint).stem}"

    def show(metrics: dict[str, Any]) -> None:  # before anything is written: a failed write loses no numbers
        print(f"{data.ann_file}: {len(data.instances)} people in {data.num_images} images")
        print(f"boxes: {metrics['boxes']}; flip test {'on' if cfg.eval.flip_test else 'off'}; NMS {cfg.eval.nms}")
        print_table([{"run": f"{cfg.name} ({Path(args.checkpoint).name})", **metrics}], cfg)
        print_pckh([{"run": cfg.name, **metrics}])

    metrics = evaluate_model(model.to(device), cfg, meta, data, device=device, out_dir=out_dir, progress=not args.quiet, on_scored=show)
    if args.json:
        write_json_atomic(args.json, metrics)
    print(f"results: {out_dir / 'results_val.json'}  metrics: {args.json or out_dir / 'metrics.json'}")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    """Score an existing COCO keypoint results file (from any framework) against ground truth."""
    from dataclasses import replace

    from ..annotations import read_coco_file
    from ..files import read_json
    from ..meta import DEFAULT_SIGMA, load_meta, meta_from_coco
    from ..metrics import check_results, coco_keypoint_ap, head_size, match_to_ground_truth, mpii_pckh_table, pck, pck_normalizer

    raw = read_json(args.gt, "ground-truth file")
    meta = load_meta(args.keypoints) if args.keypoints else meta_from_coco(raw, args.gt)
    gt, _, _ = read_coco_file(args.gt, meta, raw)  # the same rules as train and eval
    if not any(not a["iscrowd"] and a["num_keypoints"] > 0 for a in gt["annotations"]):
        raise PoseDataError(f"{args.gt}: no annotated people to evaluate against")
    notes: list[str] = []
    if args.sigmas:
        try:
            sigmas = tuple(float(v) for v in args.sigmas.replace(",", " ").split())
        except ValueError:
            raise ConfigError(f"--sigmas {args.sigmas}: expected numbers separated by commas") from None
        if len(sigmas) != meta.num_keypoints:
            raise ConfigError(f"--sigmas: {len(sigmas)} values for {meta.num_keypoints} keypoints")
        meta = replace(meta, sigmas=sigmas)
    elif meta.sigmas == (DEFAULT_SIGMA,) * meta.num_keypoints:
        notes.append(f"OKS sigmas unknown for {meta.name!r}: {DEFAULT_SIGMA} for every keypoint (give --sigmas)")
    results = check_results(read_json(args.results, "results file"), gt, meta.num_keypoints, args.results, notes)
    row: dict[str, Any] = {"run": Path(args.results).name}
    if args.metric == "coco":
        row.update(coco_keypoint_ap(gt, results, meta.sigmas, args.backend, checked=True))
        cols = ["run", "AP", "AP50", "AP75", "APM", "APL", "AR"]
    else:
        people, pred = match_to_ground_truth(gt, results, meta.sigmas)
        kp = np.array([np.asarray(p["keypoints"], np.float64).reshape(-1, 3) for p in people]).reshape(-1, meta.num_keypoints, 3)
        if args.metric == "pck":
            norm, unit = pck_normalizer(kp, np.array([p["bbox"] for p in people], np.float64), meta.torso)
            key = f"PCK@{args.threshold:g}"
            row[key], per_joint, n = pck(pred, kp, norm, args.threshold)
            notes.append(f"{key}: {n} labelled joints of {len(people)} people, normalised by the {unit}")
            cols = ["run", key]
        else:  # pckh
            missing = [p.get("id") for p in people if "head_box" not in p]
            if missing:
                raise PoseDataError(f"{args.gt}: PCKh needs a 'head_box' per person ({len(missing)} have none; "
                                    "convert MPII annotations with `poserenet data convert mpii` and its gt .mat)")  # fmt: skip
            head = head_size([p["head_box"] for p in people])
            table = mpii_pckh_table(pred, kp[..., :2], kp[..., 2] > 0, head, meta.keypoints)
            row.update({k: v / 100 for k, v in table.items()})
            cols = ["run", *table]
    if args.json:
        print(json.dumps({k: v for k, v in row.items() if k != "run"}))
    else:
        print(format_table([row], cols))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


BACKBONE_NAMES = {"simplebaseline": "SimpleBaseline", "hrnet": "HRNet", "hourglass": "Hourglass"}


def _backbone_label(cfg: Config) -> str:
    family, _, variant = cfg.model.name.partition("_")
    label = f"{BACKBONE_NAMES.get(family, family)}-{variant.upper() if family != 'hourglass' else variant + ' stacks'}"
    return label + ("+Dark" if cfg.codec.dark else "")


def cmd_table(args: argparse.Namespace) -> int:
    """A Markdown table like the paper's Table I (and Table III for PCKh) from evaluated runs."""
    from ..complexity import measure
    from ..config import load_config
    from ..metrics import MPII_GROUPS
    from ..models import create_model
    from ..pipeline import build_meta

    rows, pckh_rows, boxes = [], [], set()
    for run in args.runs:
        run = Path(run)
        metrics_file = run / "metrics.json"
        if not metrics_file.is_file():
            evals = sorted(run.glob("eval_*/metrics.json"), key=lambda p: p.stat().st_mtime)
            if not evals:
                raise PoseDataError(f"{run}: no metrics.json (train or `poserenet eval` the run first)")
            metrics_file = evals[-1]
        cfg_file = next((p for p in (run / "config.yaml", run.parent / "config.yaml") if p.is_file()), None)
        if cfg_file is None:
            raise PoseDataError(f"{run}: no config.yaml beside its metrics")
        cfg = load_config(cfg_file)
        metrics = json.loads(metrics_file.read_text())
        boxes.add(str(metrics.get("boxes", "?")).split(" (")[0])
        cost = measure(create_model(cfg.model.name, build_meta(cfg).num_keypoints, poserenet=cfg.model.poserenet, **cfg.model.kwargs), tuple(cfg.data.input_hw))
        row = {
            "PoseReNet": "+" if cfg.model.poserenet.enabled else "-", "Backbone": _backbone_label(cfg),
            "Input size": f"{cfg.data.input_hw[0]}x{cfg.data.input_hw[1]}", "#Params(M)": f"{cost.params_m:.1f}",
            "GFLOPs": f"{cost.gflops:.1f}", **{k: metrics[k] for k in ("AP", "AP50", "AP75", "APM", "APL", "AR") if k in metrics},
        }  # fmt: skip
        rows.append(row)
        if "PCKh Mean" in metrics:
            name = ("Ours (" if cfg.model.poserenet.enabled else "") + _backbone_label(cfg) + ("+PoseReNet)" if cfg.model.poserenet.enabled else "")
            pckh_rows.append({"Method": name, **{c: metrics[f"PCKh {c}"] for c in [*MPII_GROUPS, "Mean"]}})
    rows.sort(key=lambda r: (r["Backbone"], r["Input size"], r["PoseReNet"]))
    print(format_table(rows, ["PoseReNet", "Backbone", "Input size", "#Params(M)", "GFLOPs", "AP", "AP50", "AP75", "APM", "APL", "AR"]))
    print(f"\nPerson boxes: {', '.join(sorted(boxes))}. GFLOPs counted as the official HRNet code does.")
    if pckh_rows:
        print("\nPCKh@0.5\n" + format_table(pckh_rows, ["Method", *MPII_GROUPS, "Mean"]))
    return 0


def cmd_complexity(args: argparse.Namespace) -> int:
    """Params, GFLOPs (official HRNet counting) and true GMACs, with and without PoseReNet."""
    from dataclasses import replace

    from ..complexity import measure
    from ..config import load_config
    from ..models import MODELS, PoseReNetConfig, create_model
    from ..pipeline import build_meta

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


def add_commands(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("eval", help="evaluate a checkpoint on the config's validation set or any COCO-style file")
    e.add_argument("config")
    e.add_argument("checkpoint", help="a training checkpoint or a state dict (e.g. an official release)")
    e.add_argument("--ann", help="a COCO-style keypoint file to evaluate on instead of the config's val set")
    e.add_argument("--images", help="the image folder of --ann")
    boxes = e.add_mutually_exclusive_group()
    boxes.add_argument("--det-boxes", metavar="FILE", help="crop the people of a COCO detection-results file")
    boxes.add_argument("--gt-boxes", action="store_true", help="crop the annotated boxes")
    e.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None, help="flip test (default: the config's)")
    e.add_argument("--backend", choices=["auto", "pycocotools", "faster-coco-eval", "hotcoco"], help="COCO evaluation backend (auto: hotcoco when installed, else pycocotools)")
    e.add_argument("--json", metavar="OUT", help="also write the metrics JSON here")
    e.add_argument("--out", help="where to write results_val.json and metrics.json (default: eval_<checkpoint name>/ beside it)")
    e.add_argument("--quiet", action="store_true")
    add_overrides(e)
    e.set_defaults(func=cmd_eval)

    m = sub.add_parser("metrics", help="score an existing COCO keypoint results file")
    m.add_argument("gt", metavar="GT_JSON")
    m.add_argument("results", metavar="RESULTS_JSON")
    m.add_argument("--metric", choices=["coco", "pck", "pckh"], default="coco",
                   help="coco: OKS AP/AR; pck: PCK with predictions matched to people by OKS; pckh: MPII's PCKh")
    m.add_argument("--keypoints", help="keypoint set (built-in name or file); default: from the GT categories")
    m.add_argument("--sigmas", help="OKS sigmas, comma-separated (default: the keypoint set's)")
    m.add_argument("--threshold", type=float, default=0.2, help="PCK threshold (default 0.2)")
    m.add_argument("--backend", choices=["auto", "pycocotools", "faster-coco-eval", "hotcoco"], default="auto",
                   help="auto (default): hotcoco when installed and the ids suit it, else pycocotools; the stats are identical")
    m.add_argument("--json", action="store_true", help="print one JSON object")
    m.set_defaults(func=cmd_metrics)

    t = sub.add_parser("table", help="a paper-style Markdown table from evaluated run directories")
    t.add_argument("runs", nargs="+", metavar="RUN_DIR")
    t.set_defaults(func=cmd_table)

    c = sub.add_parser("complexity", help="params and GFLOPs of models or configs, with and without PoseReNet")
    c.add_argument("models", nargs="+", metavar="CONFIG_OR_MODEL_NAME")
    c.add_argument("--input", help="input size HxW (default: the config's, or 256x192 for a model name)")
    c.add_argument("--json", action="store_true", help="one JSON object per row")
    add_overrides(c)
    c.set_defaults(func=cmd_complexity)

"""Command line: `poserenet train|eval|demo|data`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .errors import ConfigError, PoseDataError, WriteError

if TYPE_CHECKING:  # torch, the models and configs load only for the commands that use them
    import torch

    from .config import Config

log = logging.getLogger("poserenet")

DEMO_CONFIG = "synth_r18slim_128x96_dark"
TABLE_COLUMNS = ["run", "AP", "AP50", "AP75", "APM", "APL", "AR", "PCK@0.2"]


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=10 (repeatable)")


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
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
    """Evaluate a checkpoint (ours, or an official state dict) on the config's validation set or
    on any COCO-style file, with ground-truth or detector boxes."""
    from .checkpoint import load_weights, read_state_dict
    from .config import load_config
    from .evaluate import evaluate_model
    from .files import write_json_atomic
    from .pipeline import build_meta, build_model, load_split, resolve_device

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
        _print_table([{"run": f"{cfg.name} ({Path(args.checkpoint).name})", **metrics}], cfg)
        _print_pckh([{"run": cfg.name, **metrics}])

    metrics = evaluate_model(model.to(device), cfg, meta, data, device=device, out_dir=out_dir, progress=not args.quiet, on_scored=show)
    if args.json:
        write_json_atomic(args.json, metrics)
    print(f"results: {out_dir / 'results_val.json'}  metrics: {args.json or out_dir / 'metrics.json'}")
    return 0


def _print_pckh(rows: list[dict[str, Any]]) -> None:
    """The MPII table (paper, Table III), when the rows have PCKh."""
    from .metrics import MPII_GROUPS

    cols = [*MPII_GROUPS, "Mean", "Mean@0.1"]
    rows = [{"run": r["run"], **{c: r[f"PCKh {c}"] for c in cols}} for r in rows if "PCKh Mean" in r]
    if rows:
        print("\nPCKh@0.5 (Mean@0.1: PCKh@0.1)")
        print(format_table(rows, ["run", *cols]))


def _print_table(rows: list[dict[str, Any]], cfg: Config) -> None:

    pck_key = f"PCK@{cfg.eval.pck_threshold:g}"
    cols = [c if c != "PCK@0.2" else pck_key for c in TABLE_COLUMNS]
    print(format_table(rows, cols))


def cmd_metrics(args: argparse.Namespace) -> int:
    """Score an existing COCO keypoint results file (from any framework) against ground truth."""
    from dataclasses import replace

    from .annotations import read_coco_file
    from .files import read_json
    from .meta import DEFAULT_SIGMA, load_meta, meta_from_coco
    from .metrics import check_results, coco_keypoint_ap, head_size, match_to_ground_truth, mpii_pckh_table, pck, pck_normalizer

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
    from .complexity import measure
    from .config import load_config
    from .metrics import MPII_GROUPS
    from .models import create_model
    from .pipeline import build_meta

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


def cmd_boost(args: argparse.Namespace) -> int:
    """Attach PoseReNet to a trained model (starting exactly where it is), train it, and report
    the base and boosted metrics in one table."""
    from .checkpoint import load_weights, read_checkpoint_file, read_state_dict
    from .config import config_from_dict, load_config
    from .evaluate import evaluate_model
    from .files import write_json_atomic
    from .models import PoseReNetConfig, create_model
    from .pipeline import build_meta, load_split, resolve_device
    from .train import train

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


def cmd_complexity(args: argparse.Namespace) -> int:
    """Params, GFLOPs (official HRNet counting) and true GMACs, with and without PoseReNet."""
    from dataclasses import replace

    from .complexity import measure
    from .config import load_config
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


def cmd_data_convert(args: argparse.Namespace) -> int:
    from .convert import lsp_to_coco, mpii_to_coco
    from .files import write_json_atomic

    if args.format == "mpii":
        doc = mpii_to_coco(args.input, args.images, args.gt_mat)
    else:
        if not args.images:
            raise ConfigError("data convert lsp needs --images (boxes are clipped to the image size)")
        doc = lsp_to_coco(args.input, args.images, args.name_format)
    write_json_atomic(args.out, doc)
    heads = sum("head_box" in a for a in doc["annotations"])
    print(f"{args.out}: {len(doc['annotations'])} people in {len(doc['images'])} images"
          + (f", {heads} with head boxes" if heads else ""))  # fmt: skip
    return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from .download import fetch

    root = fetch(args.dataset, args.root, args.parts, args.mirror, progress=not args.quiet, keep_archives=args.keep_archives)
    if args.dataset == "coco":
        print(f"done: {root}. For the detector boxes of published COCO results, put "
              "COCO_val2017_detections_AP_H_56_person.json (from the HRNet release) in "
              f"{root / 'person_detection_results'}/")  # fmt: skip
    else:
        print(f"done: {root}")
    return 0


IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def cmd_predict(args: argparse.Namespace) -> int:
    """Keypoints for an image, a folder or a video: drawn copies and a COCO results JSON. People
    come from --boxes, else from the person detector; in a video they are tracked."""
    import cv2
    from tqdm import tqdm

    from .detection import build_detector
    from .files import write_json_atomic
    from .inference import Predictor, read_boxes, track
    from .visualize import draw_person, save_rgb

    src = Path(args.input)
    if not src.exists():
        raise PoseDataError(f"{src}: no such image, folder or video")
    if args.detect_every < 1:
        raise ConfigError(f"--detect-every must be at least 1, got {args.detect_every}")
    boxes = read_boxes(args.boxes, args.ann) if args.boxes else None
    # With --ann, the results carry that file's image ids, so `poserenet metrics ANN results.json` scores them.
    image_ids = _image_ids_by_name(args.ann) if args.ann else {}
    detector = None if boxes is not None else build_detector(args.detector, args.det_score, **(
        {"layout": args.detector_layout} if args.detector not in ("hog", "none") else {}))  # fmt: skip
    predictor = Predictor.from_checkpoint(args.checkpoint, args.config, args.device, fast=not args.no_fast, flip_test=args.flip,
                                          batch_size=args.batch_size, keypoints=args.keypoints, detector=detector,
                                          precision=args.precision)  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    skipped_boxes = unreadable = 0

    def draw(img: np.ndarray, people: list) -> np.ndarray:
        canvas = img.copy()
        for p in people:
            draw_person(canvas, p, predictor.meta, args.threshold, show_scores=args.scores)
        return canvas

    def record(image_id: int, name: str, people: list) -> None:
        for p in people:
            results.append({"image_id": image_id, "category_id": 1, "score": round(p.score, 6), "file_name": name,
                            "keypoints": [round(float(v), 3) for v in p.keypoints.reshape(-1)],
                            "bbox": [round(float(v), 2) for v in p.bbox],
                            **({"track_id": p.track_id} if p.track_id is not None else {})})  # fmt: skip

    if src.suffix.lower() in VIDEO_EXTS:
        cap = cv2.VideoCapture(str(src))
        if not cap.isOpened():
            raise PoseDataError(f"{src}: cannot be opened as a video")
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        video_out = out / f"{src.stem}_pose.mp4"
        writer = None

        def frames():
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

        if boxes is not None:  # the user's boxes per frame, as given
            stream = ((img, people) for img, people, _ in predictor.predict_many((f, boxes.get(str(i), [])) for i, f in enumerate(frames())))
        else:
            stream = track(predictor, frames(), args.detect_every, smooth=not args.no_smooth, fps=fps)
        ids = set()
        for i, (img, people) in enumerate(tqdm(stream, total=n, desc=src.name, unit="frame", disable=args.quiet)):
            if writer is None:
                writer = cv2.VideoWriter(str(video_out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (img.shape[1], img.shape[0]))
            writer.write(cv2.cvtColor(draw(img, people), cv2.COLOR_RGB2BGR))
            record(i, f"{src.name}#{i}", people)
            ids.update(p.track_id for p in people if p.track_id is not None)
        cap.release()
        if writer is None:
            raise PoseDataError(f"{src}: no frames could be read")
        writer.release()
        print(f"video: {video_out}" + (f" ({len(ids)} tracked people)" if ids else ""))
    else:
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTS) if src.is_dir() else [src]
        if not files:
            raise PoseDataError(f"{src}: no images ({', '.join(sorted(IMAGE_EXTS))}) in this folder")

        def images():
            nonlocal unreadable
            from .datasets import read_image

            for f in files:
                try:
                    img = read_image(str(f))
                except PoseDataError:
                    if not src.is_dir():
                        raise
                    unreadable += 1
                    log.warning("skipped unreadable image %s", f)
                    continue
                yield f, img

        named: list[Path] = []

        def items():
            for f, img in images():
                named.append(f)
                yield img, (boxes.get(f.name, []) if boxes is not None else None)

        for i, (img, people, skipped) in enumerate(tqdm(predictor.predict_many(items()), total=len(files), desc=src.name,
                                                        unit="image", disable=args.quiet or len(files) == 1)):  # fmt: skip
            skipped_boxes += skipped
            f = named[i]
            save_rgb(out / f.name if f.suffix.lower() in (".jpg", ".jpeg", ".png") else out / f"{f.stem}.png", draw(img, people))
            record(image_ids.get(f.name, i), f.name, people)
        print(f"drawn images: {out}/ ({len(named)} images)")
    write_json_atomic(out / "results.json", results)
    found = "given boxes" if boxes is not None else (f"{args.detector} detector" if detector is not None else "whole images")
    print(f"results: {out / 'results.json'} ({len(results)} people; {found})")
    if unreadable:
        print(f"skipped {unreadable} unreadable image(s)", file=sys.stderr)
    if skipped_boxes:
        print(f"skipped {skipped_boxes} box(es) outside their image or of no size", file=sys.stderr)
    return 0


def _image_ids_by_name(ann: str) -> dict[str, Any]:
    from .files import read_json

    doc = read_json(ann, "annotation file")
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, list):
        raise PoseDataError(f"{ann}: expected a COCO file with an 'images' list")
    return {img["file_name"]: img["id"] for img in images if isinstance(img, dict) and "file_name" in img and "id" in img}


def cmd_export(args: argparse.Namespace) -> int:
    from .inference import calibration_people, export_onnx

    calibration = calibration_people(args.checkpoint, args.config, args.calibration, args.overrides) if args.int8 else None
    if calibration is not None:
        print(f"int8: calibrating on {len(calibration)} people ({args.calibration or 'the validation people of the checkpoint config'})")
    worst = export_onnx(args.checkpoint, args.onnx, args.config, args.flip, args.opset, int8_calibration=calibration)
    what = "int8 vs float32 PyTorch" if args.int8 else "onnxruntime vs PyTorch"
    print(f"{args.onnx}: keypoints and scores out; {what} on test images: max difference {worst:.2e} px")
    if worst > 1e-3 and not args.int8:
        print("warning: larger than 1e-3 px", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Synthetic data (cached) -> train a small model for a few minutes -> evaluate -> PNG."""
    from .config import load_config
    from .evaluate import evaluate_model, mean_pose_baseline, score, to_coco_results
    from .synth import generate, is_generated
    from .train import train

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

    pr = sub.add_parser("predict", help="keypoints for an image, a folder or a video (drawn, and a COCO results JSON)")
    pr.add_argument("checkpoint", help="a training checkpoint, a state dict (with --config) or an exported .onnx")
    pr.add_argument("input", help="an image, a folder of images or a video file")
    pr.add_argument("--config", help="the config of a checkpoint that has none inside (e.g. an official release)")
    pr.add_argument("--boxes", help="person boxes: {file name or frame: [[x, y, w, h(, score)], ...]} or a COCO detection list (with --ann)")
    pr.add_argument("--ann", help="a COCO file whose image ids name the images: of a COCO detection list (--boxes), and in results.json")
    pr.add_argument("--detector", default="hog",
                    help="finds the people when --boxes gives none: hog (OpenCV's embedded HOG people detector, the default), "
                         "none (the whole image is one person) or an ONNX person detector (YOLOX/RTMDet from mmdeploy, YOLOv8)")
    pr.add_argument("--detector-layout", default="auto", help="ONNX detector output layout: auto, mmdeploy, yolox or yolov8")
    pr.add_argument("--det-score", type=float, help="keep detections scoring at least this (default: 0.3)")
    pr.add_argument("--detect-every", type=int, default=5, help="video: run the detector every N frames, track in between (default 5)")
    pr.add_argument("--no-smooth", action="store_true", help="video: no smoothing of tracked keypoints")
    pr.add_argument("--out", default="predictions", help="output folder (default: predictions/)")
    pr.add_argument("--keypoints", help="refuse a model of another keypoint set than this (name or file)")
    pr.add_argument("--scores", action="store_true", help="write keypoint scores on the drawings")
    pr.add_argument("--threshold", type=float, default=0.3, help="draw keypoints scoring above this (default 0.3)")
    pr.add_argument("--flip", action="store_true", help="flip test (twice the compute)")
    pr.add_argument("--device", default="cpu")
    pr.add_argument("--batch-size", type=int, default=32)
    pr.add_argument("--no-fast", action="store_true", help="plain eager PyTorch (no BatchNorm folding or channels_last)")
    pr.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16: the network in bfloat16 (PyTorch path)")
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(func=cmd_predict)

    ex = sub.add_parser("export", help="ONNX export with the decoding inside (keypoints and scores out)")
    ex.add_argument("checkpoint")
    ex.add_argument("--onnx", required=True, metavar="OUT.onnx")
    ex.add_argument("--config", help="the config of a checkpoint that has none inside")
    ex.add_argument("--flip", action="store_true", help="put the flip test inside the graph")
    ex.add_argument("--opset", type=int, default=17)
    ex.add_argument("--int8", action="store_true", help="quantize the network to int8 (static, calibrated on real people)")
    ex.add_argument("--calibration", help="int8: a folder of person images (default: 64 validation people of the checkpoint's config)")
    _add_overrides(ex)
    ex.set_defaults(func=cmd_export)

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
    _add_overrides(bo)
    bo.set_defaults(func=cmd_boost)

    t = sub.add_parser("table", help="a paper-style Markdown table from evaluated run directories")
    t.add_argument("runs", nargs="+", metavar="RUN_DIR")
    t.set_defaults(func=cmd_table)

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
    cv = dsub.add_parser("convert", help="MPII json/.mat or LSP joints.mat -> COCO-style keypoints")
    cv.add_argument("format", choices=["mpii", "lsp"])
    cv.add_argument("input", help="mpii: the json list (train.json, valid.json); lsp: joints.mat (LSP or LSPET)")
    cv.add_argument("--out", required=True, help="the COCO-style file to write")
    cv.add_argument("--images", help="image folder (mpii: optional, adds image sizes; lsp: required)")
    cv.add_argument("--gt-mat", help="mpii: the evaluation ground truth (gt_valid.mat) whose head boxes PCKh needs")
    cv.add_argument("--name-format", help="lsp: image file names (default im0001.jpg for LSP, im00001.jpg for LSPET)")
    cv.set_defaults(func=cmd_data_convert)
    dl = dsub.add_parser("download", help="official COCO/MPII archives: progress, resume, checksums, unpacked for the configs")
    dl.add_argument("dataset", choices=["coco", "mpii"])
    dl.add_argument("--root", required=True, help="where to put the dataset (e.g. data/coco)")
    dl.add_argument("--parts", nargs="+", help="coco: annotations val train; mpii: annotations images (default: all)")
    dl.add_argument("--mirror", help="fetch every archive from MIRROR/<file name> instead of its official address")
    dl.add_argument("--keep-archives", action="store_true", help="keep the downloaded archives after unpacking")
    dl.add_argument("--quiet", action="store_true")
    dl.set_defaults(func=cmd_data_download)
    return p


def _one_line(e: Exception) -> str:
    """The message itself, also for an error re-raised from a DataLoader worker (whose text
    carries the worker's traceback)."""
    text = str(e)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if last.startswith(("poserenet.", "FileNotFoundError")) else last
    # Values quoted from a user's file may hold line breaks or control characters: one line, always.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A Markdown table; floats in [0, 1] are printed as percentages."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if v != v else f"{100 * v:.1f}" if -1 <= v <= 1 else f"{v:.2f}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    return "\n".join([line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in cells)])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (PoseDataError, ConfigError, WriteError, FloatingPointError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # a file the user named: missing, unreadable, a folder, ...
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or _one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""What low precision costs in accuracy: one trained model scored in float32, bfloat16 (PyTorch)
and int8 (ONNX, static quantization calibrated on training people), in one run.

    python benchmarks/precision_accuracy.py CHECKPOINT [--config CONFIG] [--set key=value ...]

Each precision predicts every validation person of the checkpoint's config (ground-truth boxes,
flip test) through `Predictor`, exactly as `poserenet predict` would, and is scored with the
same metrics (OKS AP, PCK). Also prints how far each moves the keypoints from float32. The
speed of each: benchmarks/inference_speed.py.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from poserenet.annotations import load_coco_instances
from poserenet.config import config_from_dict, load_config
from poserenet.datasets import read_image
from poserenet.evaluate import score, to_coco_results
from poserenet.inference import PoseHead, Predictor, TorchRunner, build_head, export_pose_head, optimize_for_inference
from poserenet.pipeline import build_meta


def people(cfg, meta, split: str, n: int | None = None):
    data = load_coco_instances(cfg.data.path(getattr(cfg.data, f"{split}_ann")), cfg.data.path(getattr(cfg.data, f"{split}_images")), meta)
    if n is not None:
        data.instances = data.instances[:: max(1, len(data.instances) // n)][:n]
    return data


def predict_all(predictor: Predictor, data) -> tuple[np.ndarray, np.ndarray]:
    by_image = defaultdict(list)
    for i, inst in enumerate(data.instances):
        by_image[inst.image_path].append(i)
    coords = np.zeros((len(data.instances), predictor.meta.num_keypoints, 2))
    scores = np.zeros((len(data.instances), predictor.meta.num_keypoints))
    items = [(read_image(path), [[*data.instances[i].bbox, 1.0] for i in idx]) for path, idx in by_image.items()]
    for idx, (_, people_, _) in zip(by_image.values(), predictor.predict_many(items)):
        for i, p in zip(idx, people_):
            coords[i], scores[i] = p.keypoints[:, :2], p.keypoints[:, 2]
    return coords, scores


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--config")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--calibration-people", type=int, default=64)
    args = p.parse_args()
    raw = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    cfg = load_config(args.config, args.overrides) if args.config else config_from_dict(raw["config"], args.checkpoint, args.overrides)
    meta = build_meta(cfg)
    head, _, _ = build_head(args.checkpoint, args.config, flip_test=True)
    val = people(cfg, meta, "val")
    calib = people(cfg, meta, "train", args.calibration_people)
    calib_images = []
    for inst in calib.instances:
        img = read_image(inst.image_path)
        x, y, w, h = (int(round(v)) for v in inst.bbox)
        calib_images.append(np.ascontiguousarray(img[max(0, y) : y + h, max(0, x) : x + w]))
    hw, pad = tuple(cfg.data.input_hw), cfg.data.bbox_padding
    fast = optimize_for_inference(head.model)
    predictors = {
        "float32": Predictor(TorchRunner(PoseHead(fast, head.codec, meta.flip_index), torch.device("cpu"), True), meta, hw, pad),
        "bfloat16": Predictor(TorchRunner(PoseHead(fast, head.codec, meta.flip_index, bf16=True), torch.device("cpu"), True), meta, hw, pad),
    }
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "int8.onnx"
        export_pose_head(head, meta, hw, out, pad, check_images=calib_images[:2], int8_calibration=calib_images)
        predictors["int8 (ONNX)"] = Predictor.from_checkpoint(out, detector="none")
        rows, ref = [], None
        for name, predictor in predictors.items():
            t = time.perf_counter()
            coords, scores = predict_all(predictor, val)
            seconds = time.perf_counter() - t
            results = to_coco_results(val.instances, coords, scores, meta, hw, pad, cfg.eval.rescore_threshold, cfg.eval.nms)
            m = score(val, meta, results, coords, cfg.eval.pck_threshold)
            shift = 0.0 if ref is None else float(np.median(np.linalg.norm(coords - ref, axis=-1)))
            ref = coords if ref is None else ref
            rows.append((name, m, shift, seconds))
    pck = f"PCK@{cfg.eval.pck_threshold:g}"
    print(f"{Path(args.checkpoint)} on {val.ann_file}: {len(val.instances)} people, ground-truth boxes, flip test")
    for name, m, shift, seconds in rows:
        print(f"{name:<12} AP {100 * m['AP']:5.1f}  AP75 {100 * m['AP75']:5.1f}  {pck} {100 * m[pck]:5.1f}  "
              f"median shift from float32 {shift:.2f} px  ({seconds:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()

"""`poserenet predict` (images, folders, videos) and `poserenet export` (ONNX)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, PoseDataError
from .common import add_overrides

log = logging.getLogger("poserenet")

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def cmd_predict(args: argparse.Namespace) -> int:
    """Keypoints for an image, a folder or a video: drawn copies and a COCO results JSON. People
    come from --boxes, else from the person detector; in a video they are tracked."""
    import cv2
    from tqdm import tqdm

    from ..detection import build_detector
    from ..files import write_json_atomic
    from ..inference import Predictor, read_boxes, track
    from ..visualize import draw_person, save_rgb

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
            from ..datasets import read_image

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
    from ..files import read_json

    doc = read_json(ann, "annotation file")
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, list):
        raise PoseDataError(f"{ann}: expected a COCO file with an 'images' list")
    return {img["file_name"]: img["id"] for img in images if isinstance(img, dict) and "file_name" in img and "id" in img}


def cmd_export(args: argparse.Namespace) -> int:
    from ..inference import calibration_people, export_onnx

    calibration = calibration_people(args.checkpoint, args.config, args.calibration, args.overrides) if args.int8 else None
    if calibration is not None:
        print(f"int8: calibrating on {len(calibration)} people ({args.calibration or 'the validation people of the checkpoint config'})")
    worst = export_onnx(args.checkpoint, args.onnx, args.config, args.flip, args.opset, int8_calibration=calibration)
    what = "int8 vs float32 PyTorch" if args.int8 else "onnxruntime vs PyTorch"
    print(f"{args.onnx}: keypoints and scores out; {what} on test images: max difference {worst:.2e} px")
    if worst > 1e-3 and not args.int8:
        print("warning: larger than 1e-3 px", file=sys.stderr)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
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
    add_overrides(ex)
    ex.set_defaults(func=cmd_export)

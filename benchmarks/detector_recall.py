"""How many of the people in real COCO photos the default HOG detector finds, and how fast.

    python benchmarks/detector_recall.py [--root ../shared/data/coco_mini] [--detector hog|model.onnx]

Person recall at IoU 0.5 against the ground-truth boxes of ../shared/data/coco_mini (80 COCO
train2017 images, every non-crowd person; and separately the people at least 96 px tall, the
size HOG was trained for), precision of the detections, and the time per image. Variants of the
HOG detector are compared in one run: its raw detection windows against the person boxes inside
them, and with or without the search at twice the size.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from poserenet.detection import HogDetector, build_detector, iou_xyxy, xywh_to_xyxy

REPO = Path(__file__).resolve().parents[1]


def evaluate(detector, images, truth) -> dict:
    found = tall_found = tall = people = dets = good = 0
    seconds = 0.0
    for img, gt in zip(images, truth):
        t = time.perf_counter()
        boxes = detector(img)
        seconds += time.perf_counter() - t
        dets += len(boxes)
        people += len(gt)
        tall_gt = [g for g in gt if g[3] >= 96]
        tall += len(tall_gt)
        if not len(boxes):
            continue
        d = xywh_to_xyxy(boxes[:, :4])
        matched = [iou_xyxy(g, d).max() >= 0.5 for g in xywh_to_xyxy(np.asarray(gt).reshape(-1, 4))]
        found += sum(matched)
        tall_found += sum(m for m, g in zip(matched, gt) if g[3] >= 96)
        g_all = xywh_to_xyxy(np.asarray(gt).reshape(-1, 4))
        good += sum(iou_xyxy(b, g_all).max() >= 0.5 for b in d) if len(g_all) else 0
    return {"recall": found / max(people, 1), "recall_tall": tall_found / max(tall, 1), "precision": good / max(dets, 1),
            "people": people, "tall": tall, "detections": dets, "ms_per_image": 1000 * seconds / len(images)}  # fmt: skip


class RawWindows(HogDetector):
    """The HOG detection windows as they are (a person plus the window's margin)."""

    def _detect(self, gray, factor):
        rects, weights = self.hog.detectMultiScale(gray, winStride=(8, 8), padding=(8, 8), scale=1.05)
        if len(rects) == 0:
            return np.zeros((0, 5))
        return np.c_[np.asarray(rects, np.float64) / factor, 1 - np.exp(-np.clip(np.ravel(weights), 0, None))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "coco_mini"))
    p.add_argument("--detector", default="hog", help="hog (its variants are compared) or an ONNX detector")
    args = p.parse_args()
    root = Path(args.root)
    doc = json.loads((root / "annotations" / "person_keypoints_train2017.json").read_text())
    truth = {img["id"]: [] for img in doc["images"]}
    for a in doc["annotations"]:
        if not a["iscrowd"]:
            truth[a["image_id"]].append(a["bbox"])
    images = [cv2.cvtColor(cv2.imread(str(root / "train2017" / img["file_name"])), cv2.COLOR_BGR2RGB) for img in doc["images"]]
    gts = [truth[img["id"]] for img in doc["images"]]
    if args.detector == "hog":
        variants = {
            "HOG, person boxes, 1x and 2x (default)": HogDetector(),
            "HOG, person boxes, 1x and 2x, every score": HogDetector(score_threshold=0.0),
            "HOG, person boxes, 1x only": HogDetector(upscale_below=0),
            "HOG, raw detection windows, 1x and 2x": RawWindows(),
        }
    else:
        variants = {args.detector: build_detector(args.detector)}
    print(f"{len(images)} COCO images, {sum(map(len, gts))} people (not crowds)")
    for name, det in variants.items():
        r = evaluate(det, images, gts)
        print(f"{name:<42} recall@0.5 {100 * r['recall']:5.1f}%  (people >= 96 px tall: {100 * r['recall_tall']:5.1f}% of {r['tall']})  "
              f"precision {100 * r['precision']:5.1f}% of {r['detections']}  {r['ms_per_image']:.0f} ms/image")


if __name__ == "__main__":
    main()

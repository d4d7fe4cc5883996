"""Time OKS AP scoring of N people's results with pycocotools and faster-coco-eval, in one run.

    python benchmarks/coco_eval_backends.py [--people 5000] [--repeat 3]

The ground truth is generated (COCO-17 people spread over N/2 images, some crowd regions);
results are the ground truth with noise, misses, duplicates and false positives. Both backends
must give the same numbers; the script prints seconds per backend and the speed ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from poserenet.meta import COCO17
from poserenet.metrics import COCO_STATS, coco_keypoint_ap


def make_set(n_people: int, seed: int = 0) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    n_images = max(1, n_people // 2)
    images = [{"id": i + 1, "file_name": f"{i:06d}.jpg", "width": 640, "height": 480} for i in range(n_images)]
    anns, results = [], []
    for a in range(n_people):
        img = int(rng.integers(n_images)) + 1
        w, h = rng.uniform(30, 300, 2)
        x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
        kp = np.c_[rng.uniform(x, x + w, 17), rng.uniform(y, y + h, 17), rng.choice([0, 1, 2], 17, p=[0.2, 0.2, 0.6])]
        kp[kp[:, 2] == 0, :2] = 0
        crowd = int(rng.random() < 0.02)
        anns.append({"id": a + 1, "image_id": img, "category_id": 1, "iscrowd": crowd, "bbox": [x, y, w, h], "area": w * h * 0.6,
                     "keypoints": kp.reshape(-1).tolist(), "num_keypoints": int((kp[:, 2] > 0).sum())})
        if crowd or rng.random() < 0.1:
            continue
        for _ in range(2 if rng.random() < 0.1 else 1):
            pred = kp.copy()
            pred[:, :2] = kp[:, :2] + rng.normal(0, 0.04 * np.sqrt(w * h), (17, 2))
            pred[:, 2] = rng.uniform(0.1, 1, 17)
            results.append({"image_id": img, "category_id": 1, "keypoints": pred.reshape(-1).tolist(), "score": float(rng.uniform(0.2, 1))})
    for _ in range(n_people // 5):
        pred = np.c_[rng.uniform(0, 640, 17), rng.uniform(0, 480, 17), rng.uniform(0, 1, 17)]
        results.append({"image_id": int(rng.integers(n_images)) + 1, "category_id": 1, "keypoints": pred.reshape(-1).tolist(),
                        "score": float(rng.uniform(0, 0.5))})
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person", "keypoints": list(COCO17.keypoints)}]}
    return gt, results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--people", type=int, default=5000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    gt, results = make_set(args.people)
    with tempfile.TemporaryDirectory() as tmp:
        gt_file = Path(tmp) / "gt.json"
        gt_file.write_text(json.dumps(gt))
        seconds, stats = {}, {}
        for backend in ("pycocotools", "faster-coco-eval"):
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                stats[backend] = coco_keypoint_ap(gt_file, results, COCO17.sigmas, backend)
                times.append(time.perf_counter() - t)
            seconds[backend] = statistics.median(times)
    same = all(abs(stats["pycocotools"][k] - stats["faster-coco-eval"][k]) <= 1e-9 for k in COCO_STATS)
    print(f"{args.people} people, {len(results)} results, {len(gt['images'])} images; AP {100 * stats['pycocotools']['AP']:.2f}")
    for backend, s in seconds.items():
        print(f"{backend:<17} {s:6.2f} s  ({seconds['pycocotools'] / s:.1f}x pycocotools)")
    print(f"identical numbers: {same}")


if __name__ == "__main__":
    main()

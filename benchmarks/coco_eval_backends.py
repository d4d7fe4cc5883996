"""Time OKS AP scoring with every backend, and `poserenet metrics` as a whole process, in one run.

    python benchmarks/coco_eval_backends.py [--images 5000] [--repeat 3]

The ground truth is generated (COCO-17 people, two per image on average, some crowd regions);
results are the ground truth with noise, misses, duplicates and false positives. Every backend
must give the same 10 numbers as pycocotools called by hand; the script prints seconds and the
ratio to pycocotools' in-process time for: pycocotools by hand, each backend through
`coco_keypoint_ap` (the checks included), and `poserenet metrics GT RESULTS` as a fresh process
(Python start, imports, reading and checking both files, scoring).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from poserenet.meta import COCO17
from poserenet.metrics import COCO_STATS, coco_keypoint_ap

MODULES = {"pycocotools": "pycocotools", "faster-coco-eval": "faster_coco_eval", "hotcoco": "hotcoco"}


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


def by_hand(gt: dict, results: list[dict]) -> dict[str, float]:
    """pycocotools exactly as its README runs it: the reference numbers and time."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = json.loads(json.dumps(gt))
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(json.loads(json.dumps(results))), "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(COCO17.sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(COCO_STATS, map(float, ev.stats[:10])))


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    gt, results = make_set(2 * args.images)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        gt_file, res_file = Path(tmp) / "gt.json", Path(tmp) / "res.json"
        gt_file.write_text(json.dumps(gt))
        res_file.write_text(json.dumps(results))
        ref_s, ref = timed(lambda: by_hand(gt, results), args.repeat)
        rows.append(("pycocotools by hand", ref_s, ref))
        for backend, module in MODULES.items():
            if importlib.util.find_spec(module) is None:
                print(f"{backend}: not installed (pip install 'poserenet[fast]')")
                continue
            s, stats = timed(lambda b=backend: coco_keypoint_ap(gt_file, res_file, COCO17.sigmas, b), args.repeat)
            rows.append((f"{backend} (coco_keypoint_ap)", s, stats))
        cmd = [sys.executable, "-m", "poserenet", "metrics", str(gt_file), str(res_file), "--json"]
        s, out = timed(lambda: subprocess.run(cmd, capture_output=True, text=True, check=True).stdout, args.repeat)
        rows.append(("poserenet metrics (whole process, auto)", s, json.loads(out)))
    print(f"{len(gt['images'])} images, {len(gt['annotations'])} people, {len(results)} results; AP {100 * ref['AP']:.2f}")
    for name, s, stats in rows:
        same = all(abs(stats[k] - ref[k]) <= 1e-9 for k in COCO_STATS if k in stats)
        print(f"{name:<40} {s:7.3f} s  {ref_s / s:6.1f}x pycocotools  identical stats: {same}")


if __name__ == "__main__":
    main()

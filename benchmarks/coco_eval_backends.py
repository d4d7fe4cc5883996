"""Time OKS AP scoring with every backend, and `poserenet metrics` as a whole process, in one run.

    python benchmarks/coco_eval_backends.py [--images 5000] [--repeat 5]

The ground truth is generated (COCO-17 people, two per image on average, some crowd regions);
results are the ground truth with noise, misses, duplicates and false positives. Every backend
must give the same 10 numbers as pycocotools called by hand; the script prints seconds and the
ratio to pycocotools by hand on the same input, for documents already in memory (pycocotools,
hotcoco alone with nothing checked, each backend through `coco_keypoint_ap`, which checks every
result first) and for the two JSON files (pycocotools reading them as its README does, each
backend through `coco_keypoint_ap`, and `poserenet metrics GT RESULTS` as a fresh process:
Python start, imports, reading and checking both files, scoring).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
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


def pycocotools_by_hand(gt: dict | Path, results: list[dict] | Path) -> dict[str, float]:
    """pycocotools exactly as its README runs it, on the files or on documents in memory (which
    it changes: give it a copy): the reference numbers and time."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        if isinstance(gt, Path):
            coco = COCO(str(gt))
        else:
            coco = COCO()
            coco.dataset = gt
            coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(str(results) if isinstance(results, Path) else results), "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(COCO17.sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(COCO_STATS, map(float, ev.stats[:10])))


def hotcoco_by_hand(gt: dict, results: list[dict]) -> dict[str, float]:
    """hotcoco alone on documents in memory, nothing checked: the peer figure."""
    import hotcoco

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coco = hotcoco.COCO(gt)
        ev = hotcoco.COCOeval(coco, coco.load_res(results), "keypoints")
        ev.params.kpt_oks_sigmas = list(COCO17.sigmas)
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
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    gt, results = make_set(2 * args.images)
    installed = {b: m for b, m in MODULES.items() if importlib.util.find_spec(m) is not None}
    for backend in MODULES.keys() - installed.keys():
        print(f"{backend}: not installed (pip install 'poserenet[fast]')")
    rows = []  # (name, seconds, stats, reference: "memory" or "files")
    with tempfile.TemporaryDirectory() as tmp:
        gt_file, res_file = Path(tmp) / "gt.json", Path(tmp) / "res.json"
        gt_file.write_text(json.dumps(gt))
        res_file.write_text(json.dumps(results))
        # In memory: pycocotools changes the documents it is given, so each repeat gets a copy
        # made before the clock starts.
        copies = iter([copy.deepcopy((gt, results)) for _ in range(args.repeat)])
        mem_s, ref = timed(lambda: pycocotools_by_hand(*next(copies)), args.repeat)
        rows.append(("pycocotools by hand", mem_s, ref, "memory"))
        if "hotcoco" in installed:
            s, stats = timed(lambda: hotcoco_by_hand(gt, results), args.repeat)
            rows.append(("hotcoco by hand, nothing checked", s, stats, "memory"))
        for backend in installed:
            s, stats = timed(lambda b=backend: coco_keypoint_ap(gt, results, COCO17.sigmas, b), args.repeat)
            rows.append((f"coco_keypoint_ap, {backend}", s, stats, "memory"))
        files_s, _ = timed(lambda: pycocotools_by_hand(gt_file, res_file), args.repeat)
        rows.append(("pycocotools by hand", files_s, ref, "files"))
        for backend in installed:
            s, stats = timed(lambda b=backend: coco_keypoint_ap(gt_file, res_file, COCO17.sigmas, b), args.repeat)
            rows.append((f"coco_keypoint_ap, {backend}", s, stats, "files"))
        cmd = [sys.executable, "-m", "poserenet", "metrics", str(gt_file), str(res_file), "--json"]
        # As installed by pip: with compiled bytecode (PYTHONDONTWRITEBYTECODE would make every
        # run compile the package's modules again); the warm-up run writes it.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        subprocess.run(cmd, capture_output=True, check=True, env=env)
        s, out = timed(lambda: subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout, args.repeat)
        rows.append(("poserenet metrics, whole process", s, json.loads(out), "files"))
    print(f"{len(gt['images'])} images, {len(gt['annotations'])} people, {len(results)} results; AP {100 * ref['AP']:.2f}")
    print("Times are medians of the repeats; each ratio is against pycocotools by hand on the same input")
    print("(documents in memory, or the two JSON files). coco_keypoint_ap checks every result; the")
    print("whole process also starts Python, reads and checks both files and prints the table.")
    for where in ("memory", "files"):
        print(f"\n{'documents in memory' if where == 'memory' else 'from the JSON files'}:")
        base = mem_s if where == "memory" else files_s
        for name, s, stats, w in rows:
            if w == where:
                same = all(abs(stats[k] - ref[k]) <= 1e-9 for k in COCO_STATS if k in stats)
                print(f"  {name:<36} {s:7.3f} s  {base / s:6.1f}x pycocotools  identical stats: {same}")


if __name__ == "__main__":
    main()

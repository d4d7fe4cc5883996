"""Metrics: COCO OKS AP/AR through pycocotools itself, and PCK.

`coco_keypoint_ap` runs pycocotools' `COCOeval` exactly as one would by hand (all ground-truth
images, the keypoint set's OKS sigmas), so its numbers are pycocotools' numbers.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import PoseDataError

COCO_STATS = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")


def coco_keypoint_ap(gt_file: str | Path, results: str | Path | list[dict], sigmas: Sequence[float]) -> dict[str, float]:
    """OKS AP/AR of a COCO keypoint results file (or list) against a ground-truth file."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if isinstance(results, (str, Path)):
        try:
            results = json.loads(Path(results).read_text())
        except (OSError, ValueError) as e:
            raise PoseDataError(f"{results}: cannot read results: {e}") from None
    if not results:
        raise PoseDataError("no predictions to evaluate (the results list is empty)")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        dt = gt.loadRes([dict(r) for r in results])  # loadRes adds keys to the dicts it is given
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: float(v) for k, v in zip(COCO_STATS, ev.stats)}


def torso_size(keypoints: np.ndarray, torso: Sequence[tuple[int, int]]) -> np.ndarray:
    """Per person, the length of the first torso pair whose two joints are labelled (NaN if none).

    keypoints: [N, K, 3] ground truth.
    """
    size = np.full(len(keypoints), np.nan)
    for a, b in reversed(list(torso)):  # earlier pairs take precedence
        ok = (keypoints[:, a, 2] > 0) & (keypoints[:, b, 2] > 0)
        d = np.linalg.norm(keypoints[:, a, :2] - keypoints[:, b, :2], axis=-1)
        size = np.where(ok & (d > 0), d, size)
    return size


def pck(
    pred: np.ndarray, gt: np.ndarray, normalizer: np.ndarray, threshold: float = 0.2
) -> tuple[float, np.ndarray, int]:
    """Percentage of correct keypoints.

    pred [N, K, 2], gt [N, K, 3], normalizer [N] (torso or box size; NaN = person not scored).
    A labelled joint (v > 0) is correct when its error is at most `threshold * normalizer`.
    Returns (PCK over all scored joints, per-joint PCK [K] (NaN where none), joints scored).
    """
    valid = (gt[..., 2] > 0) & np.isfinite(normalizer)[:, None]
    err = np.linalg.norm(pred - gt[..., :2], axis=-1)
    with np.errstate(invalid="ignore"):
        correct = (err <= threshold * normalizer[:, None]) & valid
    n = int(valid.sum())
    per_joint = np.where(valid.sum(0) > 0, correct.sum(0) / np.maximum(valid.sum(0), 1), np.nan)
    return (float(correct.sum() / n) if n else float("nan")), per_joint, n

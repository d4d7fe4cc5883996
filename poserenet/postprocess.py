"""Per-image post-processing of top-down poses, as the HRNet/SimpleBaseline evaluation does it:
pose rescoring, then OKS non-maximum suppression (hard or soft) among the poses of one image.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

NMS_MODES = ("oks", "soft", "none")  # per-image OKS NMS: hard, soft, or none


def rescore(keypoint_scores: np.ndarray, box_scores: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """Pose score = box score x mean of the keypoint scores above `threshold` (0 if none)."""
    above = keypoint_scores > threshold
    mean = np.where(above.any(1), (keypoint_scores * above).sum(1) / np.maximum(above.sum(1), 1), 0.0)
    return mean * box_scores


def oks_nms(
    poses: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas: Sequence[float], threshold: float = 0.9
) -> list[int]:
    """Greedy NMS: keep the best pose, drop every other whose OKS with it exceeds `threshold`.

    poses [M, K, 3] (x, y, score), scores [M], areas [M] (the poses' box areas, the OKS scale).
    Returns the kept indices, best first.
    """
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i, rest = order[0], np.array(order[1:], dtype=int)
        keep.append(int(i))
        if rest.size == 0:
            break
        overlap = _oks_to(poses, i, rest, areas, sigmas)
        order = list(rest[overlap <= threshold])
    return keep


def soft_oks_nms(
    poses: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas: Sequence[float], threshold: float = 0.3,
    max_dets: int = 20,
) -> list[int]:
    """Soft NMS (Gaussian decay exp(-OKS^2 / threshold)): the order in which poses survive the
    decay, at most `max_dets`; as in the reference code, the reported scores stay unchanged."""
    order = np.argsort(-scores, kind="stable")
    decayed = scores[order].astype(np.float64)
    keep = []
    while order.size and len(keep) < max_dets:
        i = int(order[0])
        keep.append(i)
        overlap = _oks_to(poses, i, order[1:], areas, sigmas)
        order, decayed = order[1:], decayed[1:] * np.exp(-(overlap**2) / threshold)
        resort = np.argsort(-decayed, kind="stable")
        order, decayed = order[resort], decayed[resort]
    return keep


def _oks_to(poses: np.ndarray, i: int, others: np.ndarray, areas: np.ndarray, sigmas: Sequence[float]) -> np.ndarray:
    """OKS of pose i with each of `others` over all joints (predictions have no labels), the
    pair's mean area as the scale, as the reference implementation does."""
    if len(others) == 0:
        return np.zeros(0)
    mean_area = (areas[i] + areas[others]) / 2
    var = (2 * np.asarray(sigmas)) ** 2
    d2 = ((poses[others, :, :2] - poses[i, None, :, :2]) ** 2).sum(-1)
    return np.exp(-d2 / var / (mean_area[:, None] + np.spacing(1)) / 2).mean(-1)


__all__ = ["oks_nms", "rescore", "soft_oks_nms"]

"""Inference over a dataset and its scores: model -> codec.decode -> image coordinates -> metrics.

Results are written as a standard COCO keypoint results JSON, so any COCO tool can read them,
and scored by pycocotools (OKS AP/AR) and PCK.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from .codec import HeatmapCodec
from .datasets import CocoKeypoints, TopDownDataset
from .meta import KeypointMeta
from .metrics import coco_keypoint_ap, pck, torso_size
from .transforms import heatmap_to_image


def flip_back(heatmaps: torch.Tensor, flip_index: list[int], shift: bool = True) -> torch.Tensor:
    """Heatmaps of a mirrored input -> heatmaps of the original: mirror, swap left/right, and
    shift one pixel right, as the official HRNet/SimpleBaseline flip test does."""
    out = heatmaps.flip(-1)[:, flip_index]
    if shift:
        out = torch.cat([out[..., :1], out[..., :-1]], dim=-1)
    return out


@torch.inference_mode()
def predict(
    model: nn.Module,
    dataset: TopDownDataset,
    codec: HeatmapCodec,
    flip_test: bool = True,
    batch_size: int = 64,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints `[N, K, 2]` in image pixels and scores `[N, K]` for every instance of `dataset`."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    flip_index = dataset.meta.flip_index
    coords, scores = [], []
    for batch in tqdm(loader, desc="eval", disable=not progress, leave=False, unit="batch"):
        images = batch["image"].to(device)
        heatmaps = model(images)
        if flip_test:
            heatmaps = (heatmaps + flip_back(model(images.flip(-1)), flip_index)) * 0.5
        xy, s = codec_for(codec, heatmaps).decode(heatmaps.float().cpu())
        xy = heatmap_to_image(xy.numpy(), batch["center"].numpy(), batch["scale"].numpy(), tuple(heatmaps.shape[-2:]))
        coords.append(xy)
        scores.append(s.numpy())
    k = dataset.meta.num_keypoints
    if not coords:
        return np.zeros((0, k, 2)), np.zeros((0, k))
    return np.concatenate(coords), np.concatenate(scores)


def codec_for(codec: HeatmapCodec, heatmaps: torch.Tensor) -> HeatmapCodec:
    """The codec matching the model's output resolution (e.g. PoseReNet's 2x lifted output)."""
    scale = heatmaps.shape[-2] // codec.heatmap_hw[0]
    return codec.at_resolution(scale) if scale > 1 else codec


def rescore(keypoint_scores: np.ndarray, box_scores: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """Pose score = box score x mean of the keypoint scores above `threshold` (0 if none)."""
    above = keypoint_scores > threshold
    mean = np.where(above.any(1), (keypoint_scores * above).sum(1) / np.maximum(above.sum(1), 1), 0.0)
    return mean * box_scores


def to_coco_results(data: CocoKeypoints, coords: np.ndarray, scores: np.ndarray, threshold: float = 0.2, category_id: int = 1) -> list[dict[str, Any]]:
    """One COCO keypoint result per instance: keypoints [x, y, score] * K and a pose score."""
    box_scores = np.array([inst.score for inst in data.instances])
    pose_scores = rescore(scores, box_scores, threshold)
    kpts = np.concatenate([coords, scores[..., None]], axis=-1)
    return [
        {
            "image_id": inst.image_id,
            "category_id": category_id,
            "keypoints": [round(float(v), 3) for v in kpts[i].reshape(-1)],
            "score": round(float(pose_scores[i]), 6),
        }
        for i, inst in enumerate(data.instances)
    ]


def score(
    data: CocoKeypoints, meta: KeypointMeta, coords: np.ndarray, scores: np.ndarray, results: list[dict], pck_threshold: float = 0.2
) -> dict[str, float]:
    """OKS AP/AR (pycocotools) and PCK (torso-normalised when the keypoint set defines a torso,
    else normalised by the longer box side)."""
    metrics = coco_keypoint_ap(data.ann_file, results, meta.sigmas)
    gt = np.stack([inst.keypoints for inst in data.instances])
    if meta.torso:
        norm = torso_size(gt, meta.torso)
    else:
        norm = np.array([max(inst.bbox[2], inst.bbox[3]) for inst in data.instances], dtype=np.float64)
    value, _, _ = pck(coords, gt, norm, pck_threshold)
    metrics[f"PCK@{pck_threshold:g}"] = value
    return metrics


def mean_pose_baseline(train: CocoKeypoints, val: CocoKeypoints) -> tuple[np.ndarray, np.ndarray]:
    """The mean training pose (relative to the box) placed in each validation box: what a model
    that ignores the pixels can reach. Returns coords [N, K, 2] and unit scores [N, K]."""
    rel = []
    for inst in train.instances:
        x, y, w, h = inst.bbox
        ok = inst.keypoints[:, 2:3] > 0
        rel.append(np.where(ok, (inst.keypoints[:, :2] - [x, y]) / np.maximum([w, h], 1e-6), np.nan))
    mean = np.nan_to_num(np.nanmean(np.stack(rel), axis=0), nan=0.5)
    boxes = np.stack([inst.bbox for inst in val.instances]).astype(np.float64)
    coords = mean[None] * boxes[:, None, 2:4] + boxes[:, None, :2]
    return coords, np.ones(coords.shape[:2])


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write to a temporary file, then rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


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

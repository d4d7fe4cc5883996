"""Geometry of the top-down crop and its augmentation.

A person is described by a box `center` (x, y) and `scale` (w, h) in image pixels: the region
that the affine warp maps onto the network input. Augmentation only changes center, scale,
rotation and a mirror flag; the image is then warped once with OpenCV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .meta import KeypointMeta


def box_to_center_scale(bbox: np.ndarray, input_hw: tuple[int, int], padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """Box `[x, y, w, h]` -> center and scale at the input's aspect ratio, grown by `padding`."""
    x, y, w, h = (float(v) for v in bbox[:4])
    center = np.array([x + 0.5 * w, y + 0.5 * h], dtype=np.float32)
    aspect = input_hw[1] / input_hw[0]  # width / height
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    return center, np.array([w, h], dtype=np.float32) * padding


def affine_matrix(
    center: np.ndarray, scale: np.ndarray, rotation: float, output_hw: tuple[int, int], flip: bool = False, inverse: bool = False
) -> np.ndarray:
    """2x3 matrix mapping image pixels to output pixels (or back, with `inverse`).

    The box (center, scale) rotated by `rotation` degrees (counter-clockwise in the image) fills
    the output; `flip` mirrors the output horizontally.
    """
    out_h, out_w = output_hw
    a = math.radians(rotation)
    cos, sin = math.cos(a), math.sin(a)
    sx, sy = out_w / float(scale[0]), out_h / float(scale[1])
    # output = T(out_center) . S . R . T(-center), then an optional mirror of the output.
    m = np.array(
        [[sx * cos, sx * sin, 0.0], [-sy * sin, sy * cos, 0.0], [0.0, 0.0, 1.0]],
        dtype=np.float64,
    )
    m[:2, 2] = -m[:2, :2] @ np.asarray(center, dtype=np.float64) + np.array([out_w * 0.5, out_h * 0.5])
    if flip:
        m = np.array([[-1.0, 0, out_w - 1], [0, 1, 0], [0, 0, 1]]) @ m
    if inverse:
        m = np.linalg.inv(m)
    return m[:2].astype(np.float32)


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Transform `[..., 2]` points by a 2x3 matrix."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp(image: np.ndarray, matrix: np.ndarray, output_hw: tuple[int, int]) -> np.ndarray:
    return cv2.warpAffine(image, matrix, (output_hw[1], output_hw[0]), flags=cv2.INTER_LINEAR)


def heatmap_to_image(coords: np.ndarray, center: np.ndarray, scale: np.ndarray, heatmap_hw: tuple[int, int]) -> np.ndarray:
    """Keypoints `[N, K, 2]` in heatmap pixels -> image pixels, for unrotated crops."""
    hw = np.array([heatmap_hw[1], heatmap_hw[0]], dtype=np.float64)
    center = np.asarray(center, dtype=np.float64)[:, None, :]
    scale = np.asarray(scale, dtype=np.float64)[:, None, :]
    return coords * (scale / hw) + center - scale * 0.5


@dataclass
class AugmentConfig:
    """Training augmentation; the defaults are the HRNet/PoseReNet recipe."""

    flip_prob: float = 0.5
    scale_range: float = 0.25  # scale factor uniform in [1 - r, 1 + r]
    rotation: float = 30.0  # degrees, uniform in [-r, r] ...
    rotation_prob: float = 0.6  # ... applied with this probability
    shift: float = 0.16  # center shift, uniform in [-s, s] of the box size ...
    shift_prob: float = 0.3  # ... applied with this probability (mmpose's defaults)
    half_body_prob: float = 0.3
    half_body_min_joints: int = 8  # only people with more labelled joints than this


def half_body(
    keypoints: np.ndarray, meta: KeypointMeta, input_hw: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """Center/scale around the labelled upper or lower body (chosen at random), or None."""
    vis = keypoints[:, 2] > 0
    upper = [j for j in meta.upper_body if vis[j]]
    lower = [j for j in meta.lower_body if vis[j]]
    chosen = upper if (rng.random() < 0.5 and len(upper) > 2) else lower
    if len(chosen) < 2:
        chosen = upper
    if len(chosen) < 2:
        return None
    pts = keypoints[chosen, :2]
    lo, hi = pts.min(0), pts.max(0)
    center, scale = box_to_center_scale(np.r_[lo, hi - lo], input_hw, padding=1.5)
    return center, scale


def sample_augmentation(
    cfg: AugmentConfig,
    center: np.ndarray,
    scale: np.ndarray,
    keypoints: np.ndarray,
    meta: KeypointMeta,
    input_hw: tuple[int, int],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """Draw (center, scale, rotation, flip) for one training sample."""
    center, scale = center.copy(), scale.copy()
    if (keypoints[:, 2] > 0).sum() > cfg.half_body_min_joints and rng.random() < cfg.half_body_prob:
        hb = half_body(keypoints, meta, input_hw, rng)
        if hb is not None:
            center, scale = hb
    if cfg.shift > 0 and rng.random() < cfg.shift_prob:
        center = center + rng.uniform(-cfg.shift, cfg.shift, size=2).astype(np.float32) * scale
    scale = scale * rng.uniform(1 - cfg.scale_range, 1 + cfg.scale_range)
    rotation = float(rng.uniform(-cfg.rotation, cfg.rotation)) if rng.random() < cfg.rotation_prob else 0.0
    flip = bool(rng.random() < cfg.flip_prob)
    return center, scale, rotation, flip

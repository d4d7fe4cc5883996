"""Drawing: skeletons on images, and a grid of predictions for a quick look."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from .errors import WriteError
from .files import write_atomic
from .meta import KeypointMeta


def limb_colors(n: int) -> list[tuple[int, int, int]]:
    """n distinct RGB colours around the hue circle."""
    hsv = np.stack([np.linspace(0, 179, n, endpoint=False), np.full(n, 230), np.full(n, 255)], -1).astype(np.uint8)
    return [tuple(int(c) for c in rgb) for rgb in cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0]]


def draw_pose(
    image: np.ndarray,
    keypoints: np.ndarray,
    meta: KeypointMeta,
    scores: np.ndarray | None = None,
    threshold: float = 0.2,
    thickness: int = 2,
    color: tuple[int, int, int] | None = None,
    show_scores: bool = False,
) -> np.ndarray:
    """Draw one person's skeleton (RGB image, keypoints [K, 2] or [K, 3]) in place and return it.

    Joints with a score (or visibility) at or below `threshold` are left out; limbs take one
    colour each, or `color` for all; `show_scores` writes each joint's score beside it.
    """
    pts = np.asarray(keypoints, dtype=np.float64)
    s = scores if scores is not None else (pts[:, 2] if pts.shape[1] > 2 else np.ones(len(pts)))
    ok = np.isfinite(pts[:, :2]).all(1) & (np.asarray(s) > threshold)
    colors = limb_colors(max(1, len(meta.skeleton)))
    for (a, b), c in zip(meta.skeleton, colors):
        if ok[a] and ok[b]:
            cv2.line(image, _pt(pts[a]), _pt(pts[b]), color or c, thickness, cv2.LINE_AA)
    for j in np.flatnonzero(ok):
        cv2.circle(image, _pt(pts[j]), thickness + 1, color or (255, 255, 255), -1, cv2.LINE_AA)
        if show_scores:
            x, y = _pt(pts[j])
            scale = max(0.3, thickness * 0.2)
            cv2.putText(image, f"{float(s[j]):.2f}", (x + 3, y - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 1, cv2.LINE_AA)
            cv2.putText(image, f"{float(s[j]):.2f}", (x + 3, y - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def draw_person(image: np.ndarray, person: Any, meta: KeypointMeta, threshold: float = 0.3, show_scores: bool = False) -> np.ndarray:
    """A `PersonPose` in place: its box, its track id (video) and its skeleton; a person with
    an id keeps its box colour from frame to frame."""
    thick = max(1, round(max(image.shape[:2]) / 300))
    x, y, w, h = (float(v) for v in person.bbox)
    tid = getattr(person, "track_id", None)
    color = limb_colors(12)[tid % 12] if tid is not None else (255, 255, 255)
    cv2.rectangle(image, _pt((x, y)), _pt((x + w, y + h)), color, max(1, thick - 1), cv2.LINE_AA)
    label = f"#{tid}" if tid is not None else f"{person.score:.2f}"
    scale = max(0.4, thick * 0.3)
    org = (int(x) + 2, max(int(y) - 4, 12))
    cv2.putText(image, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 1, cv2.LINE_AA)
    cv2.putText(image, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)
    return draw_pose(image, person.keypoints[:, :2], meta, person.keypoints[:, 2], threshold, thick, show_scores=show_scores)


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def prediction_grid(
    images: Sequence[np.ndarray],
    predictions: Sequence[list[tuple[np.ndarray, np.ndarray]]],
    meta: KeypointMeta,
    tile: int = 256,
    cols: int = 4,
    titles: Sequence[str] | None = None,
) -> np.ndarray:
    """Tiles of images (RGB) with every predicted person (keypoints [K, 2], scores [K]) drawn."""
    tiles = []
    for i, (img, people) in enumerate(zip(images, predictions)):
        canvas = img.copy()
        thick = max(1, round(max(img.shape[:2]) / 200))
        for kpts, scores in people:
            draw_pose(canvas, kpts, meta, scores, thickness=thick)
        f = tile / max(canvas.shape[:2])
        canvas = cv2.resize(canvas, (round(canvas.shape[1] * f), round(canvas.shape[0] * f)), interpolation=cv2.INTER_AREA)
        out = np.full((tile, tile, 3), 32, np.uint8)
        out[: canvas.shape[0], : canvas.shape[1]] = canvas
        if titles:
            cv2.putText(out, titles[i], (4, tile - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(out)
    while len(tiles) % cols:
        tiles.append(np.full((tile, tile, 3), 32, np.uint8))
    rows = [np.hstack(tiles[r : r + cols]) for r in range(0, len(tiles), cols)]
    return np.vstack(rows)


def save_rgb(path: str | Path, image: np.ndarray) -> None:
    """An RGB image to a file (format by its suffix), atomically; a full disk is a WriteError."""
    path = Path(path)
    ok, data = cv2.imencode(path.suffix or ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise WriteError(f"{path}: cannot encode an image of this type")
    write_atomic(path, lambda tmp: tmp.write_bytes(data.tobytes()))

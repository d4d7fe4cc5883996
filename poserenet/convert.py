"""Converters into the COCO-style keypoint format the reader takes.

- MPII: the common MPII json list (image, center, scale in units of 200 px, 1-based joints[16],
  joints_vis[16]), optionally with the head boxes of the evaluation's ground-truth .mat
  (`gt_valid.mat`: dataset_joints, jnt_missing, pos_gt_src, headboxes_src) for PCKh. Each
  person keeps its `center` (shifted down by 15 x scale as HRNet/mmpose do) and `scale`, which
  the reader uses for the crop, so crops equal the reference implementations'.
- LSP / LSPET: `joints.mat` (LSP: 3x14xN, third row 1 = occluded; LSPET: 14x3xN, third column
  1 = labelled); boxes are the labelled joints' box grown 15% per side, clipped to the image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import PoseDataError
from .meta import LSP14, MPII16, KeypointMeta


def _loadmat(path: str | Path) -> dict[str, Any]:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise PoseDataError("reading .mat files needs SciPy: pip install 'poserenet[data]'") from None
    path = Path(path)
    if not path.is_file():
        raise PoseDataError(f"{path}: file not found")
    try:
        return loadmat(str(path))
    except Exception as e:  # scipy raises several types for a bad file
        raise PoseDataError(f"{path}: cannot read as a MATLAB file: {e}") from None


def _category(meta: KeypointMeta) -> dict[str, Any]:
    return {
        "id": 1, "name": "person", "supercategory": "person", "keypoints": list(meta.keypoints),
        "skeleton": [[a + 1, b + 1] for a, b in meta.skeleton],
    }  # fmt: skip


def _image_size(image_dir: Path | None, name: str) -> dict[str, int]:
    if image_dir is None:
        return {}
    img = cv2.imread(str(image_dir / name), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise PoseDataError(f"{image_dir / name}: image not found or unreadable")
    return {"width": int(img.shape[1]), "height": int(img.shape[0])}


def read_mpii_head_boxes(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head boxes [N, 4] (x1, y1, x2, y2), joints [N, 16, 2] (1-based) and missing [N, 16] of
    an MPII evaluation ground-truth file."""
    mat = _loadmat(path)
    for key in ("headboxes_src", "pos_gt_src", "jnt_missing"):
        if key not in mat:
            raise PoseDataError(f"{path}: no '{key}'; expected an MPII evaluation file like gt_valid.mat")
    hb = np.asarray(mat["headboxes_src"], dtype=np.float64)  # [2 corners, 2 coords, N]
    pos = np.asarray(mat["pos_gt_src"], dtype=np.float64)  # [16, 2, N]
    missing = np.asarray(mat["jnt_missing"]).astype(bool)  # [16, N]
    heads = np.concatenate([hb[0].T, hb[1].T], axis=1)
    return heads, pos.transpose(2, 0, 1), missing.T


def mpii_to_coco(json_file: str | Path, image_dir: str | Path | None = None, gt_mat: str | Path | None = None) -> dict[str, Any]:
    """The MPII json list as a COCO-style document (one image entry per file name)."""
    import json

    json_file = Path(json_file)
    try:
        items = json.loads(json_file.read_text())
    except (OSError, ValueError) as e:
        raise PoseDataError(f"{json_file}: cannot read MPII json: {e}") from None
    if not isinstance(items, list):
        raise PoseDataError(f"{json_file}: expected a list of people (image, center, scale, joints, joints_vis)")
    heads = None
    if gt_mat is not None:
        heads, pos, missing = read_mpii_head_boxes(gt_mat)
        if len(heads) != len(items):
            raise PoseDataError(f"{gt_mat}: {len(heads)} people, but {json_file} has {len(items)}; they must be the same list")
    image_dir = Path(image_dir) if image_dir else None
    images: dict[str, dict] = {}
    anns = []
    for i, it in enumerate(items):
        where = f"{json_file}: person {i}"
        try:
            joints = np.asarray(it["joints"], dtype=np.float64).reshape(16, 2)
            vis = np.asarray(it.get("joints_vis", np.ones(16)), dtype=np.float64).reshape(16)
            center = np.asarray(it["center"], dtype=np.float64).reshape(2)
            scale = float(it["scale"])
            name = str(it["image"])
        except (KeyError, TypeError, ValueError):
            raise PoseDataError(f"{where}: needs image, center, scale and 16 joints") from None
        if not (np.isfinite(joints).all() and np.isfinite(center).all() and np.isfinite(scale) and scale > 0):
            raise PoseDataError(f"{where}: non-finite joints/center or a scale that is not positive")
        if heads is not None:
            labelled = ~missing[i]
            if np.abs(pos[i][labelled] - joints[labelled]).max(initial=0) > 1.0:
                raise PoseDataError(f"{gt_mat}: person {i} has other joints than {json_file}'s; the two must list the same people in order")
        if name not in images:
            images[name] = {"id": len(images) + 1, "file_name": name, **_image_size(image_dir, name)}
        if center[0] != -1:  # the reference readers' shift of MPII's torso-centred boxes
            center[1] += 15 * scale
        kp = np.zeros((16, 3))
        kp[:, :2] = joints - 1.0  # MATLAB's 1-based pixels
        kp[:, 2] = np.where(vis > 0, 2, 0)
        kp[vis <= 0, :2] = 0
        side = 200.0 * scale
        ann = {
            "id": i + 1, "image_id": images[name]["id"], "category_id": 1, "iscrowd": 0,
            "keypoints": [round(float(v), 3) for v in kp.reshape(-1)], "num_keypoints": int((vis > 0).sum()),
            "bbox": [center[0] - side / 2, center[1] - side / 2, side, side], "area": side * side,
            "center": [float(center[0]), float(center[1])], "scale": scale,
        }  # fmt: skip
        if heads is not None:
            ann["head_box"] = [float(v) - 1.0 for v in heads[i]]
        anns.append(ann)
    return {"images": list(images.values()), "annotations": anns, "categories": [_category(MPII16)]}


def lsp_to_coco(joints_mat: str | Path, image_dir: str | Path, name_format: str | None = None, first: int = 1) -> dict[str, Any]:
    """LSP (3x14xN) or LSPET (14x3xN) `joints.mat` as a COCO-style document, one person per image
    named `name_format.format(first + i)` in `image_dir` (default im0001.jpg for LSP,
    im00001.jpg for LSPET, as the archives name them)."""
    mat = _loadmat(joints_mat)
    if "joints" not in mat:
        raise PoseDataError(f"{joints_mat}: no 'joints' matrix")
    j = np.asarray(mat["joints"], dtype=np.float64)
    if j.shape[:2] == (3, 14):  # LSP: x, y, occluded
        xy, flag = j[:2].transpose(2, 1, 0), j[2].T
        v = np.where(flag > 0, 1, 2)
        name_format = name_format or "im{:04d}.jpg"
    elif j.shape[:2] == (14, 3):  # LSPET: x, y, labelled
        xy, flag = j[:, :2].transpose(2, 0, 1), j[:, 2].T
        v = np.where(flag > 0, 2, 0)
        name_format = name_format or "im{:05d}.jpg"
    else:
        raise PoseDataError(f"{joints_mat}: 'joints' is {j.shape}; expected 3x14xN (LSP) or 14x3xN (LSPET)")
    image_dir = Path(image_dir)
    images, anns = [], []
    for i in range(len(xy)):
        name = name_format.format(first + i)
        size = _image_size(image_dir, name)
        kp = np.concatenate([xy[i], v[i][:, None]], axis=1)
        kp[kp[:, 2] == 0, :2] = 0
        lab = kp[kp[:, 2] > 0, :2]
        if len(lab) == 0:
            continue
        lo, hi = lab.min(0), lab.max(0)
        pad = 0.15 * (hi - lo)
        x1, y1 = np.maximum(lo - pad, 0)
        x2, y2 = np.minimum(hi + pad, [size["width"] - 1, size["height"] - 1])
        images.append({"id": i + first, "file_name": name, **size})
        anns.append({
            "id": i + first, "image_id": i + first, "category_id": 1, "iscrowd": 0,
            "keypoints": [round(float(t), 2) for t in kp.reshape(-1)], "num_keypoints": int(len(lab)),
            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "area": float((x2 - x1) * (y2 - y1)),
        })  # fmt: skip
    return {"images": images, "annotations": anns, "categories": [_category(LSP14)]}

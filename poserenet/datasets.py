"""COCO-style keypoint data -> top-down training/evaluation samples.

`load_coco_instances` reads and checks an annotation file and returns one `Instance` per
person; `TopDownDataset` turns an instance into (crop, heatmap targets, target weights) with
the augmentation of `transforms` and the targets of a `HeatmapCodec`.

What is refused and what is skipped (the README repeats this):
- errors, naming the file and the record: unreadable or malformed JSON, a missing
  `images`/`annotations` list, an annotation for an unknown image id, a keypoint list whose
  length is not 3*K, NaN/inf in keypoints or box, a negative box size, image files that do not
  exist, an image that cannot be decoded when it is loaded;
- skipped and counted: crowd regions, people without labelled keypoints, boxes of zero area
  after clipping to the image (a warning gives the count).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .codec import HeatmapCodec
from .errors import PoseDataError
from .meta import KeypointMeta
from .metrics import head_size as head_size_of
from .transforms import AugmentConfig, affine_matrix, apply_affine, box_to_center_scale, sample_augmentation, warp

log = logging.getLogger(__name__)

# ImageNet statistics, RGB, as every published pose backbone was trained with.
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass
class Instance:
    """One person to crop: the box and, when known, the ground-truth keypoints."""

    image_id: int
    image_path: str
    bbox: np.ndarray  # [x, y, w, h] in image pixels
    keypoints: np.ndarray  # [K, 3]: x, y, v (v > 0 labelled, 2 visible, 1 occluded)
    area: float
    ann_id: int = -1
    score: float = 1.0  # box confidence (1 for ground-truth boxes)
    head_size: float = float("nan")  # MPII: 0.6 x head box diagonal, the PCKh unit


@dataclass
class CocoKeypoints:
    """A checked COCO-style keypoint file: its people, and what was skipped."""

    ann_file: str
    image_dir: str
    instances: list[Instance]
    skipped: Counter
    image_paths: dict[int, str]  # every image of the file, by id
    category_id: int = 1  # the keypoint category's id, used in results files

    @property
    def num_images(self) -> int:
        return len(self.image_paths)


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise PoseDataError(f"{path}: annotation file not found")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise PoseDataError(f"{path}: cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise PoseDataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None


def _as_floats(value: Any, n: int | None, what: str, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise PoseDataError(f"{where}: '{what}' must be a list of numbers") from None
    if n is not None and arr.size != n:
        raise PoseDataError(f"{where}: '{what}' has {arr.size} values, expected {n}")
    if not np.isfinite(arr).all():
        raise PoseDataError(f"{where}: '{what}' contains NaN or infinity")
    return arr


def load_coco_instances(
    ann_file: str | Path, image_dir: str | Path, meta: KeypointMeta, check_images: bool = True
) -> CocoKeypoints:
    """Read a COCO-style person-keypoints file into per-person instances (ground-truth boxes)."""
    ann_path = Path(ann_file)
    data = _load_json(ann_path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise PoseDataError(f"{ann_path}: expected a COCO object with 'images' and 'annotations' lists")
    k = meta.num_keypoints
    category_id = None
    for cat in data.get("categories") or []:
        names = cat.get("keypoints") if isinstance(cat, dict) else None
        if names and len(names) != k:
            raise PoseDataError(
                f"{ann_path}: category {cat.get('name', cat.get('id'))!r} has {len(names)} keypoints, "
                f"but the keypoint set {meta.name!r} has {k}; choose the matching data.keypoints"
            )
        if names and category_id is None:
            category_id = cat.get("id")

    images: dict[int, dict] = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise PoseDataError(f"{ann_path}: images[{i}] needs 'id' and 'file_name'")
        images[img["id"]] = img

    image_dir = Path(image_dir)
    skipped: Counter = Counter()
    instances: list[Instance] = []
    for i, ann in enumerate(data["annotations"]):
        where = f"{ann_path}: annotation id={ann.get('id', '?')} (annotations[{i}])" if isinstance(ann, dict) else f"{ann_path}: annotations[{i}]"
        if not isinstance(ann, dict):
            raise PoseDataError(f"{where}: not an object")
        if category_id is not None and ann.get("category_id", category_id) != category_id:
            skipped["other category"] += 1
            continue
        if ann.get("iscrowd", 0):
            skipped["crowd region"] += 1
            continue
        img = images.get(ann.get("image_id"))
        if img is None:
            raise PoseDataError(f"{where}: image_id {ann.get('image_id')!r} is not in 'images'")
        if "keypoints" not in ann or "bbox" not in ann:
            raise PoseDataError(f"{where}: needs 'keypoints' and 'bbox'")
        kpts = _as_floats(ann["keypoints"], None, "keypoints", where)
        if kpts.size != 3 * k:
            raise PoseDataError(
                f"{where}: 'keypoints' has {kpts.size} values, expected {3 * k} (x, y, v for {k} keypoints of {meta.name!r})"
            )
        kpts = kpts.reshape(k, 3).astype(np.float32)
        if not np.isin(kpts[:, 2], (0, 1, 2)).all():
            raise PoseDataError(f"{where}: visibility flags must be 0, 1 or 2, got {sorted(set(kpts[:, 2].tolist()))}")
        bbox = _as_floats(ann["bbox"], 4, "bbox", where)
        if bbox[2] < 0 or bbox[3] < 0:
            raise PoseDataError(f"{where}: negative box size (w={bbox[2]:g}, h={bbox[3]:g})")
        if not (kpts[:, 2] > 0).any():
            skipped["no labelled keypoints"] += 1
            continue
        if "center" in ann and "scale" in ann:
            # MPII (see convert.py): the crop is the square of side 200 x scale around the center,
            # not clipped to the image, exactly as the reference MPII readers crop.
            c = _as_floats(ann["center"], 2, "center", where)
            side = 200.0 * float(_as_floats(ann["scale"], 1, "scale", where)[0])
            bbox = np.array([c[0] - side / 2, c[1] - side / 2, side, side])
            x1, y1, x2, y2 = bbox[0], bbox[1], bbox[0] + side, bbox[1] + side
        else:
            # Clip the box to the image as the official HRNet reader does.
            x1, y1 = max(0.0, bbox[0]), max(0.0, bbox[1])
            x2, y2 = bbox[0] + max(0.0, bbox[2] - 1), bbox[1] + max(0.0, bbox[3] - 1)
            if "width" in img and "height" in img:
                x2, y2 = min(img["width"] - 1.0, x2), min(img["height"] - 1.0, y2)
        area = float(_as_floats(ann.get("area", bbox[2] * bbox[3]), 1, "area", where)[0])
        if x2 < x1 or y2 < y1 or bbox[2] * bbox[3] <= 0:
            skipped["empty box"] += 1
            continue
        head_size = float("nan")
        if "head_box" in ann:  # MPII, as written by `poserenet data convert`
            head_size = float(head_size_of(_as_floats(ann["head_box"], 4, "head_box", where)))
        instances.append(
            Instance(
                image_id=img["id"],
                image_path=str(image_dir / img["file_name"]),
                bbox=np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float32),
                keypoints=kpts,
                area=area,
                ann_id=ann.get("id", i),
                head_size=head_size,
            )
        )

    if check_images:
        missing = sorted({(inst.image_path, inst.image_id) for inst in instances if not Path(inst.image_path).is_file()})
        if missing:
            shown = "; ".join(f"{p} (image id {i})" for p, i in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise PoseDataError(f"{ann_path}: {len(missing)} image file(s) not found: {shown}{more}")
    if skipped.get("empty box"):
        log.warning("%s: skipped %d people with an empty box", ann_path, skipped["empty box"])
    paths = {i: str(image_dir / img["file_name"]) for i, img in images.items()}
    return CocoKeypoints(str(ann_path), str(image_dir), instances, skipped, paths, category_id or 1)


def load_detections(
    det_file: str | Path, data: CocoKeypoints, num_keypoints: int, score_threshold: float = 0.0
) -> tuple[list[Instance], Counter]:
    """People to crop from a COCO detection-results file (image_id, category_id, bbox, score),
    for the images of `data`: boxes of the keypoint category scoring at least `score_threshold`.

    Skipped and counted: other categories, low scores, boxes of zero size. Refused: records
    without those fields, non-finite values, negative sizes, image ids not in `data`.
    """
    det_path = Path(det_file)
    dets = _load_json(det_path)
    if not isinstance(dets, list):
        raise PoseDataError(f"{det_path}: expected a list of detections (image_id, category_id, bbox, score)")
    skipped: Counter = Counter()
    instances = []
    unknown = set()
    for i, d in enumerate(dets):
        where = f"{det_path}: detection {i}"
        if not isinstance(d, dict) or not {"image_id", "bbox", "score"} <= set(d):
            raise PoseDataError(f"{where}: needs 'image_id', 'bbox' and 'score'")
        if d.get("category_id", data.category_id) != data.category_id:
            skipped["other category"] += 1
            continue
        box = _as_floats(d["bbox"], 4, "bbox", where)
        score = float(_as_floats(d["score"], 1, "score", where)[0])
        if box[2] < 0 or box[3] < 0:
            raise PoseDataError(f"{where}: negative box size (w={box[2]:g}, h={box[3]:g})")
        if d["image_id"] not in data.image_paths:
            unknown.add(d["image_id"])
            continue
        if score < score_threshold:
            skipped["below score threshold"] += 1
            continue
        if box[2] * box[3] <= 0:
            skipped["empty box"] += 1
            continue
        instances.append(Instance(d["image_id"], data.image_paths[d["image_id"]], box.astype(np.float32),
                                  np.zeros((num_keypoints, 3), np.float32), float(box[2] * box[3]), -1, score))  # fmt: skip
    if unknown:
        shown = ", ".join(str(u) for u in sorted(unknown, key=str)[:5])
        raise PoseDataError(f"{det_path}: detections for {len(unknown)} image id(s) not in {data.ann_file} (e.g. {shown})")
    return instances, skipped


def read_image(path: str, image_id: int | None = None) -> np.ndarray:
    """RGB uint8 image, or a PoseDataError naming the file."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        what = "not found" if not Path(path).exists() else "cannot be decoded as an image"
        rec = f" (image id {image_id})" if image_id is not None else ""
        raise PoseDataError(f"{path}{rec}: {what}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def normalize(crop: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB -> 3xHxW float tensor, ImageNet-normalised."""
    x = (crop.astype(np.float32) * (1.0 / 255.0) - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


class TopDownDataset(Dataset):
    """Crops people and, for training, draws augmentation and encodes heatmap targets.

    Each item is a dict: `image` [3, H, W], `target` [K, h, w], `target_weight` [K] and the
    crop geometry (`center`, `scale`, `index`) needed to map predictions back to the image.
    `codecs` may hold several codecs (e.g. the 1x and 2x targets of PoseReNet); targets for
    the i-th are under `target`/`target_weight` for i = 0 and `target_{i}`/... after.
    """

    def __init__(
        self,
        instances: list[Instance],
        meta: KeypointMeta,
        input_hw: tuple[int, int],
        codecs: list[HeatmapCodec] | HeatmapCodec,
        augment: AugmentConfig | None = None,
        bbox_padding: float = 1.25,
        seed: int = 0,
        use_joint_weights: bool = False,
    ):
        self.instances = instances
        self.meta = meta
        self.input_hw = tuple(input_hw)
        self.codecs = [codecs] if isinstance(codecs, HeatmapCodec) else list(codecs)
        self.augment = augment
        self.bbox_padding = bbox_padding
        self.seed = seed
        self.epoch = 0
        self.joint_weights = np.asarray(meta.joint_weights, dtype=np.float32) if use_joint_weights else None
        self.flip_index = np.asarray(meta.flip_index)

    def set_epoch(self, epoch: int) -> None:
        """Augmentation is a function of (seed, epoch, index), so runs are reproducible and resumable."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        # (epoch, index) from an EpochSampler, so augmentation follows the epoch even in
        # persistent workers; a plain index uses the epoch of set_epoch().
        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
        inst = self.instances[index]
        image = read_image(inst.image_path, inst.image_id)
        center, scale = box_to_center_scale(inst.bbox, self.input_hw, self.bbox_padding)
        kpts = inst.keypoints.copy()
        rotation, flip = 0.0, False
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, epoch, index])
            center, scale, rotation, flip = sample_augmentation(
                self.augment, center, scale, kpts, self.meta, self.input_hw, rng
            )
        m = affine_matrix(center, scale, rotation, self.input_hw, flip=flip)
        crop = warp(image, m, self.input_hw)
        kpts[:, :2] = apply_affine(kpts[:, :2], m)
        if flip:
            kpts = kpts[self.flip_index]
        item: dict[str, Any] = {
            "image": normalize(crop),
            "center": torch.from_numpy(center.astype(np.float32)),
            "scale": torch.from_numpy(scale.astype(np.float32)),
            "index": index,
        }
        for i, codec in enumerate(self.codecs):
            target, weight = codec.encode(kpts[:, :2], kpts[:, 2])
            if self.joint_weights is not None:
                weight = weight * self.joint_weights
            suffix = "" if i == 0 else f"_{i}"
            item["target" + suffix] = torch.from_numpy(target)
            item["target_weight" + suffix] = torch.from_numpy(weight)
        return item

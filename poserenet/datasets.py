"""People -> top-down training/evaluation samples: `TopDownDataset` turns an `Instance` (from
`annotations.load_coco_instances`) into (crop, heatmap targets, target weights) with the
augmentation of `transforms` and the targets of a `HeatmapCodec`.
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .annotations import Instance, image_info
from .codec import HeatmapCodec
from .errors import PoseDataError
from .meta import KeypointMeta
from .transforms import AugmentConfig, affine_matrix, apply_affine, box_to_center_scale, sample_augmentation, warp

log = logging.getLogger(__name__)

# ImageNet statistics, RGB, as every published pose backbone was trained with.
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def read_image(path: str, image_id: Any = None) -> np.ndarray:
    """RGB uint8 image, or a PoseDataError naming the file: missing, truncated (a JPEG or PNG
    whose end is missing, which OpenCV would fill with grey), or not decodable."""
    rec = f" (image id {image_id})" if image_id is not None else ""
    info = image_info(path)
    if info is None:
        raise PoseDataError(f"{path}{rec}: not found")
    if not info[1]:
        raise PoseDataError(f"{path}{rec}: the file is truncated")
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise PoseDataError(f"{path}{rec}: cannot be decoded as an image")
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

"""Assemble the stages from a Config: keypoint set, codec, model, datasets, checkpoints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .codec import HeatmapCodec
from .config import Config
from .errors import ConfigError
from .datasets import CocoKeypoints, TopDownDataset, load_coco_instances
from .errors import PoseDataError
from .meta import KeypointMeta, load_meta
from .models import create_model


def build_meta(cfg: Config) -> KeypointMeta:
    return load_meta(cfg.data.keypoints)


def build_codec(cfg: Config) -> HeatmapCodec:
    h, w = cfg.data.input_hw
    if h % cfg.codec.stride or w % cfg.codec.stride:
        raise ConfigError(f"input size {h}x{w} is not a multiple of the heatmap stride {cfg.codec.stride}")
    return HeatmapCodec(tuple(cfg.data.input_hw), cfg.heatmap_hw, cfg.codec.sigma, cfg.codec.dark)


def build_model(cfg: Config, meta: KeypointMeta) -> nn.Module:
    model = create_model(cfg.model.name, num_keypoints=meta.num_keypoints, **cfg.model.kwargs)
    if cfg.model.pretrained:
        state = load_state_dict(cfg.model.pretrained)
        load_weights(model, state, f"{cfg.model.pretrained}: does not fit model {cfg.model.name}")
    return model


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], context: str) -> None:
    """Strict loading with one readable message listing mis-shaped, missing and unexpected keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problems = []
    if shapes:
        problems.append(f"{len(shapes)} mis-shaped ({'; '.join(shapes[:3])})")
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    if problems:
        raise PoseDataError(f"{context}: " + ", ".join(problems))
    model.load_state_dict(state)


def check_output_size(model: nn.Module, cfg: Config) -> None:
    """One dummy forward pass: the model's heatmaps must have the codec's size."""
    h, w = cfg.data.input_hw
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, h, w, device=next(model.parameters()).device))
    model.train(was_training)
    if tuple(out.shape[-2:]) != cfg.heatmap_hw:
        raise ConfigError(
            f"{cfg.model.name} turns a {h}x{w} input into {out.shape[-2]}x{out.shape[-1]} heatmaps, but the codec "
            f"expects {cfg.heatmap_hw[0]}x{cfg.heatmap_hw[1]}; use an input size that is a multiple of 32"
        )


def load_split(cfg: Config, meta: KeypointMeta, split: str) -> CocoKeypoints:
    ann = cfg.data.path(getattr(cfg.data, f"{split}_ann"))
    images = cfg.data.path(getattr(cfg.data, f"{split}_images"))
    return load_coco_instances(ann, images, meta)


def build_dataset(cfg: Config, meta: KeypointMeta, data: CocoKeypoints, train: bool) -> TopDownDataset:
    return TopDownDataset(
        data.instances,
        meta,
        tuple(cfg.data.input_hw),
        build_codec(cfg),
        augment=cfg.augment if train else None,
        bbox_padding=cfg.data.bbox_padding,
        seed=cfg.train.seed,
        use_joint_weights=cfg.loss.use_joint_weights,
    )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Model weights from a checkpoint of ours or a raw state dict (tensors only, `weights_only`)."""
    path = Path(path)
    if not path.is_file():
        raise PoseDataError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise PoseDataError(f"{path}: cannot read checkpoint: {e}") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise PoseDataError(f"{path}: expected a state dict")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def save_checkpoint_atomic(obj: dict[str, Any], path: str | Path) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)

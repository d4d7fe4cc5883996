"""Assemble the stages from a Config: keypoint set, codecs, model, datasets."""

from __future__ import annotations

import torch
from torch import nn

from .annotations import CocoKeypoints, load_coco_instances
from .checkpoint import load_weights, read_state_dict
from .codec import HeatmapCodec
from .config import Config
from .datasets import TopDownDataset
from .errors import ConfigError
from .meta import KeypointMeta, load_meta
from .models import create_model


def build_meta(cfg: Config) -> KeypointMeta:
    return load_meta(cfg.data.keypoints)


def build_codec(cfg: Config) -> HeatmapCodec:
    """The codec of the backbone's heatmaps (1/stride of the input)."""
    h, w = cfg.data.input_hw
    if h % cfg.codec.stride or w % cfg.codec.stride:
        raise ConfigError(f"input size {h}x{w} is not a multiple of the heatmap stride {cfg.codec.stride}")
    try:
        return HeatmapCodec(tuple(cfg.data.input_hw), cfg.heatmap_hw, cfg.codec.sigma, cfg.codec.dark, cfg.codec.blur_kernel)
    except ValueError as e:
        raise ConfigError(f"codec.blur_kernel: {e}") from None


def target_scales(cfg: Config) -> list[int]:
    """Heatmap resolutions that get training targets: 1x, and 2x for PoseReNet's lifted outputs."""
    p = cfg.model.poserenet
    return [1, 2] if p.enabled and (p.lifting or p.aggregation == "lifted") else [1]


def output_scale(cfg: Config) -> int:
    """Resolution of the model's final heatmaps relative to the codec's."""
    p = cfg.model.poserenet
    return 2 if p.enabled and p.aggregation == "lifted" else 1


def build_model(cfg: Config, meta: KeypointMeta) -> nn.Module:
    if cfg.model.pretrained_scope not in ("all", "backbone"):
        raise ConfigError(f"model.pretrained_scope must be 'all' or 'backbone', got {cfg.model.pretrained_scope!r}")
    model = create_model(cfg.model.name, num_keypoints=meta.num_keypoints, poserenet=cfg.model.poserenet, **cfg.model.kwargs)
    if cfg.model.pretrained:
        load_weights(
            model,
            read_state_dict(cfg.model.pretrained),
            source=cfg.model.pretrained,
            skip_mismatched_head=cfg.model.skip_mismatched_head,
            backbone_only=cfg.model.pretrained_scope == "backbone",
        )
    return model


def check_output_size(model: nn.Module, cfg: Config) -> None:
    """One dummy forward pass: the model's final heatmaps must have the size the codec expects."""
    h, w = cfg.data.input_hw
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, h, w, device=next(model.parameters()).device))
    model.train(was_training)
    s = output_scale(cfg)
    want = (cfg.heatmap_hw[0] * s, cfg.heatmap_hw[1] * s)
    if tuple(out.shape[-2:]) != want:
        raise ConfigError(
            f"{cfg.model.name} turns a {h}x{w} input into {out.shape[-2]}x{out.shape[-1]} heatmaps, but the codec "
            f"expects {want[0]}x{want[1]}; use an input size that is a multiple of 32 (64 for hourglasses)"
        )


def load_split(cfg: Config, meta: KeypointMeta, split: str) -> CocoKeypoints:
    ann = cfg.data.path(getattr(cfg.data, f"{split}_ann"))
    images = cfg.data.path(getattr(cfg.data, f"{split}_images"))
    return load_coco_instances(ann, images, meta, keep_doc=split == "val")


def target_codecs(cfg: Config) -> list[HeatmapCodec]:
    """The codecs of the training targets: 1x, and 2x for PoseReNet, whose Gaussians have
    `codec.sigma_2x` (default: `codec.sigma`) in 2x pixels."""
    codec = build_codec(cfg)
    sigma_2x = cfg.codec.sigma_2x or cfg.codec.sigma
    return [codec.at_resolution(2, sigma=sigma_2x) if s == 2 else codec for s in target_scales(cfg)]


def build_dataset(cfg: Config, meta: KeypointMeta, data: CocoKeypoints, train: bool) -> TopDownDataset:
    return TopDownDataset(
        data.instances,
        meta,
        tuple(cfg.data.input_hw),
        target_codecs(cfg) if train else [build_codec(cfg)],
        augment=cfg.augment if train else None,
        bbox_padding=cfg.data.bbox_padding,
        seed=cfg.train.seed,
        use_joint_weights=cfg.loss.use_joint_weights,
    )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name}, but PyTorch sees no CUDA GPU here; use auto or cpu")
    return torch.device(name)

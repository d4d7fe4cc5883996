"""Model factory: `create_model(name, num_keypoints=..., poserenet=...)`, timm-style, from a
plain dict of constructors."""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from typing import Any, Callable

from torch import nn

from ..errors import ConfigError
from .hourglass import StackedHourglass
from .hrnet import HRNet
from .plugin import AGGREGATIONS, PoseReNet, PoseReNetConfig
from .simplebaseline import SimpleBaseline

MODELS: dict[str, Callable[..., nn.Module]] = {
    **{f"simplebaseline_r{d}": partial(SimpleBaseline, d) for d in (18, 34, 50, 101, 152)},
    "hrnet_w32": partial(HRNet, 32),
    "hrnet_w48": partial(HRNet, 48),
    **{f"hourglass_{s}": partial(StackedHourglass, s) for s in (2, 4, 8)},
}


def create_model(
    name: str,
    num_keypoints: int = 17,
    poserenet: bool | dict[str, Any] | PoseReNetConfig | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a heatmap model by name, e.g. `create_model("hrnet_w32", num_keypoints=17, poserenet=True)`.

    `poserenet`: None/False for the backbone alone; True for PoseReNet with its defaults; a dict
    or `PoseReNetConfig` of options (`aggregation`, `attention`, `channel_attention`, `lifting`,
    `identity`). Extra keyword arguments go to the backbone's constructor (for SimpleBaseline:
    `deconv_channels`, `base_width`; HRNet: `modules_per_stage`, `num_blocks`; hourglass:
    `num_blocks`, `num_feats`).
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    try:
        model = MODELS[name](num_keypoints=num_keypoints, **kwargs)
    except TypeError as e:  # a misspelt model.kwargs key
        raise ConfigError(f"model {name!r}: {e}") from None
    cfg = _plugin_config(poserenet)
    if cfg is None or not cfg.enabled:
        return model
    try:
        return PoseReNet(model, num_keypoints, cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _plugin_config(spec: bool | dict[str, Any] | PoseReNetConfig | None) -> PoseReNetConfig | None:
    if spec is None or spec is False:
        return None
    if spec is True:
        return PoseReNetConfig(enabled=True)
    if isinstance(spec, PoseReNetConfig):
        return spec
    try:
        return PoseReNetConfig(**{"enabled": True, **dict(spec)})
    except TypeError as e:
        known = ", ".join(asdict(PoseReNetConfig()))
        raise ConfigError(f"PoseReNet options: {e}; known: {known}") from None


def list_models() -> list[str]:
    return sorted(MODELS)


__all__ = [
    "AGGREGATIONS", "MODELS", "HRNet", "PoseReNet", "PoseReNetConfig", "SimpleBaseline", "StackedHourglass",
    "create_model", "list_models",
]  # fmt: skip

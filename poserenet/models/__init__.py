"""Model factory: `create_model(name, num_keypoints=...)`, timm-style, from a plain dict."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from torch import nn

from ..errors import ConfigError
from .simplebaseline import SimpleBaseline

MODELS: dict[str, Callable[..., nn.Module]] = {
    f"simplebaseline_r{depth}": partial(SimpleBaseline, depth)
    for depth in (18, 34, 50, 101, 152)
}


def create_model(name: str, num_keypoints: int = 17, **kwargs: Any) -> nn.Module:
    """Build a heatmap model by name, e.g. `create_model("simplebaseline_r50", num_keypoints=17)`.

    Extra keyword arguments go to the model's constructor (for SimpleBaseline:
    `deconv_channels`, `base_width`).
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    try:
        return MODELS[name](num_keypoints=num_keypoints, **kwargs)
    except TypeError as e:  # a misspelt model.kwargs key
        raise ConfigError(f"model {name!r}: {e}") from None


def list_models() -> list[str]:
    return sorted(MODELS)


__all__ = ["MODELS", "SimpleBaseline", "create_model", "list_models"]

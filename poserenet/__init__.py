"""poserenet: top-down 2D human pose estimation with the PoseReNet heatmap plug-in."""

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models"]


def __getattr__(name: str):
    # The models (and torch) load on first use, so that `poserenet metrics` scoring a JSON file
    # does not pay for them.
    if name in ("create_model", "list_models"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'poserenet' has no attribute {name!r}")

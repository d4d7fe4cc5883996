"""poserenet: top-down 2D human pose estimation with the PoseReNet heatmap plug-in."""

__version__ = "0.1.0"

from .models import create_model, list_models  # noqa: E402

__all__ = ["__version__", "create_model", "list_models"]

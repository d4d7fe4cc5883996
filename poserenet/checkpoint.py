"""Reading and writing weights.

`read_state_dict` accepts a raw state dict or the usual wrappers (`state_dict`, `model`, a
`module.` prefix from DataParallel/DDP) and loads with `weights_only=True`, so a checkpoint
cannot run code. `load_weights` matches it to a model strictly, or (for fine-tuning) leaves
out a head of another keypoint count, or (for ImageNet initialisation) only the trunk; anything
else that differs is refused in one message that says what.
"""

from __future__ import annotations

import logging
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import PoseDataError
from .files import write_atomic

log = logging.getLogger(__name__)

# Keys that depend on the number of keypoints, per architecture (prefixes of parameter names).
HEAD_PREFIXES: dict[str, tuple[str, ...]] = {
    "SimpleBaseline": ("final_layer.",),
    "HRNet": ("final_layer.",),
    "StackedHourglass": ("score.", "score_."),
}
# Keys that an ImageNet classifier checkpoint does not have.
NOT_IN_IMAGENET: dict[str, tuple[str, ...]] = {
    "SimpleBaseline": ("deconv_layers.", "final_layer."),
    "HRNet": ("final_layer.",),
}


def read_checkpoint_file(path: str | Path) -> Any:
    """The object saved in a checkpoint file, loaded safely (weights_only) on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise PoseDataError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise PoseDataError(f"{path}: the checkpoint file is empty")
    # torch.load does not check the zip CRCs: a flipped bit would load as a wrong weight.
    try:
        bad = None
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as e:  # RuntimeError: "encrypted"
        raise PoseDataError(f"{path}: cannot read checkpoint: a damaged archive ({e})") from None
    if bad is not None:
        raise PoseDataError(f"{path}: the checkpoint is damaged: {bad} fails its CRC check")
    try:
        with warnings.catch_warnings():  # a foreign pickle's "please file an issue" before our error
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: torch raises several types
        raise PoseDataError(f"{path}: cannot read checkpoint: {_load_error(e)}") from None


def _load_error(e: Exception) -> str:
    """One line about why torch.load refused a file: the Python object a pickle asked for, when
    that is why (such files are never executed), else the first sentence of torch's reason."""
    text = str(e)
    blocked = re.search(r"Unsupported global: GLOBAL (\S+) was not an allowed global", text) or re.search(
        r"unsupported GLOBAL (\S+) whose module", text
    )
    if blocked:
        return f"it asks for the Python object {blocked.group(1)}, which a weights-only load refuses (nothing in it was run)"
    detail = text.split("WeightsUnpickler error:", 1)[-1] if "WeightsUnpickler error:" in text else text
    first = next((line.strip() for line in detail.splitlines() if line.strip()), "")
    first = first.split(". ")[0].rstrip(".")
    return f"not a PyTorch checkpoint, or a truncated or damaged one ({first or type(e).__name__})"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, unwrapped from the common containers."""
    path = Path(path)
    obj = read_checkpoint_file(path)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PoseDataError(f"{path}: no state dict of tensors found (looked at the top level, 'state_dict' and 'model')")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


@dataclass
class LoadReport:
    loaded: int = 0
    skipped_head: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # checkpoint keys the model has no use for
    initialised: list[str] = field(default_factory=list)  # model keys left at their initial value


def _prefixes(model: nn.Module, table: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    from .models import PoseReNet

    if isinstance(model, PoseReNet):
        return tuple("backbone." + p for p in table.get(type(model.backbone).__name__, ())) + ("refine.",)
    return table.get(type(model).__name__, ())


def keypoints_of(state: dict[str, torch.Tensor]) -> int | None:
    """The keypoint count a checkpoint was trained for, read off its output layer."""
    for key in ("final_layer.weight", "backbone.final_layer.weight", "score.0.weight", "backbone.score.0.weight"):
        if key in state:
            return int(state[key].shape[0])
    return None


def load_weights(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: str = "checkpoint",
    skip_mismatched_head: bool = False,
    backbone_only: bool = False,
    strict_plugin: bool = False,
) -> LoadReport:
    """Load `state` into `model`.

    - default: every key must match in name and shape;
    - `skip_mismatched_head`: output layers of another keypoint count stay initialised
      (fine-tuning on another keypoint set);
    - `backbone_only`: only the trunk must match (an ImageNet classifier checkpoint: its
      classifier is ignored, the pose head stays initialised).

    A plain backbone checkpoint loads into a PoseReNet-wrapped model's backbone; the plug-in's
    own layers then stay initialised (not with `strict_plugin`, as for resuming a run).
    """
    from .models import PoseReNet

    own = model.state_dict()
    if isinstance(model, PoseReNet) and not strict_plugin and not any(k.startswith("backbone.") for k in state):
        state = {"backbone." + k: v for k, v in state.items()}
    report = LoadReport()
    head = _prefixes(model, HEAD_PREFIXES)
    not_imagenet = _prefixes(model, NOT_IN_IMAGENET)
    if isinstance(model, PoseReNet) and not strict_plugin and not any(k.startswith("refine.") for k in state):
        report.initialised += [k for k in own if k.startswith("refine.")]
    elif isinstance(model, PoseReNet):
        head = head[:-1]  # refine.* is in the checkpoint: it must match

    if backbone_only:  # a classifier's own head (e.g. HRNet's 1x1 "final_layer") is not ours
        report.ignored = [k for k in state if k.startswith(not_imagenet)]
        state = {k: v for k, v in state.items() if not k.startswith(not_imagenet)}
    missing = [k for k in own if k not in state and k not in report.initialised]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and state[k].shape != own[k].shape]
    if skip_mismatched_head:
        report.skipped_head = [k for k in shapes if k.startswith(head)]
        shapes = [k for k in shapes if k not in report.skipped_head]
    if backbone_only:
        report.ignored += unexpected
        unexpected = []
        report.initialised += [k for k in missing if k.startswith(not_imagenet)]
        missing = [k for k in missing if not k.startswith(not_imagenet)]

    if missing or unexpected or shapes:
        problems = []
        if shapes:
            what = "; ".join(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in shapes[:3])
            problems.append(f"{len(shapes)} mis-shaped ({what})")
        if missing:
            problems.append(f"{len(missing)} missing from the checkpoint (e.g. {', '.join(missing[:3])})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        hint = ""
        k_ckpt, k_model = keypoints_of(state), keypoints_of(own)
        if k_ckpt is not None and k_model is not None and k_ckpt != k_model:
            hint = (f"; the checkpoint predicts {k_ckpt} keypoints, the model {k_model} "
                    "(to fine-tune, set model.skip_mismatched_head=true)")  # fmt: skip
        elif missing or unexpected:
            hint = "; it looks like another architecture (check model.name and model.kwargs)"
        raise PoseDataError(f"{source}: does not fit {type(model).__name__}: " + ", ".join(problems) + hint)

    to_load = {k: v for k, v in state.items() if k in own and k not in report.skipped_head}
    model.load_state_dict(to_load, strict=False)
    report.loaded = len(to_load)
    if report.skipped_head:
        log.warning("%s: left %d output-layer tensors initialised (other keypoint count)", source, len(report.skipped_head))
    return report


def save_atomic(obj: dict[str, Any], path: str | Path) -> None:
    """torch.save through `files.write_atomic`: never half a checkpoint, a full disk named."""
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by `poserenet train` (model, optimizer, scheduler, epoch, config)."""
    ckpt = read_checkpoint_file(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "epoch" not in ckpt:
        raise PoseDataError(f"{path}: not a poserenet training checkpoint (no 'model'/'epoch')")
    return ckpt

"""PoseReNet: a light plug-in that refines the K heatmaps of any heatmap model.

On the backbone's heatmaps f_in [N, K, H, W], three branches (paper, Eqs. 4-7):

1. channel attention  f1 = sigmoid(conv1x1(relu(conv1x1(GlobalPool(f_in))))) * f_in
   (Eq. 4; the ReLU between the two convolutions is SE-Net's: without it they collapse into
   one linear map), or the ECA-Net form: a 1-D convolution across channels with an adaptive
   kernel size;
2. resolution lifting f2 = sigmoid(conv3x3(conv1x1(Deconv(f_in)))) at 2H x 2W, supervised with
   ground-truth heatmaps rendered at that resolution;
3. identity            f3 = conv3x3(conv3x3(f_in)).

f_out = Aggregation(f1, f2, f3); the paper leaves Aggregation open, so these are offered:

- "sum":    f1 + f3 + avgpool2(f2), at H x W;
- "gate":   (f1 + f3) * avgpool2(f2): the lifted map acts as a spatial attention;
- "lifted": up2(f1 + f3) + f2, at 2H x 2W (decoded at the finer resolution);
- "fusion": conv1x1([f1, f3, avgpool2(f2)]), a learned 3K -> K fusion.

"lifted" is the default: it scored best of the four on LSPET (docs/ablation.md).

With `zero_init` (for boosting a trained model) the output is f_in + g * (f_out - f_in) with a
learned per-keypoint g that starts at 0, so the boosted model starts exactly where the base is.

In training mode the module returns a dict of every supervised output: "heatmaps" (f_out),
"lifted" (f2), "backbone" (f_in), and any extra outputs of the backbone (e.g. hourglass stacks);
in eval mode only f_out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

AGGREGATIONS = ("sum", "gate", "lifted", "fusion")
ATTENTIONS = ("conv", "eca")


@dataclass
class PoseReNetConfig:
    enabled: bool = False
    # sum | gate | lifted | fusion; "lifted" won the controlled comparison of docs/ablation.md.
    aggregation: str = "lifted"
    attention: str = "conv"  # conv: the paper's two 1x1 convolutions | eca: ECA-Net's 1-D convolution
    channel_attention: bool = True  # branch 1
    lifting: bool = True  # branch 2
    identity: bool = True  # branch 3
    # Start as the identity (for boosting a trained model): f_out = f_in + g * (Aggregation - f_in),
    # with a learned per-keypoint g that starts at 0.
    zero_init: bool = False


def eca_kernel_size(channels: int, gamma: float = 2.0, b: float = 1.0) -> int:
    """ECA-Net's adaptive kernel size: the odd number nearest above |log2(C)/gamma + b/gamma|."""
    k = int(abs(math.log2(channels) / gamma + b / gamma))
    return k if k % 2 else k + 1


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, kind: str = "conv"):
        super().__init__()
        self.kind = kind
        if kind == "conv":
            self.fc1 = nn.Conv2d(channels, channels, 1)
            self.fc2 = nn.Conv2d(channels, channels, 1)
        elif kind == "eca":
            k = eca_kernel_size(channels)
            self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)
        else:
            raise ValueError(f"channel attention must be one of {ATTENTIONS}, got {kind!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(x, 1)  # [N, K, 1, 1]
        if self.kind == "conv":
            w = self.fc2(F.relu(self.fc1(pooled)))
        else:
            w = self.conv(pooled.flatten(2).transpose(1, 2)).transpose(1, 2).unsqueeze(-1)
        return torch.sigmoid(w) * x


class ResolutionLifting(nn.Module):
    # The sigmoid map starts near 0 (a prior of 1%, as detectors initialise their classifiers):
    # at 0.5 everywhere its MSE against mostly-zero targets would swamp the heatmap loss.
    PRIOR = 0.01

    def __init__(self, channels: int):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(channels, channels, 4, 2, 1, bias=False)
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.conv3 = nn.Conv2d(channels, channels, 3, 1, 1)
        nn.init.constant_(self.conv3.bias, -math.log((1 - self.PRIOR) / self.PRIOR))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv3(self.conv1(self.deconv(x))))


class IdentityBranch(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv_a = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv_b = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x))


class ResidualGate(nn.Module):
    """Per-keypoint mixing weight between the backbone's heatmaps and the refined ones."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, f_in: torch.Tensor, refined: torch.Tensor) -> torch.Tensor:
        return f_in + self.weight * (refined - f_in)


class PoseReNet(nn.Module):
    """A backbone followed by the refinement branches. Parameters: `backbone.*` (the wrapped
    model's own names, so its checkpoints load into it) and `refine.*`."""

    def __init__(self, backbone: nn.Module, num_keypoints: int, cfg: PoseReNetConfig | None = None):
        super().__init__()
        cfg = cfg or PoseReNetConfig(enabled=True)
        if cfg.aggregation not in AGGREGATIONS:
            raise ValueError(f"PoseReNet aggregation must be one of {AGGREGATIONS}, got {cfg.aggregation!r}")
        if not (cfg.channel_attention or cfg.identity):
            raise ValueError("PoseReNet needs the channel attention or the identity branch (the lifted map alone is a gate)")
        if cfg.aggregation in ("gate", "lifted") and not cfg.lifting:
            raise ValueError(f"PoseReNet aggregation {cfg.aggregation!r} needs the resolution lifting branch; without it use sum or fusion")
        if cfg.zero_init and cfg.aggregation == "lifted":
            raise ValueError("zero_init needs an output at the backbone's resolution; use aggregation sum, gate or fusion")
        self.cfg = cfg
        self.num_keypoints = num_keypoints
        self.backbone = backbone
        k = num_keypoints
        self.refine = nn.ModuleDict()
        if cfg.channel_attention:
            self.refine["attention"] = ChannelAttention(k, cfg.attention)
        if cfg.lifting:
            self.refine["lifting"] = ResolutionLifting(k)
        if cfg.identity:
            self.refine["identity"] = IdentityBranch(k)
        if cfg.aggregation == "fusion":
            n_in = int(cfg.channel_attention) + int(cfg.lifting) + int(cfg.identity)
            self.refine["fusion"] = nn.Conv2d(n_in * k, k, 1)
        if cfg.zero_init:
            self.refine["gate"] = ResidualGate(k)

    @classmethod
    def wrap(cls, model: nn.Module, num_keypoints: int, **options) -> PoseReNet:
        """Attach PoseReNet to any module whose output is [N, K, H, W] heatmaps."""
        return cls(model, num_keypoints, PoseReNetConfig(enabled=True, **options))

    @property
    def output_stride_factor(self) -> int:
        """How much finer than the backbone's heatmaps the final output is."""
        return 2 if self.cfg.aggregation == "lifted" else 1

    def refine_heatmaps(self, f_in: torch.Tensor) -> dict[str, torch.Tensor]:
        r = self.refine
        f1 = r["attention"](f_in) if "attention" in r else None
        f2 = r["lifting"](f_in) if "lifting" in r else None
        f3 = r["identity"](f_in) if "identity" in r else None
        base = [f for f in (f1, f3) if f is not None]
        agg = self.cfg.aggregation
        if agg == "sum":
            out = sum(base) + (F.avg_pool2d(f2, 2) if f2 is not None else 0)
        elif agg == "gate":
            out = sum(base) * F.avg_pool2d(f2, 2)
        elif agg == "lifted":
            out = F.interpolate(sum(base), scale_factor=2, mode="bilinear", align_corners=False) + f2
        else:  # fusion
            parts = base + ([F.avg_pool2d(f2, 2)] if f2 is not None else [])
            out = r["fusion"](torch.cat(parts, dim=1))
        if "gate" in r:
            out = r["gate"](f_in, out)
        outputs = {"heatmaps": out, "backbone": f_in}
        if f2 is not None:
            outputs["lifted"] = f2
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        base = self.backbone(x)
        extra: dict[str, torch.Tensor] = {}
        if isinstance(base, dict):  # e.g. a stacked hourglass in training: keep its other outputs
            extra = {k: v for k, v in base.items() if k != "heatmaps"}
            base = base["heatmaps"]
        outputs = self.refine_heatmaps(base)
        if self.training:
            return {**extra, **outputs}
        return outputs["heatmaps"]

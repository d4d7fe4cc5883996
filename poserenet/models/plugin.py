"""PoseReNet: a light plug-in that refines the K heatmaps of any heatmap model.

On the backbone's heatmaps f_in [N, K, H, W], three branches (paper, Eqs. 4-7):

1. channel attention  f1 = sigmoid(conv1x1(relu(conv1x1(GlobalPool(f_in))))) * f_in
   (Eq. 4; the ReLU between the two convolutions is SE-Net's: without it they collapse into
   one linear map), or the ECA-Net form: a 1-D convolution across channels;
2. resolution lifting f2 = sigmoid(conv3x3(conv1x1(Deconv(f_in)))) at 2H x 2W, supervised with
   ground-truth heatmaps rendered at that resolution;
3. identity            f3 = conv3x3(conv3x3(f_in)).

f_out = Aggregation(f1, f2, f3). The paper leaves Aggregation open; f2 is a sigmoid map, which
cannot take a Gaussian's shape, so it never enters the output as a summand: the paper calls it
a spatial attention with high-resolution supervision, and that is how it is used. With
m = (f1 + f3) / 2:

- "average": m; f2 is auxiliary supervision only (not computed at inference);
- "gate":    m * (1 + down2(f2)): f2 as a residual spatial attention, at H x W;
- "lifted":  up2(m) * (1 + f2), at 2H x 2W (decoded at the finer resolution);
- "fusion":  conv1x1([f1, f3, down2(f2)]), a learned 3K -> K mix that starts as m.

Every branch starts as (or near) the identity, so a fresh PoseReNet decodes where its backbone
does: Dirac-initialised identity convolutions, the channel attention open (~0.95), the lifting
branch's deconvolution a bilinear upsampling and its last convolution zero (f2 = 1% everywhere).

Resolutions follow the codec's pixel convention (heatmap pixel i <-> input pixel i * stride),
so 1x pixel i is 2x pixel 2i: `up2`, `down2` and the deconvolution's footprint are centred
there (bilinear upsampling with align_corners=False or a 4x4 stride-2 deconvolution would put
it at 2i + 0.5).

With `zero_init` (for boosting a trained model) the output is f_in + g * (f_out - f_in) with a
learned per-keypoint g that starts at 0 (f_in upsampled for "lifted"), so the boosted model
starts exactly where the base is.

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

AGGREGATIONS = ("average", "gate", "lifted", "fusion")
ATTENTIONS = ("conv", "eca")
SCORES = ("backbone", "refined")
# Channel attention starts open: sigmoid(OPEN_LOGIT) = 0.95 of each map passes.
OPEN_LOGIT = math.log(0.95 / 0.05)


@dataclass
class PoseReNetConfig:
    enabled: bool = False
    # average | gate | lifted | fusion (see the module docstring and docs/ablation.md).
    aggregation: str = "lifted"
    attention: str = "conv"  # conv: the paper's two 1x1 convolutions | eca: ECA-Net's 1-D convolution
    channel_attention: bool = True  # branch 1
    lifting: bool = True  # branch 2
    identity: bool = True  # branch 3
    # Start exactly as the backbone (for boosting a trained model): f_out = f_in + g * (Aggregation - f_in),
    # with a learned per-keypoint g that starts at 0.
    zero_init: bool = False
    # How much of the plug-in's loss reaches the backbone through its heatmaps: 1 end to end; 0
    # detached (the backbone learns from its own loss only, exactly as it would alone); between,
    # that fraction of the plug-in's gradient (docs/ablation.md measures 1, 0.3 and 0).
    backbone_grad: float = 1.0
    # Keypoint scores (pose rescoring, OKS-NMS, AP's ranking): the maxima of the backbone's
    # heatmaps ("backbone") or of the refined ones ("refined"); positions always come from the
    # refined heatmaps.
    scores: str = "backbone"
    # A refinement, not a relocation: where the refined keypoint lies more than this many
    # backbone heatmap pixels from the backbone's own, the backbone's is kept (about the targets'
    # sigma; 0: off). The refined maps sharpen nearly-right joints, but (1 + f2) can also lift a
    # second peak (the other wrist, a crossing limb) above the right one (docs/ablation.md).
    max_move: float = 2.0


def up2(x: torch.Tensor) -> torch.Tensor:
    """[..., H, W] -> [..., 2H, 2W], linear: 1x pixel i lands on 2x pixel 2i, odd pixels are the
    mean of their neighbours, the last row/column repeats the border."""
    return _up_last(_up_last(x).transpose(-1, -2)).transpose(-1, -2)


def _up_last(x: torch.Tensor) -> torch.Tensor:
    nxt = torch.cat([x[..., 1:], x[..., -1:]], dim=-1)
    return torch.stack([x, 0.5 * (x + nxt)], dim=-1).flatten(-2)


def down2(x: torch.Tensor) -> torch.Tensor:
    """[..., 2H, 2W] -> [..., H, W]: a [1, 2, 1] / 4 triangle centred on 2x pixel 2i (avg_pool2d
    would centre it on 2i + 0.5)."""
    return _down_last(_down_last(x).transpose(-1, -2)).transpose(-1, -2)


def _down_last(x: torch.Tensor) -> torch.Tensor:
    prev = torch.cat([x[..., :1], x[..., 1:-1:2]], dim=-1)
    return 0.25 * prev + 0.5 * x[..., 0::2] + 0.25 * x[..., 1::2]


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
            last = self.fc2
        elif kind == "eca":
            k = eca_kernel_size(channels)
            # ECA-Net's convolution has no bias; ours has one, to start open like the conv form.
            self.conv = nn.Conv1d(1, 1, k, padding=k // 2)
            last = self.conv
        else:
            raise ValueError(f"channel attention must be one of {ATTENTIONS}, got {kind!r}")
        nn.init.zeros_(last.weight)
        nn.init.constant_(last.bias, OPEN_LOGIT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(x, 1)  # [N, K, 1, 1]
        if self.kind == "conv":
            w = self.fc2(F.relu(self.fc1(pooled)))
        else:
            w = self.conv(pooled.flatten(2).transpose(1, 2)).transpose(1, 2).unsqueeze(-1)
        return torch.sigmoid(w) * x


class ResolutionLifting(nn.Module):
    # The sigmoid map starts at a 1% prior everywhere (as detectors initialise their classifiers):
    # at 0.5 its MSE against mostly-zero targets would swamp the heatmap loss.
    PRIOR = 0.01

    def __init__(self, channels: int):
        super().__init__()
        # A 3-tap footprint centred on 2x pixel 2i (the codec's convention), 2H x 2W out.
        self.deconv = nn.ConvTranspose2d(channels, channels, 3, 2, 1, output_padding=1, bias=False)
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.conv3 = nn.Conv2d(channels, channels, 3, 1, 1)
        with torch.no_grad():
            tri = torch.tensor([0.5, 1.0, 0.5])
            self.deconv.weight.zero_()
            for c in range(channels):  # per-channel bilinear upsampling, = up2 inside the map
                self.deconv.weight[c, c] = tri[:, None] * tri[None, :]
            nn.init.dirac_(self.conv1.weight)
            nn.init.zeros_(self.conv1.bias)
            nn.init.zeros_(self.conv3.weight)
            nn.init.constant_(self.conv3.bias, -math.log((1 - self.PRIOR) / self.PRIOR))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv3(self.conv1(self.deconv(x))))


class IdentityBranch(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv_a = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv_b = nn.Conv2d(channels, channels, 3, 1, 1)
        for conv in (self.conv_a, self.conv_b):  # start as the identity, as the branch's name says
            nn.init.dirac_(conv.weight)
            nn.init.zeros_(conv.bias)

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
            raise ValueError("PoseReNet needs the channel attention or the identity branch (the lifted map alone is an attention)")
        if cfg.scores not in SCORES:
            raise ValueError(f"PoseReNet scores must be one of {SCORES}, got {cfg.scores!r}")
        if not 0 <= cfg.backbone_grad <= 1:
            raise ValueError(f"PoseReNet backbone_grad must be in [0, 1], got {cfg.backbone_grad!r}")
        if cfg.aggregation in ("gate", "lifted") and not cfg.lifting:
            raise ValueError(f"PoseReNet aggregation {cfg.aggregation!r} needs the resolution lifting branch; without it use average or fusion")
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
            n_base = int(cfg.channel_attention) + int(cfg.identity)
            n_in = n_base + int(cfg.lifting)
            fusion = nn.Conv2d(n_in * k, k, 1)
            with torch.no_grad():  # starts as the mean of f1 and f3, f2 not yet used
                fusion.weight.zero_()
                fusion.bias.zero_()
                for j in range(n_base):
                    fusion.weight[:, j * k : (j + 1) * k, 0, 0] = torch.eye(k) / n_base
            self.refine["fusion"] = fusion
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
        """Every output of the plug-in on the backbone's heatmaps: "heatmaps" (f_out),
        "backbone" (f_in) and, when it is computed, "lifted" (f2)."""
        r = self.refine
        agg = self.cfg.aggregation
        backbone_out = f_in
        g = self.cfg.backbone_grad
        if g == 0:
            f_in = f_in.detach()
        elif g != 1 and torch.is_grad_enabled():
            # The same values (x - x.detach() is exactly 0); the gradient into the backbone times g.
            f_in = f_in.detach() + g * (f_in - f_in.detach())
        f1 = r["attention"](f_in) if "attention" in r else None
        f3 = r["identity"](f_in) if "identity" in r else None
        # "average" uses f2 only as a training signal: at inference it costs nothing.
        need_f2 = "lifting" in r and (self.training or agg != "average")
        f2 = r["lifting"](f_in) if need_f2 else None
        base = [f for f in (f1, f3) if f is not None]
        mean = sum(base) / len(base)
        if agg == "average":
            out = mean
        elif agg == "gate":
            out = mean * (1 + down2(f2))
        elif agg == "lifted":
            out = up2(mean) * (1 + f2)
        else:  # fusion
            parts = base + ([down2(f2)] if f2 is not None else [])
            out = r["fusion"](torch.cat(parts, dim=1))
        if "gate" in r:
            out = r["gate"](up2(f_in) if agg == "lifted" else f_in, out)
        outputs = {"heatmaps": out, "backbone": backbone_out}
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

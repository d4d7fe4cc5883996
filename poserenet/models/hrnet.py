"""HRNet for pose (Sun et al., CVPR 2019): four stages of parallel high-to-low resolution
branches with repeated multi-scale fusion; a 1x1 convolution on the highest-resolution branch
gives K heatmaps at 1/4 of the input.

Structure and parameter names are those of the official `pose_hrnet.py` (`conv1`, `bn1`,
`conv2`, `bn2`, `layer1`, `transition1..3`, `stage2..4.<module>.branches/fuse_layers`,
`final_layer`), so its published COCO/MPII checkpoints load with strict matching.
"""

from __future__ import annotations

import torch
from torch import nn

from .simplebaseline import BN_MOMENTUM, BasicBlock, Bottleneck


def _conv_bn(cin: int, cout: int, k: int, stride: int, relu: bool, momentum: float = 0.1) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout, momentum=momentum)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of basic blocks, then every output resolution sums all inputs
    (upsampled by 1x1 conv + nearest, or downsampled by strided 3x3 convs)."""

    def __init__(self, channels: list[int], num_blocks: int, multi_scale_output: bool = True):
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(c, c) for _ in range(num_blocks))) for c in channels
        )
        self.fuse_layers = None
        if n > 1:
            fuse = []
            for i in range(n if multi_scale_output else 1):
                row: list[nn.Module | None] = []
                for j in range(n):
                    if j > i:
                        row.append(nn.Sequential(
                            nn.Conv2d(channels[j], channels[i], 1, 1, 0, bias=False),
                            nn.BatchNorm2d(channels[i]),
                            nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                        ))  # fmt: skip
                    elif j == i:
                        row.append(None)
                    else:  # i - j strided convolutions; only the last changes the width
                        steps = [_conv_bn(channels[j], channels[j], 3, 2, relu=True) for _ in range(i - j - 1)]
                        steps.append(_conv_bn(channels[j], channels[i], 3, 2, relu=False))
                        row.append(nn.Sequential(*steps))
                fuse.append(nn.ModuleList(row))
            self.fuse_layers = nn.ModuleList(fuse)
        self.relu = nn.ReLU(True)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        x = [branch(xi) for branch, xi in zip(self.branches, x)]
        if self.fuse_layers is None:
            return x
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = x[i]
            for j, f in enumerate(row):
                if j != i:
                    y = y + f(x[j])
            out.append(self.relu(y))
        return out


class HRNet(nn.Module):
    """HRNet-W`width` (32 or 48 in the papers) with the pose head.

    Args:
        width: channels of the highest-resolution branch; branch b has width * 2**b.
        num_keypoints: K.
        modules_per_stage: HighResolutionModules in stages 2, 3, 4 (1, 4, 3 in the paper).
        num_blocks: basic blocks per branch in each module (4 in the paper).
    """

    def __init__(
        self,
        width: int = 32,
        num_keypoints: int = 17,
        modules_per_stage: tuple[int, int, int] = (1, 4, 3),
        num_blocks: int = 4,
    ):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        down = nn.Sequential(nn.Conv2d(64, 256, 1, bias=False), nn.BatchNorm2d(256, momentum=BN_MOMENTUM))
        self.layer1 = nn.Sequential(Bottleneck(64, 64, 1, down), *(Bottleneck(256, 64) for _ in range(3)))

        pre = [256]
        for s, n_modules in zip((2, 3, 4), modules_per_stage):
            cur = [width * 2**b for b in range(s)]
            setattr(self, f"transition{s - 1}", self._transition(pre, cur))
            last_stage = s == 4
            setattr(self, f"stage{s}", nn.Sequential(*(
                HighResolutionModule(cur, num_blocks, multi_scale_output=not (last_stage and m == n_modules - 1))
                for m in range(n_modules)
            )))  # fmt: skip
            pre = cur
        self.final_layer = nn.Conv2d(width, num_keypoints, 1, 1, 0)
        self.init_weights()

    @staticmethod
    def _transition(pre: list[int], cur: list[int]) -> nn.ModuleList:
        layers: list[nn.Module | None] = []
        for i, c in enumerate(cur):
            if i < len(pre):
                layers.append(_conv_bn(pre[i], c, 3, 1, relu=True) if pre[i] != c else None)
            else:  # a new, lower-resolution branch from the lowest existing one
                steps = [_conv_bn(pre[-1], c if k == i - len(pre) else pre[-1], 3, 2, relu=True) for k in range(i + 1 - len(pre))]
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    def init_weights(self) -> None:
        # As the official code for training from scratch: N(0, 0.001) convolutions, unit BN.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        feats = [self.layer1(x)]
        for s in (2, 3, 4):
            transition = getattr(self, f"transition{s - 1}")
            # Existing branches pass through (or change width); new ones start from the lowest.
            feats = [
                (t(feats[i] if i < len(feats) else feats[-1]) if t is not None else feats[i])
                for i, t in enumerate(transition)
            ]
            feats = getattr(self, f"stage{s}")(feats)
        return self.final_layer(feats[0])

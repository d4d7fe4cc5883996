"""Stacked Hourglass (Newell et al., ECCV 2016) with intermediate supervision.

Parameter names follow the widely used PyTorch release (bearpaw/pytorch-pose `hourglass.py`,
whose MPII checkpoints are named hg_s{stacks}_b{blocks}): pre-activation bottlenecks with
biases, `conv1`, `bn1`, `layer1..3`, then per stack `hg.i.hg.<level>.<branch>.<block>`, `res`,
`fc`, `score`, and `fc_`/`score_` feeding each stack's output back into the next.

In training mode the model returns every stack's heatmaps (each is supervised); in eval mode
only the last stack's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PreActBottleneck(nn.Module):
    expansion = 2

    def __init__(self, inplanes: int, planes: int, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=True)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=True)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 2, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + (x if self.downsample is None else self.downsample(x))


def _residuals(planes: int, n: int) -> nn.Sequential:
    return nn.Sequential(*(PreActBottleneck(planes * 2, planes) for _ in range(n)))


class Hourglass(nn.Module):
    """A recursive hourglass of `depth` levels; level i holds [skip, down, up(, bottom)] residuals."""

    def __init__(self, planes: int, num_blocks: int, depth: int = 4):
        super().__init__()
        self.depth = depth
        self.hg = nn.ModuleList(
            nn.ModuleList(_residuals(planes, num_blocks) for _ in range(4 if level == 0 else 3)) for level in range(depth)
        )

    def _forward(self, level: int, x: torch.Tensor) -> torch.Tensor:
        skip, down, up = self.hg[level - 1][0], self.hg[level - 1][1], self.hg[level - 1][2]
        low = down(F.max_pool2d(x, 2, stride=2))
        low = self._forward(level - 1, low) if level > 1 else self.hg[0][3](low)
        return skip(x) + F.interpolate(up(low), scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(self.depth, x)


class StackedHourglass(nn.Module):
    """`num_stacks` hourglasses of `num_blocks` residuals per position (the papers' 2/4/8-stack
    networks use one), 256 feature channels, heatmaps at 1/4 of the input."""

    def __init__(self, num_stacks: int = 2, num_keypoints: int = 16, num_blocks: int = 1, num_feats: int = 128):
        super().__init__()
        self.num_stacks = num_stacks
        self.num_keypoints = num_keypoints
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=True)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        # As the reference: layer1 64 -> 128, layer2 (planes = the current 128) 128 -> 256, both
        # with a 1x1 downsample; layer3 (planes = num_feats) without one when 256 = 2 x num_feats.
        self.layer1 = self._make_residual(64, 1)
        self.layer2 = self._make_residual(self.inplanes, 1)
        self.layer3 = self._make_residual(num_feats, 1)
        self.maxpool = nn.MaxPool2d(2, stride=2)
        ch = num_feats * 2
        self.hg = nn.ModuleList(Hourglass(num_feats, num_blocks, 4) for _ in range(num_stacks))
        self.res = nn.ModuleList(self._make_residual(num_feats, num_blocks) for _ in range(num_stacks))
        self.fc = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ch, ch, 1, bias=True), nn.BatchNorm2d(ch), nn.ReLU(inplace=True)) for _ in range(num_stacks)
        )
        self.score = nn.ModuleList(nn.Conv2d(ch, num_keypoints, 1, bias=True) for _ in range(num_stacks))
        self.fc_ = nn.ModuleList(nn.Conv2d(ch, ch, 1, bias=True) for _ in range(num_stacks - 1))
        self.score_ = nn.ModuleList(nn.Conv2d(num_keypoints, ch, 1, bias=True) for _ in range(num_stacks - 1))

    def _make_residual(self, planes: int, blocks: int) -> nn.Sequential:
        downsample = None
        if self.inplanes != planes * 2:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 2, 1, bias=True))
        layers = [PreActBottleneck(self.inplanes, planes, downsample)]
        self.inplanes = planes * 2
        layers += [PreActBottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.maxpool(self.layer1(x))))
        outputs = []
        for i in range(self.num_stacks):
            y = self.fc[i](self.res[i](self.hg[i](x)))
            score = self.score[i](y)
            outputs.append(score)
            if i < self.num_stacks - 1:
                x = x + self.fc_[i](y) + self.score_[i](score)
        if self.training:
            # Intermediate supervision: the last stack is "heatmaps", earlier ones "stack{i}".
            return {"heatmaps": outputs[-1], **{f"stack{i}": o for i, o in enumerate(outputs[:-1])}}
        return outputs[-1]

"""Heatmap loss: MSE with per-joint target weights (the official HRNet `JointsMSELoss`)."""

from __future__ import annotations

import torch
from torch import nn


class JointsMSELoss(nn.Module):
    """0.5 * mean over joints of the MSE between predicted and target heatmaps, each joint
    multiplied by its target weight (0 for unlabelled joints, optionally the joint weight)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"heatmap shapes differ: prediction {tuple(pred.shape)}, target {tuple(target.shape)}")
        w = target_weight.reshape(*target_weight.shape[:2], 1, 1)
        return 0.5 * ((pred - target) * w).pow(2).mean()

"""Model size and cost: parameters, GFLOPs as the official HRNet code counts them, true MACs.

The HRNet repository's `get_model_summary` (whose figures the HRNet, DARK and PoseReNet papers
print) adds, for every convolution call, prod(weight shape) x prod(output spatial size), and
for linear layers out x in, then divides by 1024^3. For a transposed convolution that counts
the kernel at every *output* pixel, four times its true multiply-adds at stride 2, which is
why SimpleBaseline's figures are larger than its real cost. `gmacs` is the true count (/1e9).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Complexity:
    params: int
    official_flops: int  # multiply-adds, HRNet-code convention
    macs: int  # true multiply-adds

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def gflops(self) -> float:
        return self.official_flops / 1024**3

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def _true_macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    w = module.weight
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        # Every input pixel scatters a (C_out/groups x k...) kernel.
        return inp[0].numel() // inp[0].shape[0] * w[0].numel() * out.shape[0]
    return out.numel() * w[0].numel()  # each output value: C_in/groups x k... products


@torch.no_grad()
def measure(model: nn.Module, input_hw: tuple[int, int]) -> Complexity:
    """Count one forward pass on a 1x3xHxW input (eval mode)."""
    official = 0
    true = 0

    def hook(module: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        nonlocal official, true
        if not isinstance(out, torch.Tensor):
            return
        name = type(module).__name__
        if "Conv" in name and getattr(module, "weight", None) is not None:
            official += module.weight.numel() * int(torch.tensor(out.shape[2:]).prod())
            true += _true_macs(module, inp, out)
        elif isinstance(module, nn.Linear):
            official += out.numel() * inp[0].shape[1]
            true += _true_macs(module, inp, out)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if not isinstance(m, (nn.ModuleList, nn.Sequential, nn.ModuleDict)) and m is not model
    ]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, 3, *input_hw, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return Complexity(sum(p.numel() for p in model.parameters()), official, true)

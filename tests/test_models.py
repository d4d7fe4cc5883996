import pytest
import torch

import poserenet
from poserenet.errors import ConfigError
from poserenet.loss import JointsMSELoss


@pytest.mark.parametrize("name", ["simplebaseline_r18", "simplebaseline_r34", "simplebaseline_r50"])
def test_heatmaps_at_a_quarter_of_the_input(name):
    model = poserenet.create_model(name, num_keypoints=14).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 128, 96))
    assert out.shape == (2, 14, 32, 24)


def test_official_parameter_names_and_sizes():
    model = poserenet.create_model("simplebaseline_r50", num_keypoints=17)
    keys = model.state_dict().keys()
    for k in ["conv1.weight", "bn1.running_mean", "layer1.0.conv3.weight", "layer1.0.downsample.0.weight",
              "layer4.2.bn3.weight", "deconv_layers.0.weight", "deconv_layers.1.weight", "deconv_layers.7.running_var",
              "final_layer.weight", "final_layer.bias"]:
        assert k in keys
    n = sum(p.numel() for p in model.parameters())
    assert round(n / 1e6, 1) == 34.0  # the published SimpleBaseline-R50 size
    r18 = poserenet.create_model("simplebaseline_r18", num_keypoints=17)
    assert "layer1.0.conv3.weight" not in r18.state_dict()


def test_factory_errors_and_options():
    with pytest.raises(ConfigError, match="unknown model 'resnet9'.*simplebaseline_r50"):
        poserenet.create_model("resnet9")
    slim = poserenet.create_model("simplebaseline_r18", num_keypoints=5, base_width=16, deconv_channels=32)
    assert slim.final_layer.in_channels == 32 and slim.layer4[0].conv1.out_channels == 128
    assert "simplebaseline_r152" in poserenet.list_models()


def test_loss_ignores_joints_with_zero_weight():
    loss = JointsMSELoss()
    pred, target = torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4)
    pred[0, 1] = 1.0
    assert loss(pred, target, torch.tensor([[1.0, 0.0]])) == 0
    assert loss(pred, target, torch.tensor([[1.0, 1.0]])) == pytest.approx(0.5 * 16 / 32)
    with pytest.raises(ValueError, match="shapes differ"):
        loss(pred, target[..., :2], torch.ones(1, 2))


def _bottleneck(prefix: str, inplanes: int, planes: int, downsample: bool) -> dict[str, tuple]:
    """The parameters of bearpaw/pytorch-pose's pre-activation Bottleneck (expansion 2, biased convs)."""
    out = {}
    for bn, ch in (("bn1", inplanes), ("bn2", planes), ("bn3", planes)):
        out.update({f"{prefix}.{bn}.{p}": (ch,) for p in ("weight", "bias", "running_mean", "running_var")})
        out[f"{prefix}.{bn}.num_batches_tracked"] = ()
    for conv, shape in (("conv1", (planes, inplanes, 1, 1)), ("conv2", (planes, planes, 3, 3)), ("conv3", (2 * planes, planes, 1, 1))):
        out[f"{prefix}.{conv}.weight"], out[f"{prefix}.{conv}.bias"] = shape, (shape[0],)
    if downsample:
        out[f"{prefix}.downsample.0.weight"], out[f"{prefix}.downsample.0.bias"] = (2 * planes, inplanes, 1, 1), (2 * planes,)
    return out


def reference_hourglass_layout(stacks: int, blocks: int = 1, classes: int = 16) -> dict[str, tuple]:
    """Names and shapes of the reference HourglassNet (bearpaw/pytorch-pose, pose/models/hourglass.py),
    written down from its definition: stem conv1/bn1; layer1 = residual(planes 64) from 64
    channels, layer2 = residual(planes = the current 128), layer3 = residual(planes 128) from
    256 channels (no downsample); per stack a depth-4 hourglass (3 residual groups per level, 4 at
    the innermost), res, fc (conv + bn), score, and fc_/score_ between stacks."""
    bn = lambda p, c: {**{f"{p}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")}, f"{p}.num_batches_tracked": ()}  # noqa: E731
    out = {"conv1.weight": (64, 3, 7, 7), "conv1.bias": (64,), **bn("bn1", 64)}
    out.update(_bottleneck("layer1.0", 64, 64, True))
    out.update(_bottleneck("layer2.0", 128, 128, True))
    out.update(_bottleneck("layer3.0", 256, 128, False))
    for s in range(stacks):
        for level in range(4):
            for group in range(4 if level == 0 else 3):
                for b in range(blocks):
                    out.update(_bottleneck(f"hg.{s}.hg.{level}.{group}.{b}", 256, 128, False))
        for b in range(blocks):
            out.update(_bottleneck(f"res.{s}.{b}", 256, 128, False))
        out.update({f"fc.{s}.0.weight": (256, 256, 1, 1), f"fc.{s}.0.bias": (256,), **bn(f"fc.{s}.1", 256)})
        out.update({f"score.{s}.weight": (classes, 256, 1, 1), f"score.{s}.bias": (classes,)})
        if s < stacks - 1:
            out.update({f"fc_.{s}.weight": (256, 256, 1, 1), f"fc_.{s}.bias": (256,)})
            out.update({f"score_.{s}.weight": (256, classes, 1, 1), f"score_.{s}.bias": (256,)})
    return out


@pytest.mark.parametrize("stacks", [2, 4, 8])
def test_hourglass_parameter_layout_is_the_references(stacks):
    """Published MPII hourglass checkpoints (hg_s{2,4,8}_b1) load with strict matching only if
    every name and shape is the reference's."""
    model = poserenet.create_model(f"hourglass_{stacks}", num_keypoints=16)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ref = reference_hourglass_layout(stacks)
    assert sorted(set(ours) ^ set(ref)) == []
    assert {k: s for k, s in ours.items() if ref[k] != s} == {}
    if stacks == 2:
        assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 6.73  # hg_s2_b1

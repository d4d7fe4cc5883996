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

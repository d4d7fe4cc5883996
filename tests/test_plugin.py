import pytest
import torch
from torch import nn

from poserenet import create_model
from poserenet.errors import ConfigError
from poserenet.models import PoseReNet
from poserenet.models.plugin import eca_kernel_size


class TinyHeatmapNet(nn.Module):
    """A model defined outside the package: any module that outputs [N, K, H/4, W/4]."""

    def __init__(self, k: int = 5):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, k, 3, 2, 1))

    def forward(self, x):
        return self.body(x)


@pytest.mark.parametrize("aggregation, out_hw", [("sum", (16, 12)), ("gate", (16, 12)), ("lifted", (32, 24)), ("fusion", (16, 12))])
def test_aggregations_and_their_output_resolution(aggregation, out_hw):
    model = PoseReNet.wrap(TinyHeatmapNet(), 5, aggregation=aggregation)
    x = torch.randn(2, 3, 64, 48)
    model.eval()
    assert model(x).shape == (2, 5, *out_hw)
    model.train()
    out = model(x)
    assert set(out) == {"heatmaps", "lifted", "backbone"}
    assert out["lifted"].shape == (2, 5, 32, 24) and out["backbone"].shape == (2, 5, 16, 12)
    assert out["lifted"].min() >= 0 and out["lifted"].max() <= 1  # a sigmoid map
    out["heatmaps"].sum().backward()
    assert all(p.grad is not None for p in model.refine.parameters())


def test_branches_switch_off():
    full = PoseReNet.wrap(TinyHeatmapNet(), 5)
    no_attention = PoseReNet.wrap(TinyHeatmapNet(), 5, channel_attention=False)
    no_lifting = PoseReNet.wrap(TinyHeatmapNet(), 5, lifting=False, aggregation="sum")
    no_identity = PoseReNet.wrap(TinyHeatmapNet(), 5, identity=False)
    assert set(full.refine) == {"attention", "lifting", "identity"}
    assert set(no_attention.refine) == {"lifting", "identity"}
    assert set(no_lifting.refine) == {"attention", "identity"}
    assert set(no_identity.refine) == {"attention", "lifting"}
    no_lifting.train()
    assert "lifted" not in no_lifting(torch.randn(2, 3, 64, 48))
    for aggregation in ("gate", "lifted"):  # lifted is the default
        with pytest.raises(ValueError, match=f"{aggregation}' needs the resolution lifting branch; without it use sum or fusion"):
            PoseReNet.wrap(TinyHeatmapNet(), 5, lifting=False, aggregation=aggregation)
    assert PoseReNet.wrap(TinyHeatmapNet(), 5).cfg.aggregation == "lifted"
    with pytest.raises(ValueError, match="channel attention or the identity branch"):
        PoseReNet.wrap(TinyHeatmapNet(), 5, channel_attention=False, identity=False)


def test_channel_attention_is_the_papers_eq4_or_eca():
    conv = PoseReNet.wrap(TinyHeatmapNet(17), 17)
    eca = PoseReNet.wrap(TinyHeatmapNet(17), 17, attention="eca")
    att = conv.refine["attention"]
    assert isinstance(att.fc1, nn.Conv2d) and att.fc1.kernel_size == (1, 1) and att.fc2.kernel_size == (1, 1)
    assert eca.refine["attention"].conv.kernel_size == (3,)  # ECA-Net: k(17) = 3
    assert eca_kernel_size(64) == 3 and eca_kernel_size(256) == 5 and eca_kernel_size(512) == 5
    # The attention only rescales channels: the maps keep their shape, each scaled by (0, 1).
    f = torch.rand(1, 17, 8, 6) + 0.1
    for module in (att, eca.refine["attention"]):
        ratio = module(f) / f
        assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-6)
        assert ratio.min() > 0 and ratio.max() < 1


def test_factory_options():
    m = create_model("simplebaseline_r18", 5, poserenet={"aggregation": "fusion", "attention": "eca"})
    assert isinstance(m, PoseReNet) and m.cfg.aggregation == "fusion" and "fusion" in m.refine
    assert not isinstance(create_model("simplebaseline_r18", 5, poserenet=False), PoseReNet)
    with pytest.raises(ConfigError, match="unexpected keyword argument 'aggregate'.*known: enabled, aggregation"):
        create_model("simplebaseline_r18", 5, poserenet={"aggregate": "sum"})
    with pytest.raises(ConfigError, match="aggregation must be one of"):
        create_model("simplebaseline_r18", 5, poserenet={"aggregation": "max"})


def test_hourglass_stacks_pass_through_the_plugin():
    m = create_model("hourglass_2", 16, poserenet=True, num_feats=32)
    m.train()
    out = m(torch.randn(2, 3, 128, 128))
    assert set(out) == {"heatmaps", "stack0", "lifted", "backbone"}
    assert out["stack0"].shape == out["backbone"].shape == (2, 16, 32, 32)
    assert out["heatmaps"].shape == out["lifted"].shape == (2, 16, 64, 64)  # the default "lifted" aggregation
    m.eval()
    assert m(torch.randn(1, 3, 128, 128)).shape == (1, 16, 64, 64)

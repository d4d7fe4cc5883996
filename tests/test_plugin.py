import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from poserenet import create_model
from poserenet.codec import HeatmapCodec
from poserenet.errors import ConfigError
from poserenet.evaluate import codec_for, flip_average
from poserenet.models import PoseReNet
from poserenet.models.plugin import AGGREGATIONS, OPEN_LOGIT, down2, eca_kernel_size, up2


class TinyHeatmapNet(nn.Module):
    """A model defined outside the package: any module that outputs [N, K, H/4, W/4]."""

    def __init__(self, k: int = 5):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, k, 3, 2, 1))

    def forward(self, x):
        return self.body(x)


class PeakNet(nn.Module):
    """A perfectly trained backbone: its input has one channel per keypoint holding that
    keypoint's Gaussian in input pixels, and it samples them at the codec's convention
    (heatmap pixel u = input pixel u * stride). Mirror-equivariant, like a trained model."""

    def __init__(self, stride: int = 4):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        return x[:, :, :: self.stride, :: self.stride]


def peak_inputs(codec: HeatmapCodec, n=3, k=6, seed=0, clutter=False):
    """Inputs for PeakNet and the true keypoints in heatmap pixels, away from the borders
    (where DARK does not step). `clutter`: a weaker second peak and noise, as a trained model's maps."""
    rng = np.random.default_rng(seed)
    (h, w), (sx, sy) = codec.input_hw, codec.stride
    pts = rng.uniform([5 * sx, 5 * sy], [w - 5 * sx, h - 5 * sy], size=(n, k, 2))
    yy, xx = np.mgrid[0:h, 0:w]
    s = codec.sigma * sx

    def bump(p):
        return np.exp(-((xx - p[..., 0, None, None]) ** 2 + (yy - p[..., 1, None, None]) ** 2) / (2 * s * s))

    maps = bump(pts)
    if clutter:
        far = (pts + rng.uniform(0.3, 0.5, size=pts.shape) * [w, h]) % [w, h]
        maps = 0.8 * maps + 0.25 * bump(far) + rng.uniform(0, 0.02, size=maps.shape)
    return torch.from_numpy(maps.astype(np.float32)), pts / [sx, sy]


@pytest.mark.parametrize("aggregation, out_hw", [("average", (16, 12)), ("gate", (16, 12)), ("lifted", (32, 24)), ("fusion", (16, 12))])
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
    (out["heatmaps"].sum() + out["lifted"].sum()).backward()
    assert all(p.grad is not None for p in model.refine.parameters())


def test_branches_switch_off():
    full = PoseReNet.wrap(TinyHeatmapNet(), 5)
    no_attention = PoseReNet.wrap(TinyHeatmapNet(), 5, channel_attention=False)
    no_lifting = PoseReNet.wrap(TinyHeatmapNet(), 5, lifting=False, aggregation="average")
    no_identity = PoseReNet.wrap(TinyHeatmapNet(), 5, identity=False)
    assert set(full.refine) == {"attention", "lifting", "identity"}
    assert set(no_attention.refine) == {"lifting", "identity"}
    assert set(no_lifting.refine) == {"attention", "identity"}
    assert set(no_identity.refine) == {"attention", "lifting"}
    no_lifting.train()
    assert "lifted" not in no_lifting(torch.randn(2, 3, 64, 48))
    for aggregation in ("gate", "lifted"):
        with pytest.raises(ValueError, match=f"{aggregation}' needs the resolution lifting branch; without it use average or fusion"):
            PoseReNet.wrap(TinyHeatmapNet(), 5, lifting=False, aggregation=aggregation)
    with pytest.raises(ValueError, match="channel attention or the identity branch"):
        PoseReNet.wrap(TinyHeatmapNet(), 5, channel_attention=False, identity=False)
    with pytest.raises(ValueError, match=r"backbone_grad must be in \[0, 1\], got -0.5"):
        PoseReNet.wrap(TinyHeatmapNet(), 5, backbone_grad=-0.5)


def test_average_uses_the_lifted_map_only_in_training():
    model = PoseReNet.wrap(TinyHeatmapNet(), 5, aggregation="average")
    calls = []
    model.refine["lifting"].register_forward_hook(lambda *a: calls.append(1))
    model.eval()
    model(torch.randn(1, 3, 64, 48))
    assert not calls  # auxiliary supervision: nothing to compute at inference
    model.train()
    assert "lifted" in model(torch.randn(2, 3, 64, 48)) and calls


def test_channel_attention_is_the_papers_eq4_or_eca_and_starts_open():
    conv = PoseReNet.wrap(TinyHeatmapNet(17), 17)
    eca = PoseReNet.wrap(TinyHeatmapNet(17), 17, attention="eca")
    att = conv.refine["attention"]
    assert isinstance(att.fc1, nn.Conv2d) and att.fc1.kernel_size == (1, 1) and att.fc2.kernel_size == (1, 1)
    assert eca.refine["attention"].conv.kernel_size == (3,)  # ECA-Net: k(17) = 3
    assert eca_kernel_size(64) == 3 and eca_kernel_size(256) == 5 and eca_kernel_size(512) == 5
    # The attention only rescales channels: the maps keep their shape, each scaled by (0, 1),
    # and a fresh one lets 95% through.
    f = torch.rand(1, 17, 8, 6) + 0.1
    for module in (att, eca.refine["attention"]):
        ratio = module(f) / f
        assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-6)
        assert ratio.min() > 0 and ratio.max() < 1
        assert torch.allclose(ratio, torch.sigmoid(torch.tensor(OPEN_LOGIT)), atol=1e-6)


def test_resampling_follows_the_codecs_pixel_convention():
    """A Gaussian at a known sub-pixel position, lifted to 2x (by up2 and by the lifting branch's
    fresh deconvolution) and decoded there, comes back within 0.05 px; and back down to 1x."""
    codec = HeatmapCodec((128, 96), (32, 24), sigma=2.0, dark=True)
    codec2 = codec.at_resolution(2)
    assert codec2.heatmap_hw == (64, 48) and codec2.sigma == 4.0 and codec2.stride == (2.0, 2.0)
    maps, truth = peak_inputs(codec, n=4, k=17)
    heatmaps = PeakNet()(maps)
    deconv = PoseReNet.wrap(PeakNet(), 17).refine["lifting"].deconv
    with torch.no_grad():
        lifted_by_deconv = deconv(heatmaps)
    for lifted in (up2(heatmaps), lifted_by_deconv):
        assert lifted.shape[-2:] == (64, 48)
        xy, _ = codec2.decode(lifted)
        assert np.abs(xy.numpy() / 2 - truth).max() < 0.05
    targets_2x, _ = codec2.encode(truth * codec.stride, np.ones(truth.shape[:2]))
    xy, _ = codec.decode(down2(torch.from_numpy(targets_2x)))
    assert np.abs(xy.numpy() - truth).max() < 0.05
    # The half-pixel convention this replaced is caught: it is a quarter of a 1x pixel off.
    half = F.interpolate(heatmaps, scale_factor=2, mode="bilinear", align_corners=False)
    xy, _ = codec2.decode(half)
    assert np.abs(xy.numpy() / 2 - truth).mean() > 0.2


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("attention", ["conv", "eca"])
def test_fresh_poserenet_decodes_where_its_backbone_does(aggregation, flip, attention):
    """Identity at init: on a trained backbone's heatmaps, a freshly built PoseReNet decodes
    within 0.05 heatmap pixels of the backbone, with and without the flip test."""
    codec = HeatmapCodec((128, 96), (32, 24), sigma=2.0, dark=True)
    maps, truth = peak_inputs(codec, clutter=True)
    flip_index = list(range(maps.shape[1]))
    backbone = PeakNet()
    model = PoseReNet.wrap(backbone, maps.shape[1], aggregation=aggregation, attention=attention).eval()

    def decode(m):
        with torch.no_grad():
            out = m(maps)
            c = codec_for(codec, out)
            if flip:
                out = flip_average(out, m(maps.flip(-1)), flip_index, c)
            xy, _ = c.decode(out)
        return xy.numpy() / c.resolution

    base = decode(backbone)
    assert np.abs(base - truth).max() < 0.05
    assert np.abs(decode(model) - base).max() < 0.05


def test_factory_options():
    m = create_model("simplebaseline_r18", 5, poserenet={"aggregation": "fusion", "attention": "eca"})
    assert isinstance(m, PoseReNet) and m.cfg.aggregation == "fusion" and "fusion" in m.refine
    assert not isinstance(create_model("simplebaseline_r18", 5, poserenet=False), PoseReNet)
    with pytest.raises(ConfigError, match="unexpected keyword argument 'aggregate'.*known: enabled, aggregation"):
        create_model("simplebaseline_r18", 5, poserenet={"aggregate": "average"})
    with pytest.raises(ConfigError, match="aggregation must be one of"):
        create_model("simplebaseline_r18", 5, poserenet={"aggregation": "max"})


def test_hourglass_stacks_pass_through_the_plugin():
    m = create_model("hourglass_2", 16, poserenet={"aggregation": "lifted"}, num_feats=32)
    m.train()
    out = m(torch.randn(2, 3, 128, 128))
    assert set(out) == {"heatmaps", "stack0", "lifted", "backbone"}
    assert out["stack0"].shape == out["backbone"].shape == (2, 16, 32, 32)
    assert out["heatmaps"].shape == out["lifted"].shape == (2, 16, 64, 64)
    m.eval()
    assert m(torch.randn(1, 3, 128, 128)).shape == (1, 16, 64, 64)


class MovingRefiner(PoseReNet):
    """A PoseReNet whose refined maps are the backbone's at 2x with keypoint 0 moved 5 heatmap
    pixels and keypoint 1 moved 1 pixel (x): a relocation and a refinement."""

    def refine_heatmaps(self, f_in):
        out = up2(f_in).clone()
        out[:, 0] = out[:, 0].roll(10, dims=-1)
        out[:, 1] = out[:, 1].roll(2, dims=-1)
        return {"heatmaps": out, "backbone": f_in}


@pytest.mark.parametrize("max_move", [0.0, 2.0])
def test_refined_keypoints_stay_near_the_backbones(max_move):
    """`max_move`: a refined keypoint more than that many backbone heatmap pixels from the
    backbone's own is replaced by the backbone's (at the output's resolution); nearer ones stay."""
    from poserenet.evaluate import decode_outputs

    codec = HeatmapCodec((128, 96), (32, 24), sigma=2.0, dark=True)
    maps, truth = peak_inputs(codec, k=3)
    model = MovingRefiner(PeakNet(), 3).eval()
    model.cfg.max_move = max_move
    with torch.no_grad():
        out = decode_outputs(model, maps, codec)
    xy, base = out["final"][0].numpy() / 2, out["backbone"][0].numpy()
    assert np.abs(base - truth).max() < 0.05
    moved = xy - base
    assert np.abs(moved[:, 1] - [1, 0]).max() < 0.05 and np.abs(moved[:, 2]).max() < 0.05
    if max_move == 0:  # relocated (DARK's step near a border may shorten the 5 px a little)
        assert (moved[:, 0, 0] > 4).all()
    else:
        assert np.abs(moved[:, 0]).max() < 1e-6


def _plugin_batch() -> tuple[torch.Tensor, dict]:
    g = torch.Generator().manual_seed(1)
    batch = {
        "target": torch.rand(4, 5, 16, 12, generator=g), "target_weight": torch.ones(4, 5),
        "target_1": torch.rand(4, 5, 32, 24, generator=g), "target_weight_1": torch.ones(4, 5),
    }  # fmt: skip
    return torch.randn(4, 3, 64, 48, generator=g), batch


def _training_loss(outputs: dict, batch: dict) -> torch.Tensor:
    """The trainer's loss: every supervised output, the backbone's own heatmaps included."""
    from poserenet.loss import JointsMSELoss
    from poserenet.train import supervised_loss

    return supervised_loss(outputs, batch, JointsMSELoss(), {"backbone": 1.0}, torch.device("cpu"))


@pytest.mark.parametrize("backbone_grad", [0.0, 1.0])
def test_a_detached_plugin_leaves_its_backbone_training_as_alone(backbone_grad):
    """`backbone_grad=0` (detached): the backbone learns from its own loss only, step for step
    what it learns alone (what the ablation's paired seeds rely on); end to end, the plug-in's
    losses move it."""
    import copy

    torch.manual_seed(0)
    start = TinyHeatmapNet()
    alone, model = copy.deepcopy(start), PoseReNet.wrap(copy.deepcopy(start), 5, backbone_grad=backbone_grad)
    images, batch = _plugin_batch()
    for net in (alone, model):
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(3):
            opt.zero_grad()
            _training_loss(net(images), batch).backward()
            opt.step()
    same = all(torch.equal(a, b) for a, b in zip(alone.state_dict().values(), model.backbone.state_dict().values()))
    assert same == (backbone_grad == 0)
    assert not torch.equal(start.body[0].weight, alone.body[0].weight)  # the backbone did train


def test_backbone_grad_scales_only_the_plugins_gradient_into_the_backbone():
    """Between detached (0) and end to end (1): the same outputs, and the backbone's gradient is
    its own loss's plus that fraction of the plug-in's."""
    import copy

    torch.manual_seed(0)
    net = PoseReNet.wrap(TinyHeatmapNet(), 5)
    images, batch = _plugin_batch()
    outputs, grads = [], []
    for g in (0.0, 0.3, 1.0):
        model = copy.deepcopy(net).train()
        model.cfg.backbone_grad = g
        out = model(images)
        _training_loss(out, batch).backward()
        outputs.append(out)
        grads.append(torch.cat([p.grad.flatten() for p in model.backbone.parameters()]))
    for key in outputs[0]:
        assert torch.equal(outputs[0][key], outputs[1][key]) and torch.equal(outputs[0][key], outputs[2][key])
    own, end_to_end = grads[0], grads[2]
    assert not torch.allclose(own, end_to_end)
    torch.testing.assert_close(grads[1], own + 0.3 * (end_to_end - own), rtol=1e-4, atol=1e-6)

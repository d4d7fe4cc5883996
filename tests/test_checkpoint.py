import pickle

import pytest
import torch

from poserenet import create_model
from poserenet.checkpoint import load_weights, read_state_dict
from poserenet.errors import PoseDataError


def outputs_equal(a, b, hw=(64, 48)):
    a.eval(), b.eval()
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        return torch.equal(a(x), b(x))


@pytest.mark.parametrize("wrapper", ["raw", "state_dict", "model", "module"])
def test_state_dict_round_trip_in_every_common_wrapper(tmp_path, wrapper):
    torch.manual_seed(0)
    src = create_model("simplebaseline_r18", 5, deconv_channels=16)
    sd = src.state_dict()
    obj = {
        "raw": sd,
        "state_dict": {"state_dict": sd, "epoch": 3},
        "model": {"model": sd, "optimizer": {}},
        "module": {"module." + k: v for k, v in sd.items()},
    }[wrapper]
    torch.save(obj, tmp_path / "w.pth")
    dst = create_model("simplebaseline_r18", 5, deconv_channels=16)
    report = load_weights(dst, read_state_dict(tmp_path / "w.pth"), "w.pth")
    assert report.loaded == len(sd)
    assert outputs_equal(src, dst)


def test_another_keypoint_count_is_refused_or_fine_tuned(tmp_path):
    src = create_model("hrnet_w32", 17, modules_per_stage=(1, 1, 1), num_blocks=1)
    torch.save(src.state_dict(), tmp_path / "coco.pth")
    dst = create_model("hrnet_w32", 14, modules_per_stage=(1, 1, 1), num_blocks=1)
    with pytest.raises(PoseDataError) as e:
        load_weights(dst, read_state_dict(tmp_path / "coco.pth"), "coco.pth")
    msg = str(e.value)
    assert "coco.pth: does not fit HRNet: 2 mis-shaped (final_layer.weight: checkpoint (17, 32, 1, 1) vs model (14, 32, 1, 1)" in msg
    assert "the checkpoint predicts 17 keypoints, the model 14" in msg and "skip_mismatched_head" in msg
    report = load_weights(dst, read_state_dict(tmp_path / "coco.pth"), "coco.pth", skip_mismatched_head=True)
    assert report.skipped_head == ["final_layer.weight", "final_layer.bias"]
    assert torch.equal(dst.conv1.weight, src.conv1.weight)


def test_another_layout_is_refused_with_what_differs(tmp_path):
    torch.save(create_model("simplebaseline_r18", 17).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(PoseDataError, match=r"missing from the checkpoint \(e.g. layer1.2.conv1.weight.*another architecture"):
        load_weights(create_model("simplebaseline_r34", 17), read_state_dict(tmp_path / "r18.pth"), "r18.pth")


def test_imagenet_trunk_loads_with_its_classifier_ignored():
    model = create_model("simplebaseline_r50", 17)
    trunk = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in model.state_dict().items()
             if not k.startswith(("deconv_layers.", "final_layer."))}
    imagenet = {**trunk, "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}  # torchvision's names
    with pytest.raises(PoseDataError, match="unexpected"):
        load_weights(model, imagenet, "resnet50.pth")
    report = load_weights(model, imagenet, "resnet50.pth", backbone_only=True)
    assert report.ignored == ["fc.weight", "fc.bias"]
    assert all(k.startswith(("deconv_layers.", "final_layer.")) for k in report.initialised)
    assert torch.equal(model.layer4[2].conv3.weight, trunk["layer4.2.conv3.weight"])
    del imagenet["layer2.0.conv1.weight"]
    with pytest.raises(PoseDataError, match="1 missing from the checkpoint \\(e.g. layer2.0.conv1.weight"):
        load_weights(model, imagenet, "resnet50.pth", backbone_only=True)


def test_hrnet_imagenet_checkpoint_loads_its_trunk():
    """HRNet's ImageNet release has classification extras, a multi-scale last module and a
    'final_layer' of another shape: only the trunk is taken."""
    model = create_model("hrnet_w32", 17, modules_per_stage=(1, 1, 1), num_blocks=1)
    trunk = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("final_layer.")}
    imagenet = {**trunk, "incre_modules.0.0.conv1.weight": torch.zeros(32, 32, 1, 1),
                "stage4.0.fuse_layers.1.0.0.0.weight": torch.zeros(64, 32, 3, 3),
                "final_layer.0.weight": torch.zeros(2048, 1024, 1, 1), "classifier.weight": torch.zeros(1000, 2048)}
    report = load_weights(model, imagenet, "hrnetv2_w32_imagenet.pth", backbone_only=True)
    assert sorted(report.ignored) == sorted(["final_layer.0.weight", "incre_modules.0.0.conv1.weight",
                                             "stage4.0.fuse_layers.1.0.0.0.weight", "classifier.weight"])
    assert report.initialised == ["final_layer.weight", "final_layer.bias"] and report.loaded == len(trunk)


def test_backbone_checkpoint_loads_into_a_poserenet_model():
    base = create_model("simplebaseline_r18", 5, deconv_channels=16)
    boosted = create_model("simplebaseline_r18", 5, deconv_channels=16, poserenet=True)
    report = load_weights(boosted, base.state_dict(), "base")
    assert report.initialised and all(k.startswith("refine.") for k in report.initialised)
    assert torch.equal(boosted.backbone.final_layer.weight, base.final_layer.weight)
    # and a whole PoseReNet checkpoint round-trips
    again = create_model("simplebaseline_r18", 5, deconv_channels=16, poserenet=True)
    load_weights(again, boosted.state_dict(), "boosted")
    assert outputs_equal(boosted, again)


def test_files_that_are_not_checkpoints(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PoseDataError, match="junk.pth: cannot read checkpoint"):
        read_state_dict(tmp_path / "junk.pth")
    with pytest.raises(PoseDataError, match="nope.pth: checkpoint not found"):
        read_state_dict(tmp_path / "nope.pth")
    torch.save({"epoch": 3}, tmp_path / "meta.pth")
    with pytest.raises(PoseDataError, match="no state dict of tensors"):
        read_state_dict(tmp_path / "meta.pth")
    # weights_only: a pickle that would run code is refused, not executed.
    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"w": torch.zeros(1), "x": Exploit()}, f, protocol=2)
    with pytest.raises(PoseDataError, match="evil.pth: cannot read checkpoint"):
        read_state_dict(tmp_path / "evil.pth")


def test_a_checkpoint_marked_encrypted_is_a_damaged_archive(tmp_path):
    """One flipped bit in a zip entry's flags says "encrypted" (found by benchmarks/fuzz_long.py):
    zipfile raises RuntimeError for it, which must become our one-line error."""
    path = tmp_path / "flag.pth"
    torch.save({"w": torch.zeros(2)}, path)
    data = bytearray(path.read_bytes())
    central = data.find(b"PK\x01\x02")  # the first central directory entry; its flags at +8
    data[central + 8] |= 1
    path.write_bytes(bytes(data))
    with pytest.raises(PoseDataError, match="flag.pth: cannot read checkpoint: a damaged archive"):
        read_state_dict(path)


class Exploit:
    def __reduce__(self):
        return (print, ("code ran",))

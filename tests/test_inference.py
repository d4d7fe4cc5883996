import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from poserenet.annotations import load_coco_instances
from poserenet.cli import main
from poserenet.codec import HeatmapCodec
from poserenet.config import load_config
from poserenet.datasets import TopDownDataset
from poserenet.errors import ConfigError
from poserenet.evaluate import predict
from poserenet.inference import PoseHead, Predictor, TorchRunner, build_head, export_onnx, export_pose_head
from poserenet.meta import COCO17
from poserenet.models import PoseReNet
from poserenet.models.plugin import AGGREGATIONS
from poserenet.pipeline import build_codec


def val_people(root):
    return load_coco_instances(root / "annotations/person_keypoints_val.json", root / "images/val", COCO17)


def test_predictor_gives_the_evaluation_pipelines_keypoints(tiny_synth, tiny_checkpoint):
    data = val_people(tiny_synth)
    head, meta, cfg = build_head(tiny_checkpoint)
    ds = TopDownDataset(data.instances, meta, tuple(cfg.data.input_hw), build_codec(cfg))
    ref, ref_scores = predict(head.model, ds, build_codec(cfg), flip_test=False, progress=False)
    for fast in (False, True):
        predictor = Predictor.from_checkpoint(tiny_checkpoint, fast=fast)
        got = []
        for path in sorted({inst.image_path for inst in data.instances}):
            insts = [i for i in data.instances if i.image_path == path]
            people = predictor(path, [i.bbox for i in insts])
            got += [(insts[j], p) for j, p in enumerate(people)]
        order = {id(inst): k for k, inst in enumerate(data.instances)}
        for inst, p in got:
            k = order[id(inst)]
            # Other batch compositions round differently; DARK's Taylor step amplifies that on
            # the flat heatmaps of a two-epoch model, so allow a hundredth of a pixel.
            assert np.abs(p.keypoints[:, :2] - ref[k]).max() < 1e-2
            assert np.abs(p.keypoints[:, 2] - ref_scores[k]).max() < 1e-4


def test_boxes_none_empty_and_outside(tiny_synth, tiny_checkpoint):
    predictor = Predictor.from_checkpoint(tiny_checkpoint, detector="none")
    img = cv2.cvtColor(cv2.imread(str(tiny_synth / "images/val/000000.jpg")), cv2.COLOR_BGR2RGB)
    whole = predictor(img)
    assert len(whole) == 1 and whole[0].bbox.tolist() == [0, 0, img.shape[1], img.shape[0]]
    assert whole[0].keypoints.shape == (17, 3)
    assert predictor(img, []) == []
    _, people, skipped = next(iter(predictor.predict_many([(img, [[10, 10, 50, 80, 0.9], [5000, 10, 50, 80], [10, 10, 0, 40]])])))
    assert len(people) == 1 and skipped == 2 and people[0].score <= 0.9


onnxruntime = pytest.importorskip("onnxruntime")


class DotNet(nn.Module):
    """A fixed network whose K heatmaps peak where the input crop has bright dots (channel k
    reads colour k % 3): well-formed peaks, as a trained model gives, from a few weights."""

    def __init__(self, k: int = 17, sigma: float = 1.5):
        super().__init__()
        self.pool = nn.AvgPool2d(4)
        self.mix = nn.Conv2d(3, k, 1)
        self.blur = nn.Conv2d(k, k, 7, padding=3, groups=k, bias=False)
        with torch.no_grad():
            self.mix.weight.zero_()
            for j in range(k):
                self.mix.weight[j, j % 3] = 1.0
            self.mix.bias.fill_(0.0)
            t = torch.arange(7.0) - 3
            g = torch.exp(-(t[:, None] ** 2 + t[None] ** 2) / (2 * sigma**2))
            self.blur.weight.copy_((g / g.sum()).expand(k, 1, 7, 7))

    def forward(self, x):
        return self.blur(torch.relu(self.mix(self.pool(x)) - 0.5))


def dot_images(n=4, seed=0):
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        img = np.zeros((240, 180, 3), np.float32)
        yy, xx = np.mgrid[0:240, 0:180]
        for c in range(3):
            cx, cy = rng.uniform(30, 150), rng.uniform(30, 210)
            img[..., c] += 255 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 6.0**2))
        images.append(np.clip(img, 0, 255).astype(np.uint8))
    return images


@pytest.mark.parametrize("dark", [True, False])
@pytest.mark.parametrize("flip", [False, True])
def test_onnx_keypoints_agree_with_pytorch_within_a_thousandth_of_a_pixel(tmp_path, flip, dark):
    codec = HeatmapCodec((128, 96), (32, 24), 1.5, dark=dark)
    head = PoseHead(DotNet(), codec, COCO17.flip_index if flip else None)
    out = tmp_path / "m.onnx"
    images = dot_images()
    worst = export_pose_head(head, COCO17, (128, 96), out, check_images=images)
    assert worst < 1e-3
    torch_pred = Predictor(TorchRunner(head, torch.device("cpu"), False), COCO17, (128, 96))
    onnx_pred = Predictor.from_checkpoint(out)
    assert onnx_pred.meta == COCO17 and onnx_pred.input_hw == (128, 96)
    boxes = [[0, 0, 180, 240], [10, 12, 165, 222, 0.5]]  # boxes around all the dots
    for img in images:
        for a, b in zip(torch_pred(img, boxes), onnx_pred(img, boxes)):
            assert a.keypoints[:, 2].min() > 1e-3  # real peaks on a zero background
            assert np.abs(a.keypoints - b.keypoints).max() < 1e-3 and a.score == pytest.approx(b.score, abs=1e-5)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_onnx_of_poserenet_models_agrees_with_pytorch(tmp_path, aggregation):
    """The plug-in's every output (the 2x lifted one too) exports: ONNX and PyTorch keypoints
    agree within a thousandth of a pixel, with the flip test in the graph."""
    torch.manual_seed(0)
    model = PoseReNet.wrap(DotNet(), 17, aggregation=aggregation)
    with torch.no_grad():  # a plug-in that has learned something, not the identity it starts as
        for p in model.refine.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    codec = HeatmapCodec((128, 96), (32, 24), 1.5, dark=True)
    head = PoseHead(model.eval(), codec, COCO17.flip_index)
    images = dot_images(3, seed=1)
    worst = export_pose_head(head, COCO17, (128, 96), tmp_path / "m.onnx", check_images=images)
    assert worst < 1e-3
    torch_pred = Predictor(TorchRunner(head, torch.device("cpu"), False), COCO17, (128, 96))
    onnx_pred = Predictor.from_checkpoint(tmp_path / "m.onnx")
    for img in images:
        for a, b in zip(torch_pred(img, [[0, 0, 180, 240]]), onnx_pred(img, [[0, 0, 180, 240]])):
            assert np.abs(a.keypoints - b.keypoints).max() < 1e-3


def test_onnx_of_a_trained_checkpoint_runs_in_the_predictor(tiny_synth, tiny_checkpoint, tmp_path):
    out = tmp_path / "m.onnx"
    export_onnx(tiny_checkpoint, out, flip_test=True)
    onnx_pred = Predictor.from_checkpoint(out, detector="none")
    torch_pred = Predictor.from_checkpoint(tiny_checkpoint, fast=False, flip_test=True, detector="none")
    img = sorted((tiny_synth / "images/val").glob("*.jpg"))[0]
    a, b = torch_pred(img), onnx_pred(img)
    # A two-epoch model has flat heatmaps, on which DARK's sub-pixel step is ill-conditioned:
    # the two back ends agree on the peaks and scores, and to a small fraction of a pixel.
    assert np.abs(a[0].keypoints[:, 2] - b[0].keypoints[:, 2]).max() < 1e-4
    assert np.abs(a[0].keypoints[:, :2] - b[0].keypoints[:, :2]).max() < 0.5


def write_video(path, frames):
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    for f in frames:
        vw.write(f)
    vw.release()


def test_predict_command_on_image_folder_and_video(tiny_synth, tiny_checkpoint, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    srcs = sorted((tiny_synth / "images/val").glob("*.jpg"))[:3]
    for p in srcs:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.jpg").write_bytes(b"not an image")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({srcs[0].name: [[10, 10, 60, 120, 0.9], [9000, 9000, 10, 10]]}))
    out = tmp_path / "out"
    assert main(["predict", str(tiny_checkpoint), str(folder), "--boxes", str(boxes), "--out", str(out), "--quiet", "--scores"]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 unreadable image(s)" in err and "skipped 1 box(es) outside their image" in err
    results = json.loads((out / "results.json").read_text())
    assert {r["file_name"] for r in results} == {srcs[0].name}  # the other images have no boxes listed
    assert sorted(p.name for p in out.glob("*.jpg")) == sorted(p.name for p in srcs)

    # With --detector none every image is one person; a single image works the same way.
    assert main(["predict", str(tiny_checkpoint), str(srcs[1]), "--out", str(tmp_path / "one"), "--quiet", "--detector", "none"]) == 0
    assert len(json.loads((tmp_path / "one" / "results.json").read_text())) == 1

    video = tmp_path / "clip.mp4"
    frames = [cv2.resize(cv2.imread(str(p)), (160, 192)) for p in srcs]
    write_video(video, frames)
    assert main(["predict", str(tiny_checkpoint), str(video), "--out", str(tmp_path / "v"), "--quiet", "--detector", "none"]) == 0
    cap = cv2.VideoCapture(str(tmp_path / "v" / "clip_pose.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert [r["image_id"] for r in json.loads((tmp_path / "v" / "results.json").read_text())] == [0, 1, 2]


def test_predict_command_errors(tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tiny_checkpoint), str(tmp_path / "empty")]) == 2
    assert "no images" in capsys.readouterr().err
    (tmp_path / "bad.jpg").write_bytes(b"xx")
    assert main(["predict", str(tiny_checkpoint), str(tmp_path / "bad.jpg"), "--out", str(tmp_path / "o")]) == 2
    assert "bad.jpg: cannot be decoded as an image" in capsys.readouterr().err
    assert main(["predict", str(tiny_checkpoint), str(tmp_path / "bad.jpg"), "--keypoints", "mpii16"]) == 2
    assert "predicts 17 keypoints of 'coco17', but 'mpii16' (16 keypoints) was asked for" in capsys.readouterr().err
    raw = tmp_path / "raw.pth"
    torch.save(torch.load(tiny_checkpoint, weights_only=True)["model"], raw)
    assert main(["predict", str(raw), str(tmp_path / "bad.jpg")]) == 2
    assert "has no config inside" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        Predictor.from_checkpoint(raw)
    # With its config, an official-style state dict loads.
    cfg = load_config("synth_r18slim_128x96_dark", ["model.kwargs={base_width: 16, deconv_channels: 32}"])
    from poserenet.config import save_config

    save_config(cfg, tmp_path / "cfg.yaml")
    assert len(Predictor.from_checkpoint(raw, config=tmp_path / "cfg.yaml", detector="none")(np.zeros((100, 80, 3), np.uint8))) == 1


def test_export_command(tiny_checkpoint, tmp_path, capsys):
    assert main(["export", str(tiny_checkpoint), "--onnx", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "keypoints and scores out" in out and "max difference" in out
    import onnx

    model = onnx.load(str(tmp_path / "m.onnx"))
    assert [o.name for o in model.graph.output] == ["keypoints", "scores"]


def test_boxes_from_a_coco_detection_file(tiny_checkpoint):
    from conftest import shared

    from poserenet.inference import read_boxes

    root = shared("mmpose_fixtures", "coco")
    boxes = read_boxes(root / "test_coco_det_AP_H_56.json", root / "test_coco.json")
    assert boxes and all((root / name).is_file() for name in boxes)
    assert all(len(b) == 5 for bs in boxes.values() for b in bs)
    name, bs = next(iter(boxes.items()))
    people = Predictor.from_checkpoint(tiny_checkpoint)(root / name, bs)
    assert 0 < len(people) <= len(bs)
    with pytest.raises(ConfigError, match="give --ann"):
        read_boxes(root / "test_coco_det_AP_H_56.json")


def test_bf16_and_int8_give_the_float32_keypoints_within_a_pixel(tmp_path):
    """Low precision: the PyTorch path in bfloat16, and an int8 ONNX export calibrated on crops
    of people; on well-formed heatmaps both stay within a pixel of float32."""
    codec = HeatmapCodec((128, 96), (32, 24), 1.5, dark=True)
    images = dot_images(6, seed=3)
    fp32 = Predictor(TorchRunner(PoseHead(DotNet(), codec), torch.device("cpu"), False), COCO17, (128, 96))
    bf16 = Predictor(TorchRunner(PoseHead(DotNet(), codec, bf16=True), torch.device("cpu"), False), COCO17, (128, 96))
    box = [[0, 0, 180, 240]]
    for img in images:
        a, b = fp32(img, box)[0], bf16(img, box)[0]
        assert np.abs(a.keypoints[:, :2] - b.keypoints[:, :2]).max() < 1.0
    out = tmp_path / "int8.onnx"
    worst = export_pose_head(PoseHead(DotNet(), codec), COCO17, (128, 96), out, check_images=images, int8_calibration=images)
    assert worst < 1.0
    import onnx

    model = onnx.load(str(out))
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)  # really int8
    assert json.loads({p.key: p.value for p in model.metadata_props}["poserenet"])["precision"] == "int8"
    int8 = Predictor.from_checkpoint(out, detector="none")
    for img in images:
        assert np.abs(fp32(img, box)[0].keypoints[:, :2] - int8(img, box)[0].keypoints[:, :2]).max() < 1.0


def test_export_int8_command(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "m8.onnx"
    assert main(["export", str(tiny_checkpoint), "--onnx", str(out), "--int8"]) == 0
    printed = capsys.readouterr().out
    assert "int8: calibrating on" in printed and "int8 vs float32 PyTorch" in printed
    assert Predictor.from_checkpoint(out, detector="none")(np.zeros((120, 90, 3), np.uint8))[0].keypoints.shape == (17, 3)
    with pytest.raises(SystemExit):  # int8 is an export, not a --precision
        main(["predict", str(tiny_checkpoint), str(tmp_path), "--precision", "int8"])

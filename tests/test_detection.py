"""The person-detector stage: ONNX detectors of each output layout (tiny synthetic models with
known boxes, nothing downloaded), the embedded HOG detector, tracking in video."""

import json

import cv2
import numpy as np
import pytest
import torch
from conftest import shared

from poserenet.cli import main
from poserenet.detection import HogDetector, OneEuro, OnnxDetector, Tracker, nms
from poserenet.errors import PoseDataError
from poserenet.inference import PoseHead, Predictor, TorchRunner, track
from poserenet.meta import COCO17

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def constant_model(path, input_hw, outputs: dict[str, np.ndarray], input_name="input"):
    """An ONNX 'detector' that returns fixed tensors whatever the image: its decoded boxes are known."""
    nodes = [helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value)) for name, value in outputs.items()]
    types = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64}
    graph = helper.make_graph(
        nodes, "detector", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, *input_hw])],
        [helper.make_tensor_value_info(n, types[v.dtype], list(v.shape)) for n, v in outputs.items()],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_mmdeploy_layout(tmp_path):
    """YOLOX/RTMDet exported by mmdeploy: dets [1, N, 5] in the letterboxed input (top-left), labels [1, N]."""
    dets = np.array([[[10, 20, 30, 60, 0.9], [0, 0, 5, 5, 0.1], [40, 10, 60, 50, 0.8]]], np.float32)
    labels = np.array([[0, 0, 1]], np.int64)  # a person, a person below the score threshold, another class
    model = constant_model(tmp_path / "end2end.onnx", (64, 96), {"dets": dets, "labels": labels})
    det = OnnxDetector(model)
    assert det.layout == "mmdeploy" and det.mean is None  # no pipeline.json: raw pixels, as rtmlib's YOLOX
    boxes = det(np.zeros((128, 192, 3), np.uint8))  # scaled by 0.5 into the input
    np.testing.assert_allclose(boxes, [[20, 40, 40, 80, 0.9]], atol=1e-5)
    (tmp_path / "pipeline.json").write_text(json.dumps({"pipeline": {"tasks": [{"transforms": [
        {"type": "Normalize", "mean": [103.53, 116.28, 123.675], "std": [57.375, 57.12, 58.395], "to_rgb": False}]}]}}))  # fmt: skip
    assert OnnxDetector(model).mean == (103.53, 116.28, 123.675)  # RTMDet's, from the mmdeploy SDK file


def test_yolov8_layout_with_nms_and_a_centred_letterbox(tmp_path):
    # Columns: cx, cy, w, h (input pixels), person score, other-class score.
    anchors = np.array([
        [48, 32, 20, 30, 0.9, 0.0],   # a person
        [49, 33, 20, 30, 0.8, 0.0],   # the same person again: NMS drops it
        [70, 30, 10, 10, 0.0, 0.95],  # another class
        [10, 40, 8, 8, 0.1, 0.0],     # below the threshold
        [20, 20, 10, 16, 0.6, 0.0],   # a second person
        *[[0, 0, 1, 1, 0.0, 0.0]] * 5,  # empty anchors (real heads have thousands)
    ], np.float32)  # fmt: skip
    model = constant_model(tmp_path / "yolov8.onnx", (64, 96), {"output0": anchors.T[None].copy()}, "images")
    det = OnnxDetector(model)
    assert det.layout == "yolov8"
    boxes = det(np.zeros((100, 200, 3), np.uint8))  # ratio 0.48, 48 rows high, centred: 8 rows of padding above
    r, dy = 0.48, 8
    want = [[(48 - 10) / r, (32 - 15 - dy) / r, 20 / r, 30 / r, 0.9], [(20 - 5) / r, (20 - 8 - dy) / r, 10 / r, 16 / r, 0.6]]
    np.testing.assert_allclose(boxes, want, atol=1e-3)


def test_raw_yolox_layout(tmp_path):
    pred = np.zeros((1, 8 * 12 + 4 * 6 + 2 * 3, 7), np.float32)  # strides 8, 16, 32 on a 64x96 input
    pred[0, 2 * 12 + 3] = [0.5, 0.25, np.log(2), np.log(3), 0.9, 1.0, 0.0]  # stride-8 cell (x 3, y 2)
    model = constant_model(tmp_path / "yolox.onnx", (64, 96), {"output": pred})
    det = OnnxDetector(model)
    assert det.layout == "yolox"
    boxes = det(np.zeros((64, 96, 3), np.uint8))
    np.testing.assert_allclose(boxes, [[28 - 8, 18 - 12, 16, 24, 0.9]], atol=1e-4)


def test_bad_detector_files_are_named(tmp_path, capsys):
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model")
    with pytest.raises(PoseDataError, match="junk.onnx: not a loadable ONNX model"):
        OnnxDetector(junk)
    odd = constant_model(tmp_path / "odd.onnx", (64, 96), {"logits": np.zeros((1, 7), np.float32)})
    with pytest.raises(PoseDataError, match=r"odd.onnx: outputs \[\(1, 7\)\] are not a supported detector layout"):
        OnnxDetector(odd)
    yolox = constant_model(tmp_path / "y.onnx", (64, 96), {"output": np.zeros((1, 126, 7), np.float32)})
    with pytest.raises(PoseDataError, match="do not have the yolov8 layout"):
        OnnxDetector(yolox, layout="yolov8")
    with pytest.raises(PoseDataError, match="missing.onnx: detector file not found"):
        OnnxDetector(tmp_path / "missing.onnx")
    assert main(["predict", str(tmp_path / "ckpt.pth"), str(tmp_path), "--detector", str(junk)]) == 2
    assert "junk.onnx: not a loadable ONNX model" in capsys.readouterr().err


def test_nms_and_tracker():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], float)
    assert nms(boxes, np.array([0.5, 0.9, 0.4]), 0.5).tolist() == [1, 2]
    tracker = Tracker()
    a, b = np.array([0, 0, 10, 20.0]), np.array([50, 0, 10, 20.0])
    ids = [t.id for t in tracker.update([a, b])]
    for step in range(1, 6):  # both walk right, listed in the other order
        assert [t.id for t in tracker.update([b + [step, 0, 0, 0], a + [step, 0, 0, 0]])] == ids[::-1]
    assert [t.id for t in tracker.update([a + [5, 0, 0, 0], np.array([200, 0, 10, 20.0])])] == [ids[0], 3]  # a newcomer
    f = OneEuro()
    rng = np.random.default_rng(0)
    still = np.full((17, 2), 50.0)
    out = np.array([f(still + rng.normal(0, 2, still.shape)).copy() for _ in range(30)])
    assert out[10:].std(0).mean() < 0.6 * 2  # jitter of a still person damped


class BandNet(torch.nn.Module):
    """A 'pose model' for upright bright figures: joint k is the brightest pixel in the k-th of
    17 horizontal bands of the crop, so the joints spread from head to feet like a person's."""

    def forward(self, x):
        pooled = torch.nn.functional.avg_pool2d(x[:, :1], 4).relu()  # [N, 1, 32, 24]
        bands = torch.zeros(17, pooled.shape[2], 1)
        for k in range(17):
            bands[k, k * pooled.shape[2] // 17 : (k + 1) * pooled.shape[2] // 17 + 1] = 1
        return pooled * bands[None]


def moving_people(n=12):
    """Two bright upright figures walking towards each other."""
    frames = []
    for i in range(n):
        img = np.zeros((240, 320, 3), np.uint8)
        for cx in (60 + 3 * i, 220 - 2 * i):
            cv2.ellipse(img, (cx, 120), (6, 50), 0, 0, 360, (255, 255, 255), -1)
        frames.append(img)
    return frames


def test_track_gives_stable_ids_and_detects_every_n_frames():
    from poserenet.codec import HeatmapCodec

    calls = []

    def detector(img):  # two people, found where the dots are
        calls.append(1)
        xs = np.flatnonzero(img[120, :, 0] > 128)
        groups = np.split(xs, np.flatnonzero(np.diff(xs) > 1) + 1)
        return np.array([[g.mean() - 30, 60, 60, 120, 0.9] for g in groups], np.float32)

    head = PoseHead(BandNet(), HeatmapCodec((128, 96), (32, 24), 2.0, dark=True))
    predictor = Predictor(TorchRunner(head, torch.device("cpu"), False), COCO17, (128, 96), detector=detector)
    out = list(track(predictor, moving_people(12), detect_every=5))
    assert len(calls) == 3  # frames 0, 5 and 10
    ids = [sorted(p.track_id for p in people) for _, people in out]
    assert all(i == [1, 2] for i in ids)
    left = [next(p for p in people if p.track_id == min(q.track_id for q in people)) for _, people in out]
    assert np.diff([p.keypoints[0, 0] for p in left]).mean() > 0  # the left dot walks right, and its track follows


def test_hog_finds_an_upright_person_in_a_real_photo():
    """COCO image 538113 holds an upright pedestrian, the case HOG was made for (its recall on
    every COCO person is in the README: low)."""
    root = shared("coco_mini")
    doc = json.loads((root / "annotations" / "person_keypoints_train2017.json").read_text())
    rgb = cv2.cvtColor(cv2.imread(str(root / "train2017" / "000000538113.jpg")), cv2.COLOR_BGR2RGB)
    boxes = HogDetector()(rgb)
    assert len(boxes) and boxes.shape[1] == 5 and ((boxes[:, 4] >= 0.3) & (boxes[:, 4] < 1)).all()
    people = [a["bbox"] for a in doc["annotations"] if a["image_id"] == 538113 and not a["iscrowd"]]
    assert max(_iou(b[:4], g) for b in boxes for g in people) > 0.7


def _iou(a, b):
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    inter = max(0, min(ax2, bx2) - max(a[0], b[0])) * max(0, min(ay2, by2) - max(a[1], b[1]))
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_predict_finds_and_tracks_people_in_a_video(tiny_checkpoint, tmp_path, capsys):
    video = tmp_path / "walk.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for f in moving_people(8):
        writer.write(f)
    writer.release()
    dets = np.array([[[40, 60, 100, 180, 0.9], [190, 60, 250, 180, 0.8]]], np.float32)  # two people, in 240x320 pixels
    model = constant_model(tmp_path / "det.onnx", (240, 320), {"dets": dets, "labels": np.zeros((1, 2), np.int64)})
    out = tmp_path / "out"
    assert main(["predict", str(tiny_checkpoint), str(video), "--detector", str(model), "--detect-every", "3",
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert {r["track_id"] for r in results} >= {1, 2} and all("bbox" in r for r in results)
    assert results[0]["bbox"] == pytest.approx([40, 60, 60, 120], abs=0.01)
    assert (out / "walk_pose.mp4").stat().st_size > 0
    assert "tracked people" in capsys.readouterr().out

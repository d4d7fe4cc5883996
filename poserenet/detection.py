"""Finding the people: the person-detector stage of top-down inference, and tracking in video.

A detector is any callable `RGB image [H, W, 3] -> boxes [M, 5]` (x, y, w, h, score in image
pixels); `Predictor` crops what it returns. Two are built in:

- `HogDetector`: OpenCV's HOG + linear SVM people detector (Dalal & Triggs, CVPR 2005), which
  ships inside OpenCV: nothing to download. It was trained on upright, mostly whole pedestrians
  about 96 px tall in a 64 x 128 window; it misses sitting, lying, crouching, partly visible
  and small people, and its boxes are looser than a pose model's (README: its recall on real
  COCO photos). A stand-in that always works, not a modern detector.
- `OnnxDetector`: a person detector exported to ONNX, run with onnxruntime, in the layouts the
  common exports use: "mmdeploy" (YOLOX, RTMDet as mmdeploy exports them and rtmlib uses them:
  `dets` [B, N, 5] x1 y1 x2 y2 score and `labels` [B, N]), "yolox" (the raw YOLOX head
  [B, A, 5 + C]: grid offsets, log sizes, objectness, class scores) and "yolov8" (the
  ultralytics head [B, 4 + C, A]: centre, size, class scores), with the letterbox each expects,
  a score threshold and NMS.

`Tracker` gives the people of a video stable ids: detections every N frames, in between each
person's box follows its keypoints, matched to the last frame's by IoU; keypoints are smoothed
per person with a One-Euro filter.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from .errors import ConfigError, PoseDataError

Detector = Callable[[np.ndarray], np.ndarray]
LAYOUTS = ("mmdeploy", "yolox", "yolov8")


def nms(boxes_xyxy: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression at IoU `threshold`, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        order = rest[iou_xyxy(boxes_xyxy[i], boxes_xyxy[rest]) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def iou_xyxy(box: np.ndarray, boxes: np.ndarray, over: str = "union") -> np.ndarray:
    """Overlap of one [x1, y1, x2, y2] box with each of `boxes` [M, 4]: the intersection over
    their union (IoU), or over the smaller of the two areas (`over="min"`)."""
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    if over == "min":
        return inter / np.maximum(np.minimum(area(box), area(boxes)), 1e-9)
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return np.c_[b[:, :2], b[:, :2] + b[:, 2:4]]


# --------------------------------------------------------------------------- HOG
class HogDetector:
    """OpenCV's built-in HOG people detector (see the module docstring for what it can't do).

    Images whose longer side is under `upscale_below` px are searched at twice their size too,
    so that people of 48-96 px are found. The box is the person inside the detection window (the
    detector's training windows hold a person 96 of 128 px tall and half the window wide,
    centred), and the score maps the SVM margin m to 1 - exp(-m).
    """

    def __init__(self, score_threshold: float = 0.3, nms_threshold: float = 0.45, upscale_below: int = 800):
        if not hasattr(cv2, "HOGDescriptor"):
            raise ConfigError(f"OpenCV {cv2.__version__} has no HOG people detector (OpenCV 5 moved it out); "
                              "pip install 'opencv-python-headless<5', or give --detector model.onnx")  # fmt: skip
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.upscale_below = upscale_below

    def __call__(self, image: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        found = [self._detect(gray, 1.0)]
        if max(gray.shape) < self.upscale_below:
            found.append(self._detect(cv2.resize(gray, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR), 2.0))
        boxes = np.concatenate(found)
        if not len(boxes):
            return np.zeros((0, 5), np.float32)
        keep = nms(xywh_to_xyxy(boxes[:, :4]), boxes[:, 4], self.nms_threshold)
        boxes = boxes[keep]
        return boxes[boxes[:, 4] >= self.score_threshold].astype(np.float32)

    def _detect(self, gray: np.ndarray, factor: float) -> np.ndarray:
        rects, weights = self.hog.detectMultiScale(gray, winStride=(8, 8), padding=(8, 8), scale=1.05)
        if len(rects) == 0:
            return np.zeros((0, 5))
        r = np.asarray(rects, np.float64) / factor
        person = np.c_[r[:, 0] + 0.25 * r[:, 2], r[:, 1] + 0.125 * r[:, 3], 0.5 * r[:, 2], 0.75 * r[:, 3]]
        return np.c_[person, 1 - np.exp(-np.clip(np.ravel(weights), 0, None))]


# --------------------------------------------------------------------------- ONNX
@dataclass
class Letterbox:
    """How an image was fitted into the detector's input: scaled by `ratio`, then shifted by `pad`."""

    ratio: float
    pad: tuple[float, float] = (0.0, 0.0)

    def to_image(self, xyxy: np.ndarray) -> np.ndarray:
        out = np.asarray(xyxy, dtype=np.float64).copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad[0]) / self.ratio
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad[1]) / self.ratio
        return out


def letterbox(image: np.ndarray, hw: tuple[int, int], centre: bool, fill: int = 114) -> tuple[np.ndarray, Letterbox]:
    """`image` scaled to fit `hw` (keeping its aspect ratio) on a `fill` canvas: top-left as
    mmdeploy/rtmlib and YOLOX do, or centred as ultralytics does."""
    h, w = image.shape[:2]
    ratio = min(hw[0] / h, hw[1] / w)
    nh, nw = int(round(h * ratio)), int(round(w * ratio))
    canvas = np.full((hw[0], hw[1], 3), fill, np.uint8)
    dx, dy = ((hw[1] - nw) // 2, (hw[0] - nh) // 2) if centre else (0, 0)
    canvas[dy : dy + nh, dx : dx + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, Letterbox(ratio, (float(dx), float(dy)))


@dataclass
class OnnxDetector:
    """A person detector exported to ONNX (layouts in the module docstring).

    `layout="auto"` reads it off the outputs. `mean`/`std` normalise the (BGR for mmdeploy and
    YOLOX, RGB for YOLOv8) input pixels: by default the values of an mmdeploy `pipeline.json`
    beside the model when there is one (RTMDet), else none (YOLOX), and 0-1 pixels for YOLOv8.
    """

    path: str | Path
    layout: str = "auto"
    score_threshold: float = 0.3
    nms_threshold: float = 0.45
    person_class: int = 0
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    threads: int = 0
    _session: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("an ONNX detector needs onnxruntime: pip install 'poserenet[onnx]'") from None
        path = Path(self.path)
        if not path.is_file():
            raise PoseDataError(f"{path}: detector file not found")
        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
        try:
            self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own error types
            raise PoseDataError(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0][:200]})") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise PoseDataError(f"{path}: a detector takes one image tensor [1, 3, H, W]; this model's inputs are "
                                f"{[(i.name, i.shape) for i in inputs]}")  # fmt: skip
        self._input = inputs[0].name
        h, w = inputs[0].shape[2:]
        self.input_hw = (h if isinstance(h, int) else 640, w if isinstance(w, int) else 640)
        outputs = self._probe()
        shapes = [tuple(o.shape) for o in outputs]
        found = _layout_of(shapes)
        if self.layout == "auto":
            if found is None:
                raise PoseDataError(f"{path}: outputs {shapes} are not a supported detector layout (mmdeploy: dets [1, N, 5] "
                                    "and labels [1, N]; yolox: [1, anchors, 5 + classes]; yolov8: [1, 4 + classes, anchors])")  # fmt: skip
            self.layout = found
        elif self.layout not in LAYOUTS:
            raise ConfigError(f"detector layout must be auto or one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        elif found != self.layout:
            raise PoseDataError(f"{path}: outputs {shapes} do not have the {self.layout} layout")
        if self.mean is None and self.layout == "mmdeploy":
            self.mean, self.std = _mmdeploy_normalisation(path.parent / "pipeline.json")

    def _probe(self) -> list[np.ndarray]:
        return self._session.run(None, {self._input: np.zeros((1, 3, *self.input_hw), np.float32)})

    def __call__(self, image: np.ndarray) -> np.ndarray:
        rgb = self.layout == "yolov8"
        canvas, fit = letterbox(image if rgb else np.ascontiguousarray(image[..., ::-1]), self.input_hw, centre=rgb)
        x = canvas.astype(np.float32) / (255.0 if rgb else 1.0)
        if self.mean is not None:
            x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        outputs = self._session.run(None, {self._input: np.ascontiguousarray(x.transpose(2, 0, 1)[None])})
        xyxy, scores, labels = _decode(self.layout, outputs, self.input_hw)
        keep = (labels == self.person_class) & (scores >= self.score_threshold)
        xyxy, scores = xyxy[keep], scores[keep]
        if self.layout != "mmdeploy" and len(scores):  # the end-to-end export has done NMS itself
            k = nms(xyxy, scores, self.nms_threshold)
            xyxy, scores = xyxy[k], scores[k]
        xyxy = fit.to_image(xyxy)
        h, w = image.shape[:2]
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
        boxes = np.c_[xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2], scores]
        return boxes[(boxes[:, 2] > 0) & (boxes[:, 3] > 0)].astype(np.float32)


def _layout_of(shapes: list[tuple]) -> str | None:
    if len(shapes) == 2 and len(shapes[0]) == 3 and shapes[0][2] == 5 and len(shapes[1]) == 2 and shapes[1][1] == shapes[0][1]:
        return "mmdeploy"
    if len(shapes) == 1 and len(shapes[0]) == 3:
        _, a, b = shapes[0]
        if b > a and a > 4:
            return "yolov8"
        if a > b > 5:
            return "yolox"
    return None


def _decode(layout: str, outputs: list[np.ndarray], input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes [M, 4] (x1, y1, x2, y2 in detector-input pixels), scores [M], class labels [M]."""
    if layout == "mmdeploy":
        dets, labels = outputs[0][0], outputs[1][0]
        return dets[:, :4].astype(np.float64), dets[:, 4].astype(np.float64), labels.astype(np.int64)
    if layout == "yolov8":
        pred = outputs[0][0].T.astype(np.float64)  # [A, 4 + C]
        c, s = pred[:, :2], pred[:, 2:4]
        cls = pred[:, 4:]
    else:  # raw YOLOX: offsets from the grid cell, log sizes, at strides 8, 16 and 32
        pred = outputs[0][0].astype(np.float64)  # [A, 5 + C]
        grids, strides = [], []
        for stride in (8, 16, 32):
            gy, gx = np.mgrid[0 : input_hw[0] // stride, 0 : input_hw[1] // stride]
            grids.append(np.c_[gx.ravel(), gy.ravel()])
            strides.append(np.full(gx.size, stride))
        grid, stride = np.concatenate(grids), np.concatenate(strides)[:, None]
        if len(grid) != len(pred):
            raise PoseDataError(f"a raw YOLOX head for a {input_hw[0]}x{input_hw[1]} input has {len(grid)} anchors, this one {len(pred)}")
        c, s = (pred[:, :2] + grid) * stride, np.exp(pred[:, 2:4]) * stride
        cls = pred[:, 4:5] * pred[:, 5:]
    labels = cls.argmax(1)
    return np.c_[c - s / 2, c + s / 2], cls[np.arange(len(cls)), labels], labels


def _mmdeploy_normalisation(pipeline: Path) -> tuple[Any, Any]:
    """Mean and std of the Normalize step in an mmdeploy SDK `pipeline.json`, if there is one."""
    try:
        doc = json.loads(pipeline.read_text())
    except (OSError, ValueError):
        return None, None
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "Normalize" and "mean" in node and "std" in node:
                return tuple(node["mean"]), tuple(node["std"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None, None


def build_detector(spec: str | None, score_threshold: float | None = None, **options: Any) -> Detector | None:
    """"hog" (the embedded default), "none" (the whole image is one person) or an ONNX file."""
    if spec in (None, "none"):
        return None
    opts = {**options, **({"score_threshold": score_threshold} if score_threshold is not None else {})}
    if spec == "hog":
        return HogDetector(**{k: v for k, v in opts.items() if k in ("score_threshold", "nms_threshold")})
    return OnnxDetector(spec, **opts)


# --------------------------------------------------------------------------- tracking
class OneEuro:
    """The One-Euro filter (Casiez et al., CHI 2012) on an array: smooth when still, quick when
    moving. Cutoffs in Hz, `dt` in seconds (a frame at 30 fps by default), speeds in pixels/s."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.02, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x = self.dx = None

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, dt: float = 1 / 30) -> np.ndarray:
        if self.x is None:
            self.x, self.dx = x.copy(), np.zeros_like(x)
            return x
        a_d = self._alpha(self.d_cutoff, dt)
        self.dx = a_d * (x - self.x) / dt + (1 - a_d) * self.dx
        a = self._alpha(self.min_cutoff + self.beta * np.abs(self.dx), dt)
        self.x = a * x + (1 - a) * self.x
        return self.x


@dataclass
class Track:
    id: int
    box: np.ndarray  # [x, y, w, h]
    missed: int = 0
    smoother: OneEuro = field(default_factory=OneEuro)


class Tracker:
    """Stable person ids over video frames: each frame's boxes are matched greedily to the
    tracks' last boxes by their overlap, the intersection over the smaller box (a detector's box
    and the box around the same person's keypoints differ in size, not in place); a track
    unmatched for `max_missed` frames ends."""

    def __init__(self, overlap_threshold: float = 0.5, max_missed: int = 10):
        self.overlap_threshold = overlap_threshold
        self.max_missed = max_missed
        self.tracks: list[Track] = []
        self.next_id = 1

    def update(self, boxes: np.ndarray) -> list[Track]:
        """The track of each box (in order); new ids for boxes that match no live track."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        assigned: list[Track | None] = [None] * len(boxes)
        free = list(self.tracks)
        if free and len(boxes):
            overlap = np.stack([iou_xyxy(xywh_to_xyxy(t.box)[0], xywh_to_xyxy(boxes), over="min") for t in free])  # [T, B]
            # Ties (a box inside two others) go to the better IoU.
            rank = overlap + 1e-3 * np.stack([iou_xyxy(xywh_to_xyxy(t.box)[0], xywh_to_xyxy(boxes)) for t in free])
            for flat in np.argsort(-rank, axis=None):
                ti, bi = divmod(int(flat), len(boxes))
                if overlap[ti, bi] < self.overlap_threshold:
                    break
                if assigned[bi] is None and free[ti] is not None:
                    assigned[bi], free[ti] = free[ti], None
        for i, box in enumerate(boxes):
            if assigned[i] is None:
                assigned[i] = Track(self.next_id, box)
                self.next_id += 1
                self.tracks.append(assigned[i])
            assigned[i].box, assigned[i].missed = box, 0
        for t in free:
            if t is not None:
                t.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return [t for t in assigned if t is not None]


def box_of_keypoints(keypoints: np.ndarray, threshold: float = 0.2, image_hw: tuple[int, int] | None = None) -> np.ndarray | None:
    """[x, y, w, h] around the confident keypoints [K, 3], grown by 10% a side (the next frame's
    crop box of a tracked person); None if fewer than 3 are confident."""
    ok = keypoints[:, 2] > threshold
    if ok.sum() < 3:
        return None
    (x1, y1), (x2, y2) = keypoints[ok, :2].min(0), keypoints[ok, :2].max(0)
    mx, my = 0.1 * (x2 - x1) + 2, 0.1 * (y2 - y1) + 2
    x1, y1, x2, y2 = x1 - mx, y1 - my, x2 + mx, y2 + my
    if image_hw is not None:
        x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(image_hw[1], x2), min(image_hw[0], y2)
    return np.array([x1, y1, x2 - x1, y2 - y1]) if x2 > x1 and y2 > y1 else None

"""Inference for users: `Predictor` turns images (and person boxes) into keypoints in image
coordinates, with PyTorch or an exported ONNX file; `export_onnx` writes a model whose graph
ends in the decoding step (keypoints and scores out, not heatmaps).

    from poserenet.inference import Predictor
    predictor = Predictor.from_checkpoint("runs/demo/last.pth")      # or "model.onnx"
    people = predictor("street.jpg", boxes=[[x, y, w, h], ...])      # or boxes=None: whole image

Both back ends run the same `PoseHead` (model -> optional flip test -> decode -> image
coordinates), so ONNX and PyTorch agree to a thousandth of a pixel.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from .codec import HeatmapCodec
from .datasets import normalize, read_image
from .detection import Detector, Tracker, box_of_keypoints, build_detector
from .errors import ConfigError, PoseDataError
from .evaluate import decode_outputs
from .files import write_atomic
from .meta import KeypointMeta, load_meta, meta_from_dict, meta_to_dict
from .postprocess import rescore
from .transforms import affine_matrix, box_to_center_scale, warp

log = logging.getLogger(__name__)
ONNX_METADATA_KEY = "poserenet"


@dataclass
class PersonPose:
    keypoints: np.ndarray  # [K, 3]: x, y (image pixels), score
    bbox: np.ndarray  # [x, y, w, h] the person box that was cropped
    score: float  # pose score: box score x mean of the confident keypoint scores
    track_id: int | None = None  # the person's id over the frames of a video (`Predictor.track`)


class PoseHead(nn.Module):
    """model -> (flip test) -> decode -> image coordinates, as one module (and one ONNX graph).

    Inputs: images [N, 3, H, W] (normalised crops), center [N, 2] and scale [N, 2] of each crop
    in image pixels. Outputs: keypoints [N, K, 2] in image pixels, scores [N, K].
    """

    def __init__(self, model: nn.Module, codec: HeatmapCodec, flip_index: Sequence[int] | None = None, bf16: bool = False):
        super().__init__()
        self.model = model
        self.codec = codec
        self.flip_index = list(flip_index) if flip_index is not None else None
        self.bf16 = bf16  # the network in bfloat16 (PyTorch only; decoding stays float32)

    def forward(self, images: torch.Tensor, center: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xy, scores, (h, w) = decode_outputs(self.model, images, self.codec, self.flip_index, only_final=True, bf16=self.bf16)["final"]
        size = torch.tensor([float(w), float(h)], dtype=xy.dtype, device=xy.device)
        keypoints = xy * (scale[:, None, :] / size) + center[:, None, :] - scale[:, None, :] * 0.5
        return keypoints, scores


def optimize_for_inference(model: nn.Module, channels_last: bool = True, compile: bool = False) -> nn.Module:
    """The fast CPU path: BatchNorm folded into the convolutions (torch.fx), channels_last
    memory, optionally torch.compile. A model that torch.fx cannot trace stays unfolded."""
    model = copy.deepcopy(model).eval()
    try:
        from torch.fx.experimental.optimization import fuse

        model = fuse(model)
    except Exception as e:  # tracing a custom model can fail in many ways; folding is an optimisation
        warnings.warn(f"BatchNorm folding skipped ({type(e).__name__}: {e})", stacklevel=2)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model = torch.compile(model)
    return model


def crop(image: np.ndarray, boxes: np.ndarray, input_hw: tuple[int, int], padding: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised crops [M, 3, H, W] of the boxes [M, 4] (x, y, w, h), with their centers and scales."""
    crops, centers, scales = [], [], []
    for box in boxes:
        c, s = box_to_center_scale(box, input_hw, padding)
        crops.append(normalize(warp(image, affine_matrix(c, s, 0.0, input_hw), input_hw)).numpy())
        centers.append(c)
        scales.append(s)
    return np.stack(crops), np.stack(centers).astype(np.float32), np.stack(scales).astype(np.float32)


class TorchRunner:
    def __init__(self, head: PoseHead, device: torch.device, channels_last: bool):
        self.head = head.to(device).eval()
        self.device = device
        self.channels_last = channels_last

    @torch.inference_mode()
    def __call__(self, images: np.ndarray, center: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(images).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        kp, sc = self.head(x, torch.from_numpy(center).to(self.device), torch.from_numpy(scale).to(self.device))
        return kp.cpu().numpy(), sc.cpu().numpy()


class OnnxRunner:
    def __init__(self, path: str | Path, require_metadata: bool = True):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("running ONNX files needs onnxruntime: pip install 'poserenet[onnx]'") from None
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own error types
            raise PoseDataError(f"{path}: cannot load ONNX model: {e}") from None
        meta = self.session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
        if meta is None and require_metadata:
            raise PoseDataError(f"{path}: not exported by `poserenet export` (no '{ONNX_METADATA_KEY}' metadata)")
        self.info = json.loads(meta) if meta else {}

    def __call__(self, images: np.ndarray, center: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kp, sc = self.session.run(None, {"images": images, "center": center, "scale": scale})
        return kp, sc


class Predictor:
    """Person boxes -> crops -> model -> keypoints in image coordinates, batched."""

    def __init__(
        self,
        runner: Any,
        meta: KeypointMeta,
        input_hw: tuple[int, int],
        bbox_padding: float = 1.25,
        batch_size: int = 32,
        rescore_threshold: float = 0.2,
        detector: Detector | None = None,
    ):
        self.runner = runner
        self.meta = meta
        self.input_hw = tuple(input_hw)
        self.bbox_padding = bbox_padding
        self.batch_size = batch_size
        self.rescore_threshold = rescore_threshold
        self.detector = detector  # finds the people when no boxes are given (None: the whole image)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        config: str | Path | None = None,
        device: str = "cpu",
        fast: bool = True,
        compile: bool = False,
        flip_test: bool = False,
        batch_size: int = 32,
        keypoints: str | None = None,
        detector: str | Detector | None = "hog",
        precision: str = "fp32",
    ) -> Predictor:
        """A training checkpoint (its config and keypoint set are inside), an official state
        dict with `config`, or an ONNX file from `poserenet export`. `keypoints` (a keypoint-set
        name or file) is checked against the model's. `detector` finds the people when a call
        gives no boxes: "hog" (OpenCV's, embedded), "none" (the whole image is one person), the
        path of an ONNX person detector, or any callable (see `poserenet.detection`).
        `precision`: "fp32", or "bf16" for the PyTorch path (the network in bfloat16; fast on
        CPUs with AVX-512 BF16 or AMX and on GPUs); an int8 ONNX file is made by `export_onnx`."""
        if precision not in ("fp32", "bf16"):
            raise ConfigError(f"precision must be fp32 or bf16, got {precision!r} (int8: export with --int8 and load the .onnx)")
        path = Path(path)
        if path.suffix == ".onnx":
            runner = OnnxRunner(path)
            info = runner.info
            meta = meta_from_dict(info["meta"], str(path))
            predictor = cls(runner, meta, tuple(info["input_hw"]), info["bbox_padding"], batch_size)
        else:
            head, meta, cfg = build_head(path, config, flip_test)
            head.bf16 = precision == "bf16"
            dev = torch.device(device)
            if fast:
                head.model = optimize_for_inference(head.model, channels_last=True, compile=compile)
            runner = TorchRunner(head, dev, channels_last=fast)
            predictor = cls(runner, meta, tuple(cfg.data.input_hw), cfg.data.bbox_padding, batch_size, cfg.eval.rescore_threshold)
        predictor.detector = detector if callable(detector) else build_detector(detector)
        if keypoints is not None:
            asked = load_meta(keypoints)
            if asked.keypoints != meta.keypoints:
                raise ConfigError(
                    f"{path}: the model predicts {meta.num_keypoints} keypoints of {meta.name!r}, "
                    f"but {asked.name!r} ({asked.num_keypoints} keypoints) was asked for"
                )
        return predictor

    def __call__(self, image: str | Path | np.ndarray, boxes: Sequence[Sequence[float]] | np.ndarray | None = None) -> list[PersonPose]:
        """People of one image (a path or an RGB array). `boxes`: [M, 4] (x, y, w, h) or [M, 5]
        with a score; None: the detector's boxes (the whole image if there is no detector)."""
        return next(iter(self.predict_many([(image, boxes)])))[1]

    def predict_many(
        self, items: Iterable[tuple[Any, Sequence[Sequence[float]] | np.ndarray | None]]
    ) -> Iterable[tuple[np.ndarray, list[PersonPose], int]]:
        """For each (image, boxes): (RGB image, people, boxes skipped as outside the image).
        People of consecutive images share batches."""
        pending: list[tuple[np.ndarray, np.ndarray, int]] = []
        queued = 0
        for image, boxes in items:
            img = read_image(str(image)) if isinstance(image, (str, Path)) else np.asarray(image)
            b, skipped = self._boxes(img, boxes)
            pending.append((img, b, skipped))
            queued += len(b)
            if queued >= self.batch_size:
                yield from self._flush(pending)
                pending, queued = [], 0
        if pending:
            yield from self._flush(pending)

    def _boxes(self, img: np.ndarray, boxes: Any) -> tuple[np.ndarray, int]:
        h, w = img.shape[:2]
        if boxes is None and self.detector is not None:
            boxes = self.detector(img)
        if boxes is None:
            return np.array([[0.0, 0.0, w, h, 1.0]], dtype=np.float32), 0
        boxes = boxes.tolist() if isinstance(boxes, np.ndarray) else list(boxes)
        if boxes and np.isscalar(boxes[0]):  # one box
            boxes = [boxes]
        rows = []
        for box in boxes:
            box = [float(v) for v in box]
            if len(box) not in (4, 5):
                raise PoseDataError(f"a box must be [x, y, w, h] or [x, y, w, h, score], got {box}")
            rows.append(box + [1.0] * (5 - len(box)))  # no score: a certain box
        b = np.array(rows, dtype=np.float32).reshape(-1, 5)
        finite = np.isfinite(b).all(1) & (b[:, 2] > 0) & (b[:, 3] > 0)
        inside = (b[:, 0] < w) & (b[:, 1] < h) & (b[:, 0] + b[:, 2] > 0) & (b[:, 1] + b[:, 3] > 0)
        keep = finite & inside
        return b[keep], int((~keep).sum())

    def _flush(self, pending: list) -> Iterable[tuple[np.ndarray, list[PersonPose], int]]:
        crops, centers, scales = [], [], []
        for img, b, _ in pending:
            if len(b):
                c, ce, sc = crop(img, b[:, :4], self.input_hw, self.bbox_padding)
                crops.append(c)
                centers.append(ce)
                scales.append(sc)
        if crops:
            x, ce, sc = np.concatenate(crops), np.concatenate(centers), np.concatenate(scales)
            out = [self.runner(x[i : i + self.batch_size], ce[i : i + self.batch_size], sc[i : i + self.batch_size])
                   for i in range(0, len(x), self.batch_size)]  # fmt: skip
            kp = np.concatenate([o[0] for o in out])
            ks = np.concatenate([o[1] for o in out])
        start = 0
        for img, b, skipped in pending:
            people = []
            if len(b):
                k, s = kp[start : start + len(b)], ks[start : start + len(b)]
                pose_scores = rescore(s, b[:, 4], self.rescore_threshold)
                people = [PersonPose(np.concatenate([k[j], s[j][:, None]], 1), b[j, :4].copy(), float(pose_scores[j]))
                          for j in range(len(b))]  # fmt: skip
                start += len(b)
            yield img, people, skipped


def track(
    predictor: Predictor, frames: Iterable[np.ndarray], detect_every: int = 5, smooth: bool = True, fps: float = 30.0
) -> Iterable[tuple[np.ndarray, list[PersonPose]]]:
    """People of consecutive video frames (RGB arrays) with stable `track_id`s: the detector's
    boxes every `detect_every` frames (and whenever nobody is tracked), in between each
    person's box around their keypoints of the frame before. Each frame's crop boxes are
    matched by IoU to where the tracked people were last (`detection.Tracker`), which a box
    carried over from the last frame is exactly; keypoints are smoothed per person (One-Euro)
    unless `smooth` is off."""
    tracker = Tracker()
    carried = np.zeros((0, 5), np.float32)  # boxes around the last frame's poses
    for i, frame in enumerate(frames):
        detect = len(carried) == 0 or i % max(1, detect_every) == 0
        people = predictor(frame, None if detect else carried)
        hw = frame.shape[:2]
        nxt = []
        for p, t in zip(people, tracker.update(np.array([p.bbox for p in people]).reshape(-1, 4))):
            p.track_id = t.id
            if smooth:
                p.keypoints[:, :2] = t.smoother(p.keypoints[:, :2].astype(np.float64), 1.0 / fps)
            box = box_of_keypoints(p.keypoints, predictor.rescore_threshold, hw)
            if box is not None:  # where to crop this person next; a person without keypoints waits for a detection
                t.box = box
                nxt.append([*box, 1.0])  # carried boxes count as certain: pose scores do not compound
        carried = np.array(nxt, dtype=np.float32).reshape(-1, 5)
        yield frame, people


def read_boxes(path: str | Path, ann: str | Path | None = None) -> dict[str, list]:
    """Boxes by file name (or frame number): from {name: [[x, y, w, h(, score)], ...]}, or from
    a COCO detection-results list whose image ids `ann` (a COCO file) maps to file names."""
    from .files import read_json

    data = read_json(path, "boxes file")
    if isinstance(data, dict):
        return {str(k): v for k, v in data.items()}
    if not isinstance(data, list):
        raise PoseDataError(f"{path}: expected a COCO detection list or a {{file name: boxes}} mapping")
    if ann is None:
        raise ConfigError(f"{path} is a COCO detection list: give --ann (ann=...), the COCO file whose 'images' name its image ids")
    names = {img["id"]: img["file_name"] for img in read_json(ann, "annotation file").get("images", [])}
    boxes: dict[str, list] = {}
    for i, d in enumerate(data):
        if d.get("image_id") not in names:
            raise PoseDataError(f"{path}: detection {i} has image id {d.get('image_id')!r}, which {ann} does not list")
        if d.get("category_id", 1) == 1:
            boxes.setdefault(names[d["image_id"]], []).append([*d["bbox"], d.get("score", 1.0)])
    return boxes


def build_head(path: str | Path, config: str | Path | None = None, flip_test: bool = False) -> tuple[PoseHead, KeypointMeta, Any]:
    """The PoseHead of a checkpoint: its own config and keypoint set when it is a training
    checkpoint, else those of `config`."""
    from .checkpoint import load_weights, read_checkpoint_file, read_state_dict
    from .config import config_from_dict, load_config
    from .models import create_model
    from .pipeline import build_codec, build_meta

    path = Path(path)
    raw = None
    if config is None:
        raw = read_checkpoint_file(path)
        if not isinstance(raw, dict) or "config" not in raw:
            raise ConfigError(f"{path}: has no config inside (an official or raw state dict); pass the config it was trained with")
        cfg = config_from_dict(raw["config"], str(path))
        meta = meta_from_dict(raw["meta"], str(path)) if "meta" in raw else build_meta(cfg)
    else:
        cfg = load_config(config)
        meta = build_meta(cfg)
    model = create_model(cfg.model.name, num_keypoints=meta.num_keypoints, poserenet=cfg.model.poserenet, **cfg.model.kwargs)
    state = raw["model"] if raw is not None else read_state_dict(path)
    load_weights(model, state, source=f"{path} ({cfg.model.name}, {meta.name})")
    return PoseHead(model.eval(), build_codec(cfg), meta.flip_index if flip_test else None), meta, cfg


def export_onnx(
    path: str | Path,
    out: str | Path,
    config: str | Path | None = None,
    flip_test: bool = False,
    opset: int = 17,
    check_images: Sequence[np.ndarray] | None = None,
    int8_calibration: Sequence[np.ndarray] | None = None,
) -> float:
    """Export a checkpoint (see `build_head`) with `export_pose_head`."""
    head, meta, cfg = build_head(path, config, flip_test)
    extra = {"model": cfg.model.name, "poserenet": cfg.model.poserenet.enabled}
    return export_pose_head(head, meta, tuple(cfg.data.input_hw), out, cfg.data.bbox_padding, opset, check_images, extra,
                            int8_calibration)  # fmt: skip


def export_pose_head(
    head: PoseHead,
    meta: KeypointMeta,
    input_hw: tuple[int, int],
    out: str | Path,
    bbox_padding: float = 1.25,
    opset: int = 17,
    check_images: Sequence[np.ndarray] | None = None,
    extra: dict[str, Any] | None = None,
    int8_calibration: Sequence[np.ndarray] | None = None,
) -> float:
    """Write an ONNX file whose outputs are keypoints (image pixels) and scores, with what
    `Predictor` needs in its metadata; check it with onnxruntime against PyTorch on
    `check_images` (synthetic people by default), one whole-image box each, and return the
    largest keypoint difference in pixels.

    With `int8_calibration` (images, one person each), the network's convolutions are quantized
    to int8 (onnxruntime's static QDQ quantization, per-channel weights, activation ranges
    calibrated on those crops); the decoding stays float32. The returned difference is then the
    quantization's cost in pixels on the check images."""
    try:
        import onnx
    except ImportError:
        raise ConfigError("ONNX export needs onnx and onnxruntime: pip install 'poserenet[onnx]'") from None
    head = head.eval()
    example = (torch.zeros(2, 3, *input_hw), torch.zeros(2, 2), torch.ones(2, 2))
    out = Path(out)
    info = {"meta": meta_to_dict(meta), "input_hw": list(input_hw), "bbox_padding": bbox_padding,
            "flip_test": head.flip_index is not None, **(extra or {})}  # fmt: skip

    if int8_calibration is not None:
        info["precision"] = "int8"

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                head, example, str(tmp), input_names=["images", "center", "scale"], output_names=["keypoints", "scores"],
                dynamic_axes={n: {0: "batch"} for n in ("images", "center", "scale", "keypoints", "scores")},
                opset_version=opset, dynamo=False,
            )  # fmt: skip
        if int8_calibration is not None:
            _quantize(tmp, [crop(img, np.array([[0, 0, img.shape[1], img.shape[0]]], np.float32), input_hw, bbox_padding)
                            for img in int8_calibration])  # fmt: skip
        model = onnx.load(str(tmp))
        entry = model.metadata_props.add()
        entry.key, entry.value = ONNX_METADATA_KEY, json.dumps(info)
        onnx.save(model, str(tmp))

    write_atomic(out, write)

    images = list(check_images) if check_images is not None else _synthetic_people(4)
    torch_pred = Predictor(TorchRunner(head, torch.device("cpu"), False), meta, input_hw, bbox_padding)
    onnx_pred = Predictor(OnnxRunner(out), meta, input_hw, bbox_padding)
    worst = 0.0
    for img in images:
        a, b = torch_pred(img), onnx_pred(img)
        worst = max(worst, max(float(np.abs(p.keypoints[:, :2] - q.keypoints[:, :2]).max()) for p, q in zip(a, b)))
    return worst


def calibration_people(
    checkpoint: str | Path, config: str | Path | None = None, folder: str | Path | None = None, overrides: Sequence[str] = (), n: int = 64
) -> list[np.ndarray]:
    """Images of single people to calibrate int8 quantization with: the images of `folder`, or
    `n` validation people of the checkpoint's config, each cut out around its box (padded as the
    crops are)."""
    from .annotations import load_coco_instances
    from .checkpoint import read_checkpoint_file
    from .config import config_from_dict, load_config
    from .pipeline import build_meta

    if folder is not None:
        files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))[:n]
        if not files:
            raise PoseDataError(f"{folder}: no images to calibrate with")
        return [read_image(str(f)) for f in files]
    if config is not None:
        cfg = load_config(config, list(overrides))
    else:
        raw = read_checkpoint_file(checkpoint)
        if not isinstance(raw, dict) or "config" not in raw:
            raise ConfigError(f"{checkpoint}: has no config inside; give --config or --calibration")
        cfg = config_from_dict(raw["config"], str(checkpoint), list(overrides))
    data = load_coco_instances(cfg.data.path(cfg.data.val_ann), cfg.data.path(cfg.data.val_images), build_meta(cfg), keep_doc=False)
    step = max(1, len(data.instances) // n)
    people = []
    for inst in data.instances[::step][:n]:
        img = read_image(inst.image_path, inst.image_id)
        center, scale = box_to_center_scale(inst.bbox, tuple(cfg.data.input_hw), cfg.data.bbox_padding)
        x1, y1 = np.maximum(0, np.floor(center - scale / 2)).astype(int)
        x2, y2 = np.ceil(center + scale / 2).astype(int)
        people.append(np.ascontiguousarray(img[y1:y2, x1:x2]))
    return [p for p in people if p.size]


def _quantize(path: Path, crops: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Static int8 quantization of the convolutions of the ONNX file at `path`, in place."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if not crops:
        raise ConfigError("int8 export needs calibration images")

    class Crops(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(crops)

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self.items, None)
            return None if item is None else {"images": item[0], "center": item[1], "scale": item[2]}

    fp32 = path.with_name(path.name + ".fp32")
    path.replace(fp32)
    logging.disable(logging.WARNING)  # onnxruntime's advice to pre-process the graph, on the root logger
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            quantize_static(str(fp32), str(path), Crops(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["Conv", "ConvTranspose"])  # fmt: skip
    finally:
        logging.disable(logging.NOTSET)
        fp32.unlink(missing_ok=True)


def _synthetic_people(n: int) -> list[np.ndarray]:
    from .synth import render_scene

    return [render_scene(np.random.default_rng([7, 7, i]))[0] for i in range(n)]

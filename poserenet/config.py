"""Experiment configs: typed dataclasses, loaded from one YAML file per experiment and
overridable from the command line with `--set section.key=value`.

A file only lists what differs from the defaults below. Unknown keys and values of the wrong
type are errors that name the file and the key.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .models.plugin import PoseReNetConfig
from .transforms import AugmentConfig


def config_dir() -> Path:
    """The shipped `configs/` folder: packaged as `poserenet.configs`, or beside a source checkout."""
    try:
        from importlib.resources import files

        d = Path(str(files("poserenet.configs")))
        if d.is_dir():
            return d
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "configs"


@dataclass
class DataConfig:
    root: str = "data/synth"  # the paths below are relative to it (unless absolute)
    train_ann: str = "annotations/person_keypoints_train.json"
    train_images: str = "images/train"
    val_ann: str = "annotations/person_keypoints_val.json"
    val_images: str = "images/val"
    keypoints: str = "coco17"  # built-in keypoint set (coco17, mpii16, lsp14) or a YAML/JSON file
    input_hw: tuple[int, int] = (256, 192)  # network input, height x width
    bbox_padding: float = 1.25
    num_workers: int = 2

    def path(self, rel: str) -> Path:
        return Path(rel) if Path(rel).is_absolute() else Path(self.root) / rel


@dataclass
class CodecConfig:
    dark: bool = False  # DARK unbiased encoding + distribution-aware decoding, else MSRA
    sigma: float = 2.0  # Gaussian sigma in heatmap pixels
    stride: int = 4  # input pixels per heatmap pixel
    # DARK's modulation kernel (odd); 0: DarkPose's per-sigma choice (3 for sigma 1, else 11).
    blur_kernel: int = 0
    # Sigma of PoseReNet's 2x targets, in 2x pixels. 0: the same number as `sigma`, so the 2x
    # Gaussians are half as wide in the image, a sharper target than the 1x one (measured better
    # on LSPET than 2 x sigma, the same width in the image: docs/ablation.md).
    sigma_2x: float = 0.0


@dataclass
class ModelConfig:
    name: str = "simplebaseline_r50"  # see `poserenet.list_models()`
    # Extra constructor arguments, e.g. {deconv_channels: 64, base_width: 32} for SimpleBaseline.
    kwargs: dict[str, Any] = field(default_factory=dict)
    poserenet: PoseReNetConfig = field(default_factory=PoseReNetConfig)
    pretrained: str = ""  # a local checkpoint to start from (nothing is downloaded)
    pretrained_scope: str = "all"  # all: the whole model | backbone: an ImageNet trunk (classifier ignored)
    skip_mismatched_head: bool = False  # fine-tune from a checkpoint of another keypoint count


@dataclass
class LossConfig:
    use_joint_weights: bool = False  # multiply target weights by the keypoint set's joint weights
    # Weight of each supervised output by name (PoseReNet: heatmaps, lifted, backbone; hourglass:
    # heatmaps, stack0, stack1, ...); names not listed weigh 1. Supervising the backbone's own
    # heatmaps under PoseReNet gained 2.5 AP on LSPET (docs/ablation.md).
    output_weights: dict[str, float] = field(default_factory=lambda: {"backbone": 1.0})


@dataclass
class TrainConfig:
    epochs: int = 210
    batch_size: int = 32  # per process: the global batch is batch_size x processes x accumulate
    lr: float = 1e-3
    lr_steps: tuple[int, ...] = (170, 200)
    lr_factor: float = 0.1
    weight_decay: float = 0.0
    seed: int = 0
    out_dir: str = ""  # default: runs/<config name>
    val_every: int = 1  # evaluate every N epochs (and always after the last)
    threads: int = 0  # torch CPU threads; 0 = PyTorch's default
    device: str = "auto"  # auto, cpu, cuda, cuda:1, ... (under torchrun: each process's local GPU)
    # Mixed precision: none | bf16 | fp16 (fp16 on GPUs, with a gradient scaler). bf16 trains 1.8-1.9x
    # faster on CPUs with AVX512-BF16 or AMX, but lost 0.7 PCK on LSPET in our check, so it is not
    # the default (README "Training speed on the CPU").
    amp: str = "none"
    accumulate: int = 1  # gradient accumulation: optimizer steps every N batches
    clip_grad_norm: float = 0.0  # clip the gradient norm to this (0: off)
    # NHWC memory layout: true | false | auto (auto: on when training on a CPU, where oneDNN's
    # convolutions are faster in it; off on GPUs)
    channels_last: bool | str = "auto"
    sync_bn: bool = False  # SyncBatchNorm across processes (GPUs only: PyTorch has no CPU version)
    freeze_bn: bool = False  # BatchNorm layers keep their running statistics (small batches, fine-tuning)
    deterministic: bool = False  # deterministic kernels (bitwise-reproducible runs and resumes)
    checkpoint_every: int = 0  # also write last.pth every N optimizer steps within an epoch (0: epoch ends only)
    # With PoseReNet: which backbone weights train. none: all train | head: only the backbone's
    # output layers | backbone: none (only the plug-in learns). Frozen parts keep BatchNorm statistics.
    freeze: str = "none"
    backbone_lr_factor: float = 1.0  # the backbone's learning rate relative to train.lr
    keep_last: int = 3  # epoch_NNNN.pth files kept beside last.pth and best.pth (0: none)
    best_metric: str = "AP"  # validation metric that picks best.pth
    persistent_workers: bool = True  # keep data workers alive between epochs
    log_every: int = 50  # TensorBoard step logging interval (when tensorboard is installed)


@dataclass
class EvalConfig:
    # Which person boxes are cropped: "detections" (a COCO detection-results file, the protocol
    # of published COCO numbers) or "ground_truth". Every report says which was used.
    boxes: str = "detections"
    det_file: str = ""  # relative to data.root (unless absolute)
    det_score_threshold: float = 0.0
    flip_test: bool = True
    batch_size: int = 64
    rescore_threshold: float = 0.2  # pose score = box score x mean of keypoint scores above this
    nms: str = "oks"  # per-image OKS NMS: oks | soft | none
    nms_threshold: float = 0.9
    pck_threshold: float = 0.2
    # COCO evaluation: auto (hotcoco when installed and the ids suit it, else pycocotools),
    # pycocotools (the reference), faster-coco-eval or hotcoco: the same numbers.
    backend: str = "auto"
    # Which heatmaps the metrics and results come from: final (the model's output) or, for a
    # PoseReNet model, backbone (its backbone's own). A PoseReNet model's other output is
    # always scored beside, under its name.
    output: str = "final"


@dataclass
class Config:
    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def heatmap_hw(self) -> tuple[int, int]:
        h, w = self.data.input_hw
        return (h // self.codec.stride, w // self.codec.stride)

    @property
    def out_dir(self) -> Path:
        return Path(self.train.out_dir or f"runs/{self.name}")

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _plain(x: Any) -> Any:
    """Tuples -> lists, so that the YAML dump is plain."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert a YAML value to the annotated type."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _build(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} does not fit {tp}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{where}: {str(value)[:12]}... is too large for a number") from None
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is str:
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


# Keys that were renamed: (section, old name) -> what to write now.
RENAMED = {("model.poserenet", "detach"): "backbone_grad (detach: true is backbone_grad: 0)"}


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        import difflib

        prefix = f"{where}." if where else ""
        parts = []
        for k in sorted(unknown):
            close = difflib.get_close_matches(k, names, n=1)
            parts.append(f"{prefix}{k}" + (f" (did you mean {prefix}{close[0]}?)" if close else ""))
        renamed = [f"{prefix}{k} is now {prefix}{RENAMED[(where, k)]}" for k in sorted(unknown) if (where, k) in RENAMED]
        raise ConfigError(
            f"unknown key(s) {', '.join(parts)}; known{' in ' + where if where else ''}: {', '.join(sorted(names))}"
            + "".join(f"; {r}" for r in renamed)
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    return cls(**kwargs)


def resolve_config_path(spec: str | Path) -> Path:
    """A path to a YAML file, or the name of a config shipped with the package."""
    p = Path(spec)
    if p.is_file():
        return p
    d = config_dir()
    for cand in (d / p.name, d / f"{p.name}.yaml"):
        if cand.is_file():
            return cand
    shipped = ", ".join(sorted(q.stem for q in d.glob("*.yaml")))
    raise ConfigError(f"{spec}: no such config file (shipped configs: {shipped})")


def _apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected key=value, e.g. train.epochs=10")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = values
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item}: {part} is not a section")
        node[parts[-1]] = value
    return values


def load_config(spec: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file (if any), then `key.sub=value` overrides."""
    values: dict[str, Any] = {}
    source = "<defaults>"
    if spec is not None:
        path = resolve_config_path(spec)
        source = str(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        values = loaded
        values.setdefault("name", path.stem)
    return config_from_dict(values, source, overrides)


def config_from_dict(values: dict[str, Any], source: str = "<dict>", overrides: list[str] | None = None) -> Config:
    """A Config from plain data (a YAML file's, or the `config` stored in a training
    checkpoint), then `key.sub=value` overrides."""
    import copy

    values = _apply_overrides(copy.deepcopy(dict(values)), overrides or [])
    try:
        cfg = _build(Config, values, "")
        check_config(cfg)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return cfg


def check_config(cfg: Config) -> None:
    """Every value in its range and every name one that exists, before anything runs: a mistake
    found after the first epoch would cost the epoch (and, before, its checkpoint)."""
    from .metrics import BACKENDS, COCO_STATS
    from .models import MODELS
    from .models.plugin import AGGREGATIONS, ATTENTIONS, SCORES
    from .postprocess import NMS_MODES

    def need(ok: bool, key: str, value: Any, what: str) -> None:
        if not ok:
            raise ConfigError(f"{key} must be {what}, got {value!r}")

    def number(key: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> None:
        *path, name = key.split(".")
        node = cfg
        for part in path:
            node = getattr(node, part)
        v = getattr(node, name)
        ok = math.isfinite(v) and (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or v <= hi)
        bounds = f"{'>' if lo_open else '>='} {lo:g}" if lo is not None else "finite"
        need(ok, key, v, f"a finite number {bounds}" + (f" and <= {hi:g}" if hi is not None else ""))

    def choice(key: str, options: tuple[str, ...]) -> None:
        *path, name = key.split(".")
        node = cfg
        for part in path:
            node = getattr(node, part)
        v = getattr(node, name)
        need(v in options, key, v, f"one of {', '.join(options)}")

    d, c, m, t, e, a = cfg.data, cfg.codec, cfg.model, cfg.train, cfg.eval, cfg.augment
    need(c.stride >= 1, "codec.stride", c.stride, "a positive integer")
    need(all(v > 0 and v % c.stride == 0 for v in d.input_hw), "data.input_hw", list(d.input_hw),
         f"two positive multiples of codec.stride ({c.stride})")  # fmt: skip
    number("data.bbox_padding", 0, lo_open=True)
    need(d.num_workers >= 0, "data.num_workers", d.num_workers, "0 or more")
    need(bool(d.keypoints), "data.keypoints", d.keypoints, "a keypoint set name or file")
    number("codec.sigma", 0, lo_open=True)
    number("codec.sigma_2x", 0)
    need(c.blur_kernel == 0 or (c.blur_kernel > 0 and c.blur_kernel % 2 == 1), "codec.blur_kernel", c.blur_kernel, "0 or a positive odd number")
    choice("model.name", tuple(sorted(MODELS)))
    choice("model.pretrained_scope", ("all", "backbone"))
    choice("model.poserenet.aggregation", AGGREGATIONS)
    choice("model.poserenet.attention", ATTENTIONS)
    choice("model.poserenet.scores", SCORES)
    number("model.poserenet.max_move", lo=0)
    number("model.poserenet.backbone_grad", 0, 1)
    for name, w in cfg.loss.output_weights.items():
        ok = isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
        need(ok, f"loss.output_weights.{name}", w, "a finite number >= 0")
    for key in ("flip_prob", "rotation_prob", "shift_prob", "half_body_prob"):
        number(f"augment.{key}", 0, 1)
    number("augment.scale_range", 0, 0.99)
    number("augment.rotation", 0, 180)
    number("augment.shift", 0, 1)
    need(a.half_body_min_joints >= 0, "augment.half_body_min_joints", a.half_body_min_joints, "0 or more")
    need(t.epochs >= 1, "train.epochs", t.epochs, "at least 1")
    need(t.batch_size >= 1, "train.batch_size", t.batch_size, "at least 1")
    number("train.lr", 0, 1, lo_open=True)
    need(all(s >= 0 for s in t.lr_steps), "train.lr_steps", list(t.lr_steps), "epochs >= 0")
    number("train.lr_factor", 0, lo_open=True)
    number("train.weight_decay", 0)
    need(t.val_every >= 1, "train.val_every", t.val_every, "at least 1 (validation every N epochs)")
    need(t.threads >= 0, "train.threads", t.threads, "0 (PyTorch's default) or more")
    need(t.device == "auto" or t.device == "cpu" or re.fullmatch(r"cuda(:\d+)?", t.device) is not None,
         "train.device", t.device, "auto, cpu, cuda or cuda:N")  # fmt: skip
    choice("train.amp", ("none", "bf16", "fp16"))
    need(t.channels_last in (True, False, "auto"), "train.channels_last", t.channels_last, "true, false or auto")
    need(t.accumulate >= 1, "train.accumulate", t.accumulate, "at least 1")
    number("train.clip_grad_norm", 0)
    need(t.checkpoint_every >= 0, "train.checkpoint_every", t.checkpoint_every, "0 (off) or more")
    choice("train.freeze", ("none", "head", "backbone"))
    number("train.backbone_lr_factor", 0)
    need(t.keep_last >= 0, "train.keep_last", t.keep_last, "0 or more")
    need(t.log_every >= 1, "train.log_every", t.log_every, "at least 1")
    metrics = (*COCO_STATS, f"PCK@{e.pck_threshold:g}", "PCKh Mean", "PCKh Mean@0.1")
    need(t.best_metric in metrics, "train.best_metric", t.best_metric, f"a validation metric ({', '.join(metrics)})")
    choice("eval.boxes", ("detections", "ground_truth"))
    number("eval.det_score_threshold", 0, 1)
    need(e.batch_size >= 1, "eval.batch_size", e.batch_size, "at least 1")
    number("eval.rescore_threshold", 0, 1)
    choice("eval.nms", NMS_MODES)
    number("eval.nms_threshold", 0, 1, lo_open=True)
    number("eval.pck_threshold", 0, lo_open=True)
    choice("eval.backend", BACKENDS)
    choice("eval.output", ("final", "backbone"))
    if e.output == "backbone" and not m.poserenet.enabled:
        raise ConfigError("eval.output=backbone scores a PoseReNet model's own backbone; this model has no PoseReNet (model.poserenet.enabled)")


def save_config(cfg: Config, path: str | Path) -> None:
    """The resolved config as YAML, written to a temporary file and renamed (never half a file)."""
    from .files import write_text_atomic

    write_text_atomic(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))

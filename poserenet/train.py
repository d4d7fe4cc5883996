"""Training: Adam + multi-step LR, DDP through torchrun, mixed precision, gradient accumulation,
exact resume, checkpoints and logs.

Files in the run directory, written by rank 0 only and always atomically (temporary file,
then rename), so an interrupted run never leaves a half-written file:
`config.yaml`, `last.pth` (every epoch, and every `checkpoint_every` steps), `best.pth` (best
`best_metric`), `epoch_NNNN.pth` (the last `keep_last`), `log.jsonl` and `log.csv` (one row per
epoch), `results_val.json` and `metrics.json` (the last validation), `curves.png` (when
training ends), and TensorBoard events under `tb/` when tensorboard is installed (the last
three: `runlog.py`).

Resuming restores the model, optimizer, scheduler, gradient scaler, random generators and the
position in the epoch; with `train.deterministic` the resumed run reproduces the uninterrupted
one exactly.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import distributed as D
from .checkpoint import load_weights, read_training_checkpoint, save_atomic
from .config import Config, save_config
from .errors import ConfigError, PoseDataError
from .evaluate import evaluate_model, people_to_evaluate
from .loss import JointsMSELoss
from .meta import meta_to_dict
from .pipeline import build_dataset, build_meta, build_model, check_output_size, load_split
from .runlog import RunLog

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def channels_last_for(t: Any, device: torch.device) -> bool:
    """`train.channels_last` with "auto" resolved: on when training on a CPU (oneDNN's convolutions
    are about 1.1x faster in it, float32 all the same: benchmarks/train_step_precision.py), off on
    GPUs, where it pays with mixed precision."""
    return device.type == "cpu" if t.channels_last == "auto" else bool(t.channels_last)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global generator, in types that `torch.load(weights_only=True)` accepts."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(py_state), py_gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(py_state), py_gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def supervised_loss(
    outputs: torch.Tensor | dict[str, torch.Tensor],
    batch: dict[str, torch.Tensor],
    criterion: nn.Module,
    output_weights: dict[str, float],
    device: torch.device,
) -> torch.Tensor:
    """Sum of the weighted losses of every supervised output, each against the target of its
    resolution (the batch holds `target`, `target_1`, ... at 1x, 2x, ...)."""
    if not isinstance(outputs, dict):
        outputs = {"heatmaps": outputs}
    targets = {}
    for key in batch:
        if key.startswith("target") and not key.startswith("target_weight"):
            t = batch[key]
            targets[tuple(t.shape[-2:])] = (t, batch[key.replace("target", "target_weight", 1)])
    total = torch.zeros((), device=device)
    for name, pred in outputs.items():
        w = output_weights.get(name, 1.0)
        if w == 0:
            continue
        if tuple(pred.shape[-2:]) not in targets:
            raise ValueError(f"output {name!r} has {tuple(pred.shape[-2:])} heatmaps; targets exist for {sorted(targets)}")
        t, tw = targets[tuple(pred.shape[-2:])]
        total = total + w * criterion(pred.float(), t.to(device, non_blocking=True), tw.to(device, non_blocking=True))
    return total


def freeze_batchnorm(model: nn.Module, only_frozen: bool = False) -> None:
    """BatchNorm layers to eval mode: they normalise with their running statistics (with
    `only_frozen`, just those whose weights do not train)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if not only_frozen or (m.weight is not None and not m.weight.requires_grad):
                m.eval()


def parameter_groups(model: nn.Module, t: Any) -> list[dict[str, Any]]:
    """Optimizer groups: with PoseReNet, the backbone at `backbone_lr_factor` x lr and frozen as
    `train.freeze` says; the plug-in at lr."""
    from .checkpoint import HEAD_PREFIXES
    from .models import PoseReNet

    if not isinstance(model, PoseReNet):
        if t.freeze != "none" or t.backbone_lr_factor != 1.0:
            raise ConfigError("train.freeze and train.backbone_lr_factor apply to PoseReNet models (model.poserenet.enabled=true)")
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
    head = HEAD_PREFIXES.get(type(model.backbone).__name__, ())
    backbone = []
    for name, p in model.backbone.named_parameters():
        if t.freeze == "backbone" or (t.freeze == "head" and not name.startswith(head)):
            p.requires_grad_(False)
        elif p.requires_grad:
            backbone.append(p)
    groups = [{"params": list(model.refine.parameters()), "lr": t.lr}]
    if backbone and t.backbone_lr_factor > 0:
        groups.append({"params": backbone, "lr": t.lr * t.backbone_lr_factor})
    elif backbone:
        for p in backbone:
            p.requires_grad_(False)
    return groups


class Trainer:
    """One training run of a Config (in this process; under torchrun, one of several)."""

    def __init__(self, cfg: Config, progress: bool = True, log: Callable[[str], None] = print):
        self.cfg = cfg
        t = cfg.train
        self.ctx = D.setup(t.device)
        self.channels_last = channels_last_for(t, self.ctx.device)
        if t.amp == "fp16" and self.ctx.device.type != "cuda":
            raise ConfigError("train.amp=fp16 needs a GPU; on CPUs use bf16")
        if t.sync_bn and self.ctx.device.type != "cuda":
            raise ConfigError("train.sync_bn needs GPUs: PyTorch's SyncBatchNorm has no CPU implementation")
        self.progress = progress and self.ctx.is_main
        self.log = log if self.ctx.is_main else (lambda _msg: None)
        seed_everything(t.seed)
        if t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=False)
            torch.backends.cudnn.benchmark = False
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        self.device = self.ctx.device
        self.out_dir = cfg.out_dir

        self.meta = build_meta(cfg)
        model = build_model(cfg, self.meta).to(self.device)  # before the data: config mistakes surface at once
        check_output_size(model, cfg)
        if t.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.ddp = (
            nn.parallel.DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.ctx.enabled else model
        )  # fmt: skip
        self.train_data = load_split(cfg, self.meta, "train")
        self.val_data = load_split(cfg, self.meta, "val")
        # Read once (a detection file can hold 100k boxes), and a bad eval setup fails now, not after an epoch.
        self.val_people = people_to_evaluate(cfg, self.meta, self.val_data)
        if not self.train_data.instances:
            raise PoseDataError(f"{self.train_data.ann_file}: no people with labelled keypoints to train on")
        self.train_ds = build_dataset(cfg, self.meta, self.train_data, train=True)
        self.sampler = D.EpochSampler(len(self.train_ds), t.seed, True, self.ctx.rank, self.ctx.world_size)
        self.loader = DataLoader(
            self.train_ds,
            batch_size=t.batch_size,
            sampler=self.sampler,
            num_workers=cfg.data.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=t.persistent_workers and cfg.data.num_workers > 0,
            drop_last=len(self.train_ds) // self.ctx.world_size > t.batch_size,
        )
        self.optimizer = torch.optim.Adam(parameter_groups(model, t), lr=t.lr, weight_decay=t.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, list(t.lr_steps), t.lr_factor)
        self.scaler = torch.amp.GradScaler("cuda", enabled=t.amp == "fp16")
        self.criterion = JointsMSELoss()
        self.epoch, self.step_in_epoch, self.best = 0, 0, -math.inf
        self.partial = (0.0, 0)  # loss sum and samples of the epoch in progress (for mid-epoch resume)
        self.metrics: dict[str, Any] = {}
        self.runlog = RunLog(self.out_dir, enabled=self.ctx.is_main)

    # ----------------------------------------------------------------- checkpoints
    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,  # completed epochs
            "step": self.step_in_epoch,  # optimizer steps done in the epoch in progress (0 at an epoch end)
            "partial_loss": list(self.partial),
            "best": self.best,
            "metrics": self.metrics,
            "rng": rng_state(),
            "world_size": self.ctx.world_size,
            "config": self.cfg.to_dict(),
            "keypoints": list(self.meta.keypoints),
            "meta": meta_to_dict(self.meta),  # so that inference needs no keypoint-set file
        }

    def resume(self, path: str | Path) -> None:
        ckpt = read_training_checkpoint(path)
        # The checked loader: another architecture is a one-line error naming what differs.
        load_weights(self.model, ckpt["model"], source=f"{path} (resuming {self.cfg.model.name})", strict_plugin=True)
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            if "scaler" in ckpt:
                self.scaler.load_state_dict(ckpt["scaler"])
        except (ValueError, KeyError, TypeError) as e:
            raise PoseDataError(f"{path}: its optimizer state does not fit this run ({e}); was it trained with other train.freeze/backbone settings?") from None
        self.epoch, self.step_in_epoch = ckpt["epoch"], ckpt.get("step", 0)
        self.partial = tuple(ckpt.get("partial_loss", (0.0, 0)))
        self.best, self.metrics = ckpt.get("best", -math.inf), ckpt.get("metrics", {})
        if "rng" in ckpt:
            set_rng_state(ckpt["rng"])
        if ckpt.get("world_size", 1) != self.ctx.world_size and self.step_in_epoch:
            raise ConfigError(f"{path}: saved mid-epoch by {ckpt.get('world_size')} processes; resume it with as many")
        self.runlog.truncate(self.epoch)  # the log keeps only the epochs the checkpoint has seen
        self.log(f"resumed from {path} at epoch {self.epoch}" + (f", step {self.step_in_epoch}" if self.step_in_epoch else ""))

    def _save(self, epoch_end: bool, is_best: bool = False) -> None:
        if not self.ctx.is_main:
            return
        state = self.state()
        last = self.out_dir / "last.pth"
        save_atomic(state, last)
        if is_best:
            _same_as(last, self.out_dir / "best.pth", state)
        if epoch_end and self.cfg.train.keep_last > 0:
            _same_as(last, self.out_dir / f"epoch_{self.epoch:04d}.pth", state)
            for old in sorted(self.out_dir.glob("epoch_*.pth"))[: -self.cfg.train.keep_last]:
                old.unlink()

    # ----------------------------------------------------------------- the loop
    def train_epoch(self) -> dict[str, float]:
        t, cfg = self.cfg.train, self.cfg
        self.ddp.train()
        freeze_batchnorm(self.ddp, only_frozen=not t.freeze_bn)
        skip_batches = self.step_in_epoch * t.accumulate
        self.sampler.set_epoch(self.epoch, skip=skip_batches * t.batch_size)
        loss_sum, count = self.partial if skip_batches else (0.0, 0)
        start = time.perf_counter()
        amp = AMP_DTYPES.get(t.amp)
        n_batches = len(self.loader)
        desc = f"epoch {self.epoch + 1}/{t.epochs}"
        bar = tqdm(self.loader, desc=desc, disable=not self.progress, leave=False, unit="batch")
        self.optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(bar):
            images = batch["image"].to(self.device, non_blocking=True)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            last_of_group = (i + 1) % t.accumulate == 0 or i + 1 == n_batches
            sync = contextlib.nullcontext() if last_of_group or not self.ctx.enabled else self.ddp.no_sync()
            with sync:
                with torch.autocast(self.device.type, dtype=amp, enabled=amp is not None):
                    outputs = self.ddp(images)
                loss = supervised_loss(outputs, batch, self.criterion, cfg.loss.output_weights, self.device)
                loss_value = loss.item()  # one device sync per step
                if not math.isfinite(loss_value):
                    raise FloatingPointError(f"{desc}: the loss became {loss_value}; lower train.lr or check the data")
                self.scaler.scale(loss / t.accumulate).backward()
            n = images.shape[0]
            loss_sum += loss_value * n
            count += n
            if last_of_group:
                if t.clip_grad_norm > 0:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.model.parameters(), t.clip_grad_norm)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.step_in_epoch += 1
                self.partial = (loss_sum, count)
                global_step = self.epoch * math.ceil(n_batches / t.accumulate) + self.step_in_epoch
                if self.step_in_epoch % t.log_every == 0:
                    self.runlog.scalar("train/loss_step", loss_value, global_step)
                if t.checkpoint_every and self.step_in_epoch % t.checkpoint_every == 0 and i + 1 < n_batches:
                    self._save(epoch_end=False)
            bar.set_postfix(loss=f"{loss_sum / count:.2e}", img_s=f"{count * self.ctx.world_size / (time.perf_counter() - start):.0f}")
        elapsed = time.perf_counter() - start
        loss_sum, count = D.all_reduce_sum([loss_sum, float(count)], self.ctx)
        return {"loss": loss_sum / max(count, 1), "images": int(count), "seconds": elapsed, "images_per_s": count / max(elapsed, 1e-9)}

    def fit(self, on_start: Callable[[nn.Module, dict[str, Any]], None] | None = None) -> dict[str, Any]:
        cfg, t = self.cfg, self.cfg.train
        if self.ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.out_dir.glob("*.tmp"):  # a write an earlier run was killed in
                stale.unlink()
            save_config(cfg, self.out_dir / "config.yaml")
        self.runlog.open_tensorboard()
        n_params = sum(p.numel() for p in self.model.parameters())
        n_train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        where = f"{self.ctx.world_size} processes on {self.device.type}" if self.ctx.enabled else str(self.device)
        self.log(f"data: {len(self.train_ds)} train people ({self.train_data.ann_file}), "
                 f"{len(self.val_data.instances)} val people ({self.val_data.ann_file})")  # fmt: skip
        self.log(f"model: {cfg.model.name} {cfg.model.kwargs or ''}{' + PoseReNet' if cfg.model.poserenet.enabled else ''} "
                 f"{n_params / 1e6:.2f}M params ({n_train / 1e6:.3f}M trained), input {cfg.data.input_hw[0]}x{cfg.data.input_hw[1]}, {where}, "
                 f"{'float32' if t.amp == 'none' else t.amp + ' autocast'}{', channels_last' if self.channels_last else ''}")  # fmt: skip
        if on_start is not None:
            on_start(self.model, {"meta": self.meta, "val_data": self.val_data, "train_data": self.train_data, "device": self.device})
        while self.epoch < t.epochs:
            lr = self.optimizer.param_groups[0]["lr"]
            stats = self.train_epoch()
            self.scheduler.step()
            self.epoch += 1
            self.step_in_epoch, self.partial = 0, (0.0, 0)
            record: dict[str, Any] = {"epoch": self.epoch, "lr": lr, **{f"train_{k}": v for k, v in stats.items()}}
            msg = f"epoch {self.epoch}/{t.epochs}  lr {lr:.1e}  loss {stats['loss']:.3e}  {stats['images_per_s']:.0f} img/s"
            if self.ctx.enabled:
                record["ranks_in_sync"] = D.weights_in_sync(self.model, self.ctx)
            is_best = False
            if self.epoch == t.epochs or self.epoch % t.val_every == 0:
                is_best, scores = self.validate(record)
                msg += scores
            self._save(epoch_end=True, is_best=is_best)
            self.runlog.append(record)
            self.log(msg)
        self.runlog.close(cfg.eval.pck_threshold)
        return self.metrics

    def validate(self, record: dict[str, Any]) -> tuple[bool, str]:
        """Score the model on the validation set after an epoch: the numbers go into `record`;
        returns whether it is the best so far and the scores for the epoch's line."""
        cfg, t = self.cfg, self.cfg.train
        try:
            self.metrics = evaluate_model(self.model, cfg, self.meta, self.val_data, self.device,
                                          self.out_dir if self.ctx.is_main else None, self.progress, self.ctx, self.val_people)  # fmt: skip
        except BaseException:
            self._save(epoch_end=True)  # whatever stops the validation, the epoch's training is kept
            raise
        record.update({f"val_{k}": v for k, v in self.metrics.items() if isinstance(v, (int, float))})
        pck = f"PCK@{cfg.eval.pck_threshold:g}"
        msg = f"  val AP {100 * self.metrics['AP']:.1f}  {pck} {100 * self.metrics.get(pck, float('nan')):.1f}"
        for name in ("backbone", "final"):  # a PoseReNet model's other output, scored beside
            other = self.metrics.get(name)
            if isinstance(other, dict):
                record.update({f"val_{name}_{k}": v for k, v in other.items() if isinstance(v, (int, float))})
                msg += f"  ({name}: AP {100 * other['AP']:.1f}  {pck} {100 * other.get(pck, float('nan')):.1f})"
        value = self.metrics.get(t.best_metric)
        if value is None:
            self._save(epoch_end=True)
            raise ConfigError(f"train.best_metric {t.best_metric!r} is not a validation metric ({', '.join(self.metrics)})")
        is_best = value > self.best
        if is_best:
            self.best = value
        return is_best, msg


def _same_as(last: Path, path: Path, state: dict[str, Any]) -> None:
    """`path` gets the bytes of `last` (just written from `state`): a hard link where the file
    system allows, no second write; atomically either way. `last` is later replaced, never
    rewritten in place, so the link keeps these bytes."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(last, tmp)
    except OSError:
        save_atomic(state, tmp)
    os.replace(tmp, path)


def train(
    cfg: Config,
    resume: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    on_start: Callable[[nn.Module, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train and validate as `cfg` says; returns the last validation metrics.

    `resume` continues from a checkpoint written by an earlier run (`last.pth`, possibly
    written mid-epoch). `on_start(model, context)` is called once before the first epoch (the
    demo uses it to score the untrained model).
    """
    try:
        trainer = Trainer(cfg, progress, log)
        if resume:
            trainer.resume(resume)
        return trainer.fit(on_start)
    finally:
        D.cleanup()

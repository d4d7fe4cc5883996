"""Inference over a dataset and its scores: boxes -> model -> codec.decode -> image coordinates
-> rescoring and OKS-NMS -> metrics.

Results are written as a standard COCO keypoint results JSON, so any COCO tool can read them,
and scored by pycocotools (OKS AP/AR), PCK and, for MPII, PCKh.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from .annotations import CocoKeypoints, Instance, load_detections, read_coco_file
from .codec import HeatmapCodec
from .config import Config
from .datasets import TopDownDataset
from .distributed import DistContext, broadcast_from_main, gather_to_main
from .errors import ConfigError, PoseDataError
from .files import write_json_atomic
from .meta import KeypointMeta
from .metrics import coco_keypoint_ap, match_to_ground_truth, mpii_pckh_table, pck, pck_normalizer, resolve_backend
from .models import PoseReNet
from .pipeline import build_codec
from .postprocess import NMS_MODES, oks_nms, rescore, soft_oks_nms
from .transforms import box_to_center_scale, heatmap_to_image


def flip_back(heatmaps: torch.Tensor, flip_index: list[int], shift: float) -> torch.Tensor:
    """Heatmaps of a mirrored input -> heatmaps of the original: mirror, swap left/right, and
    move `shift` heatmap pixels right (linear interpolation, the border repeated). The exact
    shift is the codec's `flip_shift` at the maps' resolution."""
    out = heatmaps.flip(-1)[:, flip_index]
    if shift:
        prev = torch.cat([out[..., :1], out[..., :-1]], dim=-1)  # out[j - 1]
        out = shift * prev + (1 - shift) * out
    return out


def flip_average(heatmaps: torch.Tensor, mirrored: torch.Tensor, flip_index: list[int], codec: HeatmapCodec) -> torch.Tensor:
    """The flip test: the mean of `heatmaps` and the model's output on the mirrored input,
    mirrored back; `codec` is the codec at the maps' resolution (it knows the exact shift)."""
    return (heatmaps + flip_back(mirrored, flip_index, codec.flip_shift)) * 0.5


def model_outputs(model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The heatmaps to decode: "final" (the model's output) and, for a PoseReNet model,
    "backbone" (its backbone's own heatmaps, from the same backbone pass), so that harm to
    the backbone and harm by the plug-in can be told apart."""
    core = getattr(model, "module", model)  # DistributedDataParallel
    if isinstance(core, PoseReNet):
        base = core.backbone(images)
        if isinstance(base, dict):
            base = base["heatmaps"]
        out = core.refine_heatmaps(base)
        return {"final": out["heatmaps"], "backbone": out["backbone"]}
    return {"final": model(images)}


def decode_outputs(
    model: nn.Module,
    images: torch.Tensor,
    codec: HeatmapCodec,
    flip_index: list[int] | None = None,
    only_final: bool = False,
    bf16: bool = False,
) -> dict[str, tuple[torch.Tensor, torch.Tensor, tuple[int, int]]]:
    """model -> (flip test, when `flip_index` is given) -> decode, for each output of
    `model_outputs` (only "final" with `only_final`): keypoints [N, K, 2] in pixels of that
    output's heatmaps, scores [N, K], and the heatmaps' size.

    A PoseReNet model with `scores: backbone` takes the final output's keypoint scores from its
    backbone's heatmaps: the refined maps localise better, but their maxima rank people worse
    (docs/ablation.md). With `bf16` the network runs in bfloat16 (autocast); the decoding always
    in float32."""
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=bf16):
        outputs = model_outputs(model, images)
        mirrored = model_outputs(model, images.flip(-1)) if flip_index is not None else {}
    outputs = {name: maps.float() for name, maps in outputs.items()}
    mirrored = {name: maps.float() for name, maps in mirrored.items()}
    for name, maps in outputs.items():
        if mirrored:
            outputs[name] = flip_average(maps, mirrored[name], flip_index, codec_for(codec, maps))
    core = getattr(model, "module", model)
    plugin = core.cfg if isinstance(core, PoseReNet) else None
    scores_from = "backbone" if plugin is not None and plugin.scores == "backbone" else "final"
    bounded = plugin is not None and plugin.max_move > 0
    decoded = {}
    for name, maps in outputs.items():
        if name == "final" or not only_final or (name == "backbone" and bounded):
            xy, scores = codec_for(codec, maps).decode(maps.float())
            decoded[name] = (xy, scores, (int(maps.shape[-2]), int(maps.shape[-1])))
    xy, scores, hw = decoded["final"]
    if bounded:  # the backbone's keypoint where the refined one moved too far from it
        base_xy, _, base_hw = decoded["backbone"]
        factor = hw[0] // base_hw[0]  # 1x pixel i is pixel factor * i of the output
        far = ((xy / factor - base_xy) ** 2).sum(-1, keepdim=True) > plugin.max_move**2
        xy = torch.where(far, base_xy * factor, xy)
    if scores_from != "final":
        scores = outputs[scores_from].float().flatten(2).amax(-1)
    decoded["final"] = (xy, scores, hw)
    if only_final:
        decoded = {"final": decoded["final"]}
    return decoded


@torch.inference_mode()
def predict_outputs(
    model: nn.Module,
    dataset: TopDownDataset,
    codec: HeatmapCodec,
    flip_test: bool = True,
    batch_size: int = 64,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each output of `model_outputs`: keypoints `[N, K, 2]` in image pixels and scores
    `[N, K]` for every instance of `dataset`."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    flip_index = dataset.meta.flip_index if flip_test else None
    found: dict[str, tuple[list, list]] = {}
    for batch in tqdm(loader, desc="eval", disable=not progress, leave=False, unit="batch"):
        decoded = decode_outputs(model, batch["image"].to(device), codec, flip_index)
        for name, (xy, scores, hw) in decoded.items():
            xy = heatmap_to_image(xy.cpu().numpy(), batch["center"].numpy(), batch["scale"].numpy(), hw)
            found.setdefault(name, ([], []))
            found[name][0].append(xy)
            found[name][1].append(scores.cpu().numpy())
    k = dataset.meta.num_keypoints
    if not found:
        return {"final": (np.zeros((0, k, 2)), np.zeros((0, k)))}
    return {name: (np.concatenate(xy), np.concatenate(s)) for name, (xy, s) in found.items()}


def predict(
    model: nn.Module,
    dataset: TopDownDataset,
    codec: HeatmapCodec,
    flip_test: bool = True,
    batch_size: int = 64,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints `[N, K, 2]` in image pixels and scores `[N, K]` of the model's final output
    for every instance of `dataset`."""
    return predict_outputs(model, dataset, codec, flip_test, batch_size, num_workers, device, progress)["final"]


def codec_for(codec: HeatmapCodec, heatmaps: torch.Tensor) -> HeatmapCodec:
    """The codec matching the model's output resolution (e.g. PoseReNet's 2x lifted output)."""
    scale = int(heatmaps.shape[-2]) // codec.heatmap_hw[0]  # a constant when traced for ONNX
    return codec.at_resolution(scale) if scale > 1 else codec


def to_coco_results(
    instances: list[Instance],
    coords: np.ndarray,
    scores: np.ndarray,
    meta: KeypointMeta,
    input_hw: tuple[int, int],
    bbox_padding: float = 1.25,
    rescore_threshold: float = 0.2,
    nms: str = "oks",
    nms_threshold: float = 0.9,
    category_id: int = 1,
) -> list[dict[str, Any]]:
    """COCO keypoint results, one per kept pose: rescored (box score x mean confident keypoint
    score), then OKS-NMS among the poses of each image, as the HRNet evaluation does."""
    if nms not in NMS_MODES:
        raise ValueError(f"eval.nms must be one of {NMS_MODES}, got {nms!r}")
    pose_scores = rescore(scores, np.array([inst.score for inst in instances]), rescore_threshold)
    kpts = np.concatenate([coords, scores[..., None]], axis=-1)
    # The crop box area is the OKS scale of NMS, as in the reference code.
    areas = np.array([np.prod(box_to_center_scale(inst.bbox, input_hw, bbox_padding)[1]) for inst in instances])
    by_image: dict[Any, list[int]] = {}
    for i, inst in enumerate(instances):
        by_image.setdefault(inst.image_id, []).append(i)
    kept: list[int] = []
    for idx in by_image.values():
        idx_arr = np.array(idx)
        if nms == "none" or len(idx) == 1:
            kept += idx
            continue
        suppress = oks_nms if nms == "oks" else soft_oks_nms
        keep = suppress(kpts[idx_arr], pose_scores[idx_arr], areas[idx_arr], meta.sigmas, nms_threshold)
        kept += [idx[k] for k in keep]
    return [
        {
            "image_id": instances[i].image_id,
            "category_id": category_id,
            "keypoints": [round(float(v), 3) for v in kpts[i].reshape(-1)],
            "score": round(float(pose_scores[i]), 6),
        }
        for i in sorted(kept)
    ]


def score(
    data: CocoKeypoints,
    meta: KeypointMeta,
    results: list[dict],
    coords: np.ndarray | None = None,
    pck_threshold: float = 0.2,
    backend: str = "auto",
) -> dict[str, Any]:
    """OKS AP/AR (pycocotools) and PCK (torso-normalised when the keypoint set defines a torso,
    else normalised by the longer box side); with MPII head sizes, PCKh too.

    `coords` [N, K, 2] are predictions aligned with `data.instances` (ground-truth boxes); without
    them, results are matched to people by OKS for PCK.
    """
    gt_doc = data.doc if data.doc is not None else read_coco_file(data.ann_file, meta)[0]
    metrics = coco_keypoint_ap(gt_doc, results, meta.sigmas, backend)
    if coords is None:
        people, coords = match_to_ground_truth(gt_doc, results, meta.sigmas)
        ids = {inst.ann_id: inst for inst in data.instances}
        instances = [ids[p["id"]] for p in people if p.get("id") in ids]
        if len(instances) != len(people):  # people the reader skipped (e.g. empty boxes)
            keep = [i for i, p in enumerate(people) if p.get("id") in ids]
            coords = coords[keep]
    else:
        instances = data.instances
    if not instances:
        return metrics
    gt = np.stack([inst.keypoints for inst in instances])
    norm, _ = pck_normalizer(gt, np.stack([inst.bbox for inst in instances]), meta.torso)
    metrics[f"PCK@{pck_threshold:g}"], per_joint, _ = pck(coords, gt, norm, pck_threshold)
    metrics[f"PCK@{pck_threshold:g} per joint"] = {k: float(v) for k, v in zip(meta.keypoints, per_joint)}
    head = np.array([inst.head_size for inst in instances])
    if np.isfinite(head).all() and "head_top" in meta.keypoints:
        table = mpii_pckh_table(coords, gt[..., :2], gt[..., 2] > 0, head, meta.keypoints)
        metrics.update({f"PCKh {k}": v / 100 for k, v in table.items()})
    return metrics


def people_to_evaluate(cfg: Config, meta: KeypointMeta, data: CocoKeypoints) -> tuple[list[Instance], str]:
    """The people of `data` to crop, as `cfg.eval.boxes` says (ground truth or a detection
    file), and a description of those boxes for the reports."""
    ev = cfg.eval
    if ev.boxes == "ground_truth":
        instances, boxes = data.instances, "ground truth"
    elif ev.boxes == "detections":
        if not ev.det_file:
            raise ConfigError(
                "eval.boxes is 'detections' but no eval.det_file is set: pass --det-boxes FILE, "
                "or --gt-boxes (--set eval.boxes=ground_truth) to crop the annotated boxes"
            )
        det_file = cfg.data.path(ev.det_file)
        instances, _ = load_detections(det_file, data, meta.num_keypoints, ev.det_score_threshold)
        boxes = f"detections ({det_file}, score >= {ev.det_score_threshold:g}, {len(instances)} boxes)"
    else:
        raise ConfigError(f"eval.boxes must be 'detections' or 'ground_truth', got {ev.boxes!r}")
    if not instances:
        raise PoseDataError(f"{data.ann_file}: no people to evaluate ({boxes})")
    return instances, boxes


def evaluate_model(
    model: nn.Module,
    cfg: Config,
    meta: KeypointMeta,
    data: CocoKeypoints,
    device: torch.device | str = "cpu",
    out_dir: Path | None = None,
    progress: bool = True,
    ctx: DistContext | None = None,
    people: tuple[list[Instance], str] | None = None,
    on_scored: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Crop the configured boxes of `data` (ground truth or detections; `people` if already
    read by `people_to_evaluate`), predict, post-process and score; with `out_dir`, write
    `results_val.json` and `metrics.json`.

    Under torchrun (`ctx`), each process predicts its share of the people; rank 0 gathers the
    predictions and scores them, and every rank gets the metrics. `on_scored(report)` is called
    before any file is written (a full disk then loses no numbers)."""
    ctx = ctx or DistContext(device=torch.device(device))
    ev = cfg.eval
    instances, boxes = people or people_to_evaluate(cfg, meta, data)
    share = np.array_split(np.arange(len(instances)), ctx.world_size)[ctx.rank]
    # No codecs: evaluation crops only, without encoding training targets nobody reads.
    dataset = TopDownDataset([instances[i] for i in share], meta, tuple(cfg.data.input_hw), [], bbox_padding=cfg.data.bbox_padding)
    predicted = predict_outputs(model, dataset, build_codec(cfg), ev.flip_test, ev.batch_size, cfg.data.num_workers, device, progress)
    if ev.output not in predicted:
        raise ConfigError(f"eval.output {ev.output!r}: the model has the outputs {', '.join(predicted)} (backbone: PoseReNet models only)")
    parts = gather_to_main(predicted, ctx)
    if not ctx.is_main:
        return broadcast_from_main(None, ctx)
    scored = {}
    for name in predicted:
        coords = np.concatenate([p[name][0] for p in parts])
        scores = np.concatenate([p[name][1] for p in parts])
        results = to_coco_results(
            instances, coords, scores, meta, tuple(cfg.data.input_hw), cfg.data.bbox_padding,
            ev.rescore_threshold, ev.nms, ev.nms_threshold, data.category_id,
        )  # fmt: skip
        # With ground-truth boxes each prediction belongs to its person (NMS only affects AP).
        aligned = coords if ev.boxes == "ground_truth" else None
        scored[name] = (results, score(data, meta, results, aligned, ev.pck_threshold, ev.backend))
    results, metrics = scored[ev.output]
    backend = resolve_backend(ev.backend, data.doc)
    report = {"boxes": boxes, "flip_test": ev.flip_test, "nms": ev.nms, "backend": backend, "output": ev.output, **metrics}
    # A PoseReNet model's other output (its backbone's heatmaps, or the refined ones), scored beside.
    report.update({name: m for name, (_, m) in scored.items() if name != ev.output})
    if on_scored is not None:
        on_scored(report)
    if out_dir is not None:
        write_json_atomic(out_dir / "results_val.json", results)
        write_json_atomic(out_dir / "metrics.json", report)
    return broadcast_from_main(report, ctx)


def mean_pose_baseline(train: CocoKeypoints, val: CocoKeypoints) -> tuple[np.ndarray, np.ndarray]:
    """The mean training pose (relative to the box) placed in each validation box: what a model
    that ignores the pixels can reach. Returns coords [N, K, 2] and unit scores [N, K]."""
    rel = []
    for inst in train.instances:
        x, y, w, h = inst.bbox
        ok = inst.keypoints[:, 2:3] > 0
        rel.append(np.where(ok, (inst.keypoints[:, :2] - [x, y]) / np.maximum([w, h], 1e-6), np.nan))
    mean = np.nan_to_num(np.nanmean(np.stack(rel), axis=0), nan=0.5)
    boxes = np.stack([inst.bbox for inst in val.instances]).astype(np.float64)
    coords = mean[None] * boxes[:, None, 2:4] + boxes[:, None, :2]
    return coords, np.ones(coords.shape[:2])

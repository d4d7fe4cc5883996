"""Metrics: COCO OKS AP/AR through pycocotools itself (or hotcoco and faster-coco-eval, which
give the same numbers faster), PCK and MPII's PCKh.

`coco_keypoint_ap` runs `COCOeval` exactly as one would by hand (all ground-truth images, the
keypoint set's OKS sigmas), so its numbers are pycocotools' numbers. Results are checked first,
so a bad results file gets a message naming it and the record instead of an assertion deep
inside pycocotools.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import PoseDataError
from .files import all_ids, clean_rows, finite_numbers, gc_paused, is_id, read_json

COCO_STATS = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")
# "auto": hotcoco (Rust, ~80x faster, identical stats) when it is installed and the ids suit it,
# else pycocotools, the reference.
BACKENDS = ("auto", "pycocotools", "faster-coco-eval", "hotcoco")


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _hotcoco_ids(gt_doc: dict) -> bool:
    """hotcoco reads non-negative integer ids and image sizes only (pycocotools takes any)."""
    images = gt_doc.get("images", [])
    values = [img[s] for img in images for s in ("width", "height") if s in img]
    values += [x["id"] for key in ("images", "annotations", "categories") for x in gt_doc.get(key, [])]
    return not values or (set(map(type, values)) == {int} and min(values) >= 0 and max(values) < 2**63)


def resolve_backend(backend: str, gt_doc: dict | None = None) -> str:
    """The evaluation backend that `backend` means for this ground truth."""
    if backend == "auto":
        return "hotcoco" if _installed("hotcoco") and (gt_doc is None or _hotcoco_ids(gt_doc)) else "pycocotools"
    return backend


def _finite(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:  # 10**400 parses as a Python int
        return False


def _all_clean(results: list[Any], image_ids: set, category: Any, num_keypoints: int) -> bool:
    """Whether every result passes `check_results`' record-by-record checks, found with a few
    whole-list operations (a clean 10,000-person file in a few hundredths of a second)."""
    if set(map(type, results)) != {dict}:
        return False
    try:
        images, keypoints, scores = (list(map(itemgetter(key), results)) for key in ("image_id", "keypoints", "score"))
    except KeyError:
        return False
    if not all_ids(images) or not set(images) <= image_ids:
        return False
    cats = list(map(dict.get, results, repeat("category_id"), repeat(category)))
    if set(map(type, cats)) != {type(category)} or set(cats) != {category} or not is_id(category):
        return False
    return clean_rows([scores], len(scores)) and clean_rows(keypoints, 3 * num_keypoints)


@gc_paused()
def check_results(results: Any, gt: dict, num_keypoints: int, source: str = "results", notes: list[str] | None = None) -> list[dict]:
    """The checks pycocotools leaves to assertions: a non-empty list of results for known images,
    each with 3*K finite keypoint numbers and a finite numeric score. Returns the results of
    the ground truth's keypoint category (a result without `category_id` is taken as one);
    results of other categories are dropped from every metric, with a note in `notes`."""
    if not isinstance(results, list):
        raise PoseDataError(f"{source}: expected a list of COCO keypoint results")
    if not results:
        raise PoseDataError(f"{source}: no predictions to evaluate (the results list is empty)")
    image_ids = {img["id"] for img in gt.get("images", []) if isinstance(img, dict) and "id" in img}
    cats = [c["id"] for c in gt.get("categories") or [] if isinstance(c, dict) and "id" in c]
    category = cats[0] if len(cats) == 1 else 1
    if _all_clean(results, image_ids, category, num_keypoints):
        return [r if "category_id" in r else {**r, "category_id": category} for r in results]
    # Something is wrong (or unusual): record by record, to name the first bad one.
    unknown, kept, other = [], [], 0
    for i, r in enumerate(results):
        where = f"{source}: result {i}"
        if not isinstance(r, dict) or "image_id" not in r or "keypoints" not in r:
            raise PoseDataError(f"{where}: needs 'image_id', 'keypoints' and 'score'")
        image = r["image_id"]
        if "score" not in r:
            raise PoseDataError(f"{where} (image {image!r}): no 'score'; AP ranks predictions by it")
        if not is_id(r.get("category_id", category)):
            raise PoseDataError(f"{where} (image {image!r}): 'category_id' must be an integer or a string, got {r['category_id']!r}")
        if r.get("category_id", category) != category:
            other += 1
            continue
        if not is_id(image) or image not in image_ids:
            unknown.append(repr(image))
            continue
        kp = r["keypoints"]
        if not isinstance(kp, list) or len(kp) != 3 * num_keypoints:
            n = len(kp) if isinstance(kp, list) else "no list of"
            raise PoseDataError(f"{where} (image {image!r}): {n} keypoint values, expected {3 * num_keypoints} (x, y, score for {num_keypoints} keypoints)")
        if finite_numbers(kp) is None or not _finite(r["score"]):
            raise PoseDataError(f"{where} (image {image!r}): keypoints and score must be finite numbers (not NaN, infinity or text)")
        kept.append(r if "category_id" in r else {**r, "category_id": category})
    if unknown:
        shown = ", ".join(sorted(set(unknown))[:5])
        raise PoseDataError(f"{source}: {len(unknown)} result(s) for image ids that are not in the ground truth (e.g. {shown})")
    if other:
        msg = f"{source}: {other} result(s) of another category than the ground truth's keypoint category {category!r}, left out"
        if notes is None:
            raise PoseDataError(msg)
        notes.append(msg)
    if not kept:
        raise PoseDataError(f"{source}: no results of the keypoint category {category!r} to evaluate")
    return kept


@gc_paused()
def coco_keypoint_ap(
    gt: str | Path | dict,
    results: str | Path | list[dict],
    sigmas: Sequence[float],
    backend: str = "auto",
    notes: list[str] | None = None,
    checked: bool = False,
) -> dict[str, float]:
    """OKS AP/AR of a COCO keypoint results file (or list) against the ground truth: a checked
    document from `annotations.read_coco_file`, or the path of a well-formed COCO file, which
    pycocotools reads as it is. `notes` collects what was left out (see `check_results`);
    `checked`: `results` is what `check_results` returned for this ground truth already."""
    if backend not in BACKENDS:
        raise PoseDataError(f"unknown COCO evaluation backend {backend!r}; choose one of {BACKENDS}")
    source = str(results) if isinstance(results, (str, Path)) else "results"
    if isinstance(results, (str, Path)):
        results = read_json(results, "results file")
    gt_doc = gt if isinstance(gt, dict) else read_json(gt, "ground-truth file")
    if not gt_doc.get("annotations"):
        raise PoseDataError(f"{gt if not isinstance(gt, dict) else 'the ground truth'}: no annotated people to evaluate against")
    if not checked:
        results = check_results(results, gt_doc, len(sigmas), source, notes if notes is not None else [])
    hotcoco_ids = backend in ("auto", "hotcoco") and _hotcoco_ids(gt_doc)  # once: it visits every id
    if backend == "auto":
        backend = "hotcoco" if hotcoco_ids and _installed("hotcoco") else "pycocotools"
    if backend == "hotcoco" and not hotcoco_ids:
        raise PoseDataError("the hotcoco backend needs non-negative integer ids and image sizes; use --backend pycocotools")
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hotcoco warns that custom OKS sigmas are not COCO's: we know
        if backend == "hotcoco":
            try:
                import hotcoco
            except ImportError:
                raise PoseDataError("the hotcoco backend needs `pip install hotcoco` (or 'poserenet[fast]')") from None
            gt = hotcoco.COCO(gt_doc)
            ev = hotcoco.COCOeval(gt, gt.load_res(results), "keypoints")
            ev.params.kpt_oks_sigmas = [float(s) for s in sigmas]
        elif backend == "pycocotools":
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            results = [dict(r) for r in results]  # loadRes adds keys to the dicts it is given

            gt = COCO()
            gt.dataset = gt_doc
            gt.createIndex()
            ev = COCOeval(gt, gt.loadRes(results), "keypoints")
            ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        else:
            try:
                from faster_coco_eval import COCO, COCOeval_faster
            except ImportError:
                raise PoseDataError("the faster-coco-eval backend needs `pip install faster-coco-eval`") from None
            results = [dict(r) for r in results]  # as pycocotools, it adds keys to the results
            gt = COCO(gt_doc)
            ev = COCOeval_faster(gt, gt.loadRes(results), "keypoints", kpt_oks_sigmas=list(sigmas), print_function=lambda *a: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: float(v) for k, v in zip(COCO_STATS, ev.stats[:10])}


# --------------------------------------------------------------------------- OKS
def oks(gt: np.ndarray, preds: np.ndarray, area: float, sigmas: Sequence[float]) -> np.ndarray:
    """OKS of predictions [M, K, 2|3] against one pose gt [K, 3] of object area `area`, over the
    joints labelled in `gt` (v > 0), as COCO's metric."""
    var = (2 * np.asarray(sigmas)) ** 2
    d2 = ((preds[..., :2] - gt[None, :, :2]) ** 2).sum(-1)
    e = d2 / var / (area + np.spacing(1)) / 2
    mask = np.broadcast_to(gt[None, :, 2] > 0, e.shape)
    n = mask.sum(-1)
    return np.where(n > 0, (np.exp(-e) * mask).sum(-1) / np.maximum(n, 1), 0.0)


def match_to_ground_truth(gt: dict, results: list[dict], sigmas: Sequence[float]) -> tuple[list[dict], np.ndarray]:
    """Pair predictions with ground-truth people for PCK, COCO-style: per image, predictions in
    descending score take the unmatched person with the highest OKS (> 0).

    Returns the scored people (non-crowd, with labelled keypoints) and, per person, the matched
    prediction's keypoints [K, 2] (NaN where no prediction matched: all its joints count as wrong).
    """
    k = len(sigmas)
    people = [a for a in gt["annotations"] if not a.get("iscrowd") and np.any(np.asarray(a["keypoints"])[2::3] > 0)]
    by_image: dict[Any, list[int]] = {}
    for i, a in enumerate(people):
        by_image.setdefault(a["image_id"], []).append(i)
    matched = np.full((len(people), k, 2), np.nan)
    taken = np.zeros(len(people), bool)
    for r in sorted(results, key=lambda r: -float(r["score"])):
        cands = [i for i in by_image.get(r["image_id"], []) if not taken[i]]
        if not cands:
            continue
        pred = np.asarray(r["keypoints"], dtype=np.float64).reshape(1, k, 3)
        scores = [oks(np.asarray(people[i]["keypoints"], np.float64).reshape(k, 3), pred, people[i]["area"], sigmas)[0] for i in cands]
        best = int(np.argmax(scores))
        if scores[best] > 0:
            taken[cands[best]] = True
            matched[cands[best]] = pred[0, :, :2]
    return people, matched


# --------------------------------------------------------------------------- PCK
def torso_size(keypoints: np.ndarray, torso: Sequence[tuple[int, int]]) -> np.ndarray:
    """Per person, the length of the first torso pair whose two joints are labelled (NaN if none).

    keypoints: [N, K, 3] ground truth.
    """
    size = np.full(len(keypoints), np.nan)
    for a, b in reversed(list(torso)):  # earlier pairs take precedence
        ok = (keypoints[:, a, 2] > 0) & (keypoints[:, b, 2] > 0)
        d = np.linalg.norm(keypoints[:, a, :2] - keypoints[:, b, :2], axis=-1)
        size = np.where(ok & (d > 0), d, size)
    return size


def pck_normalizer(keypoints: np.ndarray, boxes: np.ndarray, torso: Sequence[tuple[int, int]]) -> tuple[np.ndarray, str]:
    """PCK's unit per person and its name: the torso when the keypoint set defines one, else the
    longer side of the person's [x, y, w, h] box."""
    if torso:
        return torso_size(keypoints, torso), "torso"
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.maximum(b[:, 2], b[:, 3]), "longer box side"


def pck(
    pred: np.ndarray, gt: np.ndarray, normalizer: np.ndarray, threshold: float = 0.2
) -> tuple[float, np.ndarray, int]:
    """Percentage of correct keypoints.

    pred [N, K, 2], gt [N, K, 3], normalizer [N] (torso or box size; NaN = person not scored).
    A labelled joint (v > 0) is correct when its error is at most `threshold * normalizer`
    (a NaN prediction is wrong). Returns (PCK over all scored joints, per-joint PCK [K] (NaN
    where none), joints scored).
    """
    valid = (gt[..., 2] > 0) & np.isfinite(normalizer)[:, None]
    err = np.linalg.norm(pred - gt[..., :2], axis=-1)
    with np.errstate(invalid="ignore"):
        correct = (err <= threshold * normalizer[:, None]) & valid
    n = int(valid.sum())
    per_joint = np.where(valid.sum(0) > 0, correct.sum(0) / np.maximum(valid.sum(0), 1), np.nan)
    return (float(correct.sum() / n) if n else float("nan")), per_joint, n


# --------------------------------------------------------------------------- PCKh (MPII)
MPII_GROUPS = {
    "Head": ("head_top",),
    "Shoulder": ("left_shoulder", "right_shoulder"),
    "Elbow": ("left_elbow", "right_elbow"),
    "Wrist": ("left_wrist", "right_wrist"),
    "Hip": ("left_hip", "right_hip"),
    "Knee": ("left_knee", "right_knee"),
    "Ankle": ("left_ankle", "right_ankle"),
}
MPII_NOT_IN_MEAN = ("pelvis", "thorax")
HEAD_SIZE_FACTOR = 0.6  # the MPII evaluation's SC_BIAS: PCKh's unit is 0.6 x the head box diagonal


def head_size(head_boxes: np.ndarray) -> np.ndarray:
    """PCKh's unit: HEAD_SIZE_FACTOR x the diagonal of each [x1, y1, x2, y2] head box."""
    hb = np.asarray(head_boxes, dtype=np.float64)
    return HEAD_SIZE_FACTOR * np.hypot(hb[..., 2] - hb[..., 0], hb[..., 3] - hb[..., 1])


def pckh_per_joint(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, head_size: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """MPII's PCKh per joint, as its evaluation code computes it: the error divided by the
    head size (0.6 x head box diagonal, given here), over visible joints only.

    pred, gt [N, K, 2]; visible [N, K] bool; head_size [N]. Returns (PCKh [K] in %, counts [K]).
    """
    err = np.linalg.norm(pred - gt, axis=-1) / head_size[:, None]
    with np.errstate(invalid="ignore"):
        hit = (err <= threshold) & visible
    count = visible.sum(0)
    return 100.0 * hit.sum(0) / np.maximum(count, 1), count


def mpii_pckh_table(
    pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, head_size: np.ndarray, names: Sequence[str]
) -> dict[str, float]:
    """The paper's Table III columns: Head, Shoulder, ..., Ankle (left/right averaged), Mean
    (PCKh@0.5 over all joints but pelvis and thorax, weighted by their visible counts) and
    Mean@0.1."""
    idx = {n: i for i, n in enumerate(names)}
    missing = [n for g in MPII_GROUPS.values() for n in g if n not in idx]
    if missing:
        raise PoseDataError(f"PCKh needs the MPII keypoints; missing {missing}")
    table = {}
    for thr, key in ((0.5, "Mean"), (0.1, "Mean@0.1")):
        per_joint, count = pckh_per_joint(pred, gt, visible, head_size, thr)
        used = np.array([n not in MPII_NOT_IN_MEAN for n in names]) & (count > 0)
        table[key] = float((per_joint * count)[used].sum() / count[used].sum())
        if thr == 0.5:
            for group, members in MPII_GROUPS.items():
                table[group] = float(np.mean([per_joint[idx[m]] for m in members]))
    order = [*MPII_GROUPS, "Mean", "Mean@0.1"]
    return {k: table[k] for k in order}

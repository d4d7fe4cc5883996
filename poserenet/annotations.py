"""COCO-style keypoint files, read and checked: the ground truth of training, evaluation and
`poserenet metrics`, and detection files. No torch here, so scoring a file stays light.

`read_coco_file` checks a whole file once, by the rules below, and returns it normalised
(`iscrowd`, `area`, `num_keypoints` and the keypoint category filled in where a file leaves
them out), so that anything it accepts pycocotools scores exactly; `load_coco_instances`
turns it into one `Instance` per person to crop.

Errors, naming the file and the record:
- unreadable or malformed JSON; no `images`/`annotations` lists;
- an image without an `id` (integer or string) or `file_name`, a duplicate image id, a width or
  height that is not a positive number;
- an annotation without an `id`, a duplicate annotation id, annotation id 0 (pycocotools
  reads it as "no match"), a `category_id` that is not an integer or string (`true`); for the
  keypoint category: an
  `image_id` not in `images`, `keypoints` that are not a flat list of 3*K finite numbers,
  visibility flags other than 0/1/2, a `bbox` that is not 4 finite numbers or has a negative
  size, a negative or non-finite `area`, `iscrowd` other than 0/1, a `num_keypoints` that
  disagrees with the keypoints;
- categories whose keypoint count differs from the keypoint set, or several categories none of
  which lists keypoints;
- with `check_images`: image files that do not exist, are truncated, or whose size is not the
  annotated width x height.

Skipped and counted: annotations of other categories, crowd regions, people without labelled
keypoints, boxes of zero area after clipping to the image (a warning gives the count).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PoseDataError
from .files import all_ids, finite_numbers, finite_rows, gc_paused, is_id, read_json
from .meta import KeypointMeta
from .metrics import head_size as head_size_of

log = logging.getLogger(__name__)


@dataclass
class Instance:
    """One person to crop: the box and, when known, the ground-truth keypoints."""

    image_id: Any
    image_path: str
    bbox: np.ndarray  # [x, y, w, h] in image pixels
    keypoints: np.ndarray  # [K, 3]: x, y, v (v > 0 labelled, 2 visible, 1 occluded)
    area: float
    ann_id: Any = -1
    score: float = 1.0  # box confidence (1 for ground-truth boxes)
    head_size: float = float("nan")  # MPII: 0.6 x head box diagonal, the PCKh unit


@dataclass
class CocoKeypoints:
    """A checked COCO-style keypoint file: its people, and what was skipped."""

    ann_file: str
    image_dir: str
    instances: list[Instance]
    skipped: Counter
    image_paths: dict[Any, str]  # every image of the file, by id
    category_id: Any = 1  # the keypoint category's id, used in results files
    doc: dict | None = field(default=None, repr=False)  # the checked, normalised file (for scoring)

    @property
    def num_images(self) -> int:
        return len(self.image_paths)


def is_number(v: Any) -> bool:
    """A JSON number that is a finite float (not a bool, string, list, or 10**400)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def numbers(value: Any, n: int | None, what: str, where: str) -> np.ndarray:
    """A flat list of finite numbers (of length `n`), or an error naming the record and field."""
    if is_number(value) and n == 1:
        value = [value]
    arr = finite_numbers(value)
    if arr is not None and (n is None or arr.size == n):
        return arr
    if not isinstance(value, list) or any(isinstance(v, list) for v in value):
        raise PoseDataError(f"{where}: '{what}' must be a flat list of numbers")
    if n is not None and len(value) != n:
        raise PoseDataError(f"{where}: '{what}' has {len(value)} values, expected {n}")
    raise PoseDataError(f"{where}: '{what}' contains NaN, infinity or something that is not a number")


def _keypoint_category(doc: dict, path: Path, meta: KeypointMeta) -> Any:
    cats = doc.get("categories")
    if cats is None or cats == []:
        return None
    if not isinstance(cats, list) or not all(isinstance(c, dict) and is_id(c.get("id")) for c in cats):
        raise PoseDataError(f"{path}: 'categories' must be a list of objects with an 'id'")
    with_kp = []
    for cat in cats:
        names = cat.get("keypoints")
        if names is None:
            continue
        if not isinstance(names, list):
            raise PoseDataError(f"{path}: category {cat.get('name', cat['id'])!r}: 'keypoints' must be a list of names")
        if len(names) != meta.num_keypoints:
            raise PoseDataError(
                f"{path}: category {cat.get('name', cat['id'])!r} has {len(names)} keypoints, "
                f"but the keypoint set {meta.name!r} has {meta.num_keypoints}; choose the matching data.keypoints"
            )
        with_kp.append(cat)
    if with_kp:
        return with_kp[0]["id"]
    if len(cats) == 1:
        return cats[0]["id"]
    raise PoseDataError(f"{path}: {len(cats)} categories and none lists its 'keypoints': which one holds the people?")


def _annotations_in_bulk(anns: list[Any], images: dict[Any, dict], category_id: Any, k: int) -> list[dict] | None:
    """`_check_annotations` of a clean file (nothing refused, nothing left out), its checks done
    on whole lists at once (a 10,000-person file in a few hundredths of a second); None when any
    record might fail one of them or belongs to another category: `_check_annotations` then goes
    record by record."""
    if not all(type(a) is dict for a in anns):
        return None
    ids = [a.get("id") for a in anns]
    if not all_ids(ids) or len(set(ids)) != len(ids) or 0 in ids:
        return None
    cats = [a.get("category_id", category_id if category_id is not None else 1) for a in anns]
    if not all_ids(cats) or (category_id is not None and set(cats) - {category_id}):
        return None
    image_ids = [a.get("image_id") for a in anns]
    if not all_ids(image_ids) or not set(image_ids) <= images.keys():
        return None
    kpts, boxes = finite_rows([a.get("keypoints") for a in anns], 3 * k), finite_rows([a.get("bbox") for a in anns], 4)
    if kpts is None or boxes is None or not np.isin(kpts[:, 2::3], (0.0, 1.0, 2.0)).all() or (boxes[:, 2:] < 0).any():
        return None
    crowds = [a.get("iscrowd", 0) for a in anns]
    if not set(map(type, crowds)) <= {int} or not set(crowds) <= {0, 1}:
        return None
    given = [a["area"] for a in anns if "area" in a]
    areas = finite_rows([given], len(given))
    if areas is None or (areas < 0).any():
        return None
    labelled = (kpts[:, 2::3] > 0).sum(axis=1).tolist()
    counts = [a.get("num_keypoints", n) for a, n in zip(anns, labelled)]
    if not set(map(type, counts)) <= {int} or counts != labelled:
        return None
    return [
        dict(a, category_id=c, iscrowd=crowd, area=a.get("area", float(box[2] * box[3])), num_keypoints=n)
        for a, c, crowd, box, n in zip(anns, cats, crowds, boxes, labelled)
    ]


def _check_annotations(path: Path, anns: list[Any], images: dict[Any, dict], category_id: Any, meta: KeypointMeta) -> tuple[list[dict], int]:
    """The annotations of the keypoint category, checked record by record and normalised, and
    how many of other categories were left out."""
    k = meta.num_keypoints
    ann_ids: set = set()
    annotations, other = [], 0
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict):
            raise PoseDataError(f"{path}: annotations[{i}]: not an object")
        where = f"{path}: annotation id={ann.get('id', '?')!r} (annotations[{i}])"
        if not is_id(ann.get("id")):
            raise PoseDataError(f"{where}: needs an 'id' (a 64-bit integer or a string)")
        if ann["id"] in ann_ids:
            raise PoseDataError(f"{where}: annotation id {ann['id']!r} appears twice")
        if ann["id"] == 0:  # pycocotools stores matches as annotation ids, and reads 0 as "no match"
            raise PoseDataError(f"{where}: annotation id 0 would be scored as never matched by pycocotools; number annotations from 1")
        ann_ids.add(ann["id"])
        cat = ann.get("category_id", category_id if category_id is not None else 1)
        if not is_id(cat):  # `true` equals 1 in Python but is no id: pycocotools and hotcoco disagree on it
            raise PoseDataError(f"{where}: 'category_id' must be a 64-bit integer or a string, got {cat!r}")
        if category_id is not None and cat != category_id:
            other += 1
            continue
        if not is_id(ann.get("image_id")) or ann["image_id"] not in images:
            raise PoseDataError(f"{where}: image_id {ann.get('image_id')!r} is not in 'images'")
        if "keypoints" not in ann or "bbox" not in ann:
            raise PoseDataError(f"{where}: needs 'keypoints' and 'bbox'")
        kpts = numbers(ann["keypoints"], None, "keypoints", where)
        if kpts.size != 3 * k:
            raise PoseDataError(f"{where}: 'keypoints' has {kpts.size} values, expected {3 * k} (x, y, v for {k} keypoints of {meta.name!r})")
        vis = kpts[2::3]
        if not set(vis.tolist()) <= {0.0, 1.0, 2.0}:
            raise PoseDataError(f"{where}: visibility flags must be 0, 1 or 2, got {sorted(set(vis.tolist()))}")
        labelled = int((vis > 0).sum())
        bbox = numbers(ann["bbox"], 4, "bbox", where)
        if bbox[2] < 0 or bbox[3] < 0:
            raise PoseDataError(f"{where}: negative box size (w={bbox[2]:g}, h={bbox[3]:g})")
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1) or isinstance(crowd, float):
            raise PoseDataError(f"{where}: 'iscrowd' must be 0 or 1, got {crowd!r}")
        area = ann.get("area", float(bbox[2] * bbox[3]))
        if not (is_number(area) and area >= 0):
            raise PoseDataError(f"{where}: 'area' must be a number >= 0, got {area!r}")
        n = ann.get("num_keypoints", labelled)
        if n != labelled or isinstance(n, bool):
            raise PoseDataError(f"{where}: 'num_keypoints' is {n!r}, but {labelled} keypoints are labelled")
        annotations.append(dict(ann, category_id=cat, iscrowd=int(crowd), area=area, num_keypoints=labelled))

    return annotations, other


@gc_paused()
def read_coco_file(path: str | Path, meta: KeypointMeta, doc: Any = None) -> tuple[dict, Any, int]:
    """The checked file (or the already parsed `doc` of it), normalised for pycocotools, the id
    of its keypoint category, and how many annotations of other categories it dropped (the
    normalised file holds the keypoint category alone, so that pycocotools scores only it).
    See the module docstring for what is refused."""
    path = Path(path)
    doc = read_json(path) if doc is None else doc
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) or not isinstance(doc.get("annotations"), list):
        raise PoseDataError(f"{path}: expected a COCO object with 'images' and 'annotations' lists")
    k = meta.num_keypoints
    category_id = _keypoint_category(doc, path, meta)
    images: dict[Any, dict] = {}
    for i, img in enumerate(doc["images"]):
        where = f"{path}: images[{i}]"
        if not isinstance(img, dict) or not is_id(img.get("id")) or not isinstance(img.get("file_name"), str):
            raise PoseDataError(f"{where} needs an 'id' (a 64-bit integer or a string) and a 'file_name'")
        if img["id"] in images:
            raise PoseDataError(f"{where}: image id {img['id']!r} appears twice")
        for side in ("width", "height"):
            if side in img and not (is_number(img[side]) and img[side] > 0):
                raise PoseDataError(f"{where} (image id {img['id']!r}): '{side}' must be a positive number, got {img[side]!r}")
        images[img["id"]] = img

    anns = doc["annotations"]
    annotations, other = _annotations_in_bulk(anns, images, category_id, k), 0
    if annotations is None:
        annotations, other = _check_annotations(path, anns, images, category_id, meta)
    cid = category_id if category_id is not None else 1
    categories = [c for c in doc.get("categories") or [] if c["id"] == cid] or [{"id": cid, "name": "person", "keypoints": list(meta.keypoints)}]
    return {**doc, "annotations": annotations, "categories": categories}, cid, other


def load_coco_instances(
    ann_file: str | Path, image_dir: str | Path, meta: KeypointMeta, check_images: bool = True, keep_doc: bool = True
) -> CocoKeypoints:
    """Read a COCO-style person-keypoints file into per-person instances (ground-truth boxes).
    `keep_doc`: keep the checked file for scoring (not needed for training files)."""
    ann_path = Path(ann_file)
    doc, category_id, other = read_coco_file(ann_path, meta)
    images = {img["id"]: img for img in doc["images"]}
    image_dir = Path(image_dir)
    skipped: Counter = Counter({"other category": other} if other else {})
    instances: list[Instance] = []
    k = meta.num_keypoints
    for ann in doc["annotations"]:
        where = f"{ann_path}: annotation id={ann['id']!r}"
        if ann["iscrowd"]:
            skipped["crowd region"] += 1
            continue
        kpts = np.asarray(ann["keypoints"], dtype=np.float32).reshape(k, 3)
        if not (kpts[:, 2] > 0).any():
            skipped["no labelled keypoints"] += 1
            continue
        img = images[ann["image_id"]]
        bbox = np.asarray(ann["bbox"], dtype=np.float64)
        if "center" in ann and "scale" in ann:
            # MPII (see convert.py): the crop is the square of side 200 x scale around the center,
            # not clipped to the image, exactly as the reference MPII readers crop.
            c = numbers(ann["center"], 2, "center", where)
            side = 200.0 * float(numbers(ann["scale"], 1, "scale", where)[0])
            if side <= 0:
                raise PoseDataError(f"{where}: 'scale' must be positive")
            bbox = np.array([c[0] - side / 2, c[1] - side / 2, side, side])
            x1, y1, x2, y2 = bbox[0], bbox[1], bbox[0] + side, bbox[1] + side
        else:
            # Clip the box to the image as the official HRNet reader does.
            x1, y1 = max(0.0, bbox[0]), max(0.0, bbox[1])
            x2, y2 = bbox[0] + max(0.0, bbox[2] - 1), bbox[1] + max(0.0, bbox[3] - 1)
            if "width" in img and "height" in img:
                x2, y2 = min(img["width"] - 1.0, x2), min(img["height"] - 1.0, y2)
        if x2 < x1 or y2 < y1 or bbox[2] * bbox[3] <= 0:
            skipped["empty box"] += 1
            continue
        head_size = float("nan")
        if "head_box" in ann:  # MPII, as written by `poserenet data convert`
            head_size = float(head_size_of(numbers(ann["head_box"], 4, "head_box", where)))
        instances.append(
            Instance(
                image_id=img["id"],
                image_path=str(image_dir / img["file_name"]),
                bbox=np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float32),
                keypoints=kpts,
                area=float(ann["area"]),
                ann_id=ann["id"],
                head_size=head_size,
            )
        )

    if check_images:
        check_image_files(ann_path, {inst.image_id: inst.image_path for inst in instances}, images)
    if skipped.get("empty box"):
        log.warning("%s: skipped %d people with an empty box", ann_path, skipped["empty box"])
    paths = {i: str(image_dir / img["file_name"]) for i, img in images.items()}
    return CocoKeypoints(str(ann_path), str(image_dir), instances, skipped, paths, category_id, doc if keep_doc else None)


# --------------------------------------------------------------------------- image files
def check_image_files(ann_path: Path, paths: dict[Any, str], images: dict[Any, dict]) -> None:
    """Every image file exists, is complete and has the annotated size (when given)."""
    missing, broken = [], []
    for image_id, p in paths.items():
        info = image_info(p)
        if info is None:
            missing.append(f"{p} (image id {image_id!r})")
            continue
        size, complete = info
        img = images[image_id]
        if not complete:
            broken.append(f"{p} (image id {image_id!r}) is truncated")
        elif size is not None and "width" in img and "height" in img and size != (int(img["width"]), int(img["height"])):
            broken.append(f"{p} (image id {image_id!r}) is {size[0]}x{size[1]}, annotated as {img['width']}x{img['height']}")
    for problems, what in ((missing, "image file(s) not found"), (broken, "bad image file(s)")):
        if problems:
            more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
            raise PoseDataError(f"{ann_path}: {len(problems)} {what}: {'; '.join(problems[:5])}{more}")


def image_info(path: str | Path) -> tuple[tuple[int, int] | None, bool] | None:
    """((width, height) or None if the format is not JPEG/PNG, complete?) from the file's
    header and end, without decoding it; None if there is no such file."""
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 64))
            tail = f.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    except OSError:
        return (None, False)
    if head[:2] == b"\xff\xd8":  # JPEG: ends with the EOI marker (some writers pad after it)
        return _jpeg_size(head), b"\xff\xd9" in tail
    if head[:8] == b"\x89PNG\r\n\x1a\n":  # PNG: IHDR first, IEND last
        wh = (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) if len(head) >= 24 else None
        return wh, b"IEND" in tail
    return None, size > 0


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the first start-of-frame marker (None if not in the first 64 KB)."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        i += 2 + length
    return None


# --------------------------------------------------------------------------- detections
def load_detections(
    det_file: str | Path, data: CocoKeypoints, num_keypoints: int, score_threshold: float = 0.0
) -> tuple[list[Instance], Counter]:
    """People to crop from a COCO detection-results file (image_id, category_id, bbox, score),
    for the images of `data`: boxes of the keypoint category scoring at least `score_threshold`.

    Skipped and counted: other categories, low scores, boxes of zero size. Refused: records
    without those fields, non-finite values, negative sizes, image ids not in `data`.
    """
    det_path = Path(det_file)
    dets = read_json(det_path, "detection file")
    if not isinstance(dets, list):
        raise PoseDataError(f"{det_path}: expected a list of detections (image_id, category_id, bbox, score)")
    skipped: Counter = Counter()
    instances = []
    unknown = set()
    for i, d in enumerate(dets):
        where = f"{det_path}: detection {i}"
        if not isinstance(d, dict) or not {"image_id", "bbox", "score"} <= set(d):
            raise PoseDataError(f"{where}: needs 'image_id', 'bbox' and 'score'")
        if d.get("category_id", data.category_id) != data.category_id:
            skipped["other category"] += 1
            continue
        box = numbers(d["bbox"], 4, "bbox", where)
        score = float(numbers(d["score"], 1, "score", where)[0])
        if box[2] < 0 or box[3] < 0:
            raise PoseDataError(f"{where}: negative box size (w={box[2]:g}, h={box[3]:g})")
        if not is_id(d["image_id"]) or d["image_id"] not in data.image_paths:
            unknown.add(repr(d["image_id"]))
            continue
        if score < score_threshold:
            skipped["below score threshold"] += 1
            continue
        if box[2] * box[3] <= 0:
            skipped["empty box"] += 1
            continue
        instances.append(Instance(d["image_id"], data.image_paths[d["image_id"]], box.astype(np.float32),
                                  np.zeros((num_keypoints, 3), np.float32), float(box[2] * box[3]), -1, score))  # fmt: skip
    if unknown:
        shown = ", ".join(sorted(unknown)[:5])
        raise PoseDataError(f"{det_path}: detections for {len(unknown)} image id(s) not in {data.ann_file} (e.g. {shown})")
    return instances, skipped

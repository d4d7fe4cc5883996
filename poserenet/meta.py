"""Keypoint metadata: what the K heatmaps mean.

Everything that depends on the keypoint set (flip pairs for augmentation and flip test, OKS
sigmas for AP, joint weights for the loss, upper-body joints for half-body augmentation, torso
joints for PCK, the skeleton for drawing) lives in one `KeypointMeta`. Built-in sets: COCO-17,
MPII-16 and LSP-14; custom sets come from a small YAML/JSON file (see `load_meta`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .errors import PoseDataError

# Used when a custom keypoint file gives no OKS sigmas: the median of the 17 COCO sigmas.
DEFAULT_SIGMA = 0.079


@dataclass(frozen=True)
class KeypointMeta:
    name: str
    keypoints: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...] = ()
    skeleton: tuple[tuple[int, int], ...] = ()
    sigmas: tuple[float, ...] = ()
    joint_weights: tuple[float, ...] = ()
    upper_body: tuple[int, ...] = ()
    # Pairs of joints whose distance is the torso size for PCK, tried in order;
    # empty means PCK is normalised by the box size instead.
    torso: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        k = len(self.keypoints)
        if k == 0:
            raise PoseDataError(f"keypoint set {self.name!r} has no keypoints")
        if len(set(self.keypoints)) != k:
            raise PoseDataError(f"keypoint set {self.name!r} has repeated keypoint names")
        # Fill the optional per-joint vectors so the rest of the code never checks for them.
        if not self.sigmas:
            object.__setattr__(self, "sigmas", (DEFAULT_SIGMA,) * k)
        if not self.joint_weights:
            object.__setattr__(self, "joint_weights", (1.0,) * k)
        for what in ("sigmas", "joint_weights"):
            if len(getattr(self, what)) != k:
                raise PoseDataError(
                    f"keypoint set {self.name!r}: {what} has {len(getattr(self, what))} values for {k} keypoints"
                )
        pairs = list(self.flip_pairs) + list(self.skeleton) + list(self.torso)
        for a, b in pairs:
            if not (0 <= a < k and 0 <= b < k):
                raise PoseDataError(f"keypoint set {self.name!r}: pair ({a}, {b}) is out of range for {k} keypoints")
        for j in self.upper_body:
            if not 0 <= j < k:
                raise PoseDataError(f"keypoint set {self.name!r}: upper_body index {j} out of range")
        flat = [j for p in self.flip_pairs for j in p]
        if len(flat) != len(set(flat)):
            raise PoseDataError(f"keypoint set {self.name!r}: a keypoint appears in two flip pairs")

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    @property
    def flip_index(self) -> list[int]:
        """Permutation that maps each joint to its mirror joint (itself when unpaired)."""
        idx = list(range(self.num_keypoints))
        for a, b in self.flip_pairs:
            idx[a], idx[b] = b, a
        return idx

    @property
    def lower_body(self) -> tuple[int, ...]:
        return tuple(j for j in range(self.num_keypoints) if j not in self.upper_body)


def _pairs(names: Sequence[str], pairs: Sequence[tuple[str, str]]) -> tuple[tuple[int, int], ...]:
    return tuple((names.index(a), names.index(b)) for a, b in pairs)


_COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
COCO17 = KeypointMeta(
    name="coco17",
    keypoints=_COCO_NAMES,
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    # The COCO annotation file's skeleton, made 0-based.
    skeleton=((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
              (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)),
    sigmas=(0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
            0.107, 0.107, 0.087, 0.087, 0.089, 0.089),
    # The official HRNet weights: elbows/knees 1.2, wrists/ankles 1.5.
    joint_weights=(1.0,) * 7 + (1.2, 1.2, 1.5, 1.5, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5),
    upper_body=tuple(range(11)),
    torso=_pairs(_COCO_NAMES, [("right_shoulder", "left_hip"), ("left_shoulder", "right_hip")]),
)  # fmt: skip

_MPII_NAMES = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis",
    "thorax", "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder",
    "left_shoulder", "left_elbow", "left_wrist",
)  # fmt: skip
MPII16 = KeypointMeta(
    name="mpii16",
    keypoints=_MPII_NAMES,
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    skeleton=((0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (10, 11),
              (11, 12), (12, 7), (7, 13), (13, 14), (14, 15)),
    # mmpose's MPII sigmas.
    sigmas=(0.089, 0.083, 0.107, 0.107, 0.083, 0.089, 0.026, 0.026, 0.026, 0.026, 0.062, 0.072,
            0.179, 0.179, 0.072, 0.062),
    joint_weights=(1.5, 1.2, 1.0, 1.0, 1.2, 1.5, 1.0, 1.0, 1.0, 1.0, 1.5, 1.2, 1.0, 1.0, 1.2, 1.5),
    upper_body=(7, 8, 9, 10, 11, 12, 13, 14, 15),
    torso=_pairs(_MPII_NAMES, [("right_shoulder", "left_hip"), ("left_shoulder", "right_hip")]),
)  # fmt: skip

_LSP_NAMES = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
    "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck", "head_top",
)  # fmt: skip
LSP14 = KeypointMeta(
    name="lsp14",
    keypoints=_LSP_NAMES,
    flip_pairs=((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9)),
    skeleton=((0, 1), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8), (9, 10), (10, 11), (8, 12), (9, 12),
              (12, 13), (2, 8), (3, 9), (2, 3)),
    # COCO values per limb; neck and head_top as CrowdPose uses.
    sigmas=(0.089, 0.087, 0.107, 0.107, 0.087, 0.089, 0.062, 0.072, 0.079, 0.079, 0.072, 0.062,
            0.079, 0.079),
    joint_weights=(1.5, 1.2, 1.0, 1.0, 1.2, 1.5, 1.5, 1.2, 1.0, 1.0, 1.2, 1.5, 1.0, 1.0),
    upper_body=(6, 7, 8, 9, 10, 11, 12, 13),
    torso=_pairs(_LSP_NAMES, [("right_shoulder", "left_hip"), ("left_shoulder", "right_hip")]),
)  # fmt: skip

BUILTIN_META: dict[str, KeypointMeta] = {m.name: m for m in (COCO17, MPII16, LSP14)}

_SIDE = re.compile(r"(^|[_\- ])(left|right|l|r)($|[_\- ])", re.IGNORECASE)
_SWAP = {"left": "right", "right": "left", "l": "r", "r": "l"}


def infer_flip_pairs(names: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Pair `left_x` with `right_x` (also `l_x`/`r_x`) by name."""
    index = {n: i for i, n in enumerate(names)}
    pairs = []
    for i, n in enumerate(names):
        m = _SIDE.search(n)
        if not m or m.group(2).lower() not in ("left", "l"):
            continue
        side = m.group(2)
        other = _SWAP[side.lower()]
        other = other.upper() if side.isupper() else other.capitalize() if side[0].isupper() else other
        mirror = n[: m.start(2)] + other + n[m.end(2):]
        if mirror in index:
            pairs.append((i, index[mirror]))
    return tuple(pairs)


def meta_from_dict(d: dict[str, Any], source: str = "<dict>") -> KeypointMeta:
    """Build a KeypointMeta from plain data; pairs may be given by name or by 0-based index."""
    try:
        names = tuple(str(n) for n in d["keypoints"])
    except (KeyError, TypeError):
        raise PoseDataError(f"{source}: a keypoint set needs a 'keypoints' list of names") from None
    known = {"name", "keypoints", "flip_pairs", "skeleton", "sigmas", "joint_weights", "upper_body", "torso"}
    unknown = set(d) - known
    if unknown:
        raise PoseDataError(f"{source}: unknown keys {sorted(unknown)}; expected some of {sorted(known)}")

    def idx(j: Any) -> int:
        if isinstance(j, str):
            if j not in names:
                raise PoseDataError(f"{source}: {j!r} is not one of the keypoints {list(names)}")
            return names.index(j)
        return int(j)

    def pairs(key: str) -> tuple[tuple[int, int], ...]:
        try:
            return tuple((idx(a), idx(b)) for a, b in d.get(key) or ())
        except PoseDataError:
            raise
        except (TypeError, ValueError):
            raise PoseDataError(f"{source}: '{key}' must be a list of [a, b] pairs") from None

    flip = pairs("flip_pairs") if "flip_pairs" in d else infer_flip_pairs(names)
    try:
        return KeypointMeta(
            name=str(d.get("name", Path(source).stem)),
            keypoints=names,
            flip_pairs=flip,
            skeleton=pairs("skeleton"),
            sigmas=tuple(float(s) for s in d.get("sigmas") or ()),
            joint_weights=tuple(float(w) for w in d.get("joint_weights") or ()),
            upper_body=tuple(idx(j) for j in d.get("upper_body") or ()),
            torso=pairs("torso"),
        )
    except PoseDataError as e:
        raise PoseDataError(f"{source}: {e}") from None


def load_meta(spec: str | KeypointMeta) -> KeypointMeta:
    """A built-in name (`coco17`, `mpii16`, `lsp14`) or the path of a YAML/JSON file with
    `keypoints` (names) and optionally `flip_pairs`, `skeleton`, `sigmas`, `joint_weights`,
    `upper_body`, `torso`. Flip pairs default to the left/right names; sigmas to
    `DEFAULT_SIGMA`; joint weights to 1.
    """
    if isinstance(spec, KeypointMeta):
        return spec
    if spec in BUILTIN_META:
        return BUILTIN_META[spec]
    path = Path(spec)
    if not path.is_file():
        raise PoseDataError(
            f"keypoint set {spec!r} is neither a built-in ({', '.join(BUILTIN_META)}) nor an existing file"
        )
    import yaml  # here: scoring a results file (`poserenet metrics`) never needs it

    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise PoseDataError(f"{path}: cannot read keypoint set: {e}") from None
    if not isinstance(data, dict):
        raise PoseDataError(f"{path}: expected a mapping with a 'keypoints' list")
    return meta_from_dict(data, str(path))


def meta_from_coco(gt: dict[str, Any], source: str = "<annotations>") -> KeypointMeta:
    """The keypoint set of a COCO-style file's keypoint category: a built-in set when the names
    match one, else one built from the names and skeleton (flip pairs from left/right names,
    sigmas `DEFAULT_SIGMA`)."""
    cats = gt.get("categories") if isinstance(gt, dict) else None
    cats = [c for c in cats if isinstance(c, dict) and c.get("keypoints")] if isinstance(cats, list) else []
    if not cats:
        raise PoseDataError(f"{source}: no category with a 'keypoints' list; name the keypoint set explicitly")
    names = cats[0]["keypoints"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise PoseDataError(f"{source}: the category's 'keypoints' must be a list of names")
    names = tuple(names)
    for meta in BUILTIN_META.values():
        if meta.keypoints == names:
            return meta
    pairs = cats[0].get("skeleton") or []
    ok = isinstance(pairs, list) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(j, int) and not isinstance(j, bool) and 1 <= j <= len(names) for j in p)
        for p in pairs
    )
    if not ok:
        raise PoseDataError(f"{source}: the category's 'skeleton' must be pairs of 1-based keypoint numbers (1 to {len(names)})")
    skeleton = [[a - 1, b - 1] for a, b in pairs]  # COCO's are 1-based
    return meta_from_dict({"name": cats[0].get("name", "custom"), "keypoints": list(names), "skeleton": skeleton}, source)


def meta_to_dict(meta: KeypointMeta) -> dict[str, Any]:
    """Plain data (lists, numbers, strings) that `meta_from_dict` turns back into `meta`."""
    return {
        "name": meta.name, "keypoints": list(meta.keypoints), "flip_pairs": [list(p) for p in meta.flip_pairs],
        "skeleton": [list(p) for p in meta.skeleton], "sigmas": list(meta.sigmas), "joint_weights": list(meta.joint_weights),
        "upper_body": list(meta.upper_body), "torso": [list(p) for p in meta.torso],
    }  # fmt: skip

"""Property-based fuzzing of everything that reads a user's file (issue 13): the ground-truth
reader, the results reader and `poserenet metrics`, the config loader and the checkpoint loader.

Each case mutates a valid input (a value replaced by any JSON value, a key deleted, an entry
duplicated, bytes cut or flipped) and checks that the program either succeeds with exactly the
numbers pycocotools gives by hand on the cleaned input, or stops with one line that names the
file (or config key) and the problem. Never a traceback, never a silent wrong number.

About 1,300 cases in well under a minute; `python benchmarks/fuzz_long.py` runs the same
properties on 20,000 (POSERENET_FUZZ_EXAMPLES scales every test).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from poserenet.checkpoint import read_state_dict  # noqa: E402
from poserenet.cli import main  # noqa: E402
from poserenet.config import Config, load_config  # noqa: E402
from poserenet.errors import ConfigError, PoseDataError  # noqa: E402
from poserenet.meta import COCO17  # noqa: E402

SCALE = float(os.environ.get("POSERENET_FUZZ_EXAMPLES", "0")) / 1300 or 1.0


def fuzz_settings(n: int):
    return settings(max_examples=max(1, int(n * SCALE)), deadline=None, derandomize=SCALE == 1.0,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip


TMP = Path(tempfile.mkdtemp(prefix="poserenet-fuzz-"))
K = 17

# Any JSON value, with the numbers that break readers: NaN, infinities, 10**400, bools, text.
leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), st.just(10**400), st.just(-(10**400)),
    st.floats(allow_nan=True, allow_infinity=True, width=64), st.text(max_size=4),
)  # fmt: skip
json_value = st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
                          max_leaves=8)  # fmt: skip


def reference_gt() -> dict:
    rng = np.random.default_rng(0)
    anns = []
    for i in range(3):
        kp = []
        for _ in range(K):
            kp += [float(rng.integers(5, 90)), float(rng.integers(5, 190)), int(rng.choice([0, 1, 2], p=[0.2, 0.2, 0.6]))]
        anns.append({"id": i + 1, "image_id": i % 2 + 1, "category_id": 1, "iscrowd": 0, "bbox": [2.0, 3.0, 90.0, 190.0],
                     "area": 9000.0, "keypoints": kp, "num_keypoints": sum(v > 0 for v in kp[2::3])})  # fmt: skip
    return {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 200} for i in (1, 2)],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "keypoints": list(COCO17.keypoints)}],
    }


def reference_results(gt: dict) -> list[dict]:
    rng = np.random.default_rng(1)
    out = []
    for a in gt["annotations"]:
        kp = np.asarray(a["keypoints"], float).reshape(K, 3)
        kp[:, :2] += rng.normal(0, 3, (K, 2))
        kp[:, 2] = rng.uniform(0.1, 1, K)
        out.append({"image_id": a["image_id"], "category_id": 1, "keypoints": [round(float(v), 3) for v in kp.reshape(-1)],
                    "score": round(float(rng.uniform(0.2, 1)), 4)})  # fmt: skip
    out.append({**out[0], "score": 0.05})  # a duplicate, as real result files have
    return out


GT, RESULTS = reference_gt(), None
RESULTS = reference_results(GT)


def paths(obj, prefix=()):
    """Every path (tuple of keys and indices) in a JSON document."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from paths(v, (*prefix, i))


# Values a file could plausibly hold there: often valid, so that accepted files with other
# numbers are checked against pycocotools too, not only refusals.
plausible = st.one_of(st.integers(0, 2), st.floats(0, 250), st.integers(1, 3).map(str), st.sampled_from([True, False, 1.0]))


@st.composite
def mutated(draw, doc, roots: tuple):
    """`doc` with 1-3 mutations under the given top-level keys (or anywhere for a list doc):
    entries and fields as often as single numbers inside keypoint and box lists."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        candidates = [p for p in paths(doc) if p and (not roots or p[0] in roots)]
        if not candidates:
            break
        shallow = [p for p in candidates if len(p) <= (3 if roots else 2)]
        path = draw(st.sampled_from(shallow if shallow and draw(st.booleans()) else candidates))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        op = draw(st.sampled_from(["replace", "replace", "plausible", "plausible", "delete", "duplicate"]))
        if op == "replace":
            parent[path[-1]] = draw(json_value)
        elif op == "plausible":
            parent[path[-1]] = draw(plausible)
        elif op == "delete":
            del parent[path[-1]]
        elif isinstance(parent, list):
            parent.insert(path[-1], copy.deepcopy(parent[path[-1]]))
    return doc


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(args)
        except SystemExit as e:  # argparse
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def assert_clean_error(err: str, *names: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert any(n in lines[0] for n in names), err


# --------------------------------------------------------------------------- an independent spec
def is_num(v) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def is_id(v) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63) or isinstance(v, str)


def gt_verdict(doc) -> dict | None:
    """The ground truth as the README's rules make it (normalised), or None when they refuse it."""
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) or not isinstance(doc.get("annotations"), list):
        return None
    if doc.get("categories") != GT["categories"]:
        return None  # categories are not mutated here
    ids = []
    for img in doc["images"]:
        if not isinstance(img, dict) or not is_id(img.get("id")) or not isinstance(img.get("file_name"), str):
            return None
        if any(s in img and not (is_num(img[s]) and img[s] > 0) for s in ("width", "height")):
            return None
        ids.append(img["id"])
    if len(set(ids)) != len(ids):
        return None
    anns, ann_ids = [], []
    for a in doc["annotations"]:
        if not isinstance(a, dict) or not is_id(a.get("id")) or a["id"] == 0:
            return None
        ann_ids.append(a["id"])
        if not is_id(a.get("category_id", 1)):  # null, true, 1.0: no id
            return None
        if a.get("category_id", 1) != 1:
            continue
        kp, box = a.get("keypoints"), a.get("bbox")
        if not is_id(a.get("image_id")) or a["image_id"] not in ids:
            return None
        if not isinstance(kp, list) or len(kp) != 3 * K or not all(is_num(v) for v in kp) or any(v not in (0, 1, 2) for v in kp[2::3]):
            return None
        if not isinstance(box, list) or len(box) != 4 or not all(is_num(v) for v in box) or box[2] < 0 or box[3] < 0:
            return None
        crowd = a.get("iscrowd", 0)
        if isinstance(crowd, float) or crowd not in (0, 1):
            return None
        area = a.get("area", box[2] * box[3])
        if not is_num(area) or area < 0:
            return None
        n = sum(v > 0 for v in kp[2::3])
        if a.get("num_keypoints", n) != n or isinstance(a.get("num_keypoints"), bool):
            return None
        anns.append({**a, "category_id": 1, "iscrowd": int(crowd), "area": area, "num_keypoints": n})
    if len(set(ann_ids)) != len(ann_ids):
        return None
    if not any(not a["iscrowd"] and a["num_keypoints"] > 0 for a in anns):
        return None
    return {**doc, "annotations": anns}


def results_verdict(results, gt: dict) -> list | None:
    """The results of the keypoint category, or None when the README's rules refuse them."""
    if not isinstance(results, list) or not results:
        return None
    ids = {img["id"] for img in gt["images"]}
    kept = []
    for r in results:
        if not isinstance(r, dict) or not {"image_id", "keypoints", "score"} <= set(r):
            return None
        if not is_id(r.get("category_id", 1)):
            return None
        if r.get("category_id", 1) != 1:
            continue
        if not is_id(r["image_id"]) or r["image_id"] not in ids:
            return None
        kp = r["keypoints"]
        if not isinstance(kp, list) or len(kp) != 3 * K or not all(is_num(v) for v in kp) or not is_num(r["score"]):
            return None
        kept.append({**r, "category_id": 1})
    return kept or None


def pycocotools_by_hand(gt: dict, results: list) -> list[float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(COCO17.sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats[:6]]


def score(gt_doc, results) -> tuple[int, str, str]:
    gt_path, res_path = TMP / "gt.json", TMP / "res.json"
    gt_path.write_text(json.dumps(gt_doc))
    res_path.write_text(json.dumps(results))
    return run_cli(["metrics", str(gt_path), str(res_path), "--json"])


def check_scoring(gt_doc, results) -> None:
    rc, out, err = score(gt_doc, results)
    gt_ok = gt_verdict(gt_doc)
    res_ok = results_verdict(results, gt_ok) if gt_ok is not None else None
    if rc == 0:
        assert gt_ok is not None and res_ok is not None, f"accepted what the rules refuse: {err}"
        got = json.loads(out)
        want = pycocotools_by_hand(gt_ok, res_ok)
        assert [got[k] for k in ("AP", "AP50", "AP75", "APM", "APL", "AR")] == pytest.approx(want, abs=1e-12)
    else:
        assert rc == 2
        assert_clean_error(err, "gt.json", "res.json")
        assert gt_ok is None or res_ok is None, f"refused what the rules accept: {err}"


def test_the_references_score():
    rc, out, err = score(GT, RESULTS)
    assert rc == 0, err
    assert 0 < json.loads(out)["AP"] < 1


@fuzz_settings(450)
@given(mutated(GT, ("images", "annotations")))
def test_ground_truth_files(doc):
    check_scoring(doc, RESULTS)


@fuzz_settings(400)
@given(mutated(RESULTS, ()))
def test_results_files(results):
    check_scoring(GT, results)


def outcome(fn, *args):
    """What a reader returns, or the message it stops with."""
    try:
        return fn(*args)
    except PoseDataError as e:
        return f"error: {e}"


# Values that equal valid ones in Python but are not (True == 1 == 1.0), and near misses.
# numpy's float64 is a float (accepted), its float32 is not.
TRICKY = [True, False, 1.0, 17.0, 0, -1, 2, 3, "1", 2**63, 10**400, math.nan, math.inf, np.float64(2.5), np.float32(2.5), [], None]


def edited(doc, where: tuple, value):
    doc = copy.deepcopy(doc)
    parent = doc
    for key in where[:-1]:
        parent = parent[key]
    if value is KeyError:
        del parent[where[-1]]
    else:
        parent[where[-1]] = value
    return doc


def bulk_agrees_for_ground_truth(doc) -> None:
    from poserenet import annotations

    fast = outcome(annotations.read_coco_file, TMP / "gt.json", COCO17, copy.deepcopy(doc))
    with mock.patch.object(annotations, "_annotations_in_bulk", lambda *a: None):
        slow = outcome(annotations.read_coco_file, TMP / "gt.json", COCO17, copy.deepcopy(doc))
    assert fast == slow


def bulk_agrees_for_results(results) -> None:
    from poserenet import metrics

    def check(res):
        notes: list[str] = []
        return metrics.check_results(res, GT, K, "res.json", notes), notes

    fast = outcome(check, copy.deepcopy(results))
    with mock.patch.object(metrics, "_all_clean", lambda *a: False):
        slow = outcome(check, copy.deepcopy(results))
    assert fast == slow


@pytest.mark.parametrize("value", [*TRICKY, KeyError])
def test_bulk_checks_agree_with_record_by_record_on_every_field(value):
    """The readers' clean-file fast paths (whole-list checks) accept only what their
    record-by-record checks accept, and return the same documents: each field of one record
    set to a value that equals a valid one in Python but is not one, or deleted."""
    for key in ("id", "image_id", "category_id", "iscrowd", "area", "num_keypoints", "bbox", "keypoints"):
        bulk_agrees_for_ground_truth(edited(GT, ("annotations", 1, key), value))
    for where in (("annotations", 2, "keypoints", 5), ("annotations", 2, "bbox", 2)):
        bulk_agrees_for_ground_truth(edited(GT, where, value))
    for key in ("image_id", "category_id", "score", "keypoints"):
        bulk_agrees_for_results(edited(RESULTS, (1, key), value))
    bulk_agrees_for_results(edited(RESULTS, (2, "keypoints", 4), value))


@fuzz_settings(300)
@given(mutated(GT, ("images", "annotations")))
def test_bulk_ground_truth_checks_agree_with_record_by_record(doc):
    bulk_agrees_for_ground_truth(doc)


@fuzz_settings(300)
@given(mutated(RESULTS, ()))
def test_bulk_results_checks_agree_with_record_by_record(results):
    bulk_agrees_for_results(results)


@fuzz_settings(100)
@given(st.one_of(json_value, st.binary(max_size=40).map(lambda b: b.decode("latin-1"))))
def test_files_that_are_not_coco_at_all(junk):
    (TMP / "junk.json").write_text(junk if isinstance(junk, str) and not junk.startswith("{") else json.dumps(junk))
    for args in (["metrics", str(TMP / "junk.json"), str(TMP / "res.json")], ["metrics", str(TMP / "gt.json"), str(TMP / "junk.json")]):
        (TMP / "gt.json").write_text(json.dumps(GT))
        (TMP / "res.json").write_text(json.dumps(RESULTS))
        rc, _, err = run_cli(args)
        assert rc == 2
        assert_clean_error(err, "junk.json")


# --------------------------------------------------------------------------- config
def config_keys() -> list[str]:
    import dataclasses

    keys = []
    for section in dataclasses.fields(Config):
        if dataclasses.is_dataclass(section.type) or section.name == "name":
            continue
        node = getattr(Config(), section.name)
        for f in dataclasses.fields(node):
            sub = getattr(node, f.name)
            if dataclasses.is_dataclass(sub):
                keys += [f"{section.name}.{f.name}.{g.name}" for g in dataclasses.fields(sub)]
            else:
                keys.append(f"{section.name}.{f.name}")
    return keys


CONFIG_KEYS = config_keys()
yaml_value = st.one_of(
    st.integers(-5, 5), st.sampled_from(["0", "-1", "1e12", "1e-3", "nan", ".nan", ".inf", "-.inf", "[]", "[0, 0]", "[1, 2, 3]",
                                         "{}", "{a: 1}", "true", "null", "~", "abc", "'", "[", "10**400", "1" + "0" * 400]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=6),
)  # fmt: skip


@fuzz_settings(250)
@given(st.lists(st.tuples(st.sampled_from(CONFIG_KEYS), yaml_value), min_size=1, max_size=3))
def test_config_overrides(pairs):
    overrides = [f"{k}={v}" for k, v in pairs]
    try:
        cfg = load_config("synth_r18slim_128x96_dark", overrides)
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg.strip() and "synth_r18slim_128x96_dark.yaml" in msg
        assert any(k in msg for k, _ in pairs) or "expected key=value" in msg, msg
        return
    # Accepted: the values are usable by what reads them first.
    from poserenet.pipeline import build_codec, target_codecs

    assert cfg.train.epochs >= 1 and cfg.train.batch_size >= 1 and 0 < cfg.train.lr <= 1
    if all(v % cfg.codec.stride == 0 for v in cfg.data.input_hw):
        build_codec(cfg)
        target_codecs(cfg)


# --------------------------------------------------------------------------- checkpoints
def reference_checkpoint() -> tuple[bytes, dict]:
    state = {"conv.weight": torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2), "conv.bias": torch.tensor([0.5, -1.0])}
    buf = io.BytesIO()
    torch.save({"model": state, "epoch": 1}, buf)
    return buf.getvalue(), state


CKPT, CKPT_STATE = reference_checkpoint()


@st.composite
def damaged(draw):
    data = bytearray(CKPT)
    op = draw(st.sampled_from(["cut", "flip", "insert", "zero", "junk"]))
    if op == "cut":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if op == "junk":
        return draw(st.binary(max_size=300))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= draw(st.integers(1, 255))
        elif op == "zero":
            data[i] = 0
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@fuzz_settings(200)
@given(damaged())
def test_checkpoint_files(blob):
    path = TMP / "model.pth"
    path.write_bytes(blob)
    try:
        state = read_state_dict(path)
    except PoseDataError as e:
        assert "model.pth" in str(e) and "\n" not in str(e).strip()
        return
    # Loaded: then it must be exactly the weights that were saved.
    assert set(state) == set(CKPT_STATE) and all(torch.equal(state[k], CKPT_STATE[k]) for k in state)


@fuzz_settings(400)
@given(st.lists(st.lists(st.one_of(leaf, st.just(1e308), st.builds(np.float64, st.floats(width=64)), st.just(np.float32(1.5))),
                         min_size=2, max_size=3), max_size=4))  # fmt: skip
def test_clean_rows_is_finite_rows_without_the_array(rows):
    """The results' one-pass check (floats only, a finite sum) says yes exactly when the general
    one does: any other type, NaN, infinity, 1e308 + 1e308 overflowing the sum."""
    from poserenet.files import clean_rows, finite_rows

    for n in (2, 3):
        assert clean_rows(rows, n) == (finite_rows(rows, n) is not None)

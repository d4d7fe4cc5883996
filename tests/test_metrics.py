import contextlib
import io
import json

import numpy as np
import pytest
from conftest import shared

from poserenet.errors import PoseDataError
from poserenet.meta import COCO17, LSP14
from poserenet.metrics import COCO_STATS, coco_keypoint_ap, pck, torso_size


def pycocotools_directly(gt_file, res_file, sigmas=None):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        dt = gt.loadRes(str(res_file))
        ev = COCOeval(gt, dt, "keypoints")
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.array(sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(COCO_STATS, ev.stats))


def noisy_results(gt_file, seed=0, drop=0.1, duplicate=0.1, false_pos=0.2):
    """Ground truth + noise, with missed people, duplicates and false positives."""
    rng = np.random.default_rng(seed)
    doc = json.loads(gt_file.read_text())
    results = []
    for ann in doc["annotations"]:
        if ann.get("iscrowd") or rng.random() < drop:
            continue
        kp = np.asarray(ann["keypoints"], float).reshape(-1, 3)
        scale = np.sqrt(max(ann["area"], 1.0))
        for _ in range(2 if rng.random() < duplicate else 1):
            xy = kp[:, :2] + rng.normal(0, 0.05 * scale, kp[:, :2].shape)
            s = rng.uniform(0.2, 1.0, len(kp))
            results.append({"image_id": ann["image_id"], "category_id": 1,
                            "keypoints": np.c_[xy, s].reshape(-1).tolist(), "score": float(rng.uniform(0.3, 1))})
    img_ids = [im["id"] for im in doc["images"]]
    k = len(doc["categories"][0]["keypoints"])
    for _ in range(int(false_pos * len(results))):
        xy = rng.uniform(0, 300, (k, 2))
        results.append({"image_id": int(rng.choice(img_ids)), "category_id": 1,
                        "keypoints": np.c_[xy, np.full(k, 0.5)].reshape(-1).tolist(), "score": float(rng.uniform(0, 0.6))})
    return results


@pytest.mark.parametrize("which", ["coco_mini", "mmpose_fixture"])
def test_ap_is_exactly_pycocotools(tmp_path, which):
    if which == "coco_mini":
        gt = shared("coco_mini", "annotations", "person_keypoints_train2017.json")
    else:
        gt = shared("mmpose_fixtures", "coco", "test_coco.json")
    res = tmp_path / "results.json"
    res.write_text(json.dumps(noisy_results(gt)))
    ours = coco_keypoint_ap(gt, res, COCO17.sigmas)
    theirs = pycocotools_directly(gt, res)
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert 0.2 < ours["AP"] < 0.99  # a non-trivial operating point


def test_ap_with_custom_sigmas_on_lspet(tmp_path):
    gt = shared("lspet", "lspet_val.json")
    res = tmp_path / "results.json"
    res.write_text(json.dumps(noisy_results(gt, seed=1)))
    ours = coco_keypoint_ap(gt, res, LSP14.sigmas)
    assert ours == pytest.approx(pycocotools_directly(gt, res, LSP14.sigmas), abs=1e-12)


def test_perfect_predictions_score_one(tmp_path):
    gt = shared("mmpose_fixtures", "coco", "test_coco.json")
    doc = json.loads(gt.read_text())
    res = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
           for a in doc["annotations"] if not a.get("iscrowd") and a["num_keypoints"] > 0]
    assert coco_keypoint_ap(gt, res, COCO17.sigmas)["AP"] == pytest.approx(1.0)


def test_empty_results_are_refused(tmp_path):
    gt = shared("mmpose_fixtures", "coco", "test_coco.json")
    with pytest.raises(PoseDataError, match="no predictions"):
        coco_keypoint_ap(gt, [], COCO17.sigmas)


def test_pck_by_hand():
    gt = np.zeros((2, 3, 3))
    gt[0, :, :2] = [[0, 0], [10, 0], [0, 10]]
    gt[0, :, 2] = [2, 2, 1]
    gt[1, :, :2] = [[5, 5], [5, 5], [5, 5]]
    gt[1, :, 2] = [2, 0, 2]  # joint 1 unlabelled: not scored
    pred = gt[..., :2].copy()
    pred[0, 0] += [2.0, 0]  # 2 <= 0.2 * 10: correct
    pred[0, 1] += [0, 2.5]  # 2.5 > 2: wrong
    pred[1, 2] += [100, 100]  # wrong
    pred[1, 1] += [100, 100]  # unlabelled: ignored
    value, per_joint, n = pck(pred, gt, np.array([10.0, 20.0]), 0.2)
    assert n == 5
    assert value == pytest.approx(3 / 5)
    np.testing.assert_allclose(per_joint, [1.0, 0.0, 0.5])
    # A person without a torso size is not scored at all.
    value, _, n = pck(pred, gt, np.array([10.0, np.nan]), 0.2)
    assert n == 3 and value == pytest.approx(2 / 3)


def test_torso_size_uses_the_first_labelled_diagonal():
    kp = np.zeros((3, 14, 3))
    rs, lh, ls, rh = 8, 3, 9, 2  # LSP: right_shoulder, left_hip, left_shoulder, right_hip
    kp[:, rs, :2], kp[:, lh, :2] = [0, 0], [3, 4]
    kp[:, ls, :2], kp[:, rh, :2] = [0, 0], [6, 8]
    kp[0, [rs, lh, ls, rh], 2] = 2
    kp[1, [ls, rh], 2] = 2
    np.testing.assert_allclose(torso_size(kp, LSP14.torso), [5.0, 10.0, np.nan])


def test_scoring_leaves_the_cycle_collector_as_it_found_it():
    """Reading, checking and scoring pause Python's cycle collector (speed); it is on again
    after a result and after an error, and stays off for a caller who had turned it off."""
    import gc

    kp = [v for i in range(17) for v in (10.0 + i, 20.0 + i, 2)]
    gt = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 50, 60], "area": 3000.0,
                           "keypoints": kp, "num_keypoints": 17}],
          "categories": [{"id": 1, "name": "person", "keypoints": list(COCO17.keypoints)}]}  # fmt: skip
    res = [{"image_id": 1, "category_id": 1, "keypoints": [float(v) for v in kp], "score": 0.9}]
    assert gc.isenabled()
    assert coco_keypoint_ap(gt, res, COCO17.sigmas)["AP"] == pytest.approx(1.0)
    assert gc.isenabled()
    with pytest.raises(PoseDataError, match="finite numbers"):
        coco_keypoint_ap(gt, [{**res[0], "score": float("nan")}], COCO17.sigmas)
    assert gc.isenabled()
    gc.disable()
    try:
        coco_keypoint_ap(gt, res, COCO17.sigmas)
        assert not gc.isenabled()
    finally:
        gc.enable()

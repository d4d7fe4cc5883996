"""Evaluation protocols: pycocotools-exact AP on hard result sets, both backends, bad results,
OKS-NMS, PCKh, and evaluation with detector boxes."""

import json

import numpy as np
import pytest
from conftest import available_backends, shared
from test_metrics import noisy_results, pycocotools_directly

from poserenet.cli import main
from poserenet.errors import PoseDataError
from poserenet.meta import COCO17, MPII16
from poserenet.metrics import COCO_STATS, coco_keypoint_ap, mpii_pckh_table, pckh_per_joint
from poserenet.postprocess import oks_nms, soft_oks_nms


def hard_results(gt_file, seed):
    """Noisy predictions with missed people, duplicates, false positives, and joints predicted
    far away (missing) on some people."""
    rng = np.random.default_rng(seed)
    res = noisy_results(gt_file, seed=seed, drop=0.15, duplicate=0.25, false_pos=0.4)
    for r in res:
        if rng.random() < 0.3:
            kp = np.asarray(r["keypoints"]).reshape(-1, 3)
            lost = rng.random(len(kp)) < 0.4
            kp[lost, :2] = 0
            kp[lost, 2] = 0
            r["keypoints"] = kp.reshape(-1).tolist()
    return res


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("which", ["coco_mini", "mmpose_fixture"])
def test_both_backends_equal_pycocotools_on_hard_result_sets(tmp_path, which, seed):
    gt = (shared("coco_mini", "annotations", "person_keypoints_train2017.json") if which == "coco_mini"
          else shared("mmpose_fixtures", "coco", "test_coco.json"))
    if which == "coco_mini":
        assert any(a["iscrowd"] for a in json.loads(gt.read_text())["annotations"])  # crowd regions in play
    res = tmp_path / "r.json"
    res.write_text(json.dumps(hard_results(gt, seed)))
    ref = pycocotools_directly(gt, res)
    for backend in available_backends():
        ours = coco_keypoint_ap(gt, res, COCO17.sigmas, backend=backend)
        for k in COCO_STATS:
            assert abs(ours[k] - ref[k]) <= 1e-9, (backend, k)


def test_backends_agree_with_custom_sigmas_on_lspet(tmp_path):
    gt = shared("lspet", "lspet_val.json")
    from poserenet.meta import LSP14

    res = hard_results(gt, 4)
    a = coco_keypoint_ap(gt, res, LSP14.sigmas, "pycocotools")
    for backend in available_backends()[1:]:
        b = coco_keypoint_ap(gt, res, LSP14.sigmas, backend)
        assert all(abs(a[k] - b[k]) <= 1e-9 for k in COCO_STATS), backend


def test_results_as_numpy_floats_or_integers_score_as_floats():
    """In-memory results written with numpy float64 (a float) or whole numbers (ints) take the
    slower checks or the one-pass one; both score exactly as the same results in floats."""
    gt = shared("mmpose_fixtures", "coco", "test_coco.json")
    doc = json.loads(gt.read_text())
    res = hard_results(gt, 5)
    as_numpy = [{**r, "keypoints": [np.float64(v) for v in r["keypoints"]], "score": np.float64(r["score"])} for r in res]
    rounded = [{**r, "keypoints": [round(v) for v in r["keypoints"]]} for r in res]
    as_ints = [{**r, "keypoints": [int(v) for v in r["keypoints"]]} for r in rounded]
    for backend in available_backends():
        assert coco_keypoint_ap(doc, as_numpy, COCO17.sigmas, backend) == coco_keypoint_ap(doc, res, COCO17.sigmas, backend)
        assert coco_keypoint_ap(doc, as_ints, COCO17.sigmas, backend) == coco_keypoint_ap(doc, rounded, COCO17.sigmas, backend)


GT_KP = [v for i in range(17) for v in (10.0 + 3 * i, 10.0 + 5 * i, 2)]


@pytest.fixture
def tiny_gt(tmp_path):
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 50, 100], "area": 5000,
                         "keypoints": GT_KP, "num_keypoints": 17}],
        "categories": [{"id": 1, "name": "person", "keypoints": list(COCO17.keypoints)}],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(doc))
    return path


def result(image_id=1, k=17, **kw):
    r = {"image_id": image_id, "category_id": 1, "keypoints": (GT_KP * 2)[: 3 * k], "score": 0.9}
    r.update(kw)
    return r


@pytest.mark.parametrize(
    "results, message",
    [
        ([], "no predictions"),
        ([result(image_id=7), result(image_id=8)], r"2 result\(s\) for image ids that are not in the ground truth \(e.g. 7, 8\)"),
        ([result(k=14)], r"result 0 \(image 1\): 42 keypoint values, expected 51"),
        ([result(keypoints=[float("nan")] * 51)], r"result 0 \(image 1\): keypoints and score must be finite numbers"),
        ([{"image_id": 1, "category_id": 1, "keypoints": [1.0] * 51}], r"result 0 \(image 1\): no 'score'"),
        ([result(score="high")], "must be finite numbers"),
        ({"image_id": 1}, "expected a list"),
    ],
)
def test_bad_results_are_refused_clearly(tiny_gt, tmp_path, results, message):
    res = tmp_path / "res.json"
    res.write_text(json.dumps(results))
    with pytest.raises(PoseDataError, match=message):
        coco_keypoint_ap(tiny_gt, res, COCO17.sigmas)


def test_metrics_command(tiny_gt, tmp_path, capsys):
    res = tmp_path / "res.json"
    res.write_text(json.dumps([result()]))
    assert main(["metrics", str(tiny_gt), str(res), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["AP"] == pytest.approx(1.0)
    assert main(["metrics", str(tiny_gt), str(res), "--metric", "pck", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["PCK@0.2"] == pytest.approx(1.0)
    res.write_text("[{]")
    assert main(["metrics", str(tiny_gt), str(res)]) == 2
    assert "res.json: results file is not valid JSON" in capsys.readouterr().err


def test_metrics_command_on_real_lspet_matches_pycocotools(tmp_path, capsys):
    pytest.importorskip("faster_coco_eval")
    gt = shared("lspet", "lspet_val.json")
    from poserenet.meta import LSP14

    res = tmp_path / "res.json"
    res.write_text(json.dumps(hard_results(gt, 5)))
    assert main(["metrics", str(gt), str(res), "--json", "--backend", "faster-coco-eval"]) == 0
    ours = json.loads(capsys.readouterr().out)
    ref = pycocotools_directly(gt, res, LSP14.sigmas)
    assert all(abs(ours[k] - ref[k]) <= 1e-9 for k in COCO_STATS)


# --------------------------------------------------------------------------- OKS-NMS
def pose(x0, y0, score=0.9, k=17):
    kp = np.zeros((k, 3))
    kp[:, 0] = x0 + np.arange(k) * 3
    kp[:, 1] = y0 + np.arange(k) * 5
    kp[:, 2] = score
    return kp


def test_oks_nms_keeps_and_drops_the_right_poses():
    poses = np.stack([pose(100, 100), pose(100.5, 100.5), pose(300, 100), pose(101, 99), pose(100, 160)])
    scores = np.array([0.8, 0.9, 0.7, 0.3, 0.6])
    areas = np.full(5, 100 * 100.0)
    keep = oks_nms(poses, scores, areas, COCO17.sigmas, threshold=0.9)
    # 1 (best) suppresses its near-duplicates 0 and 3; 2 (far away) and 4 (shifted 60 px) stay.
    assert keep == [1, 2, 4]
    # A stricter threshold (lower) also drops the 60-px-shifted pose? No: its OKS is ~0.
    assert oks_nms(poses, scores, areas, COCO17.sigmas, threshold=0.1) == [1, 2, 4]
    # A looser one (1.0) keeps everything.
    assert sorted(oks_nms(poses, scores, areas, COCO17.sigmas, threshold=1.0)) == [0, 1, 2, 3, 4]
    assert oks_nms(poses[:1], scores[:1], areas[:1], COCO17.sigmas) == [0]


def test_soft_nms_demotes_duplicates_instead_of_dropping_them():
    poses = np.stack([pose(100, 100), pose(100.5, 100.5), pose(300, 100)])
    scores = np.array([0.9, 0.85, 0.5])
    keep = soft_oks_nms(poses, scores, np.full(3, 1e4), COCO17.sigmas, threshold=0.3)
    # The duplicate's decayed score falls below the distinct person's: it comes last, but stays.
    assert keep == [0, 2, 1]
    assert soft_oks_nms(poses, scores, np.full(3, 1e4), COCO17.sigmas, max_dets=2) == [0, 2]


# --------------------------------------------------------------------------- PCKh
def reference_pckh(pred, gt, missing, headboxes, threshold):
    """The MPII evaluation code's arrays and formula ([K, 2, N] layouts, 1 - jnt_missing)."""
    pos_pred_src = np.transpose(pred, [1, 2, 0])
    pos_gt_src = np.transpose(gt, [1, 2, 0])
    jnt_visible = 1 - missing.T
    uv_err = np.linalg.norm(pos_pred_src - pos_gt_src, axis=1)
    headsizes = np.linalg.norm(headboxes[1] - headboxes[0], axis=0) * 0.6
    scaled = uv_err / (headsizes * np.ones((len(uv_err), 1)))
    scaled = scaled * jnt_visible
    jnt_count = jnt_visible.sum(1)
    less = (scaled <= threshold) * jnt_visible
    return 100.0 * less.sum(1) / jnt_count, jnt_count


def test_pckh_by_hand_with_invisible_joints():
    gt = np.zeros((2, 16, 2))
    pred = gt.copy()
    visible = np.ones((2, 16), bool)
    head = np.array([10.0, 20.0])  # already 0.6 x diagonal
    pred[0, 0] = [5.0, 0]  # 0.5 head: correct (<=)
    pred[0, 1] = [5.1, 0]  # wrong
    pred[1, 0] = [11.0, 0]  # 0.55: wrong
    pred[1, 1] = [100.0, 0]
    visible[1, 1] = False  # invisible: not counted
    per_joint, count = pckh_per_joint(pred, gt, visible, head, 0.5)
    assert count[0] == 2 and count[1] == 1
    assert per_joint[0] == pytest.approx(50.0) and per_joint[1] == pytest.approx(0.0) and per_joint[2] == 100.0


def test_mpii_table_equals_the_reference_formula():
    rng = np.random.default_rng(0)
    n = 200
    gt = rng.uniform(0, 500, (n, 16, 2))
    pred = gt + rng.normal(0, 12, gt.shape)
    missing = rng.random((n, 16)) < 0.15
    tl = rng.uniform(0, 400, (n, 2))
    headboxes = np.stack([tl.T, (tl + rng.uniform(20, 60, (n, 2))).T])  # [2, 2, N]
    head = 0.6 * np.linalg.norm(headboxes[1] - headboxes[0], axis=0)
    table = mpii_pckh_table(pred, gt, ~missing, head, MPII16.keypoints)
    ref, cnt = reference_pckh(pred, gt, missing, headboxes, 0.5)
    names = MPII16.keypoints
    idx = {nm: i for i, nm in enumerate(names)}
    assert table["Head"] == pytest.approx(ref[idx["head_top"]])
    assert table["Wrist"] == pytest.approx(0.5 * (ref[idx["left_wrist"]] + ref[idx["right_wrist"]]))
    mask = np.ones(16, bool)
    mask[[idx["pelvis"], idx["thorax"]]] = False
    assert table["Mean"] == pytest.approx(np.sum(ref[mask] * cnt[mask] / cnt[mask].sum()))
    ref01, _ = reference_pckh(pred, gt, missing, headboxes, 0.1)
    assert table["Mean@0.1"] == pytest.approx(np.sum(ref01[mask] * cnt[mask] / cnt[mask].sum()))

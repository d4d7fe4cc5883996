import json

import numpy as np

from poserenet.annotations import load_coco_instances
from poserenet.evaluate import mean_pose_baseline, score, to_coco_results
from poserenet.meta import COCO17
from poserenet.synth import generate, is_generated, render_scene


def test_same_seed_same_data_other_seed_other_data():
    a_img, a_people = render_scene(np.random.default_rng([0, 0, 3]))
    b_img, b_people = render_scene(np.random.default_rng([0, 0, 3]))
    c_img, _ = render_scene(np.random.default_rng([1, 0, 3]))
    assert np.array_equal(a_img, b_img)
    assert all(np.array_equal(p["keypoints"], q["keypoints"]) for p, q in zip(a_people, b_people))
    assert a_img.shape != c_img.shape or not np.array_equal(a_img, c_img)


def test_written_files_are_valid_coco(tiny_synth):
    assert is_generated(tiny_synth, 24, 8, 0) and not is_generated(tiny_synth, 24, 8, 1)
    for split in ("train", "val"):
        ann = tiny_synth / "annotations" / f"person_keypoints_{split}.json"
        doc = json.loads(ann.read_text())
        data = load_coco_instances(ann, tiny_synth / "images" / split, COCO17)
        assert len(data.instances) >= len(doc["images"])  # one or more people per image
        sizes = {im["id"]: (im["width"], im["height"]) for im in doc["images"]}
        for a in doc["annotations"]:
            kp = np.asarray(a["keypoints"]).reshape(17, 3)
            w, h = sizes[a["image_id"]]
            assert (kp[kp[:, 2] == 0, :2] == 0).all()  # unlabelled: x = y = 0
            lab = kp[kp[:, 2] > 0]
            assert ((lab[:, 0] >= 0) & (lab[:, 0] < w) & (lab[:, 1] >= 0) & (lab[:, 1] < h)).all()
            assert a["num_keypoints"] == len(lab)
            x, y, bw, bh = a["bbox"]
            assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h and a["area"] <= bw * bh


def test_visibility_comes_from_the_rendering():
    """Occluded (v=1) and out-of-image (v=0) joints both occur, and visible joints dominate."""
    counts = np.zeros(3)
    for i in range(40):
        _, people = render_scene(np.random.default_rng([0, 0, i]))
        for p in people:
            counts += np.bincount(p["keypoints"][:, 2].astype(int), minlength=3)
    frac = counts / counts.sum()
    assert 0.01 < frac[0] < 0.2 and 0.1 < frac[1] < 0.4 and frac[2] > 0.5


def test_ignoring_the_pixels_scores_badly(tmp_path):
    """The mean training pose placed in each box (a model that never looks at the image) scores
    low: the dataset is a real learning task."""
    root = tmp_path / "s"
    generate(root, num_train=150, num_val=40, seed=5, progress=False)
    train = load_coco_instances(root / "annotations/person_keypoints_train.json", root / "images/train", COCO17)
    val_ann = root / "annotations/person_keypoints_val.json"
    val = load_coco_instances(val_ann, root / "images/val", COCO17)
    coords, scores = mean_pose_baseline(train, val)
    results = to_coco_results(val.instances, coords, scores, COCO17, (128, 96), nms="none")
    metrics = score(val, COCO17, results, coords)
    assert metrics["AP"] < 0.05 and metrics["PCK@0.2"] < 0.3  # measured on the demo set: 0.0 AP, 14.4 PCK

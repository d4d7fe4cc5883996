import json

import cv2
import numpy as np
import pytest
from conftest import shared

from poserenet.annotations import load_coco_instances
from poserenet.codec import HeatmapCodec
from poserenet.datasets import TopDownDataset, read_image
from poserenet.errors import PoseDataError
from poserenet.meta import COCO17, LSP14, load_meta


def test_reads_real_coco_and_skips_crowds_and_empty_people():
    root = shared("coco_mini")
    ann = root / "annotations" / "person_keypoints_train2017.json"
    data = load_coco_instances(ann, root / "train2017", COCO17)
    raw = json.loads(ann.read_text())["annotations"]
    crowd = sum(a["iscrowd"] for a in raw)
    no_kp = sum(1 for a in raw if not a["iscrowd"] and a["num_keypoints"] == 0)
    assert data.skipped["crowd region"] == crowd == 5
    assert data.skipped["no labelled keypoints"] == no_kp
    assert len(data.instances) == len(raw) - crowd - no_kp == 86
    inst = data.instances[0]
    assert inst.keypoints.shape == (17, 3) and inst.bbox.shape == (4,)
    assert data.num_images == 80 and data.category_id == 1


def test_reads_lspet_with_its_own_keypoint_set():
    root = shared("lspet")
    data = load_coco_instances(root / "lspet_val.json", root / "images", LSP14)
    assert len(data.instances) == 1000
    ds = TopDownDataset(data.instances[:2], LSP14, (128, 96), HeatmapCodec((128, 96), (32, 24), 1.0, True))
    assert ds[1]["target"].shape == (14, 32, 24)
    with pytest.raises(PoseDataError, match="14 keypoints.*coco17.*has 17"):
        load_coco_instances(root / "lspet_val.json", root / "images", COCO17)


def write_coco(tmp_path, anns, images=None, k=17):
    img_dir = tmp_path / "images"
    img_dir.mkdir(exist_ok=True)
    cv2.imwrite(str(img_dir / "a.jpg"), np.zeros((50, 40, 3), np.uint8))
    doc = {
        "images": images if images is not None else [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 50}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "keypoints": [f"k{i}" for i in range(k)]}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(doc))
    return path, img_dir


def person(**kw):
    ann = {"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [5, 5, 20, 30], "area": 600,
           "keypoints": [10, 10, 2] * 17, "num_keypoints": 17}
    ann.update(kw)
    return ann


@pytest.mark.parametrize(
    "ann, message",
    [
        (person(keypoints=[10, 10, 2] * 16), r"annotation id=7.*'keypoints' has 48 values, expected 51"),
        (person(bbox=[5, 5, -3, 30]), r"annotation id=7.*negative box size"),
        (person(keypoints=[float("nan"), 10, 2] + [10, 10, 2] * 16), r"annotation id=7.*NaN"),
        (person(bbox=[5, 5, float("nan"), 30]), r"annotation id=7.*'bbox' contains NaN"),
        (person(image_id=99), r"annotation id=7.*image_id 99 is not in 'images'"),
        (person(keypoints=[10, 10, 5] * 17), r"annotation id=7.*visibility flags"),
        (person(bbox=[1, 2, 3]), r"annotation id=7.*'bbox' has 3 values"),
    ],
)
def test_bad_annotations_name_the_file_and_the_record(tmp_path, ann, message):
    path, img_dir = write_coco(tmp_path, [ann])
    with pytest.raises(PoseDataError, match=message) as e:
        load_coco_instances(path, img_dir, COCO17)
    assert str(path) in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(PoseDataError, match="annotation file not found"):
        load_coco_instances(tmp_path / "nope.json", tmp_path, COCO17)
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(PoseDataError, match=r"bad.json: annotation file is not valid JSON"):
        load_coco_instances(bad, tmp_path, COCO17)
    bad.write_text('{"images": []}')
    with pytest.raises(PoseDataError, match="'images' and 'annotations'"):
        load_coco_instances(bad, tmp_path, COCO17)


def test_missing_and_unreadable_images(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "gone.jpg"}]
    path, img_dir = write_coco(tmp_path, [person(), person(id=8, image_id=2)], images=images)
    with pytest.raises(PoseDataError, match=r"1 image file\(s\) not found: .*gone.jpg \(image id 2\)"):
        load_coco_instances(path, img_dir, COCO17)
    (img_dir / "gone.jpg").write_bytes(b"not a jpeg")
    data = load_coco_instances(path, img_dir, COCO17)
    with pytest.raises(PoseDataError, match=r"gone.jpg \(image id 2\): cannot be decoded"):
        read_image(data.instances[1].image_path, 2)


def test_skips_are_counted(tmp_path, caplog):
    anns = [person(), person(id=8, iscrowd=1), person(id=9, keypoints=[0, 0, 0] * 17, num_keypoints=0), person(id=10, bbox=[5, 5, 0, 0])]
    path, img_dir = write_coco(tmp_path, anns)
    data = load_coco_instances(path, img_dir, COCO17)
    assert len(data.instances) == 1
    assert data.skipped == {"crowd region": 1, "no labelled keypoints": 1, "empty box": 1}
    assert "skipped 1 people with an empty box" in caplog.text


def test_custom_keypoint_set_from_a_small_file(tmp_path):
    f = tmp_path / "hand.yaml"
    f.write_text("keypoints: [wrist, left_tip, right_tip, middle]\nskeleton: [[wrist, middle], [middle, left_tip]]\n")
    meta = load_meta(str(f))
    assert meta.name == "hand" and meta.num_keypoints == 4
    assert meta.flip_pairs == ((1, 2),)  # inferred from the names
    assert meta.skeleton == ((0, 3), (3, 1))
    assert meta.sigmas == (0.079,) * 4 and meta.joint_weights == (1.0,) * 4
    f.write_text("keypoints: [a, b]\nflip_pairs: [[a, c]]\n")
    with pytest.raises(PoseDataError, match="hand.yaml.*'c' is not one of the keypoints"):
        load_meta(str(f))
    f.write_text("keypoints: [a, b]\nsigma: [0.1, 0.1]\n")
    with pytest.raises(PoseDataError, match="unknown keys \\['sigma'\\]"):
        load_meta(str(f))
    with pytest.raises(PoseDataError, match="neither a built-in"):
        load_meta("coco18")

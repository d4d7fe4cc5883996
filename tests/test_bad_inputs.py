"""Issue 13's findings, one test each: every bad input is a one-line error naming the file
and the problem (or is skipped and counted), nothing is computed and then lost, nothing is
half-written."""

import copy
import errno
import json

import cv2
import numpy as np
import pytest
import torch

from poserenet.annotations import load_coco_instances, read_coco_file
from poserenet.checkpoint import read_checkpoint_file, save_atomic
from poserenet.cli import main
from poserenet.codec import HeatmapCodec
from poserenet.datasets import read_image
from poserenet.errors import PoseDataError, WriteError
from poserenet.files import write_text_atomic
from poserenet.meta import COCO17

KP = [v for i in range(17) for v in (10.0 + 3 * i, 10.0 + 5 * i, 2)]


def gt_doc(n_people=2):
    """Two people in two 100x200 images, keypoint category 1."""
    return {
        "images": [{"id": i + 1, "file_name": f"{i + 1}.jpg", "width": 100, "height": 200} for i in range(n_people)],
        "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 90, 190],
                         "area": 90 * 190, "keypoints": list(KP), "num_keypoints": 17} for i in range(n_people)],
        "categories": [{"id": 1, "name": "person", "keypoints": list(COCO17.keypoints)}],
    }  # fmt: skip


def write(tmp_path, name, obj):
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def results_equal_to(doc):
    return [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0} for a in doc["annotations"]]


def edit(doc, path, value):
    """A copy of `doc` with doc[path[0]][path[1]]... set to `value`."""
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


BAD_GT = [
    (("annotations", 0, "keypoints", 0), float("nan"), "'keypoints' contains NaN"),
    (("annotations", 0, "area"), float("inf"), "'area' must be a number >= 0"),
    (("annotations", 0, "bbox", 2), -5, "negative box size"),
    (("annotations", 0, "keypoints", 2), 3, "visibility flags must be 0, 1 or 2"),
    (("annotations", 0, "image_id"), 99, "image_id 99 is not in 'images'"),
    (("annotations", 0, "keypoints"), [], "'keypoints' has 0 values, expected 51"),
    (("annotations", 1, "id"), 1, "annotation id 1 appears twice"),
    (("images", 1, "id"), 1, "image id 1 appears twice"),
    (("annotations", 0, "keypoints"), [[10, 10, 2]] * 17, "must be a flat list of numbers"),
    (("annotations", 0, "iscrowd"), [0], "'iscrowd' must be 0 or 1"),
    (("annotations", 0, "num_keypoints"), 5, "'num_keypoints' is 5, but 17 keypoints are labelled"),
    (("annotations", 0, "keypoints", 0), "10", "something that is not a number"),
    (("images", 0, "width"), 0, "'width' must be a positive number"),
    (("annotations", 0, "category_id"), True, "'category_id' must be a 64-bit integer or a string, got True"),
]


@pytest.mark.parametrize("where, value, message", BAD_GT)
def test_metrics_checks_the_ground_truth_as_train_and_eval_do(tmp_path, capsys, where, value, message):
    doc = gt_doc()
    res = write(tmp_path, "res.json", results_equal_to(doc))
    gt = write(tmp_path, "gt.json", edit(doc, where, value))
    assert main(["metrics", str(gt), str(res)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gt.json" in err and message in err, err
    with pytest.raises(PoseDataError, match=message):  # the reader of train and eval says the same
        read_coco_file(gt, COCO17)


def test_missing_annotation_id_and_no_people(tmp_path, capsys):
    doc = gt_doc()
    del doc["annotations"][0]["id"]
    res = write(tmp_path, "res.json", results_equal_to(gt_doc()))
    assert main(["metrics", str(write(tmp_path, "gt.json", doc)), str(res)]) == 2
    assert "needs an 'id'" in capsys.readouterr().err
    empty = dict(gt_doc(), annotations=[])
    assert main(["metrics", str(write(tmp_path, "gt.json", empty)), str(res)]) == 2
    assert "no annotated people to evaluate against" in capsys.readouterr().err  # not AP -100


def test_duplicate_free_ground_truth_scores_exactly(tmp_path, capsys):
    doc = gt_doc()
    gt, res = write(tmp_path, "gt.json", doc), write(tmp_path, "res.json", results_equal_to(doc))
    assert main(["metrics", str(gt), str(res), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["AP"] == pytest.approx(1.0)


def test_a_file_without_num_keypoints_iscrowd_area_or_categories_scores_like_a_full_one(tmp_path, capsys):
    """pycocotools needs these keys; the reader fills them in, so what it accepts is scored."""
    doc = gt_doc()
    for a in doc["annotations"]:
        for key in ("num_keypoints", "iscrowd", "area"):
            del a[key]
    del doc["categories"]
    res = write(tmp_path, "res.json", results_equal_to(gt_doc()))
    assert main(["metrics", str(write(tmp_path, "gt.json", doc)), str(res), "--keypoints", "coco17", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["AP"] == pytest.approx(1.0)


def test_results_of_other_categories_are_left_out_with_a_note(tmp_path, capsys):
    doc = gt_doc()
    res = results_equal_to(doc) + [{"image_id": 1, "category_id": 2, "keypoints": [0.0] * 51, "score": 1.0}]
    gt, res = write(tmp_path, "gt.json", doc), write(tmp_path, "res.json", res)
    for metric in ("coco", "pck"):
        assert main(["metrics", str(gt), str(res), "--metric", metric, "--json"]) == 0
        out, err = capsys.readouterr()
        assert list(json.loads(out).values())[0] == pytest.approx(1.0)
        assert "1 result(s) of another category than the ground truth's keypoint category 1, left out" in err


@pytest.mark.parametrize("field, value", [("score", "high"), ("score", 10**400), ("keypoints", [10**400] + [1.0] * 50)])
def test_results_with_text_or_overflowing_numbers(tmp_path, capsys, field, value):
    doc = gt_doc()
    res = results_equal_to(doc)
    res[0][field] = value
    gt = write(tmp_path, "gt.json", doc)
    path = tmp_path / "res.json"
    path.write_text(json.dumps(res))  # 10**400 is a valid JSON number that no float holds
    for metric in ("coco", "pck"):
        assert main(["metrics", str(gt), str(path), "--metric", metric]) == 2
        err = capsys.readouterr().err
        assert "res.json: result 0 (image 1): keypoints and score must be finite numbers" in err and err.count("\n") == 1


@pytest.mark.parametrize("category", [True, None, 1.0])
def test_results_whose_category_is_no_id(tmp_path, capsys, category):
    """`true == 1` in Python: pycocotools would score it as category 1, hotcoco refuses it."""
    doc = gt_doc()
    res = results_equal_to(doc)
    res[0]["category_id"] = category
    gt, res = write(tmp_path, "gt.json", doc), write(tmp_path, "res.json", res)
    for metric in ("coco", "pck"):
        assert main(["metrics", str(gt), str(res), "--metric", metric]) == 2
        err = capsys.readouterr().err
        assert "res.json: result 0 (image 1): 'category_id' must be an integer or a string" in err and err.count("\n") == 1


def test_image_files_are_checked_at_the_door(tmp_path):
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    for i in (1, 2):
        cv2.imwrite(str(img_dir / f"{i}.jpg"), np.full((200, 100, 3), 128, np.uint8))
    doc = gt_doc()
    gt = write(tmp_path, "gt.json", doc)
    assert len(load_coco_instances(gt, img_dir, COCO17).instances) == 2
    small = write(tmp_path, "gt.json", edit(doc, ("images", 1, "width"), 315))
    with pytest.raises(PoseDataError, match=r"2.jpg \(image id 2\) is 100x200, annotated as 315x200"):
        load_coco_instances(small, img_dir, COCO17)
    data = (img_dir / "2.jpg").read_bytes()
    (img_dir / "2.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(PoseDataError, match=r"gt.json: 1 bad image file\(s\): .*2.jpg \(image id 2\) is truncated"):
        load_coco_instances(gt, img_dir, COCO17)
    with pytest.raises(PoseDataError, match=r"2.jpg \(image id 2\): the file is truncated"):
        read_image(str(img_dir / "2.jpg"), 2)  # what predict and the data loader see


def test_checkpoint_files(tmp_path, capsys):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(PoseDataError, match="empty.pth: the checkpoint file is empty"):
        read_checkpoint_file(empty)

    class Evil:
        def __reduce__(self):
            return (eval, ("1 + 1",))

    torch.save({"model": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(PoseDataError, match="asks for the Python object eval, which a weights-only load refuses"):
        read_checkpoint_file(tmp_path / "evil.pth")
    for args in (["eval", "synth_r18slim_128x96_dark", str(empty)], ["export", str(empty), "--onnx", str(tmp_path / "m.onnx")],
                 ["boost", str(empty)], ["predict", str(empty), str(tmp_path)]):  # fmt: skip
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "empty.pth: the checkpoint file is empty" in err and err.count("\n") == 1, args


@pytest.mark.parametrize("override, message", [
    ("train.batch_size=0", "train.batch_size must be at least 1, got 0"),
    ("train.batch_size=-4", "train.batch_size must be at least 1"),
    ("train.lr=-1", "train.lr must be a finite number > 0"),
    ("train.lr=1e12", "train.lr must be a finite number > 0 and <= 1"),
    ("data.num_workers=-1", "data.num_workers must be 0 or more"),
    ("codec.stride=0", "codec.stride must be a positive integer"),
    ("codec.sigma=0", "codec.sigma must be a finite number > 0"),
    ("data.bbox_padding=0", "data.bbox_padding must be a finite number > 0"),
    ("train.epochs=0", "train.epochs must be at least 1"),
    ("train.epochs=-1", "train.epochs must be at least 1"),
    ("eval.nms=okss", "eval.nms must be one of oks, soft, none, got 'okss'"),
    ("eval.batch_size=0", "eval.batch_size must be at least 1"),
    ("train.val_every=0", "train.val_every must be at least 1"),
    ("train.best_metric=APx", "train.best_metric must be a validation metric"),
    ("eval.backend=fast", "eval.backend must be one of auto, pycocotools, faster-coco-eval, hotcoco, got 'fast'"),
    ("eval.output=backbone", "eval.output=backbone scores a PoseReNet model's own backbone"),
])  # fmt: skip
def test_config_values_are_checked_before_anything_runs(tmp_path, capsys, override, message):
    out = tmp_path / "run"
    assert main(["train", "synth_r18slim_128x96_dark", "--set", override, "--set", f"train.out_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "synth_r18slim_128x96_dark.yaml" in err
    assert not out.exists()


def test_cuda_without_a_gpu(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["train", "synth_r18slim_128x96_dark", "--set", "train.device=cuda", "--set", f"train.out_dir={tmp_path}"]) == 2
    assert "PyTorch sees no CUDA GPU here" in capsys.readouterr().err


def test_boost_with_no_epochs(tiny_checkpoint, tmp_path, capsys):
    assert main(["boost", str(tiny_checkpoint), "--epochs", "-1", "--out", str(tmp_path / "b")]) == 2
    assert "train.epochs must be at least 1" in capsys.readouterr().err


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_leaves_nothing_half_written(tmp_path, monkeypatch):
    target = tmp_path / "last.pth"
    save_atomic({"a": torch.zeros(3)}, target)
    before = target.read_bytes()
    monkeypatch.setattr(torch, "save", lambda obj, f: (open(f, "wb").write(b"partial"), disk_full()))
    with pytest.raises(WriteError, match=r"last.pth: cannot write \(No space left on device\)"):
        save_atomic({"a": torch.ones(3)}, target)
    assert target.read_bytes() == before and not list(tmp_path.glob("*.tmp"))
    monkeypatch.setattr("pathlib.Path.write_text", read_only)
    with pytest.raises(WriteError, match=r"x.json: cannot write \(Permission denied\)"):
        write_text_atomic(tmp_path / "x.json", "{}")
    assert not list(tmp_path.glob("*.tmp"))


def read_only(*args, **kwargs):
    raise PermissionError(errno.EACCES, "Permission denied")


def test_eval_prints_its_numbers_before_a_write_fails(tiny_synth, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("pathlib.Path.write_text", read_only)  # a read-only --out folder
    args = ["eval", "synth_r18slim_128x96_dark", str(tiny_checkpoint), "--gt-boxes", "--out", str(tmp_path / "ro"), "--quiet",
            "--set", f"data.root={tiny_synth}", "--set", "data.num_workers=0",
            "--set", "model.kwargs={base_width: 16, deconv_channels: 32}"]  # fmt: skip
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert "| AP" in out and "PCK@0.2" in out  # computed and shown
    assert "results_val.json: cannot write (Permission denied)" in err and err.count("\n") == 1


def test_training_on_a_full_disk_is_one_clean_line(tiny_synth, tmp_path, monkeypatch, capsys):
    import poserenet.checkpoint as ck

    real = ck.torch.save
    calls = []

    def save(obj, f):
        calls.append(f)
        if len(calls) > 1:  # the first epoch's checkpoint fits, the second does not
            open(f, "wb").write(b"partial")
            disk_full()
        real(obj, f)

    monkeypatch.setattr(ck.torch, "save", save)
    out = tmp_path / "run"
    sets = [f"data.root={tiny_synth}", f"train.out_dir={out}", "train.epochs=2", "train.batch_size=8", "data.num_workers=0",
            "model.kwargs={base_width: 8, deconv_channels: 16}", "train.keep_last=0"]  # fmt: skip
    assert main(["train", "synth_r18slim_128x96_dark", "--quiet", *[a for s in sets for a in ("--set", s)]]) == 2
    err = capsys.readouterr().err
    assert "last.pth: cannot write (No space left on device)" in err and err.count("\n") == 1
    assert not list(out.glob("*.tmp"))
    assert torch.load(out / "last.pth", weights_only=True)["epoch"] == 1  # the epoch that fitted is intact


def test_a_failing_evaluation_keeps_the_epochs_checkpoint(tiny_synth, tmp_path, monkeypatch, capsys):
    import poserenet.train as tr

    def broken(*args, **kwargs):
        raise PoseDataError("validation broke")

    monkeypatch.setattr(tr, "evaluate_model", broken)
    out = tmp_path / "run"
    sets = [f"data.root={tiny_synth}", f"train.out_dir={out}", "train.epochs=1", "train.batch_size=8", "data.num_workers=0",
            "model.kwargs={base_width: 8, deconv_channels: 16}"]  # fmt: skip
    assert main(["train", "synth_r18slim_128x96_dark", "--quiet", *[a for s in sets for a in ("--set", s)]]) == 2
    assert "validation broke" in capsys.readouterr().err
    assert torch.load(out / "last.pth", weights_only=True)["epoch"] == 1


def test_resume_with_another_architecture(tiny_checkpoint, tiny_synth, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pth").write_bytes(tiny_checkpoint.read_bytes())
    sets = [
        f"data.root={tiny_synth}",
        f"train.out_dir={out}",
        "train.epochs=3",
        "data.num_workers=0",
        "model.name=hrnet_w32",
        "model.kwargs={modules_per_stage: [1, 1, 1], num_blocks: 1}",
    ]
    assert main(["train", "synth_r18slim_128x96_dark", "--resume", "--quiet", *[a for s in sets for a in ("--set", s)]]) == 2
    err = capsys.readouterr().err
    assert "last.pth (resuming hrnet_w32): does not fit HRNet" in err and err.count("\n") == 1


@pytest.mark.parametrize("maps", ["flat", "noisy", "saturated", "tiny"])
def test_dark_never_throws_a_keypoint_away(maps):
    """On flat, noisy and saturated heatmaps DARK's Taylor step stays within one heatmap pixel of
    the argmax (issue 13: the unbounded step moved keypoints 25,918 px)."""
    rng = np.random.default_rng(0)
    shape = (8, 17, 64, 48)
    hm = {"flat": np.full(shape, 3e-4), "noisy": 3e-4 + 1e-6 * rng.standard_normal(shape),
          "saturated": np.clip(rng.uniform(0, 2, shape), 0, 1), "tiny": 1e-12 * rng.uniform(size=shape)}[maps]  # fmt: skip
    codec = HeatmapCodec((256, 192), (64, 48), sigma=2.0, dark=True)
    hm = torch.tensor(hm, dtype=torch.float32)
    argmax, _ = codec.decode(hm, refine=False)
    xy, _ = codec.decode(hm)
    assert torch.isfinite(xy).all() and (xy - argmax).abs().max() <= 1.0


@pytest.mark.parametrize("text", ['{"a": [1, 2.5, -0.0, 1e-320]}', '{"a": 1, "a": 2}', "[NaN, Infinity]", "[1e400]",
                                  "[" + "1" * 400 + "]", '["\\ud800"]', "[18446744073709551617]", "[-9223372036854775809]",
                                  '{"images": [',
                                  "[0.00012345678901234567, 12345678901234567890.5]"])  # fmt: skip
def test_json_is_read_alike_with_and_without_orjson(tmp_path, monkeypatch, text):
    """orjson (optional, faster) must give what the standard parser gives, or leave it to it."""
    import poserenet.files as files

    path = tmp_path / "doc.json"
    path.write_text(text)

    def read():
        try:
            return ("ok", repr(files.read_json(path)))
        except PoseDataError as e:
            return ("error", str(e))

    fast = read()
    monkeypatch.setattr(files, "_orjson", None)
    assert fast == read()

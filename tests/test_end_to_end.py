"""End-to-end runs of the command line on tiny data (a few seconds each)."""

import json

import pytest
import torch
from conftest import shared

from poserenet.cli import main

TINY_MODEL = ["model.name=simplebaseline_r18", "model.kwargs={base_width: 8, deconv_channels: 16}"]


def synth_overrides(root, out, epochs=2):
    return [
        f"data.root={root}", f"train.out_dir={out}", f"train.epochs={epochs}", "train.batch_size=8",
        "data.num_workers=0", "eval.batch_size=16", "train.lr_steps=[100]", *TINY_MODEL,
    ]  # fmt: skip


def sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def read_log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_train_resume_and_eval(tiny_synth, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "synth_r18slim_128x96_dark", "--quiet", *sets(synth_overrides(tiny_synth, out))]) == 0
    for name in ("config.yaml", "last.pth", "best.pth", "log.jsonl", "results_val.json", "metrics.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.tmp"))
    log = read_log(out)
    assert [r["epoch"] for r in log] == [1, 2] and "val_AP" in log[-1]
    results = json.loads((out / "results_val.json").read_text())
    assert set(results[0]) == {"image_id", "category_id", "keypoints", "score"} and len(results[0]["keypoints"]) == 51

    # Resume: one more epoch on top of the two.
    assert main(["train", "synth_r18slim_128x96_dark", "--quiet", "--resume", *sets(synth_overrides(tiny_synth, out, 3))]) == 0
    assert [r["epoch"] for r in read_log(out)] == [1, 2, 3]
    assert "resumed from" in capsys.readouterr().out

    # Evaluating the checkpoint gives the numbers the training run wrote.
    metrics = json.loads((out / "metrics.json").read_text())
    ev = tmp_path / "eval"
    assert main(["eval", "synth_r18slim_128x96_dark", str(out / "last.pth"), "--out", str(ev), "--quiet",
                 *sets(synth_overrides(tiny_synth, out))]) == 0
    again = json.loads((ev / "metrics.json").read_text())
    assert again["AP"] == pytest.approx(metrics["AP"]) and again["boxes"] == "ground truth"
    printed = capsys.readouterr().out
    assert "| AP " in printed and "boxes: ground truth" in printed


def test_eval_refuses_a_checkpoint_for_another_keypoint_set(tiny_synth, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "synth_r18slim_128x96_dark", "--quiet", *sets(synth_overrides(tiny_synth, out, 1))]) == 0
    bad = synth_overrides(tiny_synth, out) + ["data.keypoints=lsp14"]
    assert main(["eval", "synth_r18slim_128x96_dark", str(out / "last.pth"), *sets(bad)]) == 2
    err = capsys.readouterr().err
    assert "last.pth (simplebaseline_r18, lsp14): does not fit SimpleBaseline" in err
    assert "the checkpoint predicts 17 keypoints, the model 14" in err
    assert "final_layer.weight: checkpoint (17, 16, 1, 1) vs model (14, 16, 1, 1)" in err


@pytest.mark.parametrize("aggregation", ["average", "gate", "lifted", "fusion"])
def test_poserenet_trains_and_evaluates(tiny_synth, tmp_path, aggregation):
    out = tmp_path / "run"
    args = synth_overrides(tiny_synth, out, 1) + ["model.poserenet.enabled=true", f"model.poserenet.aggregation={aggregation}"]
    assert main(["train", "synth_r18slim_128x96_dark", "--quiet", *sets(args)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["AP"] <= 1 and metrics["output"] == "final"
    # The backbone's own heatmaps are scored beside, in metrics.json and in the log.
    assert 0 <= metrics["backbone"]["AP"] <= 1 and "PCK@0.2" in metrics["backbone"]
    assert set(metrics["PCK@0.2 per joint"]) >= {"nose", "left_wrist"}
    assert "val_backbone_AP" in read_log(out)[-1]
    assert any(k.startswith("refine.") for k in torch.load(out / "last.pth", weights_only=True)["model"])
    if aggregation == "lifted":  # eval.output=backbone: the main numbers are the backbone's
        assert main(["eval", "synth_r18slim_128x96_dark", str(out / "last.pth"), "--gt-boxes", "--json", str(tmp_path / "b.json"),
                     "--quiet", *sets(args + ["eval.output=backbone"])]) == 0  # fmt: skip
        again = json.loads((tmp_path / "b.json").read_text())
        assert again["output"] == "backbone" and again["AP"] == pytest.approx(metrics["backbone"]["AP"])
        assert again["final"]["AP"] == pytest.approx(metrics["AP"])


def test_training_learns(tiny_synth, tmp_path):
    """Without augmentation a small model fits its training people within seconds: the whole
    path (crop, targets, loss, optimiser, decoding, image coordinates) has to be right."""
    out = tmp_path / "run"
    no_aug = ["augment.flip_prob=0", "augment.rotation_prob=0", "augment.scale_range=0", "augment.half_body_prob=0",
              "augment.shift=0"]
    train_as_val = ["data.val_ann=annotations/person_keypoints_train.json", "data.val_images=images/train"]
    args = synth_overrides(tiny_synth, out, epochs=15) + no_aug + train_as_val + [
        "train.lr=3e-3", "train.val_every=5", "codec.sigma=2.0", "model.kwargs={base_width: 16, deconv_channels: 32}"]
    assert main(["train", "synth_r18slim_128x96_dark", "--quiet", *sets(args)]) == 0
    log = read_log(out)
    pck = [r["val_PCK@0.2"] for r in log if "val_PCK@0.2" in r]
    assert log[-1]["train_loss"] < 0.65 * log[0]["train_loss"]
    assert pck[0] < pck[1] < pck[2] and pck[2] > 0.3  # measured: 0.09, 0.21, 0.42


def test_demo_end_to_end(tmp_path, capsys):
    run = tmp_path / "demo"
    args = ["demo", "--data", str(tmp_path / "synth"), "--out", str(run), "--num-train", "12", "--num-val", "4",
            "--epochs", "1", "--images", "4", "--quiet", *sets(TINY_MODEL + ["data.num_workers=0", "train.batch_size=8"])]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "generating synthetic data" in printed and "| untrained" in printed and "| trained 1 epochs" in printed
    assert "| mean pose in each box" in printed
    png = run / "predictions.png"
    assert png.is_file() and png.stat().st_size > 10_000
    assert main(args) == 0  # the second time the data is cached
    assert "using cached synthetic data" in capsys.readouterr().out


def test_lspet_trains_with_only_its_config(tmp_path):
    """Real data, same code: only the config file (and a smaller subset for speed) differs."""
    root = shared("lspet")
    doc = json.loads((root / "lspet_train.json").read_text())
    keep = {im["id"] for im in doc["images"][:16]}
    doc["images"] = [im for im in doc["images"] if im["id"] in keep]
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in keep]
    sub = tmp_path / "lspet_sub.json"
    sub.write_text(json.dumps(doc))
    out = tmp_path / "run"
    args = [f"data.root={root}", f"data.train_ann={sub}", f"data.val_ann={sub}", f"train.out_dir={out}",
            "train.epochs=1", "train.batch_size=8", "data.num_workers=0", *TINY_MODEL]
    assert main(["train", "lspet_simplebaseline_r18_128x96", "--quiet", *sets(args)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "AP" in metrics and "PCK@0.2" in metrics
    assert len(json.loads((out / "results_val.json").read_text())[0]["keypoints"]) == 14 * 3


def test_unreadable_image_stops_training_with_its_name(tiny_synth, tmp_path, capsys):
    import shutil

    root = tmp_path / "synth"
    shutil.copytree(tiny_synth, root)
    (root / "images" / "train" / "000003.jpg").write_bytes(b"truncated")
    out = tmp_path / "run"
    args = synth_overrides(root, out, 1) + ["data.num_workers=1"]
    assert main(["train", "synth_r18slim_128x96_dark", "--quiet", *sets(args)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("000003.jpg (image id 4): cannot be decoded as an image") and "Traceback" not in err
    assert not (out / "last.pth").exists()


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: no such config file" in capsys.readouterr().err
    assert main(["train", "synth_r18slim_128x96_dark", "--set", f"data.root={tmp_path}"]) == 2
    assert "annotation file not found" in capsys.readouterr().err
    assert main(["train", "synth_r18slim_128x96_dark", "--set", "model.name=resnet9"]) == 2
    assert "model.name must be one of hourglass_2" in (err := capsys.readouterr().err) and "got 'resnet9'" in err
    assert main(["train", "synth_r18slim_128x96_dark", "--set", "data.input_hw=[120, 96]"]) == 2
    assert "into 32x24 heatmaps, but the codec expects 30x24; use an input size that is a multiple of 32" in capsys.readouterr().err


def test_eval_with_detector_boxes(tiny_synth, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "synth_r18slim_128x96_dark", "--quiet", *sets(synth_overrides(tiny_synth, out, 1))]) == 0
    gt = json.loads((tiny_synth / "annotations" / "person_keypoints_val.json").read_text())
    dets = []
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        dets.append({"image_id": a["image_id"], "category_id": 1, "score": 0.95, "bbox": [x + 2, y - 1, w * 1.05, h]})
        # A duplicate: the same box found twice (a one-epoch model's flat heatmaps would give two
        # shifted boxes of one person different keypoints, which OKS-NMS rightly keeps apart).
        dets.append({"image_id": a["image_id"], "category_id": 1, "score": 0.9, "bbox": [x + 2, y - 1, w * 1.05, h]})
    dets.append({"image_id": 1, "category_id": 1, "score": 0.05, "bbox": [0, 0, 30, 30]})  # below threshold
    dets.append({"image_id": 1, "category_id": 2, "score": 0.99, "bbox": [0, 0, 30, 30]})  # not a person
    det_file = tmp_path / "dets.json"
    det_file.write_text(json.dumps(dets))
    ev = tmp_path / "ev"
    args = ["eval", "synth_r18slim_128x96_dark", str(out / "last.pth"), "--det-boxes", str(det_file), "--out", str(ev),
            "--json", str(tmp_path / "m.json"), "--quiet", "--no-flip", *sets(synth_overrides(tiny_synth, out) + ["eval.det_score_threshold=0.1"])]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    n_people = len(gt["annotations"])
    assert metrics["boxes"].startswith("detections (") and f"{2 * n_people} boxes" in metrics["boxes"]
    assert metrics["flip_test"] is False and "PCK@0.2" in metrics
    results = json.loads((ev / "results_val.json").read_text())
    assert n_people <= len(results) < 2 * n_people  # OKS-NMS removed most duplicates
    printed = capsys.readouterr().out
    assert "boxes: detections (" in printed and "flip test off" in printed
    dets.append({"image_id": 999, "category_id": 1, "score": 0.9, "bbox": [0, 0, 10, 10]})
    det_file.write_text(json.dumps(dets))
    assert main(args) == 2
    assert "dets.json: detections for 1 image id(s) not in" in capsys.readouterr().err
    no_dets = ["eval", "synth_r18slim_128x96_dark", str(out / "last.pth"), *sets(synth_overrides(tiny_synth, out) + ["eval.boxes=detections"])]
    assert main(no_dets) == 2
    assert "no eval.det_file is set" in capsys.readouterr().err


def test_table_from_runs(tiny_synth, tmp_path, capsys):
    runs = []
    for plug in ("false", "true"):
        out = tmp_path / f"run_{plug}"
        assert main(["train", "synth_r18slim_128x96_dark", "--quiet",
                     *sets(synth_overrides(tiny_synth, out, 1) + [f"model.poserenet.enabled={plug}"])]) == 0
        runs.append(str(out))
    capsys.readouterr()
    assert main(["table", *runs]) == 0
    table = capsys.readouterr().out
    assert "| PoseReNet | Backbone" in table and "SimpleBaseline-R18+Dark" in table and "| 128x96" in table
    assert table.count("| + ") == 1 and table.count("| - ") == 1
    assert "Person boxes: ground truth." in table
    assert main(["table", str(tmp_path)]) == 2
    assert "no metrics.json" in capsys.readouterr().err

"""Boosting a trained model with PoseReNet."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from poserenet import create_model
from poserenet.cli import main
from poserenet.models.plugin import AGGREGATIONS, PoseReNetConfig, up2

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("name, kwargs, hw", [
    ("simplebaseline_r18", {"base_width": 16, "deconv_channels": 32}, (128, 96)),
    ("hrnet_w32", {"modules_per_stage": (1, 1, 1), "num_blocks": 1}, (128, 96)),
    ("hourglass_2", {"num_feats": 32}, (128, 128)),
])  # fmt: skip
def test_boosted_model_starts_exactly_at_the_base(name, kwargs, hw, aggregation):
    torch.manual_seed(0)
    base = create_model(name, 17, **kwargs)
    with torch.no_grad():  # a "trained" base: non-trivial heatmaps
        for p in base.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    boosted = create_model(name, 17, poserenet={"aggregation": aggregation, "zero_init": True}, **kwargs)
    boosted.backbone.load_state_dict(base.state_dict())
    base.eval(), boosted.eval()
    x = torch.randn(3, 3, *hw)
    # "lifted" starts as the base's heatmaps lifted to 2x, on the codec's pixel grid.
    same = up2 if aggregation == "lifted" else (lambda h: h)
    with torch.no_grad():
        assert torch.equal(boosted(x), same(base(x)))
        assert torch.equal(boosted(x.flip(-1)), same(base(x.flip(-1))))


def test_boost_command(tiny_synth, tiny_checkpoint, tmp_path, capsys):
    before_mtime = tiny_checkpoint.stat().st_mtime
    out = tmp_path / "boosted"
    args = ["boost", str(tiny_checkpoint), "--epochs", "2", "--out", str(out), "--quiet",
            "--set", f"data.root={tiny_synth}", "--set", "data.num_workers=0"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    agg = PoseReNetConfig.aggregation
    assert "| base (last.pth)" in printed and f"| + PoseReNet ({agg}, freeze backbone, 2 epochs)" in printed and "| change" in printed
    report = json.loads((out / "boost.json").read_text())
    assert set(report) == {"base", "boosted", "base_checkpoint"} and "AP" in report["base"]
    assert tiny_checkpoint.stat().st_mtime == before_mtime  # the base run is untouched
    base = torch.load(tiny_checkpoint, weights_only=True)["model"]
    boosted = torch.load(out / "last.pth", weights_only=True)["model"]
    for k, v in base.items():  # frozen backbone, BatchNorm statistics included
        assert torch.equal(boosted["backbone." + k], v), k
    assert boosted["refine.gate.weight"].abs().max() > 0  # the plug-in learned

    head = tmp_path / "head"
    assert main(["boost", str(tiny_checkpoint), "--epochs", "2", "--out", str(head), "--quiet", "--freeze", "head",
                 "--set", f"data.root={tiny_synth}", "--set", "data.num_workers=0"]) == 0
    boosted = torch.load(head / "last.pth", weights_only=True)["model"]
    assert not torch.equal(boosted["backbone.final_layer.weight"], base["final_layer.weight"])
    assert torch.equal(boosted["backbone.layer1.0.conv1.weight"], base["layer1.0.conv1.weight"])

    assert main(["boost", str(tiny_checkpoint), "--out", str(tiny_checkpoint.parent)]) == 2
    assert "is the base model's run directory" in capsys.readouterr().err


def test_example_wraps_a_model_defined_outside_the_package():
    r = subprocess.run([sys.executable, str(REPO / "examples" / "boost_custom_model.py"), "--images", "30", "--epochs", "1"],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "base" in r.stdout and "boosted" in r.stdout

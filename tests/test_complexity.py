"""The published sizes of the paper's backbones, counted as the official HRNet code counts them."""

import json

import pytest

from poserenet import create_model
from poserenet.cli import main
from poserenet.complexity import measure

PUBLISHED = [
    # model, input, params (M), GFLOPs as printed in the HRNet/SimpleBaseline/PoseReNet papers
    ("hrnet_w32", (256, 192), 28.5, 7.1),
    ("hrnet_w32", (128, 96), 28.5, 1.8),
    ("hrnet_w48", (256, 192), 63.6, 14.6),
    ("hrnet_w48", (128, 96), 63.6, 3.6),
    ("simplebaseline_r50", (256, 192), 34.0, 8.9),
    ("simplebaseline_r50", (128, 96), 34.0, 2.3),
    ("simplebaseline_r101", (128, 96), 53.0, 3.1),
    ("simplebaseline_r152", (256, 192), 68.6, 15.7),
]


@pytest.mark.parametrize("name, hw, params, gflops", PUBLISHED)
def test_published_params_and_gflops(name, hw, params, gflops):
    c = measure(create_model(name, num_keypoints=17), hw)
    assert round(c.params_m, 1) == params
    assert abs(c.gflops - gflops) < 0.1


def test_simplebaseline_counts_like_the_official_summary():
    """The HRNet code's summary gives 8.99 and 2.25 for SimpleBaseline-R50 (its deconvolutions
    counted at every output pixel); true multiply-adds are far fewer."""
    big = measure(create_model("simplebaseline_r50"), (256, 192))
    small = measure(create_model("simplebaseline_r50"), (128, 96))
    assert round(big.gflops, 2) == 8.99 and round(small.gflops, 2) == 2.25
    assert big.gmacs < 0.7 * big.gflops * 1.074  # 1024^3 vs 1e9


def test_poserenet_is_light_on_hrnet_w32():
    base = measure(create_model("hrnet_w32"), (256, 192))
    boosted = measure(create_model("hrnet_w32", poserenet=True), (256, 192))
    assert boosted.params / base.params - 1 < 0.01
    assert boosted.official_flops / base.official_flops - 1 < 0.03
    assert boosted.params > base.params and boosted.macs > base.macs


def test_complexity_command_json(capsys):
    assert main(["complexity", "hrnet_w32", "synth_r18slim_128x96_dark", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["model"], r["input"], r["poserenet"]) for r in rows] == [
        ("hrnet_w32", "256x192", False), ("hrnet_w32", "256x192", True),
        ("simplebaseline_r18", "128x96", False), ("simplebaseline_r18", "128x96", True),
    ]  # fmt: skip
    assert set(rows[0]) == {"model", "input", "poserenet", "params_m", "gflops", "gmacs"}
    assert rows[0]["params_m"] == pytest.approx(28.54, abs=0.01) and rows[0]["gflops"] == pytest.approx(7.12, abs=0.01)
    assert main(["complexity", "simplebaseline_r50", "--input", "128x96"]) == 0
    table = capsys.readouterr().out
    assert "| simplebaseline_r50 | 128x96 | -" in table and "2.25" in table

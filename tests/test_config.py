import pytest

from poserenet.config import config_dir, load_config
from poserenet.errors import ConfigError


def test_every_shipped_config_loads():
    names = sorted(p.stem for p in config_dir().glob("*.yaml"))
    assert "synth_r18slim_128x96_dark" in names
    for name in names:
        cfg = load_config(name)
        assert cfg.name == name
        assert cfg.data.input_hw[0] % 32 == 0 and cfg.data.input_hw[1] % 32 == 0


def test_overrides_and_types(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("data:\n  input_hw: [256, 192]\ntrain:\n  epochs: 3\n")
    cfg = load_config(f, ["train.lr=1e-3", "train.lr_steps=[1, 2]", "model.kwargs={deconv_channels: 64}", "codec.dark=true"])
    assert cfg.name == "exp" and cfg.train.epochs == 3 and cfg.train.lr == 1e-3
    assert cfg.train.lr_steps == (1, 2) and cfg.model.kwargs == {"deconv_channels": 64} and cfg.codec.dark
    assert cfg.heatmap_hw == (64, 48) and str(cfg.out_dir) == "runs/exp"


@pytest.mark.parametrize(
    "text, override, message",
    [
        ("train:\n  epoch: 3\n", None, r"exp.yaml: unknown key\(s\) train.epoch \(did you mean train.epochs\?\); known in train: accumulate"),
        ("train:\n  epochs: many\n", None, r"exp.yaml: train.epochs: expected an integer"),
        ("data:\n  input_hw: [256]\n", None, r"data.input_hw: expected 2 values"),
        ("train: [1]\n", None, r"train: expected a mapping"),
        ("", "train.epochs", r"expected key=value"),
        ("", "codec.dark=maybe", r"codec.dark: expected true or false"),
        ("", "model.poserenet.max_move=-1", r"exp.yaml: model.poserenet.max_move must be a finite number >= 0, got -1.0"),
        ("", "model.poserenet.max_move=.nan", r"model.poserenet.max_move must be a finite number >= 0"),
        ("", "model.poserenet.backbone_grad=1.5", r"model.poserenet.backbone_grad must be a finite number >= 0 and <= 1, got 1.5"),
        ("", "model.poserenet.detach=true", r"unknown key\(s\) model.poserenet.detach.*; model.poserenet.detach is now model.poserenet.backbone_grad"),
        ("", "train.channels_last=sometimes", r"exp.yaml: train.channels_last must be true, false or auto, got 'sometimes'"),
    ],
)
def test_bad_configs_name_the_file_and_key(tmp_path, text, override, message):
    f = tmp_path / "exp.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(f, [override] if override else [])


def test_missing_config_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="no such config file.*synth_r18slim_128x96_dark"):
        load_config("nope.yaml")

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Real data lives beside the checkout (../shared/data); tests that need it skip without it.
SHARED_DATA = Path(os.environ.get("POSERENET_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """A few synthetic images, generated once per test session."""
    from poserenet.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, num_train=24, num_val=8, seed=0, progress=False)
    return root


def available_backends() -> list[str]:
    """COCO evaluation backends installed here (faster-coco-eval and hotcoco are optional extras)."""
    import importlib.util

    return ["pycocotools"] + [name for name, module in (("faster-coco-eval", "faster_coco_eval"), ("hotcoco", "hotcoco"))
                              if importlib.util.find_spec(module)]


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_synth, tmp_path_factory):
    """A small model trained for two epochs on the tiny synthetic set (a real checkpoint)."""
    from poserenet.cli import main

    out = tmp_path_factory.mktemp("tiny_run")
    sets = [f"data.root={tiny_synth}", f"train.out_dir={out}", "train.epochs=2", "train.batch_size=8", "data.num_workers=0",
            "train.lr_steps=[100]", "train.lr=3e-3", "model.kwargs={base_width: 16, deconv_channels: 32}", "codec.sigma=2.0"]
    assert main(["train", "synth_r18slim_128x96_dark", "--quiet", *[a for s in sets for a in ("--set", s)]]) == 0
    return out / "last.pth"

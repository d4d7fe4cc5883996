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
    """COCO evaluation backends installed here (faster-coco-eval is an optional extra)."""
    import importlib.util

    return ["pycocotools"] + (["faster-coco-eval"] if importlib.util.find_spec("faster_coco_eval") else [])

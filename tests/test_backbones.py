"""Every backbone, with and without PoseReNet, takes a training step from a config on the
synthetic data (full-size architectures, one small batch)."""

import pytest
import torch
from torch.utils.data import DataLoader

from poserenet.config import load_config
from poserenet.loss import JointsMSELoss
from poserenet.models import list_models
from poserenet.pipeline import build_dataset, build_meta, build_model, check_output_size, load_split
from poserenet.train import supervised_loss

BACKBONES = [n for n in list_models() if n != "simplebaseline_r18"]  # r18 trains in the end-to-end tests


@pytest.mark.parametrize("poserenet", [False, True], ids=["plain", "poserenet"])
@pytest.mark.parametrize("name", BACKBONES)
def test_training_step(tiny_synth, name, poserenet):
    # 64x64: the smallest input every architecture accepts (hourglasses halve it six times).
    cfg = load_config("synth_r18slim_128x96_dark", [
        f"data.root={tiny_synth}", f"model.name={name}", "model.kwargs={}", "data.input_hw=[64, 64]",
        f"model.poserenet.enabled={str(poserenet).lower()}",
    ])  # fmt: skip
    torch.manual_seed(0)
    meta = build_meta(cfg)
    model = build_model(cfg, meta)
    check_output_size(model, cfg)
    ds = build_dataset(cfg, meta, load_split(cfg, meta, "train"), train=True)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    if poserenet:
        assert tuple(batch["target_1"].shape[-2:]) == tuple(2 * s for s in batch["target"].shape[-2:])
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    loss = supervised_loss(model(batch["image"]), batch, JointsMSELoss(), cfg.loss.output_weights, torch.device("cpu"))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and loss > 0
    changed = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert changed > 0.9 * len(before)

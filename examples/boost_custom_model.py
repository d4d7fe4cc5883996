"""Boost a model defined outside poserenet with the PoseReNet plug-in.

Any nn.Module whose output is [N, K, H/4, W/4] heatmaps works. This script trains a small
custom heatmap network on the synthetic people, wraps it with `PoseReNet.wrap(...,
zero_init=True)` (so the boosted model starts exactly where the base is), trains only the
plug-in, and prints both scores.

    python examples/boost_custom_model.py [--images 400] [--epochs 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from poserenet.annotations import load_coco_instances
from poserenet.codec import HeatmapCodec
from poserenet.datasets import TopDownDataset
from poserenet.evaluate import predict, score, to_coco_results
from poserenet.loss import JointsMSELoss
from poserenet.meta import COCO17
from poserenet.models import PoseReNet
from poserenet.models.plugin import up2
from poserenet.synth import generate
from poserenet.train import supervised_loss
from poserenet.transforms import AugmentConfig


class MyHeatmapNet(nn.Module):
    """Your model: anything that maps [N, 3, H, W] images to [N, K, H/4, W/4] heatmaps."""

    def __init__(self, k: int = 17, width: int = 32):
        super().__init__()
        block = lambda cin, cout, s: nn.Sequential(nn.Conv2d(cin, cout, 3, s, 1), nn.BatchNorm2d(cout), nn.ReLU())  # noqa: E731
        self.encoder = nn.Sequential(block(3, width, 2), block(width, width, 2), block(width, 2 * width, 2), block(2 * width, 2 * width, 1))
        self.decoder = nn.Sequential(nn.Upsample(scale_factor=2), block(2 * width, width, 1), nn.Conv2d(width, k, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def fit(model: nn.Module, ds: TopDownDataset, epochs: int, params) -> None:
    opt = torch.optim.Adam(params, 2e-3)
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        model.train()
        for batch in DataLoader(ds, batch_size=16, shuffle=True):
            loss = supervised_loss(model(batch["image"]), batch, JointsMSELoss(), {"backbone": 0.0}, torch.device("cpu"))
            opt.zero_grad()
            loss.backward()
            opt.step()


def evaluate(model: nn.Module, val, codec: HeatmapCodec) -> dict[str, float]:
    ds = TopDownDataset(val.instances, COCO17, (128, 96), codec)
    coords, scores = predict(model, ds, codec, flip_test=True, progress=False)
    return score(val, COCO17, to_coco_results(val.instances, coords, scores, COCO17, (128, 96)), coords)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, args.images, max(20, args.images // 10), progress=False)
        train = load_coco_instances(root / "annotations/person_keypoints_train.json", root / "images/train", COCO17)
        val = load_coco_instances(root / "annotations/person_keypoints_val.json", root / "images/val", COCO17)
        codec = HeatmapCodec((128, 96), (32, 24), sigma=2.0, dark=True)
        # The 2x codec (Gaussians of the same sigma in 2x pixels: sharper) supervises PoseReNet's 2x outputs.
        ds = TopDownDataset(train.instances, COCO17, (128, 96), [codec, codec.at_resolution(2, sigma=codec.sigma)], augment=AugmentConfig())

        base = MyHeatmapNet()
        fit(base, ds, args.epochs, base.parameters())
        before = evaluate(base, val, codec)

        boosted = PoseReNet.wrap(base, num_keypoints=17, zero_init=True)  # the default aggregation
        boosted.eval()
        x = torch.randn(2, 3, 128, 96)
        with torch.no_grad():  # step 0: exactly the base model (its heatmaps lifted to 2x by "lifted")
            same = up2 if boosted.output_stride_factor == 2 else (lambda h: h)
            assert torch.equal(boosted(x), same(base(x)))
        for p_ in boosted.backbone.parameters():  # train the plug-in only
            p_.requires_grad_(False)
        boosted.backbone.eval()
        fit(boosted, ds, args.epochs, boosted.refine.parameters())
        after = evaluate(boosted, val, codec)
    for name, m in (("base", before), ("boosted", after)):
        print(f"{name:8s} AP {100 * m['AP']:5.1f}  PCK@0.2 {100 * m['PCK@0.2']:5.1f}")


if __name__ == "__main__":
    main()

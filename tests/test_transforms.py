import numpy as np
import pytest
import torch

from poserenet.annotations import Instance
from poserenet.codec import HeatmapCodec
from poserenet.datasets import TopDownDataset
from poserenet.meta import COCO17
from poserenet.transforms import (
    AugmentConfig,
    affine_matrix,
    apply_affine,
    box_to_center_scale,
    heatmap_to_image,
    sample_augmentation,
)


def test_box_to_center_scale_keeps_the_input_aspect():
    c, s = box_to_center_scale(np.array([10, 20, 30, 100]), (256, 192), padding=1.25)
    np.testing.assert_allclose(c, [25, 70])
    np.testing.assert_allclose(s, [75 * 1.25, 100 * 1.25])  # w grown to 0.75 * h
    c, s = box_to_center_scale(np.array([0, 0, 300, 100]), (256, 192), padding=1.0)
    np.testing.assert_allclose(s, [300, 400])


def test_affine_maps_the_box_onto_the_output_and_back():
    center, scale = np.array([100.0, 80.0]), np.array([60.0, 80.0])
    m = affine_matrix(center, scale, 0.0, (256, 192))
    corners = np.array([[70.0, 40.0], [130.0, 120.0], [100.0, 80.0]])
    np.testing.assert_allclose(apply_affine(corners, m), [[0, 0], [192, 256], [96, 128]], atol=1e-4)
    inv = affine_matrix(center, scale, 0.0, (256, 192), inverse=True)
    np.testing.assert_allclose(apply_affine(apply_affine(corners, m), inv), corners, atol=1e-3)
    # Mirroring: x -> W - 1 - x in the output.
    mf = affine_matrix(center, scale, 0.0, (256, 192), flip=True)
    np.testing.assert_allclose(apply_affine(corners, mf)[:, 0], 191 - apply_affine(corners, m)[:, 0], atol=1e-4)
    # Rotation keeps the center fixed and distances scaled.
    mr = affine_matrix(center, scale, 30.0, (256, 192))
    np.testing.assert_allclose(apply_affine(center[None], mr), [[96, 128]], atol=1e-4)
    d = np.linalg.norm(apply_affine(np.array([[100.0, 40.0]]), mr) - [96, 128])
    assert d == pytest.approx(128, abs=1e-3)


def make_person(image_path, w=160, h=200):
    rng = np.random.default_rng(3)
    kp = np.zeros((17, 3), np.float32)
    kp[:, 0] = rng.uniform(40, 120, 17)
    kp[:, 1] = rng.uniform(30, 170, 17)
    kp[:, 2] = 2
    kp[3, 2] = 0
    return Instance(1, str(image_path), np.array([30, 20, 100, 160], np.float32), kp, 16000.0)


@pytest.fixture
def image_file(tmp_path):
    import cv2

    path = tmp_path / "img.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (200, 160, 3), dtype=np.uint8))
    return path


def test_targets_decode_back_to_the_image_keypoints(image_file):
    """dataset -> crop -> codec targets -> decode -> image coordinates recovers the labels."""
    inst = make_person(image_file)
    codec = HeatmapCodec((256, 192), (64, 48), sigma=2.0, dark=True)
    ds = TopDownDataset([inst], COCO17, (256, 192), codec)
    item = ds[0]
    assert item["image"].shape == (3, 256, 192) and item["target"].shape == (17, 64, 48)
    assert item["target_weight"][3] == 0 and item["target_weight"].sum() == 16
    xy, _ = codec.decode(item["target"][None])
    back = heatmap_to_image(xy.numpy(), item["center"][None].numpy(), item["scale"][None].numpy(), (64, 48))
    labelled = inst.keypoints[:, 2] > 0
    np.testing.assert_allclose(back[0][labelled], inst.keypoints[labelled, :2], atol=0.2)


def test_flip_augmentation_swaps_left_and_right(image_file):
    inst = make_person(image_file)
    codec = HeatmapCodec((256, 192), (64, 48), sigma=2.0, dark=True)
    plain = TopDownDataset([inst], COCO17, (256, 192), codec)[0]
    aug = AugmentConfig(flip_prob=1.0, scale_range=0.0, rotation=0.0, half_body_prob=0.0, shift=0.0)
    flipped = TopDownDataset([inst], COCO17, (256, 192), codec, augment=aug)[0]
    xy_p = codec.decode(plain["target"][None])[0].numpy()
    xy_f = codec.decode(flipped["target"][None])[0].numpy()
    # The left shoulder (5) of the flipped crop is the mirrored right shoulder (6), and so on.
    for a, b in COCO17.flip_pairs:
        for j, m in ((a, b), (b, a)):
            if inst.keypoints[m, 2] > 0:
                assert xy_f[0, j, 0] * 4 == pytest.approx(191 - xy_p[0, m, 0] * 4, abs=0.1)
                assert xy_f[0, j, 1] == pytest.approx(xy_p[0, m, 1], abs=0.05)
    torch.testing.assert_close(flipped["image"], plain["image"].flip(-1))


def test_augmentation_is_reproducible_and_in_range():
    cfg = AugmentConfig(half_body_prob=0.0)
    kp = np.zeros((17, 3), np.float32)
    draws = []
    for i in range(200):
        rng = np.random.default_rng([0, 0, i])
        c, s, r, f = sample_augmentation(cfg, np.array([50.0, 50.0]), np.array([60.0, 80.0]), kp, COCO17, (256, 192), rng)
        draws.append((s[0] / 60.0, r, f))
    d = np.array(draws, dtype=float)
    assert 0.75 <= d[:, 0].min() and d[:, 0].max() <= 1.25
    assert np.abs(d[:, 1]).max() <= 30 and 0.3 < (d[:, 1] != 0).mean() < 0.9
    assert 0.3 < d[:, 2].mean() < 0.7
    rng = np.random.default_rng([0, 0, 5])
    again = sample_augmentation(cfg, np.array([50.0, 50.0]), np.array([60.0, 80.0]), kp, COCO17, (256, 192), rng)
    assert (again[1][0] / 60.0, again[2], again[3]) == draws[5]


def test_half_body_zooms_on_upper_or_lower_body():
    cfg = AugmentConfig(half_body_prob=1.0, scale_range=0.0, rotation=0.0, flip_prob=0.0, shift=0.0)
    kp = np.zeros((17, 3), np.float32)
    kp[:, 0] = 100
    kp[:, 1] = np.linspace(0, 160, 17)
    kp[:, 2] = 2
    center0, scale0 = np.array([100.0, 80.0]), np.array([150.0, 200.0])
    for i in range(10):
        c, s, _, _ = sample_augmentation(cfg, center0, scale0, kp, COCO17, (256, 192), np.random.default_rng(i))
        assert s[1] < scale0[1]
        assert c[1] < 70 or c[1] > 100  # upper (joints 0-10) or lower (11-16) half

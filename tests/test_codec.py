import cv2
import numpy as np
import pytest
import torch

from poserenet.codec import HeatmapCodec


def random_keypoints(rng, n=32, k=17, input_hw=(256, 192), margin=16):
    h, w = input_hw
    return rng.uniform([margin, margin], [w - margin, h - margin], size=(n, k, 2))


def test_dark_round_trip_is_subpixel_exact_and_argmax_is_not():
    rng = np.random.default_rng(0)
    codec = HeatmapCodec((256, 192), (64, 48), sigma=2.0, dark=True)
    kp = random_keypoints(rng)
    heatmaps, weights = codec.encode(kp, np.ones(kp.shape[:2]))
    assert weights.min() == 1
    truth = kp / 4.0  # heatmap pixels
    xy, scores = codec.decode(torch.from_numpy(heatmaps))
    dark_err = np.abs(xy.numpy() - truth).max()
    assert dark_err < 0.05
    argmax, _ = codec.decode(torch.from_numpy(heatmaps), refine=False)
    argmax_err = np.linalg.norm(argmax.numpy() - truth, axis=-1).mean()
    assert argmax_err > 0.25  # on average a third of a pixel off
    assert argmax_err > 10 * np.linalg.norm(xy.numpy() - truth, axis=-1).mean()
    # The scores are the maps' maxima: close to 1 for noise-free unbiased targets.
    assert scores.min() > 0.85


def test_msra_quarter_offset_beats_argmax_and_loses_to_dark():
    rng = np.random.default_rng(1)
    kp = random_keypoints(rng)
    vis = np.ones(kp.shape[:2])
    truth = kp / 4.0
    msra = HeatmapCodec((256, 192), (64, 48), sigma=2.0, dark=False)
    dark = HeatmapCodec((256, 192), (64, 48), sigma=2.0, dark=True)
    hm_msra, _ = msra.encode(kp, vis)
    # The MSRA target peaks exactly at the rounded location, with value 1.
    n, k = 3, 5
    y, x = np.unravel_index(hm_msra[n, k].argmax(), hm_msra[n, k].shape)
    assert (x, y) == tuple(np.floor(truth[n, k] + 0.5).astype(int))
    assert hm_msra[n, k, y, x] == pytest.approx(1.0)
    err = lambda c: np.linalg.norm(c.numpy() - truth, axis=-1).mean()  # noqa: E731
    hm_dark, _ = dark.encode(kp, vis)
    e_argmax = err(msra.decode(torch.from_numpy(hm_msra), refine=False)[0])
    e_msra = err(msra.decode(torch.from_numpy(hm_msra))[0])
    e_dark = err(dark.decode(torch.from_numpy(hm_dark))[0])
    assert e_dark < e_msra < e_argmax + 1e-6


def test_weights_zero_for_unlabelled_and_far_outside_joints():
    codec = HeatmapCodec((256, 192), (64, 48), sigma=2.0, dark=True)
    kp = np.array([[[50.0, 50.0], [50.0, 50.0], [-100.0, 50.0], [190.0, 255.0], [192 + 23.0, 50.0]]])
    vis = np.array([[2, 0, 2, 1, 2]])
    heatmaps, w = codec.encode(kp, vis)
    assert w.tolist() == [[1, 0, 0, 1, 1]]  # 215 px = 53.75 hm px: its 3-sigma tail reaches column 47
    assert heatmaps[0, 1].max() == 0 and heatmaps[0, 2].max() == 0
    assert heatmaps.shape == (1, 5, 64, 48) and heatmaps.dtype == np.float32
    kp[0, 4, 0] = 192 + 40.0
    assert codec.encode(kp, vis)[1][0, 4] == 0


def reference_dark_decode(hm, kernel=11):
    """DARK's published per-joint loops (blur with zero border, log, Taylor step), for comparison."""
    n, k, h, w = hm.shape
    hm = hm.copy()
    coords = np.zeros((n, k, 2))
    for i in range(n):
        for j in range(k):
            flat = hm[i, j].reshape(-1)
            idx = flat.argmax()
            coords[i, j] = (idx % w, idx // w)
            border = (kernel - 1) // 2
            dr = np.zeros((h + 2 * border, w + 2 * border))
            dr[border:-border, border:-border] = hm[i, j]
            dr = cv2.GaussianBlur(dr, (kernel, kernel), 0)
            m = dr[border:-border, border:-border]
            m = m * (hm[i, j].max() / m.max())
            m = np.log(np.maximum(m, 1e-10))
            px, py = int(coords[i, j, 0]), int(coords[i, j, 1])
            if 1 < px < w - 2 and 1 < py < h - 2:
                dx = 0.5 * (m[py][px + 1] - m[py][px - 1])
                dy = 0.5 * (m[py + 1][px] - m[py - 1][px])
                dxx = 0.25 * (m[py][px + 2] - 2 * m[py][px] + m[py][px - 2])
                dxy = 0.25 * (m[py + 1][px + 1] - m[py - 1][px + 1] - m[py + 1][px - 1] + m[py - 1][px - 1])
                dyy = 0.25 * (m[py + 2][px] - 2 * m[py][px] + m[py - 2][px])
                if dxx * dyy - dxy**2 != 0:
                    hess = np.array([[dxx, dxy], [dxy, dyy]])
                    coords[i, j] -= np.linalg.inv(hess) @ np.array([dx, dy])
    return coords


def test_vectorised_dark_matches_the_reference_loops_on_noisy_maps():
    rng = np.random.default_rng(2)
    codec = HeatmapCodec((256, 192), (64, 48), sigma=2.0, dark=True)
    kp = random_keypoints(rng, n=6, margin=0)  # some peaks on the border: no Taylor step there
    hm, _ = codec.encode(kp, np.ones(kp.shape[:2]))
    hm = (hm + rng.normal(0, 0.05, hm.shape)).astype(np.float32)  # like a network's output
    ours, _ = codec.decode(torch.from_numpy(hm))
    ref = reference_dark_decode(hm.astype(np.float64))
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-3)


def test_decoding_works_at_any_resolution():
    codec = HeatmapCodec((256, 192), (64, 48), sigma=2.0, dark=True)
    big = codec.at_resolution(2)
    assert big.heatmap_hw == (128, 96) and big.sigma == 4.0 and big.stride == (2.0, 2.0)
    kp = np.array([[[100.3, 120.7]]])
    hm, _ = big.encode(kp, np.ones((1, 1)))
    xy, _ = codec.decode(torch.from_numpy(hm))  # a codec decodes whatever size it is given
    np.testing.assert_allclose(xy.numpy()[0, 0] * 2, kp[0, 0], atol=0.05)


def test_modulation_keeps_each_maximum():
    codec = HeatmapCodec((256, 192), (64, 48), dark=True)
    hm = torch.rand(2, 3, 64, 48)
    out = codec.modulate(hm)
    torch.testing.assert_close(out.amax(dim=(-2, -1)), hm.amax(dim=(-2, -1)))
    assert codec.modulate(torch.zeros(1, 1, 8, 8)).abs().max() == 0


@pytest.mark.parametrize("resolution", [1, 2])
def test_flip_test_is_symmetric_at_every_output_resolution(resolution):
    """A mirror-equivariant model (heatmap pixel u = input pixel u * stride) on a symmetric
    case: the flip test, with the shift the codec derives at the output's resolution, returns
    the true positions; HRNet's one-pixel shift would be off by an eighth of a pixel or more."""
    from poserenet.evaluate import flip_average, flip_back

    codec = HeatmapCodec((128, 96), (32, 24), sigma=2.0, dark=True).at_resolution(resolution)
    stride = int(codec.stride[0])
    assert codec.flip_shift == {1: 0.75, 2: 0.5}[resolution]
    rng = np.random.default_rng(resolution)
    pts = rng.uniform([24, 24], [72, 104], size=(6, 2))  # input pixels, away from the borders
    yy, xx = np.mgrid[0:128, 0:96]
    s = codec.sigma * stride
    maps = np.exp(-((xx - pts[:, 0, None, None]) ** 2 + (yy - pts[:, 1, None, None]) ** 2) / (2 * s * s))
    images = torch.from_numpy(maps[None].astype(np.float32))
    model = lambda x: x[:, :, ::stride, ::stride]  # noqa: E731
    same = list(range(6))  # centre joints: no left/right swap
    xy, _ = codec.decode(flip_average(model(images), model(images.flip(-1)), same, codec))
    assert np.abs(xy[0].numpy() * stride - pts).max() < 0.05 * stride
    one_pixel = (model(images) + flip_back(model(images.flip(-1)), same, 1.0)) * 0.5
    xy, _ = codec.decode(one_pixel)
    assert (xy[0, :, 0].numpy() * stride - pts[:, 0]).mean() > 0.1 * stride


def test_dark_blur_kernel_follows_darkposes_configs():
    """DarkPose's released configs blur with 3 taps at sigma 1 (128x96) and 11 at sigma 2 and 3;
    the 2x codec blurs twice as wide; an explicit kernel wins; even kernels are refused."""
    from poserenet.config import load_config
    from poserenet.pipeline import build_codec

    assert HeatmapCodec((128, 96), (32, 24), sigma=1.0, dark=True).blur_kernel == 3
    assert HeatmapCodec((256, 192), (64, 48), sigma=2.0, dark=True).blur_kernel == 11
    assert HeatmapCodec((384, 288), (96, 72), sigma=3.0, dark=True).blur_kernel == 11
    assert HeatmapCodec((128, 96), (32, 24), sigma=1.0, dark=True, blur_kernel=7).blur_kernel == 7
    with pytest.raises(ValueError, match="positive odd number"):
        HeatmapCodec((128, 96), (32, 24), sigma=1.0, dark=True, blur_kernel=4)
    for name in ("hrnet_w32_128x96_dark", "simplebaseline_r50_128x96_dark_poserenet"):
        assert build_codec(load_config(name)).blur_kernel == 3
    assert build_codec(load_config("hrnet_w32_256x192_dark")).blur_kernel == 11
    # A 3-tap blur keeps a sigma-1 map's peak where an 11-tap one would flatten it.
    codec = HeatmapCodec((128, 96), (32, 24), sigma=1.0, dark=True)
    hm, _ = codec.encode(np.array([[[50.3, 60.7]]]), np.ones((1, 1)))
    hm = torch.from_numpy(hm)
    wide = HeatmapCodec((128, 96), (32, 24), sigma=1.0, dark=True, blur_kernel=11)
    assert codec.modulate(hm).amax() == pytest.approx(hm.amax())  # rescaled to the original peak
    assert (codec.modulate(hm) > 0.5 * hm.amax()).sum() < (wide.modulate(hm) > 0.5 * hm.amax()).sum()


def test_paper_configs_follow_the_reference_recipes():
    """SimpleBaseline's ResNet schedule (140 epochs, x0.1 at 90 and 120); MPII without half-body."""
    from pathlib import Path

    from poserenet.config import config_dir, load_config

    names = [p.stem for p in Path(config_dir()).glob("*.yaml")]
    for name in names:
        cfg = load_config(name)
        if name.startswith("simplebaseline_"):
            assert (cfg.train.epochs, cfg.train.lr_steps) == (140, (90, 120)), name
        if name.startswith("mpii_"):
            assert cfg.augment.half_body_prob == 0, name


def full_map_dark(codec: HeatmapCodec, heatmaps: torch.Tensor) -> torch.Tensor:
    """DARK as its paper and reference code state it, on whole maps: modulate every map, take
    its log, one Newton step from each argmax. (The decoder blurs only around the argmax.)"""
    n, k, h, w = heatmaps.shape
    logh = torch.log(codec.modulate(heatmaps).clamp_min(1e-10))
    argmax, _ = codec.decode(heatmaps, refine=False)
    x, y = argmax[..., 0].long(), argmax[..., 1].long()
    p = torch.nn.functional.pad(logh, (2, 2, 2, 2), mode="replicate")

    def at(dx, dy):
        return p.reshape(n, k, -1).gather(-1, ((y + dy + 2) * (w + 4) + x + dx + 2)[..., None])[..., 0]

    gx, gy = 0.5 * (at(1, 0) - at(-1, 0)), 0.5 * (at(0, 1) - at(0, -1))
    hxx = 0.25 * (at(2, 0) - 2 * at(0, 0) + at(-2, 0))
    hyy = 0.25 * (at(0, 2) - 2 * at(0, 0) + at(0, -2))
    hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = hxx * hyy - hxy**2
    ok = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2) & (hxx < 0) & (det > 0)
    det = torch.where(ok, det, torch.ones_like(det))
    step = torch.stack([-(hyy * gx - hxy * gy) / det, -(-hxy * gx + hxx * gy) / det], -1).clamp(-1, 1)
    return argmax + step * ok[..., None]


@pytest.mark.parametrize("resolution", [1, 2])
def test_dark_decoding_equals_the_full_map_computation(resolution):
    """The fast decoder (blurring only the 5 x 5 pixels the Taylor step reads) gives the whole-map
    computation's keypoints on trained-like maps: mixtures of shifted peaks and noise."""
    rng = np.random.default_rng(resolution)
    codec = HeatmapCodec((256, 192), (64, 48), sigma=2.0, dark=True).at_resolution(resolution)
    kp = rng.uniform([0, 0], [192, 256], size=(48, 17, 2))
    hm, _ = codec.encode(kp, np.ones(kp.shape[:2]))
    hm = torch.from_numpy(hm)
    hm = 0.7 * hm + 0.3 * torch.roll(hm, 3, -1) + 0.02 * torch.rand(hm.shape, generator=torch.Generator().manual_seed(0))
    xy, _ = codec.decode(hm)
    assert (xy - full_map_dark(codec, hm)).abs().max() < 1e-4

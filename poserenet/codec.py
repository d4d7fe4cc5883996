"""Heatmap codec: one object turns keypoints into training targets and heatmaps back into keypoints.

Two flavours, as the papers define them:
- MSRA (SimpleBaseline/HRNet): the Gaussian is centred on the target rounded to the nearest
  heatmap pixel and cut to a 6-sigma square; decoding takes the argmax and moves it a quarter
  pixel towards the higher neighbour.
- DARK (Zhang et al., CVPR 2020): unbiased encoding centres the Gaussian on the exact
  sub-pixel target; decoding smooths the heatmap with a Gaussian (distribution modulation),
  takes its log and makes one Newton (second-order Taylor) step from the argmax.

Coordinates are (x, y) in pixels of the network input for `encode` and in heatmap pixels for
`decode`; `stride` links the two (input pixel = heatmap pixel * stride). Everything is
vectorised over people and joints.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F


def dark_blur_kernel(sigma: float) -> int:
    """DARK's modulation kernel as DarkPose's released configs set it: 3 taps for sigma 1
    (128x96 inputs), 11 for sigma 2 and 3 (256x192, 256x256, 384x288)."""
    return 3 if sigma < 1.5 else 11


@dataclass(frozen=True)
class HeatmapCodec:
    input_hw: tuple[int, int]
    heatmap_hw: tuple[int, int]
    sigma: float = 2.0
    dark: bool = False
    # DARK's modulation kernel (odd, in pixels of the backbone's heatmaps); 0: DarkPose's choice
    # for this sigma (`dark_blur_kernel`).
    blur_kernel: int = 0
    # These heatmaps' resolution relative to the backbone's (2 for PoseReNet's lifted output):
    # sigma and heatmap_hw are already scaled; the modulation blur scales by it too.
    resolution: int = 1

    def __post_init__(self) -> None:
        if self.blur_kernel == 0:
            object.__setattr__(self, "blur_kernel", dark_blur_kernel(self.sigma / self.resolution))
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise ValueError(f"DARK's blur kernel must be a positive odd number, got {self.blur_kernel}")

    @property
    def stride(self) -> tuple[float, float]:
        """(x, y) input pixels per heatmap pixel."""
        return (self.input_hw[1] / self.heatmap_hw[1], self.input_hw[0] / self.heatmap_hw[0])

    @property
    def flip_shift(self) -> float:
        """Heatmap pixels by which the maps of a mirrored input, mirrored back, must move right to
        line up: input pixel x mirrors to W - 1 - x and heatmap pixel u is input pixel u * stride,
        so mirrored-back pixel i holds position i + (stride - 1) / stride (0.75 at stride 4, 0.5
        at PoseReNet's 2x output). The HRNet code moves one pixel at every stride."""
        sx = self.stride[0]
        return (sx - 1) / sx

    def at_resolution(self, scale: int, sigma: float | None = None) -> HeatmapCodec:
        """The same codec with heatmaps `scale` times larger: DARK's blur scales with them, and so
        does the targets' sigma unless `sigma` (in the new pixels) is given."""
        if scale == 1 and sigma is None:
            return self
        h, w = self.heatmap_hw
        return replace(self, heatmap_hw=(h * scale, w * scale), sigma=sigma or self.sigma * scale, resolution=self.resolution * scale)

    # ------------------------------------------------------------------ encode
    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Targets for keypoints `[..., K, 2]` (input pixels) with visibility `[..., K]` (>0 = labelled).

        Returns heatmaps `[..., K, H, W]` (float32, peak 1) and target weights `[..., K]`:
        1 for labelled joints whose Gaussian reaches the heatmap, else 0 (and an empty map).
        """
        keypoints = np.asarray(keypoints, dtype=np.float32)
        h, w = self.heatmap_hw
        sx, sy = self.stride
        mu = keypoints / np.array([sx, sy], dtype=np.float32)
        if not self.dark:
            mu = np.floor(mu + 0.5)
        radius = 3.0 * self.sigma
        # A joint whose 3-sigma square lies fully outside the map gets weight 0 (as the official code).
        inside = (
            (mu[..., 0] + radius >= 0) & (mu[..., 0] - radius < w) & (mu[..., 1] + radius >= 0) & (mu[..., 1] - radius < h)
        )
        weight = ((np.asarray(visible) > 0) & inside & np.isfinite(mu).all(-1)).astype(np.float32)
        mu = np.where(weight[..., None] > 0, mu, 0.0)
        dx = np.arange(w, dtype=np.float32) - mu[..., 0:1]  # [..., K, W]
        dy = np.arange(h, dtype=np.float32) - mu[..., 1:2]  # [..., K, H]
        gx = np.exp(-(dx**2) / (2 * self.sigma**2))
        gy = np.exp(-(dy**2) / (2 * self.sigma**2))
        if not self.dark:
            # The MSRA Gaussian is a (6 sigma + 1)-pixel patch around the rounded centre.
            gx = gx * (np.abs(dx) <= radius)
            gy = gy * (np.abs(dy) <= radius)
        heatmaps = gy[..., :, None] * gx[..., None, :] * weight[..., None, None]
        return heatmaps.astype(np.float32), weight

    # ------------------------------------------------------------------ decode
    @torch.no_grad()
    def decode(self, heatmaps: torch.Tensor, refine: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints from heatmaps `[N, K, H, W]` of any resolution.

        Returns `(coords [N, K, 2], scores [N, K])`: (x, y) in heatmap pixels of the given
        maps, and each map's maximum as the score. `refine=False` gives the plain argmax.
        """
        heatmaps = torch.as_tensor(heatmaps).float()
        n, k, h, w = heatmaps.shape
        scores, idx = heatmaps.reshape(n, k, -1).max(dim=-1)
        x = (idx % w).long()
        y = torch.div(idx, w, rounding_mode="floor").long()
        coords = torch.stack([x, y], dim=-1).float()
        if not refine:
            return coords, scores
        if self.dark:
            coords = coords + self._dark_offset(heatmaps, x, y)
        else:
            coords = coords + self._quarter_offset(heatmaps, x, y)
        return coords, scores

    @staticmethod
    def _gather(maps: torch.Tensor, x: torch.Tensor, y: torch.Tensor, dx: int, dy: int, pad: int) -> torch.Tensor:
        """maps[n, k, y + dy, x + dx] from maps padded by `pad` pixels."""
        n, k, _, wp = maps.shape
        flat = (y + dy + pad) * wp + (x + dx + pad)
        return maps.reshape(n, k, -1).gather(-1, flat.reshape(n, k, 1)).reshape(n, k)

    def _quarter_offset(self, heatmaps: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h, w = heatmaps.shape[-2:]
        p = F.pad(heatmaps, (1, 1, 1, 1))
        ddx = self._gather(p, x, y, 1, 0, 1) - self._gather(p, x, y, -1, 0, 1)
        ddy = self._gather(p, x, y, 0, 1, 1) - self._gather(p, x, y, 0, -1, 1)
        ok_x = ((x > 0) & (x < w - 1)).float()
        ok_y = ((y > 0) & (y < h - 1)).float()
        return 0.25 * torch.stack([torch.sign(ddx) * ok_x, torch.sign(ddy) * ok_y], dim=-1)

    def _blur(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """DARK's 1-D Gaussian (OpenCV's sigma for a k-tap kernel given sigma 0), at this codec's
        resolution; a constant, not computed in the graph, so that ONNX export knows its shape."""
        s = (0.3 * ((self.blur_kernel - 1) * 0.5 - 1) + 0.8) * self.resolution
        k = (self.blur_kernel // 2) * self.resolution * 2 + 1
        g = np.exp(-((np.arange(k) - (k - 1) / 2) ** 2) / (2 * s * s))
        return torch.tensor(g / g.sum(), dtype=dtype, device=device)

    def modulate(self, heatmaps: torch.Tensor) -> torch.Tensor:
        """DARK's distribution modulation of whole maps: Gaussian blur with zero borders, rescaled
        so each map keeps its original maximum. (Decoding needs it only around each maximum.)"""
        g = self._blur(heatmaps.dtype, heatmaps.device)
        k = len(g)
        n, kk, h, w = heatmaps.shape
        x = heatmaps.reshape(n * kk, 1, h, w)
        x = F.conv2d(x, g.view(1, 1, 1, k), padding=(0, k // 2))
        x = F.conv2d(x, g.view(1, 1, k, 1), padding=(k // 2, 0))
        x = x.reshape(n, kk, h, w)
        peak_in = heatmaps.amax(dim=(-2, -1), keepdim=True)
        peak_out = x.amax(dim=(-2, -1), keepdim=True)
        return x * torch.where(peak_out > 0, peak_in / peak_out.clamp_min(1e-12), torch.zeros_like(peak_out))

    def _dark_offset(self, heatmaps: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """DARK's Taylor step from each argmax (x, y). The step reads the log of the modulated map
        at the 5 x 5 pixels around the argmax, so only those are blurred: each is a window of the
        zero-padded map, blurred by two small matrix products. (The modulation's rescaling to the
        original maximum adds a constant to the log, which no derivative sees.)"""
        h, w = heatmaps.shape[-2:]
        g = self._blur(heatmaps.dtype, heatmaps.device)
        r = len(g) // 2
        pad = 2 + r
        side = 2 * pad + 1
        padded = F.pad(heatmaps, (pad, pad, pad, pad))
        n, k, _, wp = padded.shape
        d = torch.arange(side, device=heatmaps.device)
        rows = (y[..., None] + d)[..., :, None] * wp + (x[..., None] + d)[..., None, :]  # [N, K, side, side]
        window = padded.reshape(n, k, -1).gather(-1, rows.reshape(n, k, -1)).reshape(n, k, side, side)
        band = torch.zeros(5, side, dtype=heatmaps.dtype, device=heatmaps.device)
        for o in range(5):  # row o blurs the window's pixels o .. o + 2r into the o-th of the 5 x 5
            band[o, o : o + 2 * r + 1] = g
        logh = torch.log((band @ window @ band.T).clamp_min(1e-10))  # [N, K, 5, 5], argmax at [2, 2]

        def at(dx: int, dy: int) -> torch.Tensor:
            return logh[..., 2 + dy, 2 + dx]

        c = at(0, 0)
        gx = 0.5 * (at(1, 0) - at(-1, 0))
        gy = 0.5 * (at(0, 1) - at(0, -1))
        hxx = 0.25 * (at(2, 0) - 2 * c + at(-2, 0))
        hyy = 0.25 * (at(0, 2) - 2 * c + at(0, -2))
        hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
        det = hxx * hyy - hxy**2
        # Step only away from the border (as the reference code) and where the log-heatmap is a
        # real maximum (negative-definite Hessian; the reference only asks det != 0): on flat or
        # noisy maps a nearly singular Hessian would throw the keypoint arbitrarily far.
        ok = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2) & (hxx < 0) & (det > 0)
        safe = torch.where(ok, det, torch.ones_like(det))
        ox = -(hyy * gx - hxy * gy) / safe
        oy = -(-hxy * gx + hxx * gy) / safe
        # The Taylor expansion holds near the argmax: the step stays within one heatmap pixel.
        offset = torch.stack([ox, oy], dim=-1).clamp(-1.0, 1.0)
        return offset * ok.unsqueeze(-1).to(offset.dtype)

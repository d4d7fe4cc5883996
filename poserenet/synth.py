"""Synthetic person-keypoint data: the embedded default dataset.

Each image holds one to four articulated figures with the 17 COCO keypoints, drawn over a
cluttered background. A figure is a 2.5-D puppet: a torso, a head with a face (eyes, nose,
ears and hair that turn with the head's yaw, the only cue for which side is the person's
left), capsule limbs with hands and feet, in clothes of varied colour and texture (solid,
stripes, checks, noise, gradients). Pose, body proportions, size, aspect, yaw, in-plane
rotation and depth order are random.

Visibility comes from rendering, not from rules: every shape also writes its id into an id
buffer, and a joint is visible (v=2) when the pixel under it belongs to a body part that owns
the joint; occluded by another part, person or object -> v=1; outside the image -> v=0 with
x=y=0, as in COCO. Boxes are the tight boxes of each person's visible pixels and areas their
pixel counts, so OKS uses the same scale convention as COCO.

Everything is a function of (seed, split, image index): the same call writes the same files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .files import write_json_atomic
from .meta import COCO17

SYNTH_VERSION = 1
Color = tuple[int, int, int]

# COCO-17 indices.
NOSE, LEYE, REYE, LEAR, REAR = 0, 1, 2, 3, 4
LSHO, RSHO, LELB, RELB, LWRI, RWRI = 5, 6, 7, 8, 9, 10
LHIP, RHIP, LKNE, RKNE, LANK, RANK = 11, 12, 13, 14, 15, 16

# Body parts; a joint is visible when the pixel under it shows one of its owners.
HEAD, TORSO = 0, 1
L_UARM, L_FARM, L_HAND, R_UARM, R_FARM, R_HAND = 2, 3, 4, 5, 6, 7
L_THIGH, L_SHIN, L_FOOT, R_THIGH, R_SHIN, R_FOOT = 8, 9, 10, 11, 12, 13
OWNERS: dict[int, tuple[int, ...]] = {
    NOSE: (HEAD,), LEYE: (HEAD,), REYE: (HEAD,), LEAR: (HEAD,), REAR: (HEAD,),
    LSHO: (TORSO, L_UARM), RSHO: (TORSO, R_UARM),
    LELB: (L_UARM, L_FARM), RELB: (R_UARM, R_FARM),
    LWRI: (L_FARM, L_HAND), RWRI: (R_FARM, R_HAND),
    LHIP: (TORSO, L_THIGH), RHIP: (TORSO, R_THIGH),
    LKNE: (L_THIGH, L_SHIN), RKNE: (R_THIGH, R_SHIN),
    LANK: (L_SHIN, L_FOOT), RANK: (R_SHIN, R_FOOT),
}  # fmt: skip
PARTS_PER_PERSON = 16
OCCLUDER_ID = 30000


# --------------------------------------------------------------------------- textures
def _rand_color(rng: np.random.Generator, lo: int = 0, hi: int = 255) -> np.ndarray:
    return rng.integers(lo, hi + 1, size=3).astype(np.float32)


def _skin_color(rng: np.random.Generator) -> np.ndarray:
    base = np.array([[255, 219, 172], [241, 194, 125], [224, 172, 105], [198, 134, 66], [141, 85, 36], [90, 60, 40]], np.float32)
    return np.clip(base[rng.integers(len(base))] + rng.normal(0, 12, 3), 0, 255)


def make_texture(rng: np.random.Generator, color: np.ndarray) -> Callable[[int, int, int, int], np.ndarray]:
    """A random pattern around `color`; returns a painter (x0, y0, h, w) -> HxWx3 float32 that is
    continuous in image coordinates, so a texture flows across the parts it covers."""
    kind = rng.choice(["solid", "solid", "stripes", "checks", "noise", "gradient"])
    other = np.clip(color + rng.normal(0, 70, 3), 0, 255)
    period = float(rng.uniform(3, 12))
    angle = float(rng.uniform(0, math.pi))
    seed = int(rng.integers(1 << 31))

    def paint(x0: int, y0: int, h: int, w: int) -> np.ndarray:
        out = np.empty((h, w, 3), np.float32)
        out[:] = color
        if kind == "solid":
            return out
        ys, xs = np.mgrid[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
        u = xs * math.cos(angle) + ys * math.sin(angle)
        if kind == "stripes":
            t = (np.floor(u / period) % 2)[..., None]
        elif kind == "checks":
            v = -xs * math.sin(angle) + ys * math.cos(angle)
            t = ((np.floor(u / period) + np.floor(v / period)) % 2)[..., None]
        elif kind == "gradient":
            t = (0.5 + 0.5 * np.sin(u / (period * 4)))[..., None]
        else:  # noise blotches, smooth at the scale of `period`
            r = np.random.default_rng(seed + x0 * 7919 + y0)
            small = r.random((max(2, int(h / period) + 2), max(2, int(w / period) + 2))).astype(np.float32)
            t = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)[..., None]
        return out * (1 - t) + other * t

    return paint


def _paint_shape(
    image: np.ndarray, ids: np.ndarray, draw: Callable[[np.ndarray, np.ndarray], None], box: tuple[float, float, float, float],
    texture: Callable[[int, int, int, int], np.ndarray], part_id: int,
) -> None:
    """Rasterise one shape inside `box` (x0, y0, x1, y1): `draw(mask, offset)` fills a uint8 mask."""
    hgt, wid = ids.shape
    x0, y0 = max(0, int(math.floor(box[0])) - 1), max(0, int(math.floor(box[1])) - 1)
    x1, y1 = min(wid, int(math.ceil(box[2])) + 2), min(hgt, int(math.ceil(box[3])) + 2)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    draw(mask, np.array([x0, y0], np.float32))
    sel = mask > 0
    if not sel.any():
        return
    pattern = texture(x0, y0, y1 - y0, x1 - x0)
    image[y0:y1, x0:x1][sel] = pattern[sel]
    ids[y0:y1, x0:x1][sel] = part_id


def _pts(p: np.ndarray, offset: np.ndarray) -> np.ndarray:
    return np.round((p - offset) * 8).astype(np.int32)  # 3 fractional bits for OpenCV


def _capsule(a: np.ndarray, b: np.ndarray, ra: float, rb: float):
    """A limb: a tapered quad from a (radius ra) to b (radius rb) with round ends."""
    d = b - a
    n = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-6)
    quad = np.stack([a + n * ra, b + n * rb, b - n * rb, a - n * ra])
    r = max(ra, rb)
    box = (min(a[0], b[0]) - r, min(a[1], b[1]) - r, max(a[0], b[0]) + r, max(a[1], b[1]) + r)

    def draw(mask: np.ndarray, off: np.ndarray) -> None:
        cv2.fillConvexPoly(mask, _pts(quad, off), 255, cv2.LINE_8, 3)
        cv2.circle(mask, tuple(_pts(a, off)), int(round(ra * 8)), 255, -1, cv2.LINE_8, 3)
        cv2.circle(mask, tuple(_pts(b, off)), int(round(rb * 8)), 255, -1, cv2.LINE_8, 3)

    return draw, box


def _polygon(poly: np.ndarray):
    box = (poly[:, 0].min(), poly[:, 1].min(), poly[:, 0].max(), poly[:, 1].max())

    def draw(mask: np.ndarray, off: np.ndarray) -> None:
        cv2.fillPoly(mask, [_pts(poly, off)], 255, cv2.LINE_8, 3)

    return draw, box


def _ellipse(center: np.ndarray, axes: tuple[float, float], angle_deg: float, start: float = 0, end: float = 360):
    r = max(axes)
    box = (center[0] - r, center[1] - r, center[0] + r, center[1] + r)

    def draw(mask: np.ndarray, off: np.ndarray) -> None:
        c = _pts(center, off)
        ax = (max(1, int(round(axes[0] * 8))), max(1, int(round(axes[1] * 8))))
        cv2.ellipse(mask, tuple(c), ax, angle_deg, start, end, 255, -1, cv2.LINE_8, 3)

    return draw, box


# --------------------------------------------------------------------------- figures
@dataclass
class Figure:
    keypoints: np.ndarray  # [17, 2] image pixels
    depth_z: np.ndarray  # [17]: face points' depth sign (>0 faces the camera); 1 for body joints
    shapes: list  # (draw, box, texture, part) in painting order


def _rot(v: np.ndarray, a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def make_figure(rng: np.random.Generator, height_px: float, pelvis: np.ndarray) -> Figure:
    """A random pose; `height_px` is the standing height, `pelvis` the image position of the hips' midpoint."""
    u = height_px * 0.3  # torso length (neck to pelvis)
    jitter = lambda s=0.1: float(rng.uniform(1 - s, 1 + s))  # noqa: E731
    back_view = rng.random() < 0.15
    yaw = float(rng.uniform(math.radians(110), math.radians(250)) if back_view else rng.uniform(-1.2, 1.2))
    cos_y, sin_y = math.cos(yaw), math.sin(yaw)
    # Person-left lateral unit in image x (before rotation): +1 facing us, -1 from behind.
    lat = lambda w: w * cos_y if abs(cos_y) > 0.3 else w * 0.3 * np.sign(cos_y)  # noqa: E731
    body_rot = float(rng.normal(0, 0.25)) if rng.random() < 0.9 else float(rng.uniform(-math.pi, math.pi))
    lean = float(rng.normal(0, 0.15))
    up = _rot(np.array([0.0, -1.0]), body_rot + lean)  # pelvis -> neck
    side = _rot(np.array([1.0, 0.0]), body_rot + lean)  # image-right of the torso

    neck = pelvis + up * u * jitter()
    sh_half = lat(0.45 * u * jitter())
    hip_half = lat(0.25 * u * jitter())
    kp = np.zeros((17, 2))
    kp[LSHO] = neck + side * sh_half - up * 0.08 * u
    kp[RSHO] = neck - side * sh_half - up * 0.08 * u
    kp[LHIP] = pelvis + side * hip_half
    kp[RHIP] = pelvis - side * hip_half

    def limb(start: np.ndarray, outward: float, lens: tuple[float, float], first: tuple[float, float], bend: tuple[float, float], fore: float) -> tuple[np.ndarray, np.ndarray]:
        """Two segments from `start`; angles from 'down' (rotated with the body), positive outward."""
        a1 = float(rng.uniform(*first))
        a2 = a1 + float(rng.uniform(*bend))
        down = -up
        d1 = _rot(down, -outward * a1)
        d2 = _rot(down, -outward * a2)
        f1 = fore if rng.random() < 0.3 else 1.0
        f2 = fore if rng.random() < 0.3 else 1.0
        mid = start + d1 * lens[0] * u * f1 * jitter()
        end = mid + d2 * lens[1] * u * f2 * jitter()
        return mid, end

    # Outward rotation sign of the person's left limbs (their left is image-right when facing us).
    out_l = 1.0 if cos_y >= 0 else -1.0
    kp[LELB], kp[LWRI] = limb(kp[LSHO], out_l, (0.62, 0.55), (-0.4, 2.9), (-2.4, 0.6), float(rng.uniform(0.4, 1)))
    kp[RELB], kp[RWRI] = limb(kp[RSHO], -out_l, (0.62, 0.55), (-0.4, 2.9), (-2.4, 0.6), float(rng.uniform(0.4, 1)))
    kp[LKNE], kp[LANK] = limb(kp[LHIP], out_l, (0.85, 0.8), (-0.35, 1.0), (-0.5, 0.5), float(rng.uniform(0.5, 1)))
    kp[RKNE], kp[RANK] = limb(kp[RHIP], -out_l, (0.85, 0.8), (-0.35, 1.0), (-0.5, 0.5), float(rng.uniform(0.5, 1)))

    # Head: an ellipse on the neck, with face points on a sphere that turns with the head's yaw.
    head_yaw = yaw + float(rng.normal(0, 0.25))
    tilt = float(rng.normal(0, 0.2))
    h_up = _rot(up, tilt)
    h_side = _rot(side, tilt)
    rx, ry = 0.2 * u * jitter(), 0.25 * u * jitter()
    head_c = neck + h_up * (ry + 0.1 * u)
    depth = np.ones(17)
    for j, (az, el, protrude) in {
        NOSE: (0.0, -0.15, 1.15), LEYE: (0.45, 0.15, 1.0), REYE: (-0.45, 0.15, 1.0),
        LEAR: (1.5, 0.0, 1.0), REAR: (-1.5, 0.0, 1.0),
    }.items():  # fmt: skip
        x = rx * protrude * math.sin(az + head_yaw) * math.cos(el)
        y = ry * math.sin(el)
        depth[j] = math.cos(az + head_yaw) * math.cos(el)
        kp[j] = head_c + h_side * x + h_up * y

    # Appearance.
    skin = _skin_color(rng)
    shirt = make_texture(rng, _rand_color(rng))
    pants = make_texture(rng, _rand_color(rng))
    sleeves = shirt if rng.random() < 0.6 else make_texture(rng, skin)
    legs_lower = pants if rng.random() < 0.7 else make_texture(rng, skin)
    skin_t = make_texture(rng, skin)
    shoes = make_texture(rng, _rand_color(rng, 0, 120))
    hair = make_texture(rng, _rand_color(rng, 0, 140))
    dark = make_texture(rng, np.array([25.0, 20.0, 20.0]))
    nose_t = make_texture(rng, np.clip(skin * 0.75, 0, 255))

    arm_r, leg_r = 0.13 * u * jitter(), 0.17 * u * jitter()
    def arm(s: int, e: int, w: int, t1, t2, base: int) -> list:
        hand = kp[w] + (kp[w] - kp[e]) / (np.linalg.norm(kp[w] - kp[e]) + 1e-6) * arm_r * 0.9
        return [(*_capsule(kp[s], kp[e], arm_r, arm_r * 0.85), t1, base),
                (*_capsule(kp[e], kp[w], arm_r * 0.85, arm_r * 0.65), t2, base + 1),
                (*_ellipse(hand, (arm_r * 1.1, arm_r * 0.8), math.degrees(math.atan2(*(kp[w] - kp[e])[::-1]))), skin_t, base + 2)]  # fmt: skip

    def leg(s: int, k: int, a: int, base: int) -> list:
        foot = kp[a] + side * leg_r * 1.1 * (1.0 if rng.random() < 0.5 else -1.0) - up * leg_r * 0.4
        return [(*_capsule(kp[s], kp[k], leg_r, leg_r * 0.8), pants, base),
                (*_capsule(kp[k], kp[a], leg_r * 0.8, leg_r * 0.55), legs_lower, base + 1),
                (*_capsule(kp[a], foot, leg_r * 0.55, leg_r * 0.5), shoes, base + 2)]  # fmt: skip

    torso_poly = np.stack([
        kp[LSHO] + side * arm_r * 0.6 * np.sign(sh_half), kp[RSHO] - side * arm_r * 0.6 * np.sign(sh_half),
        kp[RHIP] - side * leg_r * 0.8 * np.sign(hip_half), kp[LHIP] + side * leg_r * 0.8 * np.sign(hip_half),
    ])  # fmt: skip
    torso = [(*_polygon(torso_poly), shirt, TORSO),
             (*_capsule(neck - up * 0.1 * u, neck + up * 0.15 * u, arm_r * 0.8, arm_r * 0.8), skin_t, HEAD)]  # fmt: skip

    head_angle = math.degrees(math.atan2(h_side[1], h_side[0]))
    head: list = []
    facing = math.cos(head_yaw)
    for ear in (LEAR, REAR):
        if depth[ear] > -0.3:
            head.append((*_ellipse(kp[ear], (rx * 0.22, ry * 0.3), head_angle), skin_t, HEAD))
    head.append((*_ellipse(head_c, (rx, ry), head_angle), hair if facing < -0.2 else skin_t, HEAD))
    if facing >= -0.2:
        # Hair: a cap over the top of the head, pushed towards the back of the head.
        shift = -math.sin(head_yaw) * rx * 0.35
        head.append((*_ellipse(head_c + h_side * shift - h_up * ry * 0.05, (rx * 1.02, ry * 1.02), head_angle, 180, 360), hair, HEAD))
        for j in (LEYE, REYE):
            if depth[j] > 0.1:
                head.append((*_ellipse(kp[j], (max(0.8, rx * 0.14 * depth[j]), max(0.8, ry * 0.08)), head_angle), dark, HEAD))
        if depth[NOSE] > 0.1:
            head.append((*_ellipse(kp[NOSE], (max(0.8, rx * 0.12), max(0.8, ry * 0.1)), head_angle), nose_t, HEAD))
            mouth = kp[NOSE] - h_up * ry * 0.3
            head.append((*_ellipse(mouth, (max(0.8, rx * 0.3 * facing), max(0.6, ry * 0.04)), head_angle), dark, HEAD))

    arms_l, arms_r = arm(LSHO, LELB, LWRI, sleeves, sleeves, L_UARM), arm(RSHO, RELB, RWRI, sleeves, sleeves, R_UARM)
    legs_l, legs_r = leg(LHIP, LKNE, LANK, L_THIGH), leg(RHIP, RKNE, RANK, R_THIGH)
    # Depth order: the side turned away from the camera is painted first.
    left_far = sin_y > 0 if not back_view else sin_y < 0
    far_legs, near_legs = (legs_l, legs_r) if left_far else (legs_r, legs_l)
    far_arm, near_arm = (arms_l, arms_r) if left_far else (arms_r, arms_l)
    behind, front = [], []
    for a in (far_arm, near_arm):
        (behind if (a is far_arm and abs(sin_y) > 0.3) or rng.random() < 0.25 else front).append(a)
    front_shapes = [s for a in front for s in a]
    shapes = [s for a in behind for s in a] + far_legs + near_legs + torso
    # Arms in front usually pass below the face; sometimes a raised arm covers it.
    shapes += front_shapes + head if rng.random() < 0.8 else head + front_shapes
    return Figure(kp.astype(np.float32), depth, shapes)


# --------------------------------------------------------------------------- scenes
def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    c1, c2 = _rand_color(rng), _rand_color(rng)
    t = np.linspace(0, 1, h if rng.random() < 0.5 else w, dtype=np.float32)
    grad = c1 * (1 - t[:, None]) + c2 * t[:, None]
    img = np.empty((h, w, 3), np.float32)
    img[:] = grad[:, None, :] if len(t) == h else grad[None, :, :]
    ids = np.zeros((h, w), np.int32)
    scale = min(h, w)
    for _ in range(int(rng.integers(8, 30))):
        tex = make_texture(rng, _rand_color(rng))
        kind = rng.random()
        c = rng.uniform([0, 0], [w, h])
        if kind < 0.35:
            wh = rng.uniform(0.05, 0.5, 2) * scale
            poly = np.array([c, c + [wh[0], 0], c + wh, c + [0, wh[1]]])
            draw, box = _polygon(poly)
        elif kind < 0.65:
            draw, box = _ellipse(c, tuple(rng.uniform(0.02, 0.25, 2) * scale), float(rng.uniform(0, 180)))
        else:  # limb-like distractors, so that "a skin-coloured stick" is not enough to find an arm
            d = _rot(np.array([1.0, 0.0]), float(rng.uniform(0, 2 * math.pi))) * rng.uniform(0.1, 0.4) * scale
            r = float(rng.uniform(0.01, 0.05) * scale)
            tex = make_texture(rng, _skin_color(rng)) if rng.random() < 0.4 else tex
            draw, box = _capsule(c, c + d, r, r * rng.uniform(0.5, 1.0))
        _paint_shape(img, ids, draw, box, tex, 0)
    return img


def render_scene(rng: np.random.Generator, first_id: int = 1) -> tuple[np.ndarray, list[dict]]:
    """One image (RGB uint8) and its people (keypoints [17,3], bbox, area, num_keypoints)."""
    h, w = (int(v) for v in rng.integers(176, 321, size=2))
    img = _background(rng, h, w)
    ids = np.zeros((h, w), np.int32)
    n_people = int(rng.choice([1, 1, 1, 2, 2, 3, 4]))
    figures = []
    for p in range(n_people):
        height = float(rng.uniform(0.45, 0.95) if p == 0 else rng.uniform(0.25, 0.9)) * h
        # Keep the pelvis mostly inside; sometimes people are cut by the image border.
        margin = 0.0 if rng.random() < 0.15 else 0.2
        pelvis = rng.uniform([w * margin, h * (0.2 + margin)], [w * (1 - margin), h * (0.95 - margin * 0.5)])
        figures.append(make_figure(rng, height, pelvis))
    for p, fig in enumerate(figures):
        for draw, box, tex, part in fig.shapes:
            _paint_shape(img, ids, draw, box, tex, 1 + p * PARTS_PER_PERSON + part)
    if rng.random() < 0.3:  # objects in front of people
        for _ in range(int(rng.integers(1, 3))):
            fig = figures[int(rng.integers(len(figures)))]
            c = fig.keypoints[int(rng.integers(17))] + rng.normal(0, 10, 2)
            wh = rng.uniform(0.1, 0.35, 2) * h
            poly = np.array([c - wh / 2, c + [wh[0] / 2, -wh[1] / 2], c + wh / 2, c + [-wh[0] / 2, wh[1] / 2]])
            draw, box = _polygon(poly) if rng.random() < 0.6 else _ellipse(c, tuple(wh / 2), float(rng.uniform(0, 180)))
            _paint_shape(img, ids, draw, box, make_texture(rng, _rand_color(rng)), OCCLUDER_ID)

    img += rng.normal(0, rng.uniform(2, 8), img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (3, 3), 0)

    people = []
    for p, fig in enumerate(figures):
        kp = np.zeros((17, 3), np.float32)
        kp[:, :2] = fig.keypoints
        xi, yi = np.floor(fig.keypoints[:, 0]).astype(int), np.floor(fig.keypoints[:, 1]).astype(int)
        inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        for j in range(17):
            if not inside[j]:
                kp[j] = 0  # COCO: unlabelled, x = y = 0
                continue
            owner = ids[yi[j], xi[j]] - 1 - p * PARTS_PER_PERSON
            seen = owner in OWNERS[j] and fig.depth_z[j] > (0.1 if j < LEAR else -0.3)
            kp[j, 2] = 2 if seen else 1
        mask = (ids > p * PARTS_PER_PERSON) & (ids <= (p + 1) * PARTS_PER_PERSON)
        area = int(mask.sum())
        if area < 16:
            continue
        ys, xs = np.nonzero(mask)
        bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
        people.append({"keypoints": kp, "bbox": bbox, "area": float(area), "num_keypoints": int((kp[:, 2] > 0).sum())})
    return img, people


def _render_to_file(args: tuple[int, int, int, str]) -> tuple[int, int, list[dict]]:
    seed, split_no, i, path = args
    img, people = render_scene(np.random.default_rng([seed, split_no, i]))
    cv2.imwrite(path, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    return img.shape[1], img.shape[0], people


def generate(
    out_dir: str | Path, num_train: int = 3000, num_val: int = 300, seed: int = 0, progress: bool = True, workers: int = 0
) -> dict[str, Path]:
    """Write `images/{train,val}/*.jpg` and `annotations/person_keypoints_{train,val}.json`.

    `workers` processes render in parallel (0: one per CPU core, at most 8); the output does not
    depend on it.
    """
    import multiprocessing as mp
    import os

    from tqdm import tqdm

    out = Path(out_dir)
    workers = workers or min(8, os.cpu_count() or 1)
    paths = {}
    categories = [{
        "id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO17.keypoints),
        "skeleton": [[a + 1, b + 1] for a, b in COCO17.skeleton],
    }]  # fmt: skip
    (out / "synth.json").unlink(missing_ok=True)  # the stamp is written last: no stamp, no cache
    pool = mp.get_context("fork" if hasattr(os, "fork") else "spawn").Pool(workers) if workers > 1 else None
    try:
        for split_no, (split, count) in enumerate((("train", num_train), ("val", num_val))):
            img_dir = out / "images" / split
            img_dir.mkdir(parents=True, exist_ok=True)
            jobs = [(seed, split_no, i, str(img_dir / f"{i:06d}.jpg")) for i in range(count)]
            rendered = pool.imap(_render_to_file, jobs, chunksize=16) if pool else map(_render_to_file, jobs)
            images, anns = [], []
            for i, (w, h, people) in enumerate(tqdm(rendered, total=count, desc=f"synth {split}", disable=not progress, unit="img")):
                image_id = i + 1
                images.append({"id": image_id, "file_name": f"{i:06d}.jpg", "width": w, "height": h})
                for person in people:
                    anns.append({
                        "id": len(anns) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                        "keypoints": [round(float(v), 2) for v in person["keypoints"].reshape(-1)],
                        "num_keypoints": person["num_keypoints"], "bbox": [round(v, 2) for v in person["bbox"]],
                        "area": person["area"],
                    })  # fmt: skip
            ann_dir = out / "annotations"
            ann_dir.mkdir(parents=True, exist_ok=True)
            path = ann_dir / f"person_keypoints_{split}.json"
            doc = {
                "info": {"description": "poserenet synthetic people", "version": SYNTH_VERSION, "seed": seed},
                "images": images, "annotations": anns, "categories": categories,
            }  # fmt: skip
            write_json_atomic(path, doc)
            paths[split] = path
    finally:
        if pool:
            pool.close()
            pool.join()
    stamp = {"version": SYNTH_VERSION, "seed": seed, "num_train": num_train, "num_val": num_val}
    write_json_atomic(out / "synth.json", stamp)
    return paths


def is_generated(out_dir: str | Path, num_train: int, num_val: int, seed: int) -> bool:
    """True when `out_dir` already holds exactly this synthetic set."""
    stamp = Path(out_dir) / "synth.json"
    try:
        info = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    return info == {"version": SYNTH_VERSION, "seed": seed, "num_train": num_train, "num_val": num_val}

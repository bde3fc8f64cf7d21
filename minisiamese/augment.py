"""Image augmentation in NumPy (no SciPy): the seed report's Keras layers and
Koch et al.'s affine distortions, applied to training pairs only.

Geometric changes are composed into one 2x3 affine map and applied once, by
inverse mapping with bilinear interpolation and 'reflect' filling (Keras's
default fill mode).  Every transform is the identity at strength 0.
"""
import math
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, require_int, require_number, shown


@dataclass(frozen=True)
class AugmentConfig:
    """kind: "none", "seed" (Keras RandomFlip/RandomRotation/RandomZoom/RandomContrast)
    or "koch" (rotation +-10 deg, shear +-0.3, scale 0.8-1.2, shift +-2 px, each with p = 0.5).

    ``mirror`` (koch only): also flip left-right with p = 0.5 -- a face's mirror
    image is still that person, unlike the seed's upside-down flips.

    ``copies``: each epoch trains on the original pairs plus this many augmented
    copies, drawn afresh every epoch (the seed grew 1,760 pairs to 8,800 = 1 + 4).
    """
    kind: str = "none"
    copies: int = 4
    flip: bool = True               # seed: horizontal and vertical flips, p = 0.5 each
    rotation: float = 0.2           # seed: fraction of a full turn (Keras RandomRotation factor)
    zoom: float = 0.3               # seed: scale drawn from [1 - zoom, 1 + zoom]
    contrast: float = 0.3           # seed: contrast factor drawn from [1 - c, 1 + c]
    mirror: bool = False            # koch: left-right flip, p = 0.5

    def validate(self):
        if self.kind not in ("none", "seed", "koch"):
            raise ConfigError(f"augment: kind must be 'none', 'seed' or 'koch', got {shown(self.kind)}")
        require_int("augment: copies", self.copies, 0, 1000)
        for name in ("flip", "mirror"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"augment: {name} must be true or false, got {shown(getattr(self, name))}")
        for name in ("rotation", "zoom", "contrast"):
            require_number(f"augment: {name}", getattr(self, name), 0, 1)


def _reflect(i, n):
    """Reflect integer coordinates into [0, n) (d c b a | a b c d | d c b a)."""
    period = 2 * n
    i = np.mod(i, period)
    return np.where(i >= n, period - 1 - i, i)


def affine_warp(img, matrix):
    """out[y, x] = img at  matrix @ (x - cx, y - cy, 1) + (cx, cy), bilinear.

    ``matrix`` (2, 3) maps *output* coordinates (centred) to input coordinates.
    """
    H, W = img.shape
    cy, cx = (H - 1) / 2, (W - 1) / 2
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    u, v = xs - cx, ys - cy
    sx = matrix[0, 0] * u + matrix[0, 1] * v + matrix[0, 2] + cx
    sy = matrix[1, 0] * u + matrix[1, 1] * v + matrix[1, 2] + cy
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = sx - x0, sy - y0
    xa, xb = _reflect(x0, W), _reflect(x0 + 1, W)
    ya, yb = _reflect(y0, H), _reflect(y0 + 1, H)
    out = (img[ya, xa] * (1 - fx) * (1 - fy) + img[ya, xb] * fx * (1 - fy)
           + img[yb, xa] * (1 - fx) * fy + img[yb, xb] * fx * fy)
    return out.astype(img.dtype)


def _rotation(theta):
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def seed_transform(img, cfg, rng):
    """Flip (h, v), rotation, zoom, contrast, as the seed's Keras layers."""
    out = img
    if cfg.flip:
        if rng.random() < 0.5:
            out = out[:, ::-1]
        if rng.random() < 0.5:
            out = out[::-1, :]
    lin = np.eye(2)
    if cfg.rotation:
        lin = lin @ _rotation(rng.uniform(-cfg.rotation, cfg.rotation) * 2 * math.pi)
    if cfg.zoom:
        lin = lin / rng.uniform(1 - cfg.zoom, 1 + cfg.zoom)      # scale > 1 zooms in
    if not np.allclose(lin, np.eye(2)):
        out = affine_warp(np.ascontiguousarray(out), np.c_[lin, np.zeros(2)])
    if cfg.contrast:
        c = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)
        mean = out.mean()
        out = np.clip((out - mean) * c + mean, 0.0, 1.0)
    return np.ascontiguousarray(out, dtype=img.dtype)


def koch_transform(img, rng, strength=1.0):
    """Koch et al.'s distortions: each of rotation (+-10 deg), shear (+-0.3),
    scale (0.8-1.2) and translation (+-2 px) applied with probability 0.5."""
    theta = math.radians(rng.uniform(-10, 10)) * strength if rng.random() < 0.5 else 0.0
    shx, shy = (rng.uniform(-0.3, 0.3, 2) * strength) if rng.random() < 0.5 else (0.0, 0.0)
    sx, sy = (1 + rng.uniform(-0.2, 0.2, 2) * strength) if rng.random() < 0.5 else (1.0, 1.0)
    tx, ty = (rng.uniform(-2, 2, 2) * strength) if rng.random() < 0.5 else (0.0, 0.0)
    forward = _rotation(theta) @ np.array([[1, shx], [shy, 1]]) @ np.diag([sx, sy])
    inv = np.linalg.inv(forward)
    matrix = np.c_[inv, -inv @ np.array([tx, ty])]
    if np.allclose(matrix, np.c_[np.eye(2), np.zeros(2)]):
        return img.copy()
    return affine_warp(img, matrix)


def augment_batch(x, cfg, rng):
    """A new (B, 1, S, S) array with every image transformed independently."""
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        if cfg.kind == "koch":
            img = x[i, 0][:, ::-1] if cfg.mirror and rng.random() < 0.5 else x[i, 0]
            out[i, 0] = koch_transform(np.ascontiguousarray(img), rng)
        elif cfg.kind == "seed":
            out[i, 0] = seed_transform(x[i, 0], cfg, rng)
        else:
            out[i, 0] = x[i, 0]
    return out

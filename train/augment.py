"""Augmentation that covers how people write: slant, rotation, size, position, elastic wobble,
stroke width from hairline to marker, and broken strokes.

All of it is one batched TensorFlow function on (N, 28, 28, 1) images in [0, 1], drawn from a
seeded generator, so a run is reproducible from its seed. The geometry (affine and elastic) is
one resampling: each output pixel looks up where it came from, bilinearly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf

SIDE = 28
COARSE = 4  # the elastic field is drawn on a 4x4 grid and smoothed up to 28x28


@dataclass(frozen=True)
class Augment:
    """Ranges of each change; each is drawn per image, uniformly within +-range."""

    shift: float = 0.0  # fraction of the side
    rotate: float = 0.0  # fraction of a full turn
    zoom: float = 0.0  # relative size change
    shear: float = 0.0  # slant: x moves by shear * y
    elastic: float = 0.0  # largest displacement of the elastic field, in pixels
    stroke: float = 0.0  # -1 hairline .. +1 marker, drawn within +-stroke
    breaks: float = 0.0  # probability of a gap cut across the strokes
    clean: float = 0.0  # share of images left as they are

    @property
    def any(self) -> bool:
        changes = (self.shift, self.rotate, self.zoom, self.shear, self.elastic, self.stroke)
        return any((*changes, self.breaks))


NO_AUGMENT = Augment()
# Measured on MNIST's first 16 training digits by eye (a contact sheet), then by ablation: see
# the model card.
PEOPLE = Augment(
    shift=0.08, rotate=0.04, zoom=0.12, shear=0.3, elastic=2.0, stroke=1.0, breaks=0.15, clean=0.2
)


def augment(images: tf.Tensor, how: Augment, rng: tf.random.Generator) -> tf.Tensor:
    """`images` changed as `how` says, each image its own draw."""
    n = tf.shape(images)[0]
    x = images
    if how.stroke:
        x = _stroke(x, rng.uniform([n], -how.stroke, how.stroke))
    x = _warp(x, _source_coordinates(n, how, rng))
    if how.breaks:
        x = _break(x, rng, how.breaks)
    if how.clean:
        keep = tf.reshape(rng.uniform([n]) < how.clean, [-1, 1, 1, 1])
        x = tf.where(keep, images, x)
    return x


def _stroke(x: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Thicker towards a 3x3 dilation (width 1), thinner towards a 2x2 erosion (width -1)."""
    thick = tf.nn.max_pool2d(x, 3, 1, "SAME")
    thin = -tf.nn.max_pool2d(-x, 2, 1, "SAME")
    w = tf.reshape(width, [-1, 1, 1, 1])
    out = tf.where(w > 0, x + w * (thick - x), x - w * (thin - x))
    peak = tf.reduce_max(out, axis=[1, 2, 3], keepdims=True)
    return out / tf.maximum(peak, 1e-3)  # an eroded digit's darkest ink back to full


def _source_coordinates(n, how: Augment, rng: tf.random.Generator) -> tf.Tensor:
    """(N, 28, 28, 2) source (row, col) of each output pixel: affine about the centre plus an
    elastic field."""

    def draw(r):
        return rng.uniform([n], -r, r) if r else tf.zeros([n])

    angle = draw(how.rotate * 2 * math.pi)
    shear = draw(how.shear)
    scale = 1.0 + draw(how.zoom)
    aspect = 1.0 + draw(how.zoom / 2)
    dy, dx = draw(how.shift * SIDE), draw(how.shift * SIDE)
    c = (SIDE - 1) / 2
    rows, cols = _centred_grid()  # output coordinates

    def per_image(v):
        return tf.reshape(v, [-1, 1, 1])

    cos, sin = per_image(tf.cos(angle)), per_image(tf.sin(angle))
    sy, sx = per_image(scale * aspect), per_image(scale / aspect)
    # inverse map: output -> source; rotate, then undo the size change, then un-slant
    r = (cos * rows - sin * cols) / sy
    k = (sin * rows + cos * cols) / sx
    k = k + per_image(shear) * r
    src_rows = r + c - per_image(dy)
    src_cols = k + c - per_image(dx)
    coords = tf.stack([src_rows, src_cols], axis=-1)
    if how.elastic:
        field = rng.normal([n, COARSE, COARSE, 2])
        field = tf.image.resize(field, [SIDE, SIDE], method="bicubic")
        largest = tf.reduce_max(tf.abs(field), axis=[1, 2, 3], keepdims=True)
        field = field / tf.maximum(largest, 1e-6)
        coords = coords + field * tf.reshape(rng.uniform([n], 0, how.elastic), [-1, 1, 1, 1])
    return coords


def _warp(images: tf.Tensor, coords: tf.Tensor) -> tf.Tensor:
    """Bilinear lookup of `images` at `coords`; outside the image is blank paper (0)."""
    padded = tf.pad(images[..., 0], [[0, 0], [1, 1], [1, 1]])  # a blank border to clamp into
    y = tf.clip_by_value(coords[..., 0] + 1, 0, SIDE + 1)
    x = tf.clip_by_value(coords[..., 1] + 1, 0, SIDE + 1)
    y0, x0 = tf.floor(y), tf.floor(x)
    fy, fx = y - y0, x - x0
    y0 = tf.cast(y0, tf.int32)
    x0 = tf.cast(x0, tf.int32)
    y1 = tf.minimum(y0 + 1, SIDE + 1)
    x1 = tf.minimum(x0 + 1, SIDE + 1)

    def at(yy, xx):
        return tf.gather_nd(padded, tf.stack([yy, xx], axis=-1), batch_dims=1)

    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return (top * (1 - fy) + bottom * fy)[..., None]


def _break(x: tf.Tensor, rng: tf.random.Generator, probability: float) -> tf.Tensor:
    """With `probability`, a gap 1-2 px wide cut along a random line through the digit."""
    n = tf.shape(x)[0]
    angle = rng.uniform([n, 1, 1], 0, math.pi)
    offset = rng.uniform([n, 1, 1], -5, 5)
    width = rng.uniform([n, 1, 1], 0.6, 1.2)
    rows, cols = _centred_grid()
    distance = tf.abs(tf.cos(angle) * cols + tf.sin(angle) * rows - offset)
    gap = (distance < width) & (rng.uniform([n, 1, 1]) < probability)
    return tf.where(gap[..., None], tf.zeros_like(x), x)


def _centred_grid() -> tuple[tf.Tensor, tf.Tensor]:
    """(1, 28, 28) row and column of each pixel, about the image's centre."""
    grid = tf.range(SIDE, dtype=tf.float32) - (SIDE - 1) / 2
    rows, cols = tf.meshgrid(grid, grid, indexing="ij")
    return rows[None], cols[None]

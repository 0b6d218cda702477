"""Digits photographed on paper, rendered: what a phone or a scanner makes of a digit written in
pen. Each condition takes a digit's ink (float, 1 = ink) and returns an 8-bit grayscale photo.

A digit is written on a sheet (paper grain, a pen of some width, a little ink unevenness) and
photographed: the page at a third to a half of the frame height, off-centre, under one
condition or all of them at once:

- paper: the sheet alone, evenly lit;
- gradient: light falling off across the page (0.95 to 0.55);
- shadow: a soft shadow over part of the page, a hand's or the phone's;
- noise: sensor noise and a little blur, as in dim light;
- blur: out of focus;
- jpeg: JPEG at quality 25;
- perspective: the page photographed at a slant;
- grey-sheet: grey paper lying on a lighter table, its edges in the frame;
- ruled: ruled paper, a line through the digit;
- hairline, marker: the thinnest and the thickest pens;
- all: gradient, shadow, grey sheet, perspective, noise and JPEG together.

Rendering is seeded: the same digit, condition and seed give the same photo.
"""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image, ImageFilter

CONDITIONS = (
    "paper",
    "gradient",
    "shadow",
    "noise",
    "blur",
    "jpeg",
    "perspective",
    "grey-sheet",
    "ruled",
    "hairline",
    "marker",
    "all",
)
PHOTO = (1200, 900)  # width, height: a phone photo reduced as the runtime reduces one
PEN_WIDTHS = {"hairline": 0.02, "marker": 0.16}  # of the digit's height; a pen is 0.06-0.10


def photograph(ink: np.ndarray, condition: str, seed: int = 0, redraw: bool = True) -> np.ndarray:
    """`ink` (h, w) in [0, 1], 1 = ink -> a (900, 1200) uint8 photo under `condition`. With
    `redraw` False the ink keeps its own strokes, scaled up (the pen conditions then do
    nothing): for marks whose centre line is not their shape, as a thickened 8's."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition: expected one of {CONDITIONS}, found {condition!r}")
    # The sheet, the pen, the digit's size and place come from the seed alone, so that one
    # seed under two conditions is the same digit on the same sheet, differently photographed.
    sheet = np.random.default_rng(seed)
    rng = np.random.default_rng([seed, CONDITIONS.index(condition)])
    every = condition == "all"
    width, height = PHOTO
    pen = sheet.uniform(0.05, 0.10)
    pen = PEN_WIDTHS.get(condition, pen)
    digit_h = int(height * sheet.uniform(0.30, 0.50))
    digit_h = min(digit_h, int(0.9 * width * ink.shape[0] / ink.shape[1]))  # a wide number fits
    stroke = _pen(ink, digit_h, pen) if redraw else _scaled(ink, digit_h)  # 1 = ink
    page = np.full((height, width), sheet.uniform(0.82, 0.95))
    page *= _grain(sheet, (height, width))
    darkness = sheet.uniform(0.75, 0.92)  # a pen leaves 8-25% of the light
    top = int((height - digit_h) * sheet.uniform(0.3, 0.7))
    left = int((width - stroke.shape[1]) * sheet.uniform(0.3, 0.7))
    region = page[top : top + stroke.shape[0], left : left + stroke.shape[1]]
    region *= 1 - darkness * stroke * sheet.uniform(0.85, 1.0, stroke.shape)
    if condition == "grey-sheet" or every:
        page = _on_a_table(page, rng)
    if condition == "ruled":
        page = _ruled(page, rng, top + int(digit_h * rng.uniform(0.3, 0.7)))
    if condition == "gradient" or every:
        page = page * _gradient(rng, (height, width))
    if condition == "shadow" or every:
        page = page * _shadow(rng, (height, width))
    img = Image.fromarray(np.clip(page * 255, 0, 255).astype(np.uint8))
    if condition == "perspective" or every:
        img = _slant(img, rng)
    if condition == "blur":
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(2.5, 4.0)))
    if condition == "noise" or every:
        img = img.filter(ImageFilter.GaussianBlur(1.0))
        noisy = np.asarray(img, np.float64) + rng.normal(0, 10, (height, width))
        img = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    if condition == "jpeg" or every:
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=25)
        img = Image.open(io.BytesIO(buffer.getvalue())).convert("L")
    return np.asarray(img)


def _scaled(ink: np.ndarray, height: int) -> np.ndarray:
    size = (max(1, round(ink.shape[1] * height / ink.shape[0])), height)
    big = Image.fromarray((ink * 255).astype(np.uint8)).resize(size, Image.Resampling.BICUBIC)
    return np.asarray(big, np.float64) / 255


def _pen(ink: np.ndarray, height: int, width: float) -> np.ndarray:
    """The digit's shape at `height` pixels, redrawn with a pen `width` of the height wide: its
    ink smoothed and cut into a shape, thinned to its centre line, and drawn along that line
    with the pen (so a hairline stays whole where eroding the shape would break it)."""
    line = _centre_line(ink.astype(np.float64).tobytes(), ink.shape, height)
    shape = _dilate(line, max(round(width * height / 2), 0))
    soft = Image.fromarray(shape.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(0.8))
    return np.asarray(soft, np.float64) / 255


@functools.lru_cache(maxsize=2)  # the same digit under every condition: thinned once
def _centre_line(ink: bytes, shape: tuple[int, int], height: int) -> np.ndarray:
    gray = np.frombuffer(ink).reshape(shape)
    size = (max(1, round(shape[1] * height / shape[0])), height)
    big = Image.fromarray((gray * 255).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS)
    big = big.filter(ImageFilter.GaussianBlur(height * 0.02))  # no trace of MNIST's pixels
    smooth = np.asarray(big, np.float64)
    return _skeleton(smooth > 0.4 * smooth.max())


def _skeleton(mask: np.ndarray) -> np.ndarray:
    """Zhang and Suen's thinning (1984): peel boundary pixels that are not needed to keep the
    shape connected, in two alternating sub-steps, until none is left to peel."""
    m = np.pad(mask, 1).astype(np.uint8)
    while True:
        changed = False
        for step in (0, 1):
            p = [np.roll(np.roll(m, -dy, 0), -dx, 1) for dy, dx in _RING]  # P2..P9
            count = sum(p)
            transitions = sum((p[i] == 0) & (p[(i + 1) % 8] == 1) for i in range(8))
            if step == 0:
                keep = (p[0] * p[2] * p[4] == 0) & (p[2] * p[4] * p[6] == 0)
            else:
                keep = (p[0] * p[2] * p[6] == 0) & (p[0] * p[4] * p[6] == 0)
            peel = (m == 1) & (count >= 2) & (count <= 6) & (transitions == 1) & keep
            if peel.any():
                m[peel] = 0
                changed = True
        if not changed:
            return m[1:-1, 1:-1].astype(bool)


_RING = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))  # P2..P9


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Grown by `radius` pixels with a round-ish pen: 3x3 squares and crosses in turn (an
    octagon), each step a few shifted maxima, where one large rank filter costs radius^2."""
    m = mask.copy()
    for step in range(radius):
        p = np.pad(m, 1)
        grown = p[1:-1, 1:-1] | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
        if step % 2 == 0:
            grown |= p[:-2, :-2] | p[:-2, 2:] | p[2:, :-2] | p[2:, 2:]
        m = grown
    return m


def _grain(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Paper: slow blotches of a few percent and a fine grain."""
    coarse = rng.normal(0, 1, (shape[0] // 60 + 2, shape[1] // 60 + 2))
    blotches = np.asarray(
        Image.fromarray(coarse.astype(np.float32)).resize(shape[::-1], Image.Resampling.BICUBIC)
    )
    return 1 + 0.015 * blotches + rng.normal(0, 0.01, shape)


def _on_a_table(page: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A grey sheet covering most of the frame, on a lighter table around it."""
    height, width = page.shape
    table = np.full(page.shape, rng.uniform(0.92, 0.98))
    sheet = page * rng.uniform(0.55, 0.75) / page.mean()
    y0, y1 = int(height * rng.uniform(0.03, 0.12)), int(height * rng.uniform(0.88, 0.97))
    x0, x1 = int(width * rng.uniform(0.03, 0.15)), int(width * rng.uniform(0.85, 0.97))
    table[y0:y1, x0:x1] = sheet[y0:y1, x0:x1]
    return table


def _ruled(page: np.ndarray, rng: np.random.Generator, through: int) -> np.ndarray:
    """Ruled lines every 1/9 of the height, one of them at row `through`."""
    height = page.shape[0]
    gap = height // 9
    rows = np.arange(through % gap, height, gap)
    thickness = max(int(height * 0.004), 2)
    shade = rng.uniform(0.65, 0.8)
    for r in rows:
        page[r : r + thickness] *= shade
    return page


def _gradient(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    height, width = shape
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width]
    t = (np.cos(angle) * xs / width + np.sin(angle) * ys / height) / np.sqrt(2)
    t = (t - t.min()) / (t.max() - t.min())
    return 1.0 - 0.42 * t


def _shadow(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A soft-edged shadow over a random half-plane, 25-45% darker."""
    height, width = shape
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width]
    d = np.cos(angle) * (xs - width * rng.uniform(0.3, 0.7)) + np.sin(angle) * (
        ys - height * rng.uniform(0.3, 0.7)
    )
    soft = 1 / (1 + np.exp(-d / (0.03 * width)))
    return 1 - rng.uniform(0.25, 0.45) * soft


def _slant(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The page seen at a slant: a perspective transform moving the corners by up to 8%."""
    width, height = img.size
    jitter = rng.uniform(-0.08, 0.08, 8) * np.array([width, height] * 4)
    corners = np.array([0, 0, width, 0, width, height, 0, height], np.float64) + jitter
    coeffs = _perspective(
        corners.reshape(4, 2), np.array([[0, 0], [width, 0], [width, height], [0, height]])
    )
    edge = int(np.median(np.asarray(img)[:, :5]))
    return img.transform(
        img.size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BICUBIC, fillcolor=edge
    )


def _perspective(src: np.ndarray, dst: np.ndarray) -> list[float]:
    """PIL's 8 coefficients mapping output points `dst` to input points `src`."""
    rows = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return list(np.linalg.solve(np.array(rows, np.float64), src.reshape(8)))

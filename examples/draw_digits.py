"""Draw the ten demo digits in examples/digits/ as a person would with a mouse: dark strokes on
light paper, larger than MNIST and off-centre, so predict shows the image preprocessing at work;
and examples/number.png, a meter reading in the same hand for `mnist-edge read`.

    python examples/draw_digits.py
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

CANVAS = (160, 200)  # width, height: not MNIST's 28x28, not square
STROKE = 20  # pixels: about MNIST's stroke width once scaled into the 20x20 box


def _arc(cx, cy, rx, ry, start, end, steps=24):
    """Points along an ellipse arc; angles in degrees, 0 = right, 90 = down."""
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in (start + (end - start) * i / steps for i in range(steps + 1))
    ]


# Each digit is a list of strokes; each stroke a list of (x, y) points on a 100x100 grid.
STROKES = {
    0: [_arc(50, 50, 26, 40, 0, 360)],
    1: [[(38, 22), (54, 10), (54, 90)]],
    2: [[*_arc(50, 32, 24, 22, 200, 360), (72, 40), (26, 90), (78, 90)]],
    3: [_arc(48, 30, 22, 20, 210, 450), _arc(48, 68, 26, 22, 270, 500)],
    4: [[(60, 90), (60, 10), (22, 66), (80, 66)]],
    5: [[(74, 12), (34, 12), (30, 46), *_arc(48, 64, 26, 25, 230, 500)]],
    6: [[(66, 10), (34, 46), *_arc(50, 66, 24, 24, 200, 560)]],
    7: [[(24, 12), (78, 12), (42, 90)]],
    8: [_arc(50, 30, 20, 19, 90, 450), _arc(50, 69, 25, 21, -90, 270)],
    9: [_arc(50, 34, 23, 22, 0, 360), [(73, 34), (66, 90)]],
}


def draw(digit: int) -> Image.Image:
    img = Image.new("L", CANVAS, 235)  # off-white paper
    pen = ImageDraw.Draw(img)
    for stroke in STROKES[digit]:
        # Map the 100x100 grid into the canvas, shifted right and down: nothing is centred.
        points = [(30 + x * 1.1, 25 + y * 1.5) for x, y in stroke]
        pen.line(points, fill=30, width=STROKE, joint="curve")
        for x, y in (points[0], points[-1]):
            pen.ellipse((x - STROKE / 2, y - STROKE / 2, x + STROKE / 2, y + STROKE / 2), fill=30)
    return img


def number(digits: str) -> Image.Image:
    """Digits side by side on one strip of the same paper, a little overlapping their canvases
    and each a little higher or lower, as written on a line."""
    step = CANVAS[0] - 50
    img = Image.new("L", (step * len(digits) + 60, CANVAS[1] + 20), 235)
    for i, d in enumerate(digits):
        drawn = draw(int(d))
        ink = drawn.point(lambda v: 255 if v < 128 else 0)  # paste only the strokes
        img.paste(drawn, (i * step, 10 + (i % 3) * 5 - 5), ink)
    return img


if __name__ == "__main__":
    here = Path(__file__).parent
    out = here / "digits"
    out.mkdir(exist_ok=True)
    for digit in STROKES:
        draw(digit).save(out / f"{digit}.png")
    number("40917").save(here / "number.png")
    print(f"wrote {len(STROKES)} digits to {out} and a number to {here / 'number.png'}")

"""A handwritten number -> its digits, left to right, each as MNIST's 28x28.

The writing is found as one digit's ink is (runtime/ink.py: the page divided out, the polarity
from the result, Otsu, ruled lines out), at READ_SIDE pixels on the long side. Then:

1. Strokes: 8-connected groups of ink pixels.
2. The line's height: the median height of the tall strokes. Underlines (far wider than
   tall and flat) are dropped.
3. Strokes one above another (overlapping in x by OVERLAP of the narrower) are one digit: the
   floating bar of a 5, a 4 drawn in two strokes, a broken stroke.
4. Specks, low and small against the line's height, that joined no digit are dropped.
5. One line only: digits that share no rows with the line's main band are a second line.
6. Touching digits: a digit far wider than the others (WIDE) is cut into as many pieces as
   its width holds, each cut moved to the thinnest column near the even cut.
7. Each digit's ink (its own strokes, their soft edges) gets its stroke brought to MNIST's
   width and is fitted as one digit is.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from runtime.errors import InputError
from runtime.ink import fit, group_stats, label, stroke_to_mnist, writing

READ_SIDE = 512  # numbers are wide: twice one digit's analysis side
MAX_DIGITS = 32  # a number longer than this is refused (memory and time stay bounded)
OVERLAP = 0.5  # of the narrower stroke's width: strokes overlapping this much are one digit
UNDERLINE = (2.0, 0.25)  # wider than 2 line heights and flatter than 1/4 of its width
SPECK = 0.3  # of the line's height: digits lower than this and small are specks
GAP = 0.3  # of the line's height: strokes further apart in height are not one digit
PART = 0.6  # of the line's height: a shorter stroke meeting a digit in x is part of it
DIGIT_ASPECT = 0.7  # a handwritten digit's usual width over its height
WIDE = 1.0  # of its height: a mark wider than this may be digits touching
WIDEST = 1.45  # of its height: no one digit is wider (1 in 100 of MNIST's training digits is)
NARROWEST = 0.45  # of its height: the narrowest a digit cut from a wider mark is thought to be
CUT_WINDOW = 0.3  # of a piece's width: the thinnest column is looked for this far from a cut


@dataclass(frozen=True)
class Box:
    """A digit's place in the picture, in pixels: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int


@dataclass
class Mark:
    """A digit (or touching digits) in the analysis picture: its box and its strokes."""

    top: int
    left: int
    bottom: int  # inclusive
    right: int
    strokes: list[int]  # labels of its strokes

    @property
    def width(self) -> int:
        return self.right - self.left + 1

    @property
    def height(self) -> int:
        return self.bottom - self.top + 1

    def take(self, other: Mark) -> None:
        self.top, self.left = min(self.top, other.top), min(self.left, other.left)
        self.bottom, self.right = max(self.bottom, other.bottom), max(self.right, other.right)
        self.strokes += other.strokes


@dataclass
class Line:
    """The writing of one line: its ink and strokes at analysis size, and its digits."""

    ink: np.ndarray
    labels: np.ndarray  # strokes, 1..n
    factor: int  # the analysis picture is this many times smaller than the input
    digits: list[Mark]
    height: float  # the line's height, analysis pixels


def find_line(gray: np.ndarray) -> Line:
    """Grayscale (h, w) in [0, 1], either polarity -> its line of digits, left to right. Raises
    InputError when there is no writing, more than one line or more than MAX_DIGITS marks."""
    ink, mask, factor = writing(gray, READ_SIDE)
    labels, count = label(mask)
    if count == 0:
        raise InputError("expected a handwritten number, found no writing")
    digits, height = _digits(labels, count)
    digits = _one_line(digits)
    if len(digits) > MAX_DIGITS:
        raise InputError(
            f"expected a number of at most {MAX_DIGITS} digits, found {len(digits)} marks"
        )
    return Line(ink, labels, factor, digits, height)


def readings(line: Line, d: Mark) -> list[list[Mark]]:
    """The ways mark `d` may be read: whole, unless far wider than any one digit is, and for a
    mark wider than a digit usually is, cut into 2, 3... pieces, up to what its width holds.
    Widths are judged against the line's height (a small digit is not a narrow one)."""
    height = max(d.height, line.height)
    whole = [[d]] if d.width <= WIDEST * height else []
    if d.width <= WIDE * height:
        return whole
    most = min(MAX_DIGITS, max(2, math.ceil(d.width / (NARROWEST * height))))
    own = np.isin(line.labels[d.top : d.bottom + 1, d.left : d.right + 1], d.strokes)
    return whole + [_cut(d, own, pieces) for pieces in range(2, most + 1)]


def digits_in(line: Line, d: Mark) -> float:
    """How many digits mark `d`'s width suggests, from a digit's usual width for its height."""
    return d.width / (DIGIT_ASPECT * max(d.height, line.height))


def images(line: Line, digits: list[Mark]) -> tuple[np.ndarray, list[Box]]:
    """Each digit as MNIST's uint8 28x28, and its box in the input's pixels."""
    out, boxes = [], []
    for d in digits:
        own = np.isin(line.labels[d.top : d.bottom + 1, d.left : d.right + 1], d.strokes)
        soft = _grown(own)  # the strokes' soft edges, not a neighbour's
        crop = np.where(soft, line.ink[d.top : d.bottom + 1, d.left : d.right + 1], 0.0)
        out.append(fit(stroke_to_mnist(crop, own)))
        f = line.factor
        boxes.append(Box(d.left * f, d.top * f, d.width * f, d.height * f))
    return np.stack(out), boxes


def _digits(labels: np.ndarray, count: int) -> list[Mark]:
    area, (tops, lefts, bottoms, rights) = group_stats(labels, count)
    heights, widths = bottoms - tops + 1, rights - lefts + 1
    line = float(np.median(heights[heights >= 0.5 * heights.max()]))
    strokes = [
        Mark(int(tops[g]), int(lefts[g]), int(bottoms[g]), int(rights[g]), [g + 1])
        for g in range(count)
        if not (widths[g] > UNDERLINE[0] * line and heights[g] < UNDERLINE[1] * widths[g])
    ]
    digits: list[Mark] = []
    for s in sorted(strokes, key=lambda s: s.left):
        part = [d for d in digits if _one_digit(d, s, line)]
        if part:
            part[0].take(s)
        else:
            digits.append(s)
    big = max(area)
    kept = [
        d
        for d in digits
        if d.height >= SPECK * line or sum(area[g - 1] for g in d.strokes) >= 0.25 * big
    ]
    return kept, line


def _one_digit(d: Mark, s: Mark, line: float) -> bool:
    """Whether stroke `s` belongs with digit `d`: close above or below it, or a short stroke
    (a 5's bar, half of a 4) meeting it in x."""
    if max(d.top, s.top) - min(d.bottom, s.bottom) > GAP * line:
        return False  # one above the other, but far: another line
    overlap = min(d.right, s.right) - max(d.left, s.left) + 1
    if overlap >= OVERLAP * min(d.width, s.width):
        return True
    return overlap >= -1 and min(d.height, s.height) < PART * line


def _one_line(digits: list[Mark]) -> list[Mark]:
    """`digits`, unless their rows fall into more than one band (more than one line)."""
    if not digits:
        raise InputError("expected a handwritten number, found only specks")
    lines, bottom = 1, None
    for d in sorted(digits, key=lambda d: d.top):
        if bottom is not None and d.top > bottom:
            lines += 1
        bottom = d.bottom if bottom is None else max(bottom, d.bottom)
    if lines > 1:
        raise InputError(f"expected one line of digits, found {lines}: read takes one line")
    return digits


def _cut(d: Mark, own: np.ndarray, pieces: int) -> list[Mark]:
    """`d` cut into `pieces`, each cut at the thinnest column near the even cut."""
    profile = own.sum(axis=0)
    reach = max(1, round(CUT_WINDOW * d.width / pieces))
    cuts = [0]
    for i in range(1, pieces):
        even = round(i * d.width / pieces)
        lo, hi = max(cuts[-1] + 1, even - reach), min(d.width - 1, even + reach)
        cuts.append(lo + int(np.argmin(profile[lo : hi + 1])) if hi >= lo else even)
    cuts.append(d.width)
    out = []
    for a, b in itertools.pairwise(cuts):
        rows = np.nonzero(own[:, a:b].any(axis=1))[0]
        if len(rows) == 0:
            continue
        top, bottom = d.top + int(rows[0]), d.top + int(rows[-1])
        out.append(Mark(top, d.left + a, bottom, d.left + b - 1, d.strokes))
    return out


def _grown(mask: np.ndarray) -> np.ndarray:
    p = np.pad(mask, 1)
    rows = p[:-2] | p[1:-1] | p[2:]
    return rows[:, :-2] | rows[:, 1:-1] | rows[:, 2:]

"""Read a handwritten number: its digits found (runtime/segment.py), classified in one batched
call, and returned left to right with their confidences and places."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from runtime.errors import InputError
from runtime.images import decode
from runtime.segment import Box, Line, Mark, digits_in, find_line, images, readings

UNSURE = "?"
PRIOR = 0.25  # how much a count far from what the width suggests costs, in log probability
ONE_DIGIT = 1.6  # a mark up to 1.6 usual digit widths wide is as likely one digit as more


@dataclass(frozen=True)
class DigitRead:
    label: str
    confidence: float
    top_k: list[tuple[str, float]]  # the best labels, best first, the first being `label`
    box: Box  # in the source image's pixels


@dataclass(frozen=True)
class Reading:
    digits: list[DigitRead]

    def text(self, min_confidence: float = 0.0) -> str:
        """The number, with UNSURE for each digit read below `min_confidence`."""
        return "".join(d.label if d.confidence >= min_confidence else UNSURE for d in self.digits)

    def unsure(self, min_confidence: float) -> int:
        return sum(d.confidence < min_confidence for d in self.digits)


@dataclass(frozen=True)
class Plan:
    """A number's candidate digits, ready for the model: `pictures` (n, 28, 28) to classify in
    one call, then `choose` picks a way to read each mark from their probabilities."""

    line: Line
    options: list[list[list[Mark]]]  # per mark, its ways to be read
    pictures: np.ndarray
    boxes: list[Box]  # per picture, in the source image's pixels

    def choose(self, probs: np.ndarray, labels: tuple[str, ...], top_k: int = 3) -> Reading:
        surest = np.log(probs.max(axis=1))
        chosen, at = [], 0
        for mark, ways in zip(self.line.digits, self.options, strict=True):
            sizes = [len(way) for way in ways]
            starts = np.cumsum([at, *sizes])[:-1]
            expected = digits_in(self.line, mark)
            score = [  # how sure, less how far from the count its width suggests
                surest[s : s + n].mean() - PRIOR * _distance(n, expected) ** 2
                for s, n in zip(starts, sizes, strict=True)
            ]
            pick = int(np.argmax(score))  # the first of equals: the fewest pieces
            chosen += range(starts[pick], starts[pick] + sizes[pick])
            at += sum(sizes)
        order = np.argsort(-probs[chosen], axis=1, kind="stable")[:, :top_k]
        digits = []
        for i, ranked_ids in zip(chosen, order, strict=True):
            ranked = [(labels[k], float(probs[i, k])) for k in ranked_ids]
            digits.append(DigitRead(ranked[0][0], ranked[0][1], ranked, self.boxes[i]))
        return Reading(digits)


def plan_reading(gray: np.ndarray, scale: tuple[float, float] = (1.0, 1.0)) -> Plan:
    """A grayscale picture (float in [0, 1]) of one line of digits -> its Plan. `scale` (x, y)
    maps the picture's pixels to the source image's, for the boxes.

    A mark wider than a digit usually is may be digits touching: it is read whole and cut into
    2, 3... pieces, all classified together; the way whose digits are surest (mean log
    probability), less the squared distance of its count from what the mark's width suggests,
    wins, the fewer pieces on a tie."""
    line = find_line(gray)
    options = [readings(line, d) for d in line.digits]
    flat = [piece for ways in options for way in ways for piece in way]
    pictures, boxes = images(line, flat)
    sx, sy = scale
    placed = [
        Box(round(b.x * sx), round(b.y * sy), round(b.w * sx), round(b.h * sy)) for b in boxes
    ]
    return Plan(line, options, pictures, placed)


def read_number(clf, gray: np.ndarray, scale: tuple[float, float] = (1.0, 1.0), top_k: int = 3):
    """A grayscale picture (float in [0, 1]) of one line of digits -> Reading, with `clf`."""
    plan = plan_reading(gray, scale)
    return plan.choose(clf.finite(clf.proba_of_images(plan.pictures)), clf.contract.labels, top_k)


def _distance(count: int, expected: float) -> float:
    """How far `count` digits are from what a mark's width suggests; one digit is as likely
    as any count up to ONE_DIGIT (digits vary in width more than in height)."""
    if count == 1:
        return max(0.0, expected - ONE_DIGIT)
    return count - expected


def plan_file(source: Path | BinaryIO, name: str, before_decoding=None) -> Plan:
    """The Plan for the number in an image file (or an open upload); `name` names it in errors;
    `before_decoding(width, height)` may refuse the image from its header."""
    size: list[int] = []

    def heard(width: int, height: int) -> None:
        size[:] = [width, height]
        if before_decoding is not None:
            before_decoding(width, height)

    gray = decode(source, name, heard)
    try:
        return plan_reading(gray, (size[0] / gray.shape[1], size[1] / gray.shape[0]))
    except InputError as e:
        raise InputError(f"{name}: {e}") from None


def read_file(clf, source: Path | BinaryIO, name: str, top_k: int = 3) -> Reading:
    """Read the number in an image file (or an open upload); `name` names it in errors."""
    plan = plan_file(source, name)
    return plan.choose(clf.finite(clf.proba_of_images(plan.pictures)), clf.contract.labels, top_k)


def annotate(image, reading: Reading, min_confidence: float = 0.0):
    """A copy of `image` (PIL) in colour with each digit's box and what it was read as, red
    where the digit is unsure."""
    from PIL import ImageDraw

    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    width = max(1, round(max(out.size) / 400))
    for d in reading.digits:
        colour = (0, 160, 0) if d.confidence >= min_confidence else (220, 0, 0)
        b = d.box
        draw.rectangle([b.x, b.y, b.x + b.w - 1, b.y + b.h - 1], outline=colour, width=width)
        label = d.label if d.confidence >= min_confidence else UNSURE
        draw.text((b.x + width, b.y + width), f"{label} {d.confidence:.2f}", fill=colour)
    return out

"""Finding the one digit in a picture (runtime/ink.py): photos under every condition give the
digit a clean drawing of it gives; MNIST-sized pictures keep the plain path, pixel for pixel."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from runtime.errors import InputError
from runtime.ink import label, mnist_style
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from photos import CONDITIONS, photograph

STROKES = {  # digits as pen strokes on a 28x28 sheet
    4: [[(16, 4), (7, 17), (21, 17)], [(16, 4), (16, 24)]],
    7: [[(7, 5), (21, 5), (12, 24)]],
    2: [[(8, 9), (13, 5), (19, 7), (19, 12), (8, 23), (21, 23)]],
}


def drawn(digit: int, width: int = 3) -> np.ndarray:
    """A digit's ink on a 28x28 sheet, float, 1 = ink."""
    sheet = Image.new("L", (28, 28), 0)
    for stroke in STROKES[digit]:
        ImageDraw.Draw(sheet).line(stroke, fill=255, width=width, joint="curve")
    return np.asarray(sheet, np.float64) / 255


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two 28x28 digits, each blurred a little (a pixel's shift costs little)."""
    blur = [
        np.asarray(Image.fromarray(x).resize((14, 14), Image.Resampling.BOX), float) for x in (a, b)
    ]
    return float(np.corrcoef(blur[0].ravel(), blur[1].ravel())[0, 1])


def on_paper(ink: np.ndarray) -> np.ndarray:
    """The clean reference: the digit, dark on white, large and alone."""
    big = np.asarray(Image.fromarray((ink * 255).astype(np.uint8)).resize((280, 280)), float)
    return 1 - big / 255


LIT = [c for c in CONDITIONS if c not in ("paper", "hairline", "marker", "perspective", "all")]


@pytest.mark.parametrize("condition", LIT)
@pytest.mark.parametrize("digit", sorted(STROKES))
def test_a_photographed_digit_gives_the_digit_of_the_same_page_evenly_lit(digit, condition):
    # Same seed: the same digit, pen and sheet, photographed under `condition` or plainly.
    ink = drawn(digit)
    plain = mnist_style(photograph(ink, "paper", seed=digit) / 255)
    found = mnist_style(photograph(ink, condition, seed=digit) / 255)
    assert similarity(found, plain) > 0.9, condition


@pytest.mark.parametrize("condition", ["perspective", "all"])
def test_a_digit_photographed_at_a_slant_is_read(condition):
    # A slant changes the digit's shape itself: the shipped model reads what is found.
    from runtime.session import Classifier

    found = [mnist_style(photograph(drawn(d), condition, seed=d) / 255) for d in sorted(STROKES)]
    with Classifier() as clf:
        assert clf.predict(np.stack(found)).tolist() == sorted(STROKES)


@pytest.mark.parametrize("digit", sorted(STROKES))
def test_a_digit_on_paper_is_the_digit_drawn(digit):
    found = mnist_style(photograph(drawn(digit), "paper", seed=digit) / 255)
    assert similarity(found, mnist_style(on_paper(drawn(digit)))) > 0.75


def test_light_ink_on_dark_gives_the_same_digit_as_dark_on_light():
    photo = photograph(drawn(4), "gradient", seed=1) / 255
    assert similarity(mnist_style(photo), mnist_style(1 - photo)) > 0.95


def test_specks_and_a_sheet_edge_touching_the_frame_are_not_the_digit():
    page = np.full((600, 800), 0.9)
    page[:, :60] = 0.3  # a dark table at the left edge
    rng = np.random.default_rng(0)
    ys, xs = rng.integers(80, 560, 40), rng.integers(100, 760, 40)
    for y, x in zip(ys, xs, strict=True):
        page[y : y + 3, x : x + 3] = 0.2  # specks of dust, 3 px each
    digit = (
        1
        - np.asarray(Image.fromarray((drawn(7) * 255).astype(np.uint8)).resize((200, 200)), float)
        / 255
    )
    page[200:400, 300:500] = np.minimum(page[200:400, 300:500], 0.15 + 0.75 * digit)
    found = mnist_style(page)
    assert similarity(found, mnist_style(on_paper(drawn(7)))) > 0.9


def test_a_printed_line_through_the_digit_is_taken_out():
    # A form's rule, as dark as the ink and slightly tilted, through the middle of a 7.
    ink = drawn(7)
    plain = photograph(ink, "paper", seed=7) / 255
    ruled = plain.copy()
    h, w = ruled.shape
    for x in range(w):
        y = int(h * 0.45 + 0.03 * x)
        ruled[y : y + 4, x] *= 0.2
    assert similarity(mnist_style(ruled), mnist_style(plain)) > 0.9


def test_a_floating_bar_is_part_of_the_digit():
    # A 5 whose top bar was lifted well off its body, as people write it: two groups of ink.
    five = Image.new("L", (28, 28), 0)
    body = [(10, 8), (9, 14), (15, 13), (19, 17), (18, 23), (13, 25), (8, 23)]
    ImageDraw.Draw(five).line(body, fill=255, width=3, joint="curve")
    ImageDraw.Draw(five).line([(12, 2), (21, 2)], fill=255, width=3)
    page = on_paper(np.asarray(five, float) / 255)
    everything = plain_reference(page)  # the plain path keeps all the ink on a clean page
    assert similarity(mnist_style(page), everything) > 0.95


def test_a_fine_pen_and_a_marker_give_about_the_same_digit():
    fine = mnist_style(photograph(drawn(2), "hairline", seed=3) / 255)
    marker = mnist_style(photograph(drawn(2), "marker", seed=3) / 255)
    assert similarity(fine, marker) > 0.85
    stroke = [(img > 127).sum(axis=1).max() for img in (fine, marker)]  # widest row of ink
    assert max(stroke) < 2 * min(stroke) + 4


@pytest.mark.parametrize("seed", range(30, 50))  # six of these sheets' grain once won
def test_a_faint_hairline_on_grainy_paper_is_the_digit_not_the_grain(seed):
    # The paper's grain, looked at for light ink, must not outscore a faint dark hairline "1",
    # and thickening the stroke must not thicken the paper around it: a stroke, not a block.
    one = np.zeros((28, 28))
    one[4:24, 13:15] = 1
    found = mnist_style(photograph(one, "hairline", seed=seed) / 255)
    widest = (found > 127).sum(axis=1).max()
    assert 2 <= widest <= 8, widest


def plain_reference(gray: np.ndarray) -> np.ndarray:
    """The 28x28 path as it was before runtime/ink.py, written out again on its own: ink
    against the border's median, cropped at a fifth of its peak, Lanczos into 20x20, centred."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    ink = (background - gray if background > 0.5 else gray - background).clip(0, None)
    ink = ink / ink.max()
    rows, cols = np.nonzero(ink > 0.2)
    ink = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = ink.shape
    size = (max(1, round(w * 20 / max(h, w))), max(1, round(h * 20 / max(h, w))))
    boxed = np.asarray(
        Image.fromarray(ink.astype(np.float32)).resize(size, Image.Resampling.LANCZOS), float
    ).clip(0, 1)
    ys, xs = np.indices(boxed.shape)
    cy, cx = (ys * boxed).sum() / boxed.sum(), (xs * boxed).sum() / boxed.sum()
    top = min(max(int(np.rint(14 - cy)), 0), 28 - boxed.shape[0])
    left = min(max(int(np.rint(14 - cx)), 0), 28 - boxed.shape[1])
    field = np.zeros((28, 28))
    field[top : top + boxed.shape[0], left : left + boxed.shape[1]] = boxed
    return np.round(field * 255).astype(np.uint8)


def test_mnist_sized_pictures_keep_the_plain_path_pixel_for_pixel(real_mnist):
    from runtime.mnist import load_split

    digits = load_split("test", real_mnist).images[:500]
    for image in digits:
        gray = image.astype(np.float64) / 255
        np.testing.assert_array_equal(mnist_style(gray), plain_reference(gray))
        np.testing.assert_array_equal(mnist_style(1 - gray), plain_reference(1 - gray))


def test_a_blank_page_is_no_digit():
    page = np.full((300, 400), 0.85) * (1 + 0.01 * np.random.default_rng(0).normal(size=(300, 400)))
    with pytest.raises(InputError, match="blank"):
        mnist_style(np.clip(page, 0, 1) * 0 + 0.85)


def flood_fill_groups(cells: np.ndarray) -> list[set[tuple[int, int]]]:
    """8-connected groups by plain flood fill, in the order of each group's first cell."""
    seen, groups = set(), []
    for start in zip(*np.nonzero(cells), strict=True):
        if start in seen:
            continue
        group, todo = set(), [start]
        while todo:
            y, x = todo.pop()
            if (y, x) in group or not (0 <= y < cells.shape[0] and 0 <= x < cells.shape[1]):
                continue
            if cells[y, x]:
                group.add((y, x))
                todo += [(y + dy, x + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        seen |= group
        groups.append(group)
    return groups


@pytest.mark.parametrize("seed", range(40))
def test_ink_cells_are_grouped_as_a_flood_fill_groups_them(seed):
    rng = np.random.default_rng(seed)
    cells = rng.random((rng.integers(1, 30), rng.integers(1, 30))) < rng.uniform(0.1, 0.6)
    labels, count = label(cells)
    expected = flood_fill_groups(cells)
    assert count == len(expected)
    for number, group in enumerate(expected, start=1):
        assert set(zip(*np.nonzero(labels == number), strict=True)) == group
    assert ((labels > 0) == cells).all()

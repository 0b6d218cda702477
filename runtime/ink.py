"""A picture of a digit -> MNIST's 28x28: the one digit in a photo, a scan or a drawing, its
page, shading and everything else taken away, then fitted as MNIST fitted its digits.

1. Work small: the grayscale picture reduced by a whole factor to at most ANALYSIS_SIDE pixels
   (a box mean, which also averages sensor noise away).
2. The page, estimated on a coarser grid by a closing (max, then min filter: dark strokes are
   closed over) or an opening (light strokes), brought back to size and divided out: ink is
   how far a pixel stands out from its own page, so a gradient, a shadow or a grey sheet on a
   white table leave no trace.
3. Ink is what stands out more than Otsu's threshold; long thin straight lines across the
   picture (ruled paper) are taken out.
4. The digit: ink grouped on a grid of cells; the group with the most ink wins, with the
   groups near it (a floating bar, a stroke in two pieces); specks stay out, and groups that
   touch the frame (a page's edge, a table) or span the picture count for little.
5. Polarity, from the result: steps 2-4 run for dark ink and for light ink, each against a
   page with the other side's strokes taken away first; the better digit decides. Its ink is
   then found again against the plain page, around where it was found.
6. Its stroke brought to MNIST's width relative to its size, thickened or thinned, so that a
   fine pen and a marker give the same digit; then the 20x20 box and the centre of mass.

Pictures of at most FAST_SIDE pixels (MNIST's own 28x28) keep the plain path, bit for bit:
ink against the border's median, as every picture had before.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from runtime.contract import IMAGE_SIZE
from runtime.errors import InputError

BOX = 20  # MNIST fitted each digit into a 20x20 box
CENTRE = 14.0  # where MNIST's centres of mass sit (row and column; measured on its test set)
INK_THRESHOLD = 0.2  # of the strongest ink: fainter pixels are left out of the digit's box
ANALYSIS_SIDE = 256  # long side of the picture the ink is found in
FAST_SIDE = 32  # pictures this small are MNIST-style already: the plain path, bit for bit
PAGE_CELL = 4  # the page is estimated on cells of 4x4 analysis pixels
PAGE_KERNEL = 0.2  # of the long side: wider than any stroke, narrower than shading changes
GROUP_CELL = 0.016  # of the long side: the grid ink is grouped on (4 px at 256)
GROUP_REACH = 1  # cells: ink this close forms one group
PART_REACH = 0.3  # of the digit's size: groups this near the digit are parts of it
WINDOW_MARGIN = 0.25  # of the digit's size: how far around it its ink is looked for again
PART_SHARE = 0.02  # of the digit's ink: smaller groups are specks, however near
MIN_CONTRAST = 0.08  # darkness below this is paper, whatever Otsu says
LINE_SLOPE = 0.2  # ruled lines are looked for up to this slope (11 degrees), either way
LINE_COVER = 0.55  # of the width: a line crosses most of the picture
LINE_THICKNESS = 0.012  # of the height: at most this thick (a pen's stroke is thicker)
STROKE = 0.14  # MNIST's stroke width over its box side (median of the training set)
STROKE_RANGE = (0.09, 0.24)  # outside it, the stroke is brought to STROKE


def mnist_style(gray: np.ndarray) -> np.ndarray:
    """A grayscale picture of a digit (float in [0, 1], any size, either polarity) -> MNIST
    uint8 (28, 28): the digit's ink, fitted into a 20x20 box and centred by its mass."""
    return fit(plain_ink(gray) if max(gray.shape) <= FAST_SIDE else digit_ink(gray))


def fit(ink: np.ndarray) -> np.ndarray:
    """Ink strength (h, w) in [0, 1] -> MNIST uint8 (28, 28): the ink's box fitted into 20x20
    and centred by its mass, as MNIST was made."""
    rows, cols = np.nonzero(ink > INK_THRESHOLD * ink.max()) if ink.max() > 0 else ((), ())
    if len(rows) == 0:
        raise InputError("expected a digit, found a blank image")
    ink = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    boxed = _fit_box(ink)  # (h, w), max(h, w) == 20
    return _centre_by_mass(boxed)


def plain_ink(gray: np.ndarray) -> np.ndarray:
    """Ink strength in [0, 1] (1 = strongest) against the border's median, whichever polarity:
    for pictures that are MNIST-style already (and what every picture got before digit_ink)."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    edge = np.sort(border)  # the median; np.median would import numpy.ma, 8 ms of cold start
    background = float(edge[(len(edge) - 1) // 2] + edge[len(edge) // 2]) / 2
    ink = background - gray if background > 0.5 else gray - background
    ink = ink.clip(0, None)
    peak = ink.max()
    return ink / peak if peak > 0 else ink


def digit_ink(gray: np.ndarray) -> np.ndarray:
    """Grayscale (h, w) in [0, 1], either polarity -> the digit's ink (h', w') in [0, 1], 1 the
    strongest, 0 all else; h', w' the analysis size."""
    small = _reduce(gray, ANALYSIS_SIDE)
    found = _ink_side(small)
    if found is None:
        return np.zeros_like(small)
    _, ink, mask = _candidate(*found)
    return stroke_to_mnist(ink, mask) if mask.any() else np.zeros_like(small)


def writing(gray: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray, int]:
    """All the writing in a picture, not one digit: (ink in [0, 1], mask, factor) at `side`
    pixels on the long side, `factor` times smaller than `gray`. Page, polarity, threshold and
    ruled lines as for one digit."""
    small = _reduce(gray, side)
    factor = _factor(gray.shape, side)
    found = _ink_side(small)
    if found is None:
        return np.zeros_like(small), np.zeros(small.shape, bool), factor
    standing = found[0]
    threshold = max(_otsu(standing), MIN_CONTRAST)
    lines = _ruled_lines(standing > threshold)
    mask = (standing > threshold) & ~lines
    if not mask.any():
        return np.zeros_like(small), mask, factor
    level = _median(standing[mask])
    ink = np.clip((standing - threshold / 2) / max(level - threshold / 2, 1e-6), 0, 1)
    ink[lines] = 0
    return ink, mask, factor


def _ink_side(small: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(what stands out from the page on the ink's side, a window around the best digit found
    there), or None when neither side holds anything like a digit."""
    grid = _reduce(small, max(small.shape) // PAGE_CELL)
    k = _kernel(grid)
    closed, opened = _closing(grid, k), _opening(grid, k)
    # Which side the ink is on: the digit found against each side's page, the other side's
    # strokes taken away first (or they would leave halos of page that look like a digit).
    dark = _candidate(_stand_out(small, _closing(opened, k), dark=True))
    light = _candidate(_stand_out(small, _opening(closed, k), dark=False))
    if max(dark[0], light[0]) <= 0:
        return None
    # Then the ink against its side's plain page, around where the digit was found: taking
    # the other side away first also fills the paper between the strokes of a digit that
    # fills the picture, and the plain page leaves a page's edge on a table standing out.
    is_dark = dark[0] >= light[0]
    standing = _stand_out(small, closed if is_dark else opened, dark=is_dark)
    return standing, _around((dark if is_dark else light)[2])


def _around(mask: np.ndarray) -> np.ndarray:
    """The box around `mask`'s pixels, grown by WINDOW_MARGIN of its size on every side."""
    ys, xs = np.nonzero(mask)
    margin = max(round(WINDOW_MARGIN * max(np.ptp(ys), np.ptp(xs))), 2)
    window = np.zeros(mask.shape)
    window[
        max(ys.min() - margin, 0) : ys.max() + margin + 1,
        max(xs.min() - margin, 0) : xs.max() + margin + 1,
    ] = 1
    return window


def _candidate(
    standing: np.ndarray, window: np.ndarray | None = None
) -> tuple[float, np.ndarray, np.ndarray]:
    """(score, ink, mask) of the digit found among what stands out (one polarity's), within
    `window` where one is given (lines are still judged across the whole picture)."""
    focus = standing if window is None else standing * window
    threshold = max(_otsu(focus), MIN_CONTRAST)
    lines = _ruled_lines(standing > threshold)
    mask = (focus > threshold) & ~lines
    if not mask.any():
        return 0.0, focus, mask
    group, score = _the_digit(mask, focus)
    mask &= group
    level = _median(focus[mask])
    ink = np.clip((focus - threshold / 2) / max(level - threshold / 2, 1e-6), 0, 1)
    ink[~group | lines] = 0
    return score, ink, mask


def _reduce(gray: np.ndarray, side: int) -> np.ndarray:
    """The picture shrunk by a whole factor to at most `side` pixels: each output pixel the mean
    of a factor x factor block (the last partial rows and columns dropped)."""
    factor = _factor(gray.shape, side)
    if factor == 1:
        return gray.astype(np.float64)
    h, w = (gray.shape[0] // factor) * factor, (gray.shape[1] // factor) * factor
    return _block_sum(gray[:h, :w].astype(np.float64), factor) / (factor * factor)


def _factor(shape: tuple[int, ...], side: int) -> int:
    return math.ceil(max(shape) / side)


def _stand_out(small: np.ndarray, page: np.ndarray, dark: bool) -> np.ndarray:
    """How far each pixel stands out from its page (estimated on the coarse grid), towards
    `dark` or light: 0 = page, 1 = black ink on a page of any shade (or white on black).
    Dark ink is measured against its page's light (dividing by the page takes a gradient, a
    shadow or a grey sheet away), light ink against the page's distance from white or from
    black, whichever is further: paper is light, and the grain of a light page must stay faint
    when it is looked at for light ink."""
    under = _resize_bilinear(page, small.shape)
    if dark:
        return np.clip((under - small) / np.maximum(under, 1e-3), 0, 1)
    return np.clip((small - under) / np.maximum(under, 1 - under), 0, 1)


def _ruled_lines(mask: np.ndarray) -> np.ndarray:
    """The pixels of long, thin, straight lines across the picture, near horizontal (ruled or
    printed lines, a crease): the picture sheared by each slope up to LINE_SLOPE, in steps that
    keep a line within one band; a band of a few rows holding ink over most of the width, with
    little ink in the rows just above and below it (a pen's stroke is thicker), is a line."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    lines = np.zeros_like(mask)
    if len(ys) == 0:
        return lines
    thin = max(2, round(LINE_THICKNESS * h))
    steps = math.ceil(2 * LINE_SLOPE * w / thin) + 1
    slopes = np.linspace(-LINE_SLOPE, LINE_SLOPE, steps)[:, None]
    offset = np.rint(ys - slopes * xs).astype(np.int64)  # (slope, pixel): the row it falls in
    offset -= offset.min(axis=1, keepdims=True) - thin - 1  # room for the rows above a band
    length = int(offset.max()) + thin + 2
    at = offset + np.arange(steps)[:, None] * length
    counts = np.bincount(at.ravel(), None, steps * length).reshape(steps, length)
    total = np.concatenate([np.zeros((steps, 1), np.int64), np.cumsum(counts, axis=1)], axis=1)
    band = total[:, thin:] - total[:, :-thin]  # band[s, b]: rows b .. b + thin - 1 at slope s
    above = np.zeros_like(band)
    above[:, thin:] = band[:, :-thin]
    below = np.zeros_like(band)
    below[:, :-thin] = band[:, thin:]
    # A band over most of the width, with less than half as much just above and below it
    # (a pen's stroke is thicker): a line; its rows, with their soft edges, are taken out.
    tops = (band >= LINE_COVER * w) & (np.maximum(above, below) < band / 2)
    if not tops.any():
        return lines
    at_slope, top = np.nonzero(tops)
    edges = np.zeros((steps, length + 1), np.int64)
    np.add.at(edges, (at_slope, np.maximum(top - 2, 0)), 1)
    np.add.at(edges, (at_slope, np.minimum(top + thin + 2, length)), -1)
    on_a_line = np.cumsum(edges, axis=1) > 0  # (slope, row): the row is part of a line
    near = on_a_line[np.arange(steps)[:, None], offset].any(axis=0)
    lines[ys[near], xs[near]] = True
    return lines


def _block_sum(a: np.ndarray, factor: int) -> np.ndarray:
    """Sums of `factor` x `factor` blocks (the sides are multiples of `factor`): rows first,
    then columns, each over contiguous memory (three times faster than one 4-d reduction)."""
    h, w = a.shape
    rows = a.reshape(h // factor, factor, w).sum(axis=1)
    return rows.reshape(h // factor, w // factor, factor).sum(axis=2)


def _median(values: np.ndarray) -> float:
    """np.median of a 1-d array, without importing numpy.ma (8 ms of cold start)."""
    n = len(values)
    middle = np.partition(values, [(n - 1) // 2, n // 2])
    return float(middle[(n - 1) // 2] + middle[n // 2]) / 2


def _kernel(page: np.ndarray) -> int:
    return max(3, round(PAGE_KERNEL * max(page.shape)) | 1)


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of `values` in [0, 1]."""
    counts = np.bincount(np.minimum((values * bins).astype(np.int64), bins - 1).ravel(), None, bins)
    p = counts / counts.sum()
    centres = (np.arange(bins) + 0.5) / bins
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * centres)
    total = m0[-1]
    between = (total * w0 - m0) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)
    return float(centres[int(np.argmax(between))])


def _the_digit(mask: np.ndarray, darkness: np.ndarray) -> tuple[np.ndarray, float]:
    """The pixels of the groups of ink cells that make the digit, as a mask of the picture, and
    its score: its ink, less for a group that touches the frame or spans the picture.

    The group with the best score is the digit's main part; groups near it (within PART_REACH
    of its size) join it, as the floating bar of a 5 or a stroke drawn in two pieces."""
    cell = max(2, round(GROUP_CELL * max(mask.shape)))
    rows, cols = -(-mask.shape[0] // cell), -(-mask.shape[1] // cell)
    weight = np.where(mask, darkness, 0.0)  # > 0 wherever mask is: darkness is over a threshold
    weight = np.pad(weight, ((0, rows * cell - mask.shape[0]), (0, cols * cell - mask.shape[1])))
    mass = _block_sum(weight, cell)
    inked = mass > 0
    labels, count = label(_grow(inked, GROUP_REACH))
    if count == 0:
        return np.zeros_like(mask), 0.0
    scores, (tops, lefts, bottoms, rights) = group_stats(labels, count, mass)
    # the page's edge, a table, a finger
    scores[(tops == 0) | (lefts == 0) | (bottoms == rows - 1) | (rights == cols - 1)] *= 0.1
    spans = np.maximum((bottoms - tops + 1) / rows, (rights - lefts + 1) / cols)
    scores[spans > 0.8] *= 0.1  # a ruled line, a crease across the page
    groups = [  # (score, box as [top, left, bottom, right] in cells), by label - 1
        (float(scores[g]), [int(tops[g]), int(lefts[g]), int(bottoms[g]), int(rights[g])])
        for g in range(count)
    ]
    best = max(range(count), key=lambda g: groups[g][0])
    score, box = groups[best]
    chosen = {best}
    grown = True
    while grown:  # parts near the digit join it, and then the parts near those
        grown = False
        reach = max(1, round(PART_REACH * max(box[2] - box[0] + 1, box[3] - box[1] + 1)))
        for g, (part_score, part) in enumerate(groups):
            if g in chosen or part_score < PART_SHARE * score or not _near(box, part, reach):
                continue
            chosen.add(g)
            box = [
                min(box[0], part[0]),
                min(box[1], part[1]),
                max(box[2], part[2]),
                max(box[3], part[3]),
            ]
            grown = True
    cells = _grow(np.isin(labels, [g + 1 for g in chosen]), 1)  # with the strokes' soft edges
    pixels = np.repeat(np.repeat(cells, cell, axis=0), cell, axis=1)
    return pixels[: mask.shape[0], : mask.shape[1]], score


def group_stats(labels: np.ndarray, count: int, weights: np.ndarray | None = None):
    """Per group 1..count of `labels`: its total weight (its size without `weights`), and its
    box as arrays (tops, lefts, bottoms, rights), bottoms and rights inclusive."""
    ys, xs = np.nonzero(labels)
    of = labels[ys, xs] - 1
    total = np.bincount(of, None if weights is None else weights[ys, xs], count)
    tops, lefts = np.full(count, labels.shape[0]), np.full(count, labels.shape[1])
    bottoms, rights = np.zeros(count, np.int64), np.zeros(count, np.int64)
    np.minimum.at(tops, of, ys)
    np.minimum.at(lefts, of, xs)
    np.maximum.at(bottoms, of, ys)
    np.maximum.at(rights, of, xs)
    return total, (tops, lefts, bottoms, rights)


def _near(box: list[int], other: list[int], reach: int) -> bool:
    """Whether two boxes of cells come within `reach` cells of each other."""
    return (
        other[0] <= box[2] + reach
        and other[2] >= box[0] - reach
        and other[1] <= box[3] + reach
        and other[3] >= box[1] - reach
    )


def label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected groups of True pixels: (labels, count), labels 1..count in the order of each
    group's first pixel row by row, 0 elsewhere. Runs of pixels in a row are joined with the
    runs they touch in the row above, the two rows' runs walked in step (a union-find over
    runs, not pixels)."""
    rows, cols = mask.shape
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    run_rows, starts = np.nonzero(edges == 1)
    if len(starts) == 0:
        return np.zeros((rows, cols), np.int32), 0
    ends = (np.nonzero(edges == -1)[1] - 1).tolist()  # inclusive; both in row-major order
    starts_list = starts.tolist()
    parent = list(range(len(starts_list)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first = np.searchsorted(run_rows, np.arange(rows + 1)).tolist()
    for r in range(1, rows):
        i, j = first[r], first[r - 1]
        while i < first[r + 1] and j < first[r]:
            if starts_list[j] <= ends[i] + 1 and starts_list[i] <= ends[j] + 1:
                a, b = root(i), root(j)
                parent[max(a, b)] = min(a, b)  # a group's root is its first run
            if ends[i] < ends[j]:
                i += 1
            else:
                j += 1
    roots = np.array([root(i) for i in range(len(parent))], np.int64)
    is_root = roots == np.arange(len(parent))
    numbers = np.zeros(len(parent), np.int32)
    numbers[is_root] = np.arange(1, is_root.sum() + 1)
    lengths = np.array(ends) - starts + 1
    flat = np.zeros(rows * cols, np.int32)
    at = np.repeat(run_rows * cols + starts, lengths) + _within(lengths)
    flat[at] = np.repeat(numbers[roots], lengths)
    return flat.reshape(rows, cols), int(is_root.sum())


def _within(lengths: np.ndarray) -> np.ndarray:
    """0, 1, ..., n-1 for each run of length n, concatenated."""
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(int(lengths.sum())) - offsets


def _grow(cells: np.ndarray, reach: int) -> np.ndarray:
    """Cells within `reach` (1) cells of a True one, diagonals included."""
    grown = cells.copy()
    for _ in range(reach):
        p = np.pad(grown, 1)
        rows = p[:-2] | p[1:-1] | p[2:]
        grown = rows[:, :-2] | rows[:, 1:-1] | rows[:, 2:]
    return grown


def stroke_to_mnist(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`ink` with its stroke thickened or thinned to MNIST's width relative to its size."""
    ys, xs = np.nonzero(mask)
    side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    width = 2 * mask.sum() / max(_boundary(mask), 1)
    ratio = width / side
    if STROKE_RANGE[0] <= ratio <= STROKE_RANGE[1]:
        return ink
    radius = round(abs(STROKE * side - width) / 2)
    if radius == 0:
        return ink
    if ratio < STROKE_RANGE[0]:
        return _max_filter(ink, 2 * radius + 1)
    thinner = _min_filter(ink, 2 * radius + 1)
    return thinner if (thinner > 0.5).sum() > 0.3 * mask.sum() else ink


def _boundary(mask: np.ndarray) -> int:
    """Pixels of `mask` with a 4-neighbour outside it (the frame counts as outside)."""
    m = np.pad(mask, 1)
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return int(mask.sum() - inner.sum())


def _closing(a: np.ndarray, k: int) -> np.ndarray:
    return _min_filter(_max_filter(a, k), k)


def _opening(a: np.ndarray, k: int) -> np.ndarray:
    return _max_filter(_min_filter(a, k), k)


def _max_filter(a: np.ndarray, k: int) -> np.ndarray:
    return _sliding(_sliding(a, k, 0, np.maximum), k, 1, np.maximum)


def _min_filter(a: np.ndarray, k: int) -> np.ndarray:
    return _sliding(_sliding(a, k, 0, np.minimum), k, 1, np.minimum)


def _sliding(a: np.ndarray, k: int, axis: int, op) -> np.ndarray:
    """`op` (np.maximum or np.minimum) over a centred window of `k` (odd) along `axis`, edges
    repeated: van Herk and Gil-Werman's block method, a few passes whatever `k` is."""
    a = np.moveaxis(a, axis, 0)
    n = a.shape[0]
    r = k // 2
    padded = np.concatenate([np.repeat(a[:1], r, 0), a, np.repeat(a[-1:], r, 0)])
    blocks = -(-padded.shape[0] // k)
    fill = blocks * k - padded.shape[0]
    padded = np.concatenate([padded, np.repeat(padded[-1:], fill, 0)])
    shaped = padded.reshape(blocks, k, *padded.shape[1:])
    forward = op.accumulate(shaped, axis=1).reshape(padded.shape)
    backward = op.accumulate(shaped[:, ::-1], axis=1)[:, ::-1].reshape(padded.shape)
    out = op(backward[:n], forward[k - 1 : k - 1 + n])
    return np.moveaxis(out, 0, axis)


def _resize_bilinear(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`a` brought to `shape` by bilinear interpolation, pixel centres aligned, edges held:
    along the columns on the small grid first, then along the rows at full size."""

    def weights(n_in: int, n_out: int):
        x = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(x).astype(np.int64)
        return lo, np.minimum(lo + 1, n_in - 1), x - lo

    x0, x1, fx = weights(a.shape[1], shape[1])
    wide = a[:, x0] * (1 - fx) + a[:, x1] * fx  # (rows of a, shape[1])
    y0, y1, fy = weights(a.shape[0], shape[0])
    return wide[y0] * (1 - fy)[:, None] + wide[y1] * fy[:, None]


def _fit_box(ink: np.ndarray) -> np.ndarray:
    h, w = ink.shape
    scale = BOX / max(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized = Image.fromarray(ink.astype(np.float32)).resize(new, Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.float64).clip(0, 1)


def _centre_by_mass(boxed: np.ndarray) -> np.ndarray:
    h, w = boxed.shape
    ys, xs = np.indices(boxed.shape)
    mass = boxed.sum()
    cy, cx = (ys * boxed).sum() / mass, (xs * boxed).sum() / mass
    top = int(np.rint(CENTRE - cy))
    left = int(np.rint(CENTRE - cx))
    top = min(max(top, 0), IMAGE_SIZE - h)  # keep the whole digit in the field
    left = min(max(left, 0), IMAGE_SIZE - w)
    field = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float64)
    field[top : top + h, left : left + w] = boxed
    return np.round(field * 255).astype(np.uint8)

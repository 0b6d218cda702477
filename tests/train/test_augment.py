"""The training augmentation: each change does what it says, within its range, reproducibly."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.tensorflow

from train.augment import Augment, augment  # noqa: E402


def bar(width: int = 2) -> np.ndarray:
    """A vertical stroke in the middle of a 28x28 image, float in [0, 1], as (1, 28, 28, 1)."""
    image = np.zeros((1, 28, 28, 1), np.float32)
    image[0, 6:22, 14 - width // 2 : 14 - width // 2 + width, 0] = 1.0
    return image


def run(images, how, seed=0):
    return augment(tf.constant(images), how, tf.random.Generator.from_seed(seed)).numpy()


def test_nothing_asked_changes_nothing():
    np.testing.assert_allclose(run(bar(), Augment()), bar(), atol=1e-6)


def test_the_same_seed_gives_the_same_images_and_another_seed_others():
    how = Augment(shift=0.1, rotate=0.05, shear=0.3, elastic=2.0, stroke=1.0, breaks=0.5)
    images = np.repeat(bar(), 8, axis=0)
    np.testing.assert_array_equal(run(images, how, seed=1), run(images, how, seed=1))
    assert not np.array_equal(run(images, how, seed=1), run(images, how, seed=2))


def test_stroke_width_runs_from_hairline_to_marker():
    images = np.repeat(bar(width=3), 200, axis=0)
    ink = (run(images, Augment(stroke=1.0)) > 0.5).sum(axis=(1, 2, 3))
    original = (bar(width=3) > 0.5).sum()
    assert ink.min() < original < ink.max()  # thinner and thicker both drawn
    assert ink.max() <= 5 * 18  # at most a 3x3 dilation: one pixel each side, and at the ends


def test_shear_slants_a_vertical_stroke():
    images = np.repeat(bar(), 64, axis=0)
    out = run(images, Augment(shear=0.4))
    cols = np.arange(28)

    def centre(rows):  # the stroke's column centre in these rows, per image
        ink = out[:, rows, :, 0].sum(axis=1)
        return (ink * cols).sum(axis=1) / ink.sum(axis=1)

    slope = (centre(slice(17, 21)) - centre(slice(7, 11))) / 10
    assert np.abs(slope).max() > 0.15  # some lean by more than 1 px in 7
    assert np.abs(slope).max() <= 0.4 + 0.05  # never more than the range


def test_broken_strokes_alone_are_an_augmentation():
    assert Augment(breaks=0.15).any and not Augment(clean=0.2).any


def test_breaks_cut_gaps_only_where_asked():
    images = np.repeat(bar(), 200, axis=0)
    cut = run(images, Augment(breaks=0.5))
    lost = (images - cut).sum(axis=(1, 2, 3)) > 0.5
    assert 0.3 < lost.mean() < 0.7  # about half, as asked
    assert (cut <= images + 1e-6).all()  # a gap only removes ink

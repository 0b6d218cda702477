import numpy as np
import pytest
from PIL import Image, ImageDraw

from runtime.errors import InputError, InputWarning
from runtime.images import decode, load_image
from runtime.ink import mnist_style
from runtime.mnist import load_split
from runtime.preprocess import as_batch


@pytest.mark.parametrize(
    "shape", [(28, 28), (3, 28, 28), (3, 28, 28, 1), (3, 784)], ids=["one", "NHW", "NHWC", "flat"]
)
def test_accepted_shapes_become_float_nhw_in_unit_range(shape):
    x = np.full(shape, 255, np.uint8)
    batch = as_batch(x)
    assert batch.dtype == np.float32
    assert batch.shape == ((1 if len(shape) == 2 and shape[1] == 28 else 3), 28, 28)
    assert batch.max() == 1.0


def test_float_input_is_taken_as_is():
    x = np.random.default_rng(0).random((2, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(as_batch(x), x)


def test_other_integer_dtypes_in_pixel_range_are_accepted():
    assert as_batch(np.full((28, 28), 255, np.int64)).max() == 1.0


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.zeros((28, 27), np.uint8), r"found \(28, 27\)"),
        (np.zeros((2, 3, 28, 28), np.float32), r"found \(2, 3, 28, 28\)"),
        (np.full((28, 28), np.nan, np.float32), "NaN or inf"),
        (np.full((28, 28), 256.0), r"expected float pixels in \[0, 1\], found 256..256"),
        (np.full((28, 28), -0.5), r"expected float pixels in \[0, 1\], found -0.5..-0.5"),
        (np.array([[object()] * 28] * 28), "found dtype object"),
        (np.full((28, 28), 300, np.int32), "expected integer pixels in 0..255"),
        (np.zeros((28, 28), complex), "expected uint8 or float pixels, found dtype complex128"),
        (np.array([["a"] * 28] * 28), "found dtype <U1"),
    ],
    ids=[
        "shape",
        "rank",
        "nan",
        "float-range",
        "negative",
        "object",
        "int-range",
        "complex",
        "strings",
    ],
)
def test_bad_arrays_get_an_input_error_saying_expected_and_found(x, message):
    with pytest.raises(InputError, match=message):
        as_batch(x, "x")


def _digit_one(size=(60, 90), ink=0, paper=255) -> Image.Image:
    """A dark vertical stroke on light paper, off-centre, larger than MNIST."""
    a = np.full(size[::-1], paper, np.uint8)
    a[20:70, 10:16] = ink
    return Image.fromarray(a)


def _com(img: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(img.shape)
    m = img.astype(float).sum()
    return (ys * img).sum() / m, (xs * img).sum() / m


def test_image_files_become_white_on_black_20px_box_centred_by_mass(tmp_path):
    path = tmp_path / "one.png"
    _digit_one().save(path)
    digit = load_image(path)
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    rows = np.flatnonzero(digit.max(axis=1) > 50)
    assert 19 <= rows.max() - rows.min() + 1 <= 21  # the long side fills the 20px box
    assert digit[0].max() == 0 and digit[:, 0].max() == 0  # background is black
    cy, cx = _com(digit)
    assert abs(cy - 14) < 1 and abs(cx - 14) < 1


def test_polarity_does_not_matter(tmp_path):
    dark_on_light, light_on_dark = tmp_path / "a.png", tmp_path / "b.png"
    _digit_one().save(dark_on_light)
    _digit_one(ink=255, paper=0).save(light_on_dark)
    np.testing.assert_array_equal(load_image(dark_on_light), load_image(light_on_dark))


@pytest.mark.parametrize("mode", ["RGB", "P", "I;16", "1"])
def test_lossless_modes_give_the_same_digit(tmp_path, mode):
    reference, path = tmp_path / "ref.png", tmp_path / "x.png"
    _digit_one().save(reference)
    img = _digit_one()
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img).astype(np.uint16) * 257)
    img.convert(mode).save(path) if mode != "I;16" else img.save(path)
    np.testing.assert_array_equal(load_image(path), load_image(reference))


def test_cmyk_jpeg_gives_the_same_digit_up_to_compression(tmp_path):
    reference, path = tmp_path / "ref.png", tmp_path / "x.jpg"
    _digit_one().save(reference)
    _digit_one().convert("CMYK").save(path)
    ref_com, com = _com(load_image(reference)), _com(load_image(path))
    assert np.allclose(ref_com, com, atol=1.0)


@pytest.mark.parametrize("suffix", [".bmp", ".pgm", ".jpg"])
def test_common_formats_are_read(tmp_path, suffix):
    path = tmp_path / f"one{suffix}"
    _digit_one().save(path)
    assert load_image(path).max() > 200


def test_rgba_ink_on_transparent_sheet_is_found(tmp_path):
    a = np.zeros((40, 40, 4), np.uint8)
    a[8:32, 18:22] = (0, 0, 0, 255)  # black opaque stroke, transparent elsewhere
    path = tmp_path / "t.png"
    Image.fromarray(a, "RGBA").save(path)
    digit = load_image(path)
    assert digit.max() == 255 and digit[0].max() == 0


def test_blank_image_is_an_input_error(tmp_path):
    path = tmp_path / "blank.png"
    Image.new("L", (50, 50), 255).save(path)
    with pytest.raises(InputError, match=r"blank.png: expected a digit, found a blank image"):
        load_image(path)


def test_non_image_and_missing_files_are_input_errors(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(InputError, match=r"notes.png: not an image file"):
        load_image(text)
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "missing.png")


def test_mnist_style_keeps_aspect_ratio_of_wide_strokes():
    gray = np.zeros((30, 100))
    gray[10:20, 5:95] = 1.0  # a horizontal bar, 9:1
    digit = mnist_style(gray)
    cols = np.flatnonzero(digit.max(axis=0) > 50)
    rows = np.flatnonzero(digit.max(axis=1) > 50)
    assert 19 <= len(cols) <= 21 and len(rows) <= 4


@pytest.mark.mnist
def test_real_digits_saved_as_files_keep_their_pixels_close(real_mnist, tmp_path):
    test = load_split("test", real_mnist)
    diffs = []
    for i in range(50):
        path = tmp_path / f"{i}.png"
        Image.fromarray(255 - test.images[i]).resize((112, 112), Image.Resampling.BICUBIC).save(
            path
        )
        diffs.append(np.abs(load_image(path).astype(float) - test.images[i]).mean())
    # Re-making MNIST's normalisation from a 4x, inverted copy lands near the original pixels.
    assert np.median(diffs) < 20


def test_float_pixels_in_0_255_are_divided_by_255_with_a_warning():
    x = np.zeros((28, 28))
    x[10, 10] = 255.0
    with pytest.warns(InputWarning, match="took them as 0-255 pixels and divided by 255"):
        batch = as_batch(x, "x")
    assert batch.max() == 1.0


def test_empty_batch_is_accepted():
    assert as_batch(np.zeros((0, 28, 28), np.uint8)).shape == (0, 28, 28)


@pytest.mark.parametrize(
    "size, fmt, shape",
    [
        ((3000, 2000), "PNG", (667, 1000)),  # reduced by 3: ceil(3000 / 1024)
        ((4000, 3000), "JPEG", (750, 1000)),  # decoded at 1/2 (JPEG draft), then reduced by 2
        ((1024, 700), "PNG", (700, 1024)),  # at the limit: as it is
    ],
)
def test_large_images_are_decoded_reduced_to_at_most_1024_pixels_a_side(tmp_path, size, fmt, shape):
    path = tmp_path / f"big.{fmt.lower()}"
    img = Image.new("L", size, 255)
    ImageDraw.Draw(img).line(
        [(size[0] // 3, size[1] // 4), (size[0] // 2, size[1] * 3 // 4)], 0, 40
    )
    img.save(path, fmt)
    assert decode(path, str(path)).shape == shape

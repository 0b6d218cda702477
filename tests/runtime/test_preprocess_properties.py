"""Property: for any shape and dtype, as_batch returns float32 (N, 28, 28) in [0, 1] or raises
InputError; never anything else."""

import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from runtime.errors import InputError
from runtime.preprocess import as_batch

DTYPES = st.one_of(
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.complex_number_dtypes(),
    hnp.boolean_dtypes(),
    st.just(np.dtype("U3")),
    st.just(np.dtype(object)),
)
# Shapes near the accepted ones, so that many arrays are accepted and many are not.
DIMS = st.sampled_from([0, 1, 2, 3, 27, 28, 29, 784])
SHAPES = st.lists(DIMS, min_size=0, max_size=4).map(tuple).filter(lambda s: np.prod(s) <= 30_000)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), dtype=DTYPES, shape=SHAPES)
def test_as_batch_accepts_into_the_contract_or_raises_input_error(data, dtype, shape):
    if dtype == np.dtype(object):
        array = np.empty(shape, dtype=object)
    else:
        array = data.draw(hnp.arrays(dtype, shape))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch = as_batch(array)
    except InputError:
        return
    assert batch.dtype == np.float32
    assert batch.ndim == 3 and batch.shape[1:] == (28, 28)
    assert batch.size == 0 or (batch.min() >= 0 and batch.max() <= 1)


ACCEPTED = st.sampled_from(["28x28", "Nx28x28", "Nx28x28x1", "Nx784"])


@settings(max_examples=100, deadline=None)
@given(data=st.data(), form=ACCEPTED, n=st.integers(1, 4))
def test_uint8_images_in_every_accepted_shape_are_taken_as_pixels_over_255(data, form, n):
    shape = {"28x28": (28, 28), "Nx28x28": (n, 28, 28), "Nx28x28x1": (n, 28, 28, 1),
             "Nx784": (n, 784)}[form]  # fmt: skip
    pixels = data.draw(hnp.arrays(np.uint8, shape))
    batch = as_batch(pixels)
    expected = pixels.reshape(-1, 28, 28).astype(np.float64) / 255
    assert batch.shape == expected.shape
    np.testing.assert_allclose(batch, expected, rtol=0, atol=1e-7)

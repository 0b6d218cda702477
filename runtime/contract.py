"""The contract between an exported model and the runtime, written into the ONNX metadata.

Export writes these keys; the runtime reads them so that it hard-codes nothing about a model.
A model without them is still usable when its input shape fits: the assumptions are recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from runtime.errors import ModelError

FORMAT = "mnist-edge/1"
LAYOUTS = {  # layout -> the shape of one image in it
    "NHWC": (28, 28, 1),
    "NCHW": (1, 28, 28),
    "NHW": (28, 28),
    "NF": (784,),
}
DTYPES = {"tensor(float)": np.dtype(np.float32), "tensor(uint8)": np.dtype(np.uint8)}
OUTPUTS = ("probabilities", "logits")


@dataclass(frozen=True)
class Contract:
    """How to feed the model and read its answer."""

    input_name: str
    output_name: str
    layout: str  # one of LAYOUTS
    dtype: np.dtype  # float32 or uint8
    pixel_scale: float  # model input = pixel (0..255) * pixel_scale; 1/255 means [0, 1]
    output: str  # "probabilities" (rows sum to 1) or "logits"
    labels: tuple[str, ...]
    assumed: tuple[str, ...] = field(default=())  # what was guessed for lack of metadata

    def feed(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28) uint8 pixels or float32 in [0, 1] -> the model's input tensor."""
        if self.layout == "NHW" and images.dtype == self.dtype == np.uint8:
            return images  # the default model's own input: nothing to do, on the hot path
        if images.dtype == np.uint8:
            if self.dtype == np.uint8:
                x = images  # no conversion at all: the fast path
            else:
                x = images.astype(np.float32) * np.float32(self.pixel_scale)
        elif self.dtype == np.uint8:
            x = np.rint(images * 255).astype(np.uint8)
        elif self.pixel_scale == 1 / 255:
            x = images
        else:
            x = images * np.float32(255 * self.pixel_scale)
        return x.reshape((len(images), *LAYOUTS[self.layout]))


def metadata_for(layout: str, pixel_scale: float, output: str, **extra: object) -> dict[str, str]:
    """The metadata_props an exporter writes: the contract keys plus free-form facts."""
    props = {
        "format": FORMAT,
        "input_layout": layout,
        "pixel_scale": repr(pixel_scale),
        "output": output,
        "labels": ",".join(str(d) for d in range(10)),
    }
    props.update({k: str(v) for k, v in extra.items()})
    return props


def read_contract(
    inputs: list[tuple[str, list, str]], outputs: list[tuple[str, list, str]], meta: dict[str, str]
) -> Contract:
    """Build the contract from the model's signature and metadata, checking they fit MNIST.

    `inputs`/`outputs` are (name, shape, type) as onnxruntime reports them.
    """
    if len(inputs) != 1:
        raise ModelError(f"expected a model with one input, found {len(inputs)}")
    if not outputs:
        raise ModelError("expected a model with an output, found none")
    name, shape, type_ = inputs[0]
    out_name, out_shape, _ = outputs[0]
    if type_ not in DTYPES:
        raise ModelError(f"input {name!r}: expected float32 or uint8, found {type_}")
    assumed = []
    if "input_layout" in meta:
        layout = meta["input_layout"]
        if layout not in LAYOUTS:
            raise ModelError(
                f"metadata input_layout: expected one of {list(LAYOUTS)}, found {layout!r}"
            )
    else:
        layout = _guess_layout(shape)
        assumed.append(f"input layout {layout} (from its shape)")
    if layout is None or not _fits(shape[1:], LAYOUTS[layout]):
        raise ModelError(
            f"input {name!r}: expected an MNIST image input such as [N, 28, 28, 1], found {shape}"
        )
    dtype = DTYPES[type_]
    if "pixel_scale" in meta:
        pixel_scale = float(meta["pixel_scale"])
    else:
        pixel_scale = 1.0 if dtype == np.uint8 else 1 / 255
        assumed.append("pixels 0..255" if dtype == np.uint8 else "pixels scaled to [0, 1]")
    if len(out_shape) != 2 or (isinstance(out_shape[1], int) and out_shape[1] != 10):
        raise ModelError(f"output {out_name!r}: expected [N, 10] scores, found {out_shape}")
    output = meta.get("output", "")
    if output not in OUTPUTS:
        output = "probabilities"
        assumed.append("output is probabilities")
    labels = tuple(meta.get("labels", ",".join(map(str, range(10)))).split(","))
    return Contract(name, out_name, layout, dtype, pixel_scale, output, labels, tuple(assumed))


def _guess_layout(shape: list) -> str | None:
    for layout, image in LAYOUTS.items():
        if _fits(shape[1:], image):
            return layout
    return None


def _fits(dims: list, expected: tuple[int, ...]) -> bool:
    """Whether the model's per-image dims match, symbolic/None dims matching anything."""
    return len(dims) == len(expected) and all(
        not isinstance(d, int) or d == e for d, e in zip(dims, expected, strict=True)
    )

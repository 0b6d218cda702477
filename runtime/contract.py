"""The contract between a model and the runtime: how to feed it and how to read its answer.

Each part comes from one of three places, in this order: options given now (`Overrides`), the
model's mnist-edge metadata (written by `export` or `adopt`), or the graph itself (inferred).
The contract records where each part came from, so `info` can say it and the CLI can warn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from runtime.errors import InputError, ModelError

IMAGE_SIZE = 28  # MNIST's field, in pixels
NUM_CLASSES = 10
DEFAULT_BATCH_SIZE = 256  # images per inference call: bounds memory, keeps throughput
FORMAT = "mnist-edge/1"
LAYOUTS = ("NHWC", "NCHW", "NHW", "NF")
OUTPUTS = ("probabilities", "logits", "log-probabilities")
DTYPES = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(double)": np.dtype(np.float64),
}
# ONNX's own image metadata (the spec's metadata_props, as Windows ML writes them): where pixels
# 0 and 255 land, as (scale, offset) with model input = pixel * scale + offset.
NOMINAL_RANGES = {
    "NominalRange_0_255": (1.0, 0.0),
    "Normalized_0_1": (1 / 255, 0.0),
    "Normalized_1_1": (2 / 255, -1.0),
    "NominalRange_16_235": (219 / 255, 16.0),
}
PIXEL_RANGE_KEY = "Image.NominalPixelRange"
# A classifier's probabilities as one {label: probability} map per image (ai.onnx.ml ZipMap, as
# skl2onnx and WinMLTools write them)
ZIPMAPS = ("seq(map(int64,tensor(float)))", "seq(map(string,tensor(float)))")
ROW_SUM_TOLERANCE = 0.01  # INT8 models' quantized softmax rows sum to 0.992..1.004
MAX_SCALING = 1e6  # |pixel scale| and |offset|: past it, float32 inputs overflow or mean nothing
# A fixed batch runs whole even for one image (the rest is padding): 4,096 images of padding
# are 12.8 MB; a model declaring 200,000 took 1.6 GB to answer one image.
MAX_FIXED_BATCH = 4096


@dataclass(frozen=True)
class Overrides:
    """What the user says about a model at run time; None leaves a part to the metadata."""

    layout: str | None = None  # NHWC, NCHW, NHW or NF
    mean: float | None = None  # model input = (pixel / 255 - mean) / std, as torchvision
    std: float | None = None
    input_range: tuple[float, float] | None = None  # pixel 0 -> LOW, 255 -> HIGH
    output: str | None = None  # probabilities, logits or log-probabilities
    output_name: str | None = None  # which output holds the [N, 10] scores
    input_size: int | None = None  # the model's image side, where its shape does not say
    pad: int | None = None  # blank pixels around MNIST's 28x28 for that side (negative: crop)

    def __post_init__(self) -> None:
        if self.layout is not None and self.layout not in LAYOUTS:
            raise InputError(f"--layout: expected one of {', '.join(LAYOUTS)}, found {self.layout}")
        if self.output is not None and self.output not in OUTPUTS:
            raise InputError(
                f"--model-output: expected one of {', '.join(OUTPUTS)}, found {self.output}"
            )
        if self.input_range is not None and (self.mean is not None or self.std is not None):
            raise InputError("--input-range: give either it or --mean/--std, found both")
        if self.std is not None and (self.std == 0 or not np.isfinite(self.std)):
            raise InputError(f"--std: expected a finite non-zero number, found {self.std}")
        if self.mean is not None and not np.isfinite(self.mean):
            raise InputError(f"--mean: expected a finite number, found {self.mean}")
        if self.input_range is not None:
            low, high = self.input_range
            if low == high or not np.isfinite([low, high]).all():
                raise InputError(
                    f"--input-range: expected two different finite numbers, found {low},{high}"
                )
        scaling = self.scaling()
        if scaling is not None and not _plausible(*scaling):
            given = "--input-range" if self.input_range is not None else "--mean/--std"
            raise InputError(
                f"{given}: expected a pixel scale and offset within +-{MAX_SCALING:g}, found "
                f"scale {scaling[0]:g} and offset {scaling[1]:g}"
            )

    def scaling(self) -> tuple[float, float] | None:
        """(scale, offset) with model input = pixel * scale + offset; None if not given."""
        if self.input_range is not None:
            low, high = self.input_range
            return (high - low) / 255, low
        if self.mean is None and self.std is None:
            return None
        mean = 0.0 if self.mean is None else self.mean
        std = 1.0 if self.std is None else self.std
        return 1 / (255 * std), -mean / std


@dataclass(frozen=True)
class Signature:
    """What onnxruntime reports of a model: (name, shape, type) per input and output."""

    inputs: list[tuple[str, list, str]]
    outputs: list[tuple[str, list, str]]


@dataclass(frozen=True)
class Contract:
    """How to feed the model and read its answer."""

    input_name: str
    output_name: str
    layout: str  # one of LAYOUTS
    channels: int  # 1, or 3 (grey copied into each)
    dtype: np.dtype  # float32 or uint8
    pixel_scale: float  # model input = pixel (0..255) * pixel_scale + pixel_offset
    pixel_offset: float
    output: str  # one of OUTPUTS
    labels: tuple[str, ...]
    batch: int | None  # a fixed batch dimension, or None where any batch is taken
    int8: bool  # an INT8 variant (metadata variant "int8...")
    zipmap: bool = False  # the scores come as one {label: probability} map per image
    side: int = IMAGE_SIZE  # the model's image side: 32 for LeNet-5's padded MNIST
    pad: int = 0  # blank pixels added around the 28x28 image to make `side` (negative: crop)
    sources: dict[str, str] = field(default_factory=dict)  # part -> metadata, option, inferred

    @property
    def assumed(self) -> tuple[str, ...]:
        """The parts that were inferred, each as a phrase for the one warning line."""
        phrases = {
            "layout": f"input layout {self.layout} (from its shape)",
            "scaling": self.scaling_phrase(),
            "output": f"output {self.output} (from its scores on probe images)",
        }
        return tuple(
            phrases[k] for k, v in self.sources.items() if v == "inferred" and k in phrases
        )

    def scaling_phrase(self) -> str:
        low = self.pixel_offset
        high = 255 * self.pixel_scale + self.pixel_offset
        return f"pixels scaled to [{low:.4g}, {high:.4g}]"

    def feed(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28) uint8 pixels or float32 in [0, 1] -> the model's input tensor."""
        if self.pad > 0:  # blank paper is 0 in MNIST's convention, before any scaling
            images = np.pad(images, ((0, 0), (self.pad, self.pad), (self.pad, self.pad)))
        elif self.pad < 0:
            images = images[:, -self.pad : self.pad, -self.pad : self.pad]
        if self.layout == "NHW" and images.dtype == self.dtype == np.uint8:
            return images  # the shipped model's own input: nothing to do, on the hot path
        if self.dtype == np.uint8:
            x = images if images.dtype == np.uint8 else np.rint(images * 255).astype(np.uint8)
        else:
            # pixels as given (0..255) or in [0, 1]: one multiply-add either way
            scale = self.pixel_scale if images.dtype == np.uint8 else 255 * self.pixel_scale
            if scale == 1 and self.pixel_offset == 0 and images.dtype == self.dtype:
                x = images
            else:  # in the model's own float type: float32, or float64 for a few exporters
                x = images.astype(self.dtype) * self.dtype.type(scale)
                if self.pixel_offset:
                    x += self.dtype.type(self.pixel_offset)
        n = len(images)
        if self.layout == "NF":
            return x.reshape(n, self.side * self.side)
        if self.layout == "NHW":
            return x
        axis = 1 if self.layout == "NCHW" else 3
        x = np.expand_dims(x, axis)
        return np.repeat(x, self.channels, axis=axis) if self.channels > 1 else x

    def columns(self, maps: list[dict]) -> np.ndarray:
        """ZipMap's per-image {label: probability} maps -> (N, 10) in label order."""
        if not maps:
            return np.zeros((0, len(self.labels)), np.float32)
        keys = sorted(maps[0], key=_label_order)
        return np.array([[m[k] for k in keys] for m in maps], np.float32)

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """The model's (N, 10) scores -> probabilities: each in [0, 1], rows summing to 1."""
        if self.output == "probabilities":
            return scores
        # softmax(log_softmax(z)) == softmax(z): one formula for logits and log-probabilities
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def output_kind(scores: np.ndarray) -> str:
    """What a model's scores are, judged from its answers to a few images: rows of values in
    [0, 1] summing to 1 are probabilities (a Softmax), rows whose exponentials sum to 1 are
    log-probabilities (a LogSoftmax), anything else is logits."""
    s = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(s).all():
        return "logits"
    tol = ROW_SUM_TOLERANCE
    if s.min() >= -1e-6 and s.max() <= 1 + 1e-6 and np.abs(s.sum(axis=1) - 1).max() <= tol:
        return "probabilities"
    if s.max() <= 1e-6 and np.abs(np.exp(s).sum(axis=1) - 1).max() <= tol:
        return "log-probabilities"
    return "logits"


def metadata_for(
    layout: str, pixel_scale: float, output: str, pixel_offset: float = 0.0, **extra: object
) -> dict[str, str]:
    """The metadata_props an exporter writes: the contract keys plus free-form facts."""
    props = {
        "format": FORMAT,
        "input_layout": layout,
        "pixel_scale": repr(pixel_scale),
        "pixel_offset": repr(pixel_offset),
        "output": output,
        "labels": ",".join(str(d) for d in range(NUM_CLASSES)),
    }
    props.update({k: str(v) for k, v in extra.items()})
    return props


def read_contract(
    signature: Signature, meta: dict[str, str], overrides: Overrides | None = None
) -> Contract:
    """The contract from options, then metadata, then the graph, checked to fit MNIST."""
    overrides = overrides or Overrides()
    sources: dict[str, str] = {}
    name, shape, type_ = _image_input(signature.inputs)
    if type_ not in DTYPES:
        raise ModelError(f"input {name!r}: expected float32, float64 or uint8, found {type_}")
    dtype = DTYPES[type_]

    layout = _pick(sources, "layout", overrides.layout, meta.get("input_layout"))
    if layout is None:
        layout, sources["layout"] = _guess_layout(shape), "inferred"
    elif layout not in LAYOUTS:
        raise ModelError(f"metadata input_layout: expected one of {list(LAYOUTS)}, found {layout}")
    found = _image(shape, layout, overrides.input_size) if layout else None
    if found is None:
        raise ModelError(
            f"input {name!r}: expected an MNIST image input such as [N, 28, 28, 1], "
            f"[N, 1, 28, 28] or [N, 3, 28, 28] (one channel at other sides: [N, 1, 32, 32]), "
            f"found {shape}" + (f" (layout {layout})" if layout else "")
        )
    channels, side = found
    pad = _pad(side, overrides.pad, meta.get("pixel_pad"))

    scaling = overrides.scaling()
    if scaling is not None:
        sources["scaling"] = "option"
    elif "pixel_scale" in meta:
        scaling, sources["scaling"] = _meta_scaling(meta), "metadata"
    elif PIXEL_RANGE_KEY in meta:
        scaling, sources["scaling"] = _image_scaling(meta[PIXEL_RANGE_KEY]), "image metadata"
    else:
        scaling = (1.0, 0.0) if dtype == np.uint8 else (1 / 255, 0.0)
        sources["scaling"] = "inferred"
    if dtype == np.uint8 and scaling != (1.0, 0.0):
        raise ModelError(f"input {name!r}: a uint8 input takes raw pixels 0..255, not a scaling")

    out_name = _pick(sources, "output_name", overrides.output_name, meta.get("output_name"))
    out_name = _score_output(signature.outputs, out_name)
    zipmap = dict((o[0], o[2]) for o in signature.outputs)[out_name] in ZIPMAPS
    output = _pick(sources, "output", overrides.output, meta.get("output"))
    if output is None and zipmap:
        output, sources["output"] = "probabilities", "graph"  # what a ZipMap carries
    if output is None:
        output, sources["output"] = "logits", "inferred"  # until output_kind() has seen scores
    elif output not in OUTPUTS:
        raise ModelError(f"metadata output: expected one of {list(OUTPUTS)}, found {output!r}")

    labels = tuple(meta.get("labels", ",".join(map(str, range(NUM_CLASSES)))).split(","))
    if len(labels) != NUM_CLASSES:
        raise ModelError(f"metadata labels: expected {NUM_CLASSES} labels, found {len(labels)}")
    odd = [label for label in labels if not label or not label.isprintable()]
    if odd:  # a newline or an escape code in a label would break every table it is printed in
        raise ModelError(f"metadata labels: expected printable, non-empty labels, found {odd[0]!r}")
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    if batch is not None and batch > MAX_FIXED_BATCH:
        raise ModelError(
            f"input {name!r}: expected a batch dimension that is free or at most "
            f"{MAX_FIXED_BATCH:,}, found a fixed {batch:,} (one image would run as {batch:,}): "
            "export the model with a dynamic batch"
        )
    return Contract(
        input_name=name,
        output_name=out_name,
        layout=layout,
        channels=channels,
        dtype=dtype,
        pixel_scale=scaling[0],
        pixel_offset=scaling[1],
        output=output,
        labels=labels,
        batch=batch,
        int8=meta.get("variant", "").startswith("int8"),
        zipmap=zipmap,
        side=side,
        pad=pad,
        sources=sources,
    )


def _pick(sources: dict[str, str], part: str, option: str | None, meta: str | None) -> str | None:
    for value, origin in ((option, "option"), (meta, "metadata")):
        if value:
            sources[part] = origin
            return value
    return None


def _meta_scaling(meta: dict[str, str]) -> tuple[float, float]:
    try:
        scale = float(meta["pixel_scale"])
        offset = float(meta.get("pixel_offset", "0"))
    except ValueError:
        raise ModelError(
            f"metadata pixel_scale/pixel_offset: expected numbers, found "
            f"{meta['pixel_scale']!r}/{meta.get('pixel_offset', '0')!r}"
        ) from None
    if not _plausible(scale, offset):
        raise ModelError(
            f"metadata pixel_scale/pixel_offset: expected a non-zero scale and an offset within "
            f"+-{MAX_SCALING:g}, found {scale:g}/{offset:g}"
        )
    return scale, offset


def _image_scaling(value: str) -> tuple[float, float]:
    if value not in NOMINAL_RANGES:
        raise ModelError(
            f"metadata {PIXEL_RANGE_KEY}: expected one of {', '.join(NOMINAL_RANGES)}, "
            f"found {value!r}"
        )
    return NOMINAL_RANGES[value]


def image_metadata(scale: float, offset: float, channels: int) -> dict[str, str]:
    """ONNX's image metadata for a contract, where the spec has words for it: what `adopt`
    writes beside our own keys, so that other runtimes read our files the same way."""
    meta = {"Image.BitmapPixelFormat": "Gray8" if channels == 1 else "Rgb8"}
    meta["Image.ColorSpaceGamma"] = "SRGB"
    for name, (s, o) in NOMINAL_RANGES.items():
        if np.isclose(s, scale, rtol=1e-6) and np.isclose(o, offset, atol=1e-6):
            meta[PIXEL_RANGE_KEY] = name
    return meta


def _label_order(key: object) -> tuple:
    text = str(key)
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)


def _plausible(scale: float, offset: float) -> bool:
    finite = bool(np.isfinite([scale, offset]).all())
    return finite and scale != 0 and abs(scale) <= MAX_SCALING and abs(offset) <= MAX_SCALING


def _image_input(inputs: list[tuple[str, list, str]]) -> tuple[str, list, str]:
    if len(inputs) != 1:
        names = ", ".join(repr(i[0]) for i in inputs)
        raise ModelError(f"expected a model with one image input, found {len(inputs)}: {names}")
    return inputs[0]


def _score_output(outputs: list[tuple[str, list, str]], wanted: str | None) -> str:
    names = [o[0] for o in outputs]
    if wanted is not None:
        if wanted not in names:
            raise ModelError(f"--output-name: expected one of {names}, found {wanted!r}")
        _, shape, type_ = outputs[names.index(wanted)]
        if type_ in ZIPMAPS:
            return wanted
        if not _is_scores(shape) or type_ != "tensor(float)":
            raise ModelError(
                f"output {wanted!r}: expected [N, 10] float scores, found {shape} {type_}"
            )
        return wanted
    fits = [o for o in outputs if _is_scores(o[1]) and o[2] == "tensor(float)"]
    fits = list({o[0]: o for o in fits}.values())  # a name listed twice is one tensor
    if len(fits) == 1:
        return fits[0][0]
    maps = list({o[0]: o for o in outputs if o[2] in ZIPMAPS}.values())
    if not fits and len(maps) == 1:  # a classifier's probabilities, as ZipMap gives them
        return maps[0][0]
    if not fits:
        found = ", ".join(f"{o[0]!r} {o[1]} {o[2]}" for o in outputs) or "none"
        raise ModelError(f"expected an output of [N, 10] float scores, found {found}")
    raise ModelError(
        f"expected one output of [N, 10] scores, found {len(fits)}: "
        f"{', '.join(repr(o[0]) for o in fits)}: choose one with --output-name"
    )


def _is_scores(shape: list) -> bool:
    return len(shape) == 2 and (not isinstance(shape[1], int) or shape[1] == NUM_CLASSES)


def _image(shape: list, layout: str, size: int | None = None) -> tuple[int, int] | None:
    """(channels, side) of the input in `layout` (1 or 3 channels, a square side: MNIST's 28,
    or another such as LeNet-5's 32), or None if it does not fit. Symbolic dims take `size`."""
    dims = shape[1:]
    sides = [d for d in dims if isinstance(d, int)]
    if layout == "NF":
        if len(dims) != 1:
            return None
        side = size or (round(dims[0] ** 0.5) if isinstance(dims[0], int) else IMAGE_SIZE)
        return (1, side) if _fits(dims, (side * side,)) else None
    spatial = [d for d in sides if d > 3]  # 1 and 3 are channel counts
    side = size or (spatial[0] if spatial else IMAGE_SIZE)
    square = (side, side)
    if layout == "NHW":
        return (1, side) if _fits(dims, square) else None
    # three channels only at MNIST's own 28: at 32x32 they are CIFAR's, not a padded digit
    for channels in (1, 3) if side == IMAGE_SIZE else (1,):
        if _fits(dims, (channels, *square) if layout == "NCHW" else (*square, channels)):
            return channels, side
    return None


def _guess_layout(shape: list) -> str | None:
    return next((layout for layout in LAYOUTS if _image(shape, layout)), None)


def _pad(side: int, option: int | None, meta: str | None) -> int:
    """Blank pixels around MNIST's 28x28 to make the model's `side`: as given, or centred."""
    if option is None and meta is not None:
        try:
            option = int(meta)
        except ValueError:
            raise ModelError(f"metadata pixel_pad: expected an integer, found {meta!r}") from None
    pad = (side - IMAGE_SIZE) // 2 if option is None else option
    if IMAGE_SIZE + 2 * pad != side:
        given = f"--pad {option}" if option is not None else "centring"
        raise ModelError(
            f"input side {side}: expected 28 + 2 x pad pixels, found {given} giving "
            f"{IMAGE_SIZE + 2 * pad} (an odd difference cannot be centred: give --input-size "
            "or --pad)"
        )
    return pad


def _fits(dims: list, expected: tuple[int, ...]) -> bool:
    """Whether the model's per-image dims match, symbolic/None dims matching anything."""
    return len(dims) == len(expected) and all(
        not isinstance(d, int) or d == e for d, e in zip(dims, expected, strict=True)
    )

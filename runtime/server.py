"""`mnist-edge serve`: the model over HTTP for other programs on the device, on Starlette and
uvicorn (the serve extra), with the micro-batcher gathering concurrent requests.

    POST /v1/predict   body: one image file (PNG, JPEG...) or an .npy array of images
    POST /v1/read      body: one image file of a handwritten number; what `read --json` says
    GET  /healthz      200 once the model is loaded (no token needed)
    GET  /v1/model     what `mnist-edge info --json` says
    GET  /metrics      Prometheus text: requests, latency and batch-size histograms, queue depth

Bad input is a 400 with the CLI's one-line message; a full queue, or more bytes in flight than
the server holds, a 503 with Retry-After; a body or image over the limit a 413; a body that does
not arrive in time a 408; a request not answered in time a 504. Files are decoded off the event
loop. With a token, every route but /healthz wants `Authorization: Bearer <token>`, compared in
constant time. Connection limits (how many, how long a request's head may take) are in
`runtime.listener`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
import math
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime.batcher import Closed, MicroBatcher, Overloaded
from runtime.errors import InputError, MnistEdgeError
from runtime.images import read_image
from runtime.info import describe
from runtime.preprocess import as_images
from runtime.read import Plan, plan_file
from runtime.render import reading_dict
from runtime.session import Classifier

_NPY_MAGIC = b"\x93NUMPY"
_NPY_HEADERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


@dataclass(frozen=True)
class ServerConfig:
    max_batch: int = 64
    max_delay_us: float = 500.0  # how long a request may wait for company
    max_queue: int = 1024  # requests waiting; past it, 503
    max_body_bytes: int = 8 * 1024 * 1024  # an image file, or an .npy of about 10,000 digits
    max_images: int = 4096  # per request
    timeout_s: float = 10.0  # per request, from arrival to answer, the body's upload included
    token: str | None = None
    # Memory: what the requests in progress hold (bodies, decoded pixels, arrays) is bounded
    # here, not by the queue's count; past it, 503. 96 MiB keeps a Pi's server under 300 MB.
    max_inflight_bytes: int = 96 * 1024 * 1024
    max_pixels: int = 16_000_000  # an uploaded image's, from its header; a 12 MP photo fits
    max_connections: int = 256  # open at once (runtime.listener)
    header_timeout_s: float = 5.0  # for a request's head to arrive (runtime.listener)


# Image files and .npy bodies are decoded on this many threads, never on the event loop. One:
# decoding sets warning filters, which are process-wide, and a device has cores for the model.
DECODE_THREADS = 1
DECODED_BYTES_PER_PIXEL = 4  # what PIL holds per pixel while decoding (RGBA, the worst case)
# A body's bytes are taken from the budget twice as they arrive: once for the body, once for
# the array it holds (an .npy's is as large). Taken at once, a request that was admitted never
# waits for more; taken in two steps, two admitted bodies could starve each other's arrays.
BODY_SHARES = 2


def create_app(clf: Classifier, config: ServerConfig) -> Starlette:
    """The ASGI app serving `clf`; its batcher stops (answering what is queued) at shutdown."""
    registry = CollectorRegistry()
    requests = Counter(
        "mnist_edge_requests",
        "HTTP requests by route and status",
        ["route", "code"],
        registry=registry,
    )
    latency = Histogram(
        "mnist_edge_request_seconds",
        "Time from arrival to answer of /v1/predict and /v1/read",
        ["route"],
        buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 5),
        registry=registry,
    )
    batches = Histogram(
        "mnist_edge_batch_images",
        "Images per inference call",
        buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
        registry=registry,
    )
    batcher = MicroBatcher(
        clf, config.max_batch, config.max_delay_us, config.max_queue, on_call=batches.observe
    )
    budget = Budget(config.max_inflight_bytes)
    Gauge(
        "mnist_edge_queue_depth", "Requests waiting for the batcher", registry=registry
    ).set_function(batcher.depth)
    Gauge(
        "mnist_edge_inflight_bytes", "Bytes held by requests in progress", registry=registry
    ).set_function(budget.used)
    decoder = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="mnist-edge-decode")
    served = {k: v for k, v in asdict(config).items() if k != "token"}
    model_info = describe(clf).to_dict() | {"serving": served}  # `bench --url` reports these
    labels = clf.contract.labels

    def answer(route: str, code: int, body: dict, headers: dict | None = None) -> JSONResponse:
        requests.labels(route, str(code)).inc()
        return JSONResponse(body, code, headers)

    def busy(route: str, message: str) -> JSONResponse:
        return answer(route, 503, {"error": f"busy: {message}"}, {"Retry-After": "1"})

    def guarded(route: str, handler):
        """`handler` behind the bearer token, where one is set."""
        if config.token is None:
            return handler
        expected = f"Bearer {config.token}".encode()

        async def checked(request: Request) -> Response:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return answer(route, 401, {"error": "expected Authorization: Bearer <token>"})
            return await handler(request)

        return checked

    async def handle(request: Request, route: str, prepare, finish) -> Response:
        """A POST whose body becomes images for the model: `prepare(body, config, held)` (on
        a decoder thread) gives (images, context), `finish(context, probs)` the answer."""
        arrived = time.perf_counter()

        def left() -> float:
            return max(config.timeout_s - (time.perf_counter() - arrived), 0.001)

        with budget.hold() as held:
            try:
                body = await asyncio.wait_for(
                    _read_body(request, config.max_body_bytes, held), left()
                )
                images, context = await asyncio.get_running_loop().run_in_executor(
                    decoder, prepare, body, config, held
                )
                del body
                future = batcher.submit(images)
            except TimeoutError:
                return answer(
                    route, 408, {"error": f"expected the body within {config.timeout_s:g} s"}
                )
            except ClientDisconnect:  # nobody to answer; no traceback for it either
                return answer(route, 400, {"error": "the client went away"})
            except _TooLarge as e:
                return answer(route, 413, {"error": str(e)})
            except (_OverBudget, Overloaded, Closed) as e:
                return busy(route, str(e))
            except MnistEdgeError as e:
                return answer(route, 400, {"error": str(e)})
            except MemoryError:
                return busy(route, "not enough memory for this request now")
            try:
                probs = await asyncio.wait_for(asyncio.wrap_future(future), left())
                result = finish(context, clf.finite(probs))
            except TimeoutError:  # the batcher skips a request whose caller gave up
                return answer(route, 504, {"error": f"no answer within {config.timeout_s:g} s"})
            except Closed as e:
                return busy(route, str(e))
            except MnistEdgeError as e:  # the model's own failure (NaN, memory), not the input's
                return answer(route, 500, {"error": str(e)})
        latency.labels(route).observe(time.perf_counter() - arrived)
        return answer(route, 200, result)

    async def predict(request: Request) -> Response:
        def finish(_, probs: np.ndarray) -> dict:
            return {"predictions": [_prediction(p, labels) for p in probs]}

        return await handle(request, "predict", _images, finish)

    async def read(request: Request) -> Response:
        def finish(plan, probs: np.ndarray) -> dict:
            return reading_dict(plan.choose(probs, labels))

        return await handle(request, "read", _plan, finish)

    async def healthz(request: Request) -> Response:
        problem = batcher.unhealthy(stuck_after=config.timeout_s)
        if problem:
            return answer("healthz", 503, {"status": "not ready", "reason": problem})
        return answer("healthz", 200, {"status": "ready"})  # no paths without the token

    async def model(request: Request) -> Response:
        return answer("model", 200, model_info)

    async def metrics(request: Request) -> Response:
        requests.labels("metrics", "200").inc()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    routes = [  # every route but /healthz behind the token
        Route("/v1/predict", _one_line_on_failure(guarded("predict", predict)), methods=["POST"]),
        Route("/v1/read", _one_line_on_failure(guarded("read", read)), methods=["POST"]),
        Route("/healthz", healthz),
        Route("/v1/model", guarded("model", model)),
        Route("/metrics", guarded("metrics", metrics)),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        # After uvicorn has drained the requests in flight; a model call that never ends is
        # stopped so that the process can.
        if not await asyncio.to_thread(batcher.close, config.timeout_s):
            clf.interrupt()  # a call that does not end; its thread must leave onnxruntime
            await asyncio.to_thread(batcher.close, 5.0)  # before the process exits
        decoder.shutdown(wait=False, cancel_futures=True)

    return Starlette(routes=routes, lifespan=lifespan)


def check_token(token: str | None, from_environment: str | None) -> None:
    """Refuse a token no client could present: empty, or with characters an HTTP header cannot
    carry as they are (spaces, controls, non-ASCII). `from_environment`: $MNIST_EDGE_TOKEN,
    which counts as set even when empty (the option parser takes an empty one as unset)."""
    source = "MNIST_EDGE_TOKEN" if token is None or token == from_environment else "--token"
    if token is None:
        token = from_environment
        if token is None:
            return
    if not token:
        raise InputError(
            f"{source}: expected a token, found an empty one (unset it to serve without one)"
        )
    for i, char in enumerate(token):
        if not "!" <= char <= "~":
            raise InputError(
                f"{source}: expected visible ASCII characters only (a client sends the token in "
                f"an HTTP header), found {char!r} at position {i + 1}"
            )


class Budget:
    """Bytes that requests in progress may hold, shared by all of them; thread-safe (the
    decoder's threads take from it too)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    def used(self) -> int:
        return self._used

    @contextlib.contextmanager
    def hold(self):
        held = _Held(self)
        try:
            yield held
        finally:
            with self._lock:
                self._used -= held.bytes

    def _take(self, held: _Held, n: int) -> None:
        with self._lock:
            if self._used + n > self.limit:
                raise _OverBudget(
                    f"{self._used / 2**20:.0f} MiB of the {self.limit / 2**20:.0f} MiB "
                    "for requests in progress is taken"
                )
            self._used += n
            held.bytes += n


class _Held:
    """One request's share of the budget, given back when the request ends."""

    def __init__(self, budget: Budget):
        self.budget, self.bytes = budget, 0

    def take(self, n: int) -> None:
        self.budget._take(self, n)


class _TooLarge(Exception):
    pass


class _OverBudget(Exception):
    pass


def _one_line_on_failure(handler):
    """A bug or an exhausted machine is a 500 in JSON and one line on stderr, not a traceback
    from the ASGI server."""

    async def handled(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as e:
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            print(f"error: {request.method} {request.url.path}: {reason}", file=sys.stderr)
            return JSONResponse({"error": f"internal error ({reason})"}, 500)

    return handled


async def _read_body(request: Request, limit: int, held: _Held) -> bytes:
    """The body, refused as soon as it is known to pass `limit` (header first, then bytes);
    its bytes are taken from the request's budget as they arrive. Over the budget, the rest is
    read and dropped before the 503, so that a client still sending hears it (a socket closed
    with unread data is reset, and the answer lost)."""
    declared = request.headers.get("content-length")
    declared = int(declared) if declared and declared.isdigit() else None
    if declared is not None and declared > limit:
        raise _TooLarge(f"expected a body of at most {limit:,} bytes, found {declared:,}")
    over = None
    try:
        if declared is not None:
            held.take(BODY_SHARES * declared)
    except _OverBudget as e:
        over = e
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge(f"expected a body of at most {limit:,} bytes, found more")
        if over is not None:
            continue
        try:
            if declared is None:
                held.take(BODY_SHARES * len(chunk))
        except _OverBudget as e:
            over, chunks = e, []
            continue
        chunks.append(chunk)
    if over is not None:
        raise over
    return b"".join(chunks)


def _images(body: bytes, config: ServerConfig, held: _Held) -> tuple[np.ndarray, None]:
    """An uploaded image file or .npy array -> (n, 28, 28) checked images, with what decoding
    holds taken from the request's budget first (this runs on a decoder thread)."""
    if not body:
        raise InputError("request body: expected an image file or an .npy array, found nothing")
    if body.startswith(_NPY_MAGIC):
        _check_npy_header(body, config.max_images)  # its array's bytes are taken already
        try:
            array = np.load(io.BytesIO(body), allow_pickle=False)
        except (ValueError, OverflowError, OSError) as e:
            raise InputError(f"request body: cannot read .npy array ({e})") from None
        return as_images(array, "request body"), None

    return read_image(io.BytesIO(body), "request body", _size_check(config, held))[None], None


def _size_check(config: ServerConfig, held: _Held):
    """What an upload's header must pass before decoding: at most `max_pixels`, and the bytes
    decoding will hold taken from the request's budget."""

    def before_decoding(width: int, height: int) -> None:
        if width * height > config.max_pixels:
            raise _TooLarge(
                f"expected an image of at most {config.max_pixels:,} pixels, found {width}x{height}"
            )
        held.take(width * height * DECODED_BYTES_PER_PIXEL)

    return before_decoding


def _plan(body: bytes, config: ServerConfig, held: _Held) -> tuple[np.ndarray, Plan]:
    """An uploaded image of a number -> its reading Plan (on a decoder thread): decoded and
    cut into candidate digits, what decoding holds taken from the request's budget first."""
    if not body:
        raise InputError("request body: expected an image file, found nothing")

    plan = plan_file(io.BytesIO(body), "request body", _size_check(config, held))
    return plan.pictures, plan


def _check_npy_header(body: bytes, max_images: int) -> None:
    """Refuse an .npy body whose header claims more than the body holds, or more than
    `max_images` images, before anything is allocated."""
    f = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(f)
        if version not in _NPY_HEADERS:  # 3.0 only adds non-Latin-1 field names
            raise ValueError(f"expected .npy format 1.0 or 2.0, found {version[0]}.{version[1]}")
        shape, _, dtype = _NPY_HEADERS[version](f)
    except (ValueError, OverflowError, TypeError) as e:
        raise InputError(f"request body: cannot read .npy array ({e})") from None
    count = math.prod(shape)
    held = len(body) - f.tell()
    if count * dtype.itemsize != held:
        raise InputError(
            f"request body: the .npy header declares {shape} {dtype} ({count * dtype.itemsize:,} "
            f"bytes), found {held:,} bytes of data"
        )
    images = shape[0] if len(shape) >= 3 or (len(shape) == 2 and shape[1] != 28) else 1
    if images > max_images:
        raise InputError(f"request body: expected at most {max_images} images, found {images}")


def _prediction(p: np.ndarray, labels: tuple[str, ...]) -> dict:
    best = int(p.argmax())
    return {
        "label": labels[best],
        "confidence": round(float(p[best]), 6),
        "probabilities": [round(float(q), 6) for q in p],
    }

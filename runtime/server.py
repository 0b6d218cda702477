"""`mnist-edge serve`: the model over HTTP for other programs on the device, on Starlette and
uvicorn (the serve extra), with the micro-batcher gathering concurrent requests.

    POST /v1/predict   body: one image file (PNG, JPEG...) or an .npy array of images
    GET  /healthz      200 once the model is loaded (no token needed)
    GET  /v1/model     what `mnist-edge info --json` says
    GET  /metrics      Prometheus text: requests, latency and batch-size histograms, queue depth

Bad input is a 400 with the CLI's one-line message; a full queue a 503 with Retry-After; a body
over the limit a 413; a request not answered in time a 504. With a token, every route but
/healthz wants `Authorization: Bearer <token>`, compared in constant time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
import time
from dataclasses import dataclass

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
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime.batcher import MicroBatcher, Overloaded
from runtime.errors import InputError, MnistEdgeError
from runtime.info import describe
from runtime.preprocess import as_images, read_image
from runtime.session import Classifier

_NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class ServerConfig:
    max_batch: int = 64
    max_delay_us: float = 500.0  # how long a request may wait for company
    max_queue: int = 1024  # requests waiting; past it, 503
    max_body_bytes: int = 8 * 1024 * 1024  # an image file, or an .npy of about 10,000 digits
    max_images: int = 4096  # per request
    timeout_s: float = 10.0  # per request, from arrival to answer
    token: str | None = None


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
        "Time from arrival to answer of /v1/predict",
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
    Gauge(
        "mnist_edge_queue_depth", "Requests waiting for the batcher", registry=registry
    ).set_function(batcher.depth)
    model_info = describe(clf).to_dict()
    labels = clf.contract.labels

    def answer(route: str, code: int, body: dict, headers: dict | None = None) -> JSONResponse:
        requests.labels(route, str(code)).inc()
        return JSONResponse(body, code, headers)

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

    async def predict(request: Request) -> Response:
        arrived = time.perf_counter()
        try:
            body = await _read_body(request, config.max_body_bytes)
            images = _images(body, config.max_images)
        except _TooLarge as e:
            return answer("predict", 413, {"error": str(e)})
        except MnistEdgeError as e:
            return answer("predict", 400, {"error": str(e)})
        try:
            future = batcher.submit(images)
        except Overloaded as e:
            return answer("predict", 503, {"error": f"busy: {e}"}, {"Retry-After": "1"})
        remaining = config.timeout_s - (time.perf_counter() - arrived)
        try:
            probs = await asyncio.wait_for(asyncio.wrap_future(future), max(remaining, 0.001))
            probs = clf.finite(probs)
        except TimeoutError:
            return answer("predict", 504, {"error": f"no answer within {config.timeout_s:g} s"})
        except MnistEdgeError as e:  # the model's own failure (NaN, memory), not the input's
            return answer("predict", 500, {"error": str(e)})
        latency.observe(time.perf_counter() - arrived)
        return answer("predict", 200, {"predictions": [_prediction(p, labels) for p in probs]})

    async def healthz(request: Request) -> Response:
        return answer("healthz", 200, {"status": "ready", "model": model_info["path"]})

    async def model(request: Request) -> Response:
        return answer("model", 200, model_info)

    async def metrics(request: Request) -> Response:
        requests.labels("metrics", "200").inc()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    routes = [  # every route but /healthz behind the token
        Route("/v1/predict", guarded("predict", predict), methods=["POST"]),
        Route("/healthz", healthz),
        Route("/v1/model", guarded("model", model)),
        Route("/metrics", guarded("metrics", metrics)),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        batcher.close()  # after uvicorn has drained the requests in flight

    return Starlette(routes=routes, lifespan=lifespan)


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to pass `limit` (header first, then bytes)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge(f"expected a body of at most {limit:,} bytes, found {int(declared):,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge(f"expected a body of at most {limit:,} bytes, found more")
        chunks.append(chunk)
    return b"".join(chunks)


def _images(body: bytes, max_images: int) -> np.ndarray:
    """An uploaded image file or .npy array -> (n, 28, 28) checked images."""
    if not body:
        raise InputError("request body: expected an image file or an .npy array, found nothing")
    if body.startswith(_NPY_MAGIC):
        try:
            array = np.load(io.BytesIO(body), allow_pickle=False)
        except (ValueError, OverflowError, OSError) as e:
            raise InputError(f"request body: cannot read .npy array ({e})") from None
        images = as_images(array, "request body")
        if len(images) > max_images:
            raise InputError(
                f"request body: expected at most {max_images} images, found {len(images)}"
            )
        return images
    return read_image(io.BytesIO(body), "request body")[None]


def _prediction(p: np.ndarray, labels: tuple[str, ...]) -> dict:
    best = int(p.argmax())
    return {
        "label": labels[best],
        "confidence": round(float(p[best]), 6),
        "probabilities": [round(float(q), 6) for q in p],
    }

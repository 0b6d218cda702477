"""The scenarios' figures against what was done (runtime/scenarios.py): the closed loops time
real calls, seconds and rates agree with the run, offline's mean batch is the classifier's
split, --repeat combines runs as documented, and `--url` talks HTTP as promised (the token, the
URLs it refuses, what it makes of /v1/model). mutmut found these unpinned."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import numpy as np
import pytest

from runtime.errors import InputError
from runtime.scenarios import (
    HttpCaller,
    ScenarioConfig,
    ScenarioReport,
    ScenarioResult,
    repeated,
    run_scenario,
    served_settings,
)


class Counting:
    """A classifier that counts the images it is asked about and answers at once."""

    path = "counting.onnx"
    batch_size = 256

    def __init__(self):
        self.calls = self.images = 0

    def predict_proba(self, images):
        batch = np.asarray(images).reshape(-1, 28, 28)
        self.calls += 1
        self.images += len(batch)
        return np.full((len(batch), 10), 0.1, np.float32)


def test_single_stream_times_one_image_per_query_and_its_rates_agree_with_its_seconds():
    clf = Counting()
    start = time.perf_counter()
    (result,) = run_scenario(clf, ScenarioConfig("single-stream", duration=0.0)).results
    wall = time.perf_counter() - start
    assert result.queries == 100 == clf.calls == clf.images  # the minimum number of queries
    assert result.seconds <= wall + 0.01  # the run's own seconds, no more than it took
    assert result.qps_achieved >= result.queries / wall - 0.1
    assert result.images_per_s == result.qps_achieved
    assert (result.mean_batch, result.overloaded, result.qps_target) == (1.0, 0, None)


def test_offline_times_the_whole_batch_and_its_mean_batch_is_the_classifiers_split():
    clf = Counting()
    start = time.perf_counter()
    config = ScenarioConfig("offline", duration=0.0, offline_images=1000)
    (result,) = run_scenario(clf, config).results
    wall = time.perf_counter() - start
    assert result.queries == 1  # one timed call of all 1,000 images, after one warm-up
    assert clf.images == 256 + 1000
    assert result.mean_batch == 250.0  # 1,000 images in ceil(1000 / 256) = 4 calls
    assert result.seconds <= wall + 0.01
    assert result.images_per_s >= 1000 / wall - 0.1
    assert result.overloaded == 0


def _result(p50: float, queries: int) -> ScenarioResult:
    return ScenarioResult(
        qps_target=None, qps_achieved=float(queries), images_per_s=float(queries),
        queries=queries, p50_us=p50, p90_us=p50, p99_us=p50, percentiles_us={"p50": p50},
        batching=False, mean_batch=1.0, overloaded=0, seconds=1.0,
    )  # fmt: skip


def _report(run: int, p50: float, peak: float | None = None, note: str | None = None):
    settings = {"run": run}
    return ScenarioReport("server", settings, [_result(p50, 10 * run)], peak, {}, note)


def test_repeated_runs_give_each_figure_as_the_median_with_its_range():
    combined = repeated([_report(1, 30.0), _report(2, 10.0), _report(3, 20.0)])
    assert combined.settings == {"run": 1, "repeat": 3}
    (result,) = combined.results
    assert (result.p50_us, result.queries) == (20.0, 20)
    assert result.ranges["p50_us"] == [10.0, 30.0]
    assert repeated([_report(1, 5.0), _report(2, 7.0)]).settings == {"run": 1, "repeat": 2}


def test_repeated_peak_searches_give_the_median_peak_its_range_and_every_note():
    runs = [_report(1, 1.0, 100.0, "a"), _report(2, 2.0, 300.0), _report(3, 3.0, 200.0, "c")]
    combined = repeated(runs)
    assert combined.peak_qps == 200.0 and combined.results == runs[2].results
    assert combined.peak_range == [100.0, 300.0]
    assert combined.peak_note == "a; c"
    assert combined.settings == {"run": 1, "repeat": 3}


class Recorder(BaseHTTPRequestHandler):
    """Answers GET /v1/model with `reply` and records each request's headers."""

    seen: ClassVar[list] = []
    reply: ClassVar[tuple[int, bytes]] = (200, b"{}")

    def do_GET(self):
        self._answer()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer()

    def _answer(self):
        type(self).seen.append(dict(self.headers))
        status, body = type(self).reply
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    handler = type("Handler", (Recorder,), {"seen": [], "reply": (200, b"{}")})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_request_carries_the_token_and_says_its_body_is_bytes(recorder):
    handler, url = recorder
    caller = HttpCaller(url, "t0k", 1, np.zeros((1, 28, 28), np.uint8))
    try:
        caller.call(0)
    finally:
        caller.close()
    (headers,) = handler.seen
    assert headers["Authorization"] == "Bearer t0k"
    assert headers["Content-Type"] == "application/octet-stream"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ((200, b'{"serving": {"max_batch": 32}}'), {"max_batch": 32}),
        ((404, b'{"serving": {"max_batch": 32}}'), {}),
        ((200, b"not json"), {}),
        ((200, b'{"serving": [1, 2]}'), {}),
        ((200, b'{"model": "x"}'), {}),
    ],
    ids=["settings", "not-found", "not-json", "not-a-dict", "none-given"],
)
def test_the_servers_settings_are_what_its_model_route_says_or_nothing(recorder, reply, expected):
    handler, url = recorder
    handler.reply = reply
    assert served_settings(url, None) == expected


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:8080", "http://", "127.0.0.1:8080"])
def test_a_url_that_is_not_http_host_port_is_refused_in_one_line(url):
    with pytest.raises(InputError) as refused:
        HttpCaller(url, None, 1, np.zeros((1, 28, 28), np.uint8))
    assert str(refused.value) == f"--url: expected http://HOST:PORT, found {url!r}"


def test_a_url_without_a_port_means_port_80():
    caller = HttpCaller("http://127.0.0.1", None, 1, np.zeros((1, 28, 28), np.uint8))
    caller.close()
    assert (caller.host, caller.port) == ("127.0.0.1", 80)


def test_json_of_a_report_has_no_token():
    clf = Counting()
    report = run_scenario(clf, ScenarioConfig("single-stream", duration=0.0, token="secret"))
    assert "secret" not in json.dumps(report.to_dict())


def test_a_rate_whose_trials_disagree_is_named_with_its_p99_spread_and_no_blame():
    from dataclasses import replace

    from runtime.scenarios import _disagreement

    held = replace(_result(1500.0, 10), qps_target=4000.0, holds=True)
    failed = replace(_result(2600.0, 10), qps_target=4000.0, holds=False)
    agreed = replace(_result(900.0, 10), qps_target=1000.0, holds=True)
    assert _disagreement([agreed, agreed]) is None
    assert _disagreement([agreed, held, failed]) == (
        "trials at the same rate disagreed: 4,000 qps (p99 1.50-2.60 ms over 2 trials)"
    )

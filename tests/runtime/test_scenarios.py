"""MLPerf's scenarios through `bench --scenario`: each reports in the documented JSON, and the
server scenario counts latency from the schedule, so a backlog shows instead of hiding."""

import json
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from runtime.cli import app
from runtime.scenarios import (
    CONFIRM,
    MAX_PEAK_TRIALS,
    ScenarioConfig,
    _result,
    run_scenario,
    search_peak,
)

runner = CliRunner()
KEYS = {"qps_target", "qps_achieved", "p50_us", "p90_us", "p99_us", "batching", "mean_batch"}


@pytest.mark.parametrize(
    ("args", "batching"),
    [
        (["--scenario", "single-stream"], False),
        (["--scenario", "offline"], False),
        (["--scenario", "multi-stream", "--samples-per-query", "4", "--interval-ms", "2"], True),
        (["--scenario", "server", "--qps", "500"], True),
        (["--scenario", "server", "--qps", "500", "--no-batching"], False),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else str(a),
)
def test_each_scenario_reports_the_documented_json(tiny_model, args, batching):
    result = runner.invoke(
        app, ["bench", "--model", str(tiny_model), *args, "--duration", "0.3", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["scenario"] == args[1] and report["peak_qps"] is None
    (row,) = report["results"]
    assert set(row) >= KEYS and row["batching"] == (batching and args[1] != "single-stream")
    assert row["p50_us"] <= row["p90_us"] <= row["p99_us"] or row["queries"] < 3
    assert row["queries"] > 0 and report["process"]["peak_rss_mb"] > 0
    if args[1] == "multi-stream":
        assert row["mean_batch"] == pytest.approx(4, rel=0.25)  # a query's images, gathered
        assert row["images_per_s"] == pytest.approx(4 * row["qps_achieved"], rel=0.01)


class SlowModel:
    """A model that takes 2 ms a call, whatever the batch: a backlog is easy to make."""

    path = "slow.onnx"
    batch_size = 256

    def predict_proba(self, x):
        time.sleep(0.002)
        return np.zeros((len(np.atleast_3d(x)), 10), np.float32)

    proba_of_images = predict_proba


def test_a_backlog_shows_as_latency_counted_from_the_schedule():
    # 1,000 arrivals a second on one worker that manages 500: each query waits longer than the
    # last. Timing from the moment a worker takes a query would hide that (coordinated omission).
    config = ScenarioConfig("server", qps=1000, duration=0.5, batching=False, workers=1)
    (row,) = run_scenario(SlowModel(), config).results
    assert row.qps_achieved < 700
    assert row.p99_us > 100_000  # far beyond the 2 ms service time


def test_batching_gathers_a_backlog_into_fewer_calls():
    config = ScenarioConfig("server", qps=1000, duration=0.5, batching=True, max_delay_us=1000)
    (row,) = run_scenario(SlowModel(), config).results
    assert row.mean_batch > 1.5 and row.p99_us < 50_000


def test_find_peak_brackets_the_rate_the_bound_allows():
    config = ScenarioConfig(
        "server", qps=100, duration=0.3, batching=False, workers=1,
        find_peak=True, latency_bound_ms=10,
    )  # fmt: skip
    report = run_scenario(SlowModel(), config)
    assert report.peak_qps > 0  # how high depends on the machine; what held is checked below
    rates = {r.qps_target for r in report.results if r.qps_target <= report.peak_qps}
    for rate in rates:  # each rate at or below the peak held in one of its trials at least
        trials = [r for r in report.results if r.qps_target == rate]
        assert any(r.p99_us <= 10_000 and r.overloaded == 0 for r in trials)
        assert all(r.holds == (r.p99_us <= 10_000 and r.overloaded == 0) for r in trials)
    assert rates and len(report.results) <= MAX_PEAK_TRIALS * (1 + CONFIRM)


@pytest.mark.parametrize(
    "start, lowest",
    [
        (100.0, 0.95 * 437),  # within 5% of the true peak, from a start near it
        (437.0, 0.95 * 437),
        (5000.0, 0.95 * 437),
        (1.0, 437 / 2),  # 9 doublings leave 3 trials: never above the peak, within a factor 2
    ],
)
def test_search_peak_finds_the_highest_rate_that_holds(start, lowest):
    tried = []

    def holds_at(qps: float) -> bool:
        tried.append(qps)
        return qps <= 437.0

    peak = search_peak(holds_at, start)
    assert lowest <= peak <= 437.0
    assert len(set(tried)) <= MAX_PEAK_TRIALS
    failed = {q for q in tried if q > 437.0}
    assert all(tried.count(q) == 1 + CONFIRM for q in failed)  # each failure confirmed
    assert all(tried.count(q) == 1 for q in set(tried) - failed)


def test_one_spoilt_trial_does_not_send_the_peak_search_down():
    spoilt = {1000.0}  # a busy neighbour spoils the first trial at 1,000 qps only

    def holds_at(qps: float) -> bool:
        if qps in spoilt:
            spoilt.discard(qps)
            return False
        return qps <= 16_000.0

    assert search_peak(holds_at, 1000.0) >= 0.95 * 16_000
    spoilt.add(1000.0)
    assert search_peak(holds_at, 1000.0, confirm=0) < 1000  # without confirmation: fooled


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--scenario", "burst"], "--scenario: expected one of single-stream"),
        (["--scenario", "server", "--qps", "0"], "--qps: out of range"),
        (["--scenario", "server", "--max-batch", "0"], "--max-batch: out of range"),
        (["--percentiles", "50,100"], "--percentiles: expected numbers between 0 and 100"),
        (
            ["--scenario", "single-stream", "--url", "http://127.0.0.1:9"],
            "--url: goes with the server and multi-stream scenarios only",
        ),
    ],
)
def test_bad_scenario_options_get_one_line(tiny_model, args, fragment):
    result = runner.invoke(app, ["bench", "--model", str(tiny_model), *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]


def test_percentiles_are_those_of_the_latencies_measured():
    # Latencies of 1, 2, ..., 1000 us, shuffled: by linear interpolation between ranks, p50 is
    # 500.5, p90 1 + 0.9 * 999 = 900.1, p99 990.01, p99.9 999.001, p30 300.7.
    rng = np.random.default_rng(0)
    seconds = rng.permutation(np.arange(1, 1001)) / 1e6
    config = ScenarioConfig(percentiles=(30, 50, 90, 99, 99.9))
    r = _result(seconds, 1000, 1, 2.0, 500.0, True, 1.0, 0, config)
    assert (r.p50_us, r.p90_us, r.p99_us) == (500.5, 900.1, 990.0)
    assert r.percentiles_us == {
        "p30": 300.7,
        "p50": 500.5,
        "p90": 900.1,
        "p99": 990.0,
        "p99.9": 999.0,
    }
    assert (r.qps_achieved, r.images_per_s) == (500.0, 500.0)

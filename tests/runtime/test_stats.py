import time

import numpy as np
import pytest

from runtime.bench import BenchConfig, bench, summarize, time_calls
from runtime.parity import compare
from runtime.settings import SessionSettings


def test_summarize_percentiles_and_throughput_from_known_timings():
    seconds = np.arange(1, 101) * 1e-6  # 1..100 us
    r = summarize(batch_size=4, seconds=seconds)
    assert r.runs == 100
    assert r.p50_us == pytest.approx(50.5)
    assert r.p90_us == pytest.approx(90.1)
    assert r.p99_us == pytest.approx(99.01)
    assert (r.min_us, r.max_us, r.mean_us) == (1.0, 100.0, 50.5)
    assert r.images_per_s == pytest.approx(4 * 100 / (5050e-6), rel=1e-6)


def test_summarize_refuses_no_timings():
    with pytest.raises(ValueError):
        summarize(1, np.array([]))


def test_time_calls_runs_at_least_min_runs_and_times_each_call():
    calls = []
    times = time_calls(lambda: calls.append(time.sleep(0.002)), duration=0.0, min_runs=5)
    assert len(times) == len(calls) == 5
    assert times.min() >= 0.002  # each sample spans its call, sleep included


def test_time_calls_runs_exactly_the_runs_asked_for():
    calls = []
    assert len(time_calls(lambda: calls.append(1), duration=10.0, min_runs=50, runs=7)) == 7
    assert len(calls) == 7


def test_bench_reports_each_batch_size(tiny_model):
    sessions = (SessionSettings(threads=1), SessionSettings(threads=2))
    config = BenchConfig(batch_sizes=(1, 8), sessions=sessions, runs=12, warmup=0.0)
    report = bench(tiny_model, config)
    assert [(r.threads, r.batch_size) for r in report.results] == [(1, 1), (1, 8), (2, 1), (2, 8)]
    assert all(r.runs == 12 and r.p50_us > 0 for r in report.results)
    assert [c.threads for c in report.cold_start] == [1, 2]
    assert all(c.load_ms > 0 and c.first_inference_us > 0 for c in report.cold_start)
    assert report.settings["threads"] == [1, 2] and report.settings["runs"] == 12


def test_parity_counts_disagreements_and_largest_difference():
    ref = np.eye(10, dtype=np.float32)[[0, 1, 2, 3]]
    cand = ref.copy()
    cand[2] = np.eye(10)[5]  # one image flips its label
    cand[0, 0] -= 1e-3
    report = compare(ref, cand, labels=np.array([0, 1, 2, 9]))
    assert report.agreement == 0.75 and report.disagreements == [2]
    assert report.max_abs_diff == pytest.approx(1.0)
    assert report.reference_accuracy == 0.75 and report.candidate_accuracy == 0.5
    assert report.rows_within == 0.75  # the flipped row; 1e-3 is within 0.01
    assert not report.passed and len(report.failures()) == 2


def test_parity_passes_within_tolerance():
    ref = np.full((3, 10), 0.1, np.float32)
    ref[:, 0] = 0.2
    report = compare(ref, ref + 1e-7, labels=np.zeros(3, int))
    assert report.passed and report.failures() == []

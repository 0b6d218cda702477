"""A busy machine is noticed: other processes' CPU time and steal, against our own."""

import json
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from runtime.cli import app
from runtime.load import BUSY_CORES, Sample, busy_warning, load_between, sample
from runtime.scenarios import ScenarioConfig, run_scenario
from tests.runtime.test_scenarios import SlowModel


def test_load_is_what_others_took_per_second_of_wall_time():
    before = Sample(wall=10.0, busy=100.0, steal=1.0, total=400.0, ours=5.0)
    after = Sample(wall=12.0, busy=103.5, steal=1.2, total=404.0, ours=6.5)
    # 3.5 CPU seconds in 2 s, 1.5 of them ours: 1.0 core taken by others; 0.2 of 4 s stolen
    assert load_between(before, after) == {"other_cpu_cores": 1.0, "steal_share": 0.05}
    assert load_between(None, after) == {}


@pytest.mark.parametrize(
    ("load", "warned"),
    [
        ({"other_cpu_cores": BUSY_CORES - 0.01, "steal_share": 0.0}, False),
        ({"other_cpu_cores": BUSY_CORES, "steal_share": 0.0}, True),
        ({"other_cpu_cores": 0.0, "steal_share": 0.05}, True),
        ({}, False),
    ],
)
def test_a_warning_past_either_threshold_with_the_figures(load, warned):
    line = busy_warning(load)
    assert (line is not None) == warned
    if warned:
        assert f"{load['other_cpu_cores']:.2f} cores" in line


@pytest.fixture
def neighbour():
    """A CPU-bound process beside the test, stopped after it (and within 60 s in any case)."""
    busy = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.time() + 60\nwhile time.time() < end: pass"]
    )
    time.sleep(0.2)
    yield busy
    busy.kill()
    busy.wait()


@pytest.mark.skipif(sample() is None, reason="needs /proc/stat (Linux)")
def test_bench_beside_a_busy_neighbour_says_so_and_reports_it(tiny_model, neighbour):
    args = ["bench", "--model", str(tiny_model), "--batch-sizes", "1", "--threads", "1"]
    result = CliRunner().invoke(app, [*args, "--duration", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    process = json.loads(result.stdout)["process"]
    assert process["other_cpu_cores"] >= 0.5  # the neighbour's whole core, less scheduling
    warning = [line for line in result.stderr.splitlines() if "machine was busy" in line]
    assert len(warning) == 1 and warning[0].startswith("warning: ")


def test_the_confirmed_peak_search_holds_beside_a_busy_neighbour():
    config = ScenarioConfig(
        "server", qps=100, duration=0.3, batching=False, workers=1,
        find_peak=True, latency_bound_ms=10,
    )  # fmt: skip
    quiet = run_scenario(SlowModel(), config).peak_qps
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        crowded = run_scenario(SlowModel(), config).peak_qps
    finally:
        busy.kill()
        busy.wait()
    assert quiet / 4 <= crowded  # a factor 4 holds on 2 cores even beside other work


def _result(p50: float, images_per_s: float, batch_size: int = 1):
    from runtime.bench import BenchResult

    return BenchResult(
        threads=1, batch_size=batch_size, runs=100, p50_us=p50, p90_us=p50 * 1.1,
        p99_us=p50 * 2, p999_us=p50 * 3, mean_us=p50, min_us=p50 / 2, max_us=p50 * 4,
        std_us=1.0, images_per_s=images_per_s, percentiles_us={"p50": p50, "p75": p50 + 1},
    )  # fmt: skip


def test_repeated_runs_give_each_figure_s_median_and_range():
    from runtime.bench import median_of

    runs = [
        [_result(20.0, 50_000), _result(900.0, 280_000, 256)],
        [_result(35.0, 30_000), _result(1000.0, 256_000, 256)],
        [_result(21.0, 48_000), _result(950.0, 270_000, 256)],
    ]
    one, big = median_of(runs)
    assert (one.batch_size, big.batch_size) == (1, 256)  # cases kept apart, in order
    assert (one.p50_us, one.images_per_s, big.p50_us) == (21.0, 48_000, 950.0)
    assert one.ranges["p50_us"] == [20.0, 35.0] and one.ranges["images_per_s"] == [30_000, 50_000]
    assert one.percentiles_us == {"p50": 21.0, "p75": 22.0} and one.ranges["p75"] == [21.0, 36.0]


def test_bench_repeat_reports_medians_with_their_ranges(tiny_model):
    args = ["bench", "--model", str(tiny_model), "--batch-sizes", "1,8", "--threads", "1"]
    result = CliRunner().invoke(app, [*args, "--duration", "0.1", "--repeat", "3", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["settings"]["repeat"] == 3
    for row in report["results"]:
        low, high = row["ranges"]["p50_us"]
        assert low <= row["p50_us"] <= high


def test_repeated_peak_searches_report_the_median_peak_and_the_range():
    from runtime.scenarios import ScenarioReport, repeated

    reports = [
        ScenarioReport("server", {"find_peak": True}, [], peak_qps=p, peak_note=n)
        for p, n in ((1000.0, None), (3000.0, "trials disagreed at 3,200"), (2000.0, None))
    ]
    one = repeated(reports)
    assert one.peak_qps == 2000.0 and one.peak_range == [1000.0, 3000.0]
    assert one.settings["repeat"] == 3 and one.peak_note == "trials disagreed at 3,200"

"""Results as the CLI prints them: tables for people, JSON for scripts."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer

from runtime.errors import ClosedPipe, OutputError


def say(line: str) -> None:
    """One line on stdout. A full disk is a one-line error; a reader that has gone (`| head`)
    ends the command quietly, as Unix tools do."""
    try:
        typer.echo(line)
    except BrokenPipeError:
        raise ClosedPipe() from None
    except OSError as e:
        raise OutputError(f"stdout: cannot write ({e.strerror})") from None


def printable(name: str) -> str:
    """A file name for a tab-separated line: tabs, newlines and other control characters
    escaped, so that one input stays one line of columns (JSON output needs no such care)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def prediction_header(top_k: int) -> str:
    """The column names above prediction lines, for a person at a terminal (none when piped)."""
    return "input\tlabel\tconfidence" + ("\trunners-up" if top_k > 1 else "")


def prediction_line(name: str, ranked: list[tuple[str, float]], json_out: bool) -> str:
    """One input's answer: `name<TAB>label<TAB>confidence<TAB>alternatives`, or a JSON object.
    Runners-up keep two significant digits, so a small one still says something (9:3.1e-05)."""
    (label, confidence), rest = ranked[0], ranked[1:]
    if not json_out:
        alternatives = "  ".join(f"{lab}:{q:.2g}" for lab, q in rest)
        return f"{printable(name)}\t{label}\t{confidence:.4f}\t{alternatives}".rstrip()
    row = {"input": name, "label": label, "confidence": round(confidence, 6)}
    if rest:
        row["top_k"] = [{"label": lab, "probability": round(q, 6)} for lab, q in ranked]
    return json.dumps(row)


def evaluation_lines(result, model, data: str) -> list[str]:
    """`evaluate`'s table: accuracy, per digit, calibration, and what each threshold keeps."""
    per_class = "  ".join(f"{d}:{a:.3f}" for d, a in enumerate(result.per_class_accuracy))
    t = result.thresholds
    return [
        f"model     {model}",
        f"data      {data.format(n=result.count)}",
        f"accuracy  {result.accuracy:.4%}  ({result.correct}/{result.count})",
        f"per digit {per_class}",
        f"calibration error (ECE) {result.ece:.4f}",
        "sure at   " + "".join(f"{x.confidence:>10g}" for x in t),
        "  keeps   " + "".join(f"{x.kept:>10.2%}" for x in t),
        "  right   " + "".join(f"{x.accuracy:>10.3%}" for x in t),
    ]


def reading_line(name: str, reading, min_confidence: float, json_out: bool) -> str:
    """One image's number: `name<TAB>number<TAB>confidences`, or a JSON object."""
    text = reading.text(min_confidence)
    if not json_out:
        sure = " ".join(f"{d.confidence:.2f}" for d in reading.digits)
        return f"{printable(name)}\t{text}\t{sure}"
    return json.dumps({"input": name, **reading_dict(reading, min_confidence)})


def reading_dict(reading, min_confidence: float = 0.0) -> dict:
    """A Reading as `read --json` and `POST /v1/read` give it."""
    digits = [
        {
            "label": d.label,
            "confidence": round(d.confidence, 6),
            "top_k": [{"label": lab, "probability": round(q, 6)} for lab, q in d.top_k],
            "box": {"x": d.box.x, "y": d.box.y, "w": d.box.w, "h": d.box.h},
        }
        for d in reading.digits
    ]
    return {"number": reading.text(min_confidence), "digits": digits}


def with_parity(result) -> dict:
    """A result dataclass whose `parity` is a ParityReport, as a JSON-ready dict."""
    return {**asdict(result), "parity": result.parity.to_dict()}


def parity_lines(report) -> list[str]:
    lines = [
        f"agreement     {report.agreement:.4%}  (min {report.agreement_min:.4%})",
        f"max |diff|    {report.max_abs_diff:.3g}  (max {report.max_abs_diff_allowed:g})",
        f"accuracy      reference {report.reference_accuracy:.4%}, "
        f"candidate {report.candidate_accuracy:.4%} on {report.count} images",
    ]
    return [*lines, "PASS" if report.passed else "FAIL: " + "; ".join(report.failures())]


def info_lines(described) -> list[str]:
    d = described
    lines = [
        f"path      {d.path}",
        *([f"chosen    {d.chosen}"] if d.chosen else []),
        f"variant   {d.variant} ({d.format} format)",
        f"size      {d.size_bytes:,} bytes  sha256 {d.sha256[:16]}...",
    ]
    for kind, tensors in (("input", d.inputs), ("output", d.outputs)):
        lines += [f"{kind:<9} {t.name} {t.shape} {t.type}" for t in tensors]
    lines.append("contract")
    for part, (value, source) in d.contract.items():
        lines.append(f"  {part:<10} {value}  ({source})")
    lines.append("metadata")
    lines += [f"  {key:<22} {value}" for key, value in d.metadata.items()]
    return lines


def bench_lines(report) -> list[str]:
    s = report.settings
    lines = [
        f"model {s['model']}",
        f"onnxruntime {s['onnxruntime']} on {s['processor']} ({s['cpu_count']} cores); "
        f"spinning {'on' if s['spinning'] else 'off'}, memory arena "
        f"{'on' if s['memory_arena'] else 'off'}, optimisation {s['optimization']}, "
        f"split batches {s['split_batches']}",
    ]
    for c in report.cold_start:
        lines.append(
            f"cold start, threads {c.threads or 'default'}: load {c.load_ms:.1f} ms, "
            f"first inference {c.first_inference_us:.0f} us"
        )
    lines.append(
        f"{'threads':>7} {'batch':>6} {'runs':>7} {'p50 us':>10} {'p90 us':>10} "
        f"{'p99 us':>10} {'p99.9 us':>10} {'mean us':>10} {'std us':>9} {'images/s':>12}"
    )
    for r in report.results:
        chunked = f"  (in chunks of {s['fixed_batch']})" if r.chunked else ""
        extra = {
            k: v for k, v in r.percentiles_us.items() if k not in ("p50", "p90", "p99", "p99.9")
        }
        chunked += "".join(f"  {k} {v:.1f} us" for k, v in extra.items())
        lines.append(
            f"{r.threads or 'default':>7} {r.batch_size:>6} {r.runs:>7} {r.p50_us:>10.1f} "
            f"{r.p90_us:>10.1f} {r.p99_us:>10.1f} {r.p999_us:>10.1f} {r.mean_us:>10.1f} "
            f"{r.std_us:>9.1f} {r.images_per_s:>12,.0f}{chunked}"
        )
        if r.ranges:
            lines.append(_range_line(r.ranges, s.get("repeat")))
    if s.get("repeat"):
        lines.insert(2, f"each figure the median of {s['repeat']} runs, its range below it")
    p = report.process
    lines.append(f"process: peak RSS {p['peak_rss_mb']:.0f} MB, CPU time {p['cpu_seconds']:.1f} s")
    return lines


def _range_line(ranges: dict, runs: int | None) -> str:
    shown = [("p50", "p50_us"), ("p99", "p99_us"), ("images/s", "images_per_s")]
    parts = [
        f"{label} {ranges[key][0]:,.1f}-{ranges[key][1]:,.1f}"
        for label, key in shown
        if key in ranges
    ]
    return f"{'':>15} range over {runs} runs: " + ", ".join(parts)


def scenario_lines(report) -> list[str]:
    s = report.settings
    head = {
        "single-stream": "one image at a time, back to back",
        "multi-stream": f"{s['samples_per_query']} images every {s['interval_ms']:g} ms",
        "server": f"Poisson arrivals, p99 bound {s['latency_bound_ms']:g} ms"
        if s["find_peak"]
        else f"Poisson arrivals at {s['qps']:g} qps",
        "offline": f"{s['offline_images']} images at once",
    }[report.scenario]
    if not s["batching"]:
        batching = f"{s['workers']} worker threads, no batching"
    elif s["max_batch"] is None:  # a server that does not say
        batching = "the server's micro-batcher (its settings unknown)"
    else:
        whose = "the server's micro-batcher" if s.get("url") else "micro-batcher"
        batching = f"{whose} (max batch {s['max_batch']}, max delay {s['max_delay_us']:g} us)"
    lines = [f"model {s['model']}", f"{report.scenario}: {head}; {batching}"]
    if report.scenario in ("single-stream", "offline"):
        lines[-1] = f"{report.scenario}: {head}"
    names = list(report.results[0].percentiles_us) if report.results else []
    lines.append(
        f"{'offered qps':>12} {'achieved':>10} {'images/s':>10} {'mean batch':>10} "
        + " ".join(f"{n + ' us':>10}" for n in names)
        + f" {'refused':>8}"
    )
    for r in report.results:
        offered = f"{r.qps_target:,.0f}" if r.qps_target else "-"
        rates = f"{offered:>12} {r.qps_achieved:>10,.0f} {r.images_per_s:>10,.0f}"
        values = " ".join(f"{v:>10.1f}" for v in r.percentiles_us.values())
        lines.append(f"{rates} {r.mean_batch:>10.2f} {values} {r.overloaded:>8}")
        if r.ranges:
            lines.append(_range_line(r.ranges, s.get("repeat")))
    if report.peak_qps is not None:
        at_peak = [r.p99_us for r in report.results if r.qps_target == report.peak_qps]
        spread = (
            f" (p99 there {min(at_peak) / 1000:.2f}-{max(at_peak) / 1000:.2f} ms over "
            f"{len(at_peak)} trials)"
            if len(at_peak) > 1
            else ""
        )
        lines.append(
            f"peak {report.peak_qps:,.0f} qps with p99 <= {s['latency_bound_ms']:g} ms{spread}"
        )
    if report.peak_range:
        low, high = report.peak_range
        lines.append(
            f"peak over {s['repeat']} searches: median above, range {low:,.0f}-{high:,.0f} qps"
        )
    if report.peak_note:
        lines.append(f"note: {report.peak_note}")
    p = report.process
    lines.append(f"process: peak RSS {p['peak_rss_mb']:.0f} MB, CPU time {p['cpu_seconds']:.1f} s")
    return lines


def profile_lines(ops, path) -> list[str]:
    if not ops:
        return []
    lines = [f"onnxruntime profile saved to {path}; time by op type:"]
    lines += [f"  {o.op:<24} {o.total_us / 1000:>9.1f} ms {o.share:>7.1%}" for o in ops[:8]]
    return lines

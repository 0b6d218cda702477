"""The seed's engine in the seed's worlds: TensorFlow.js beside onnxruntime on the same weights,
in Node.js and in headless Chromium, in one run each.

Models: the seed's MLP and the default edge CNN, fp32, as TF.js layers models made from the
shipped ONNX files (benchmarks/tfjs_models.py; answers within 1e-5 of onnxruntime, tested).
Engines: in Node.js, TF.js on its cpu (plain JavaScript) and wasm backends, onnxruntime-node
on 1 and all cores (`@tensorflow/tfjs-node` downloads a native binary at install, which a
machine without internet cannot do: it is not measured); in Chromium, TF.js cpu and wasm and
onnxruntime-web's wasm on 1 and 2 threads (the page cross-origin isolated, without which
browsers allow WebAssembly no threads). For each, batch 1 and 256: p50, p99 and images per
second, and the cold start (Node: model load and first answer; Chromium: navigation to first
answer, the engine's code loaded by the page).

    python benchmarks/tfjs.py [--seconds 2] [--json FILE] [--plot FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from tfjs_models import SHIPPED, write_layers_model  # noqa: E402

from runtime.webpage import PageHandler  # noqa: E402

WEB = ROOT / "web"
MODELS = WEB / "bench" / "models"  # served beside the page; not committed (made from exported/)
# TF.js 4.22's wasm backend ran 1 thread in Chromium even cross-origin isolated (its
# getThreadsCount() said 1 whatever setThreadsCount asked): it is measured on 1.
BROWSER = [("tfjs-cpu", 1), ("tfjs-wasm", 1), ("onnxruntime-web", 1), ("onnxruntime-web", 2)]


class IsolatedHandler(PageHandler):
    """The page's server with cross-origin isolation, without which browsers allow no threads
    (SharedArrayBuffer) to WebAssembly."""

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()


def make_models() -> None:
    for name, path in SHIPPED.items():
        write_layers_model(path, MODELS / name)


def node_rows(batches: list[int], seconds: float) -> list[dict]:
    node = shutil.which("node")
    command = [node, str(WEB / "bench" / "tfjs.mjs"), "bench", str(MODELS),
               "--batches", ",".join(map(str, batches)), "--seconds", str(seconds)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=True)
    return [json.loads(line) for line in done.stdout.splitlines()]


class Page:
    """web/bench/ served on 127.0.0.1 (cross-origin isolated) in headless Chromium."""

    def __enter__(self):
        from functools import partial
        from http.server import ThreadingHTTPServer

        from tests.web.conftest import start_chromium

        self.server = ThreadingHTTPServer(
            ("127.0.0.1", 0), partial(IsolatedHandler, directory=str(ROOT))
        )
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.profile = tempfile.TemporaryDirectory(prefix="chromium-")
        self.driver = start_chromium(Path(self.profile.name))
        self.driver.set_script_timeout(1800)
        return self

    def run(self, **query) -> dict | list:
        """One page load with `query`; what the page's measurement resolved to."""
        port = self.server.server_address[1]
        self.driver.get(
            f"http://127.0.0.1:{port}/web/bench/index.html?"
            + "&".join(f"{k}={v}" for k, v in query.items())
        )
        return self.driver.execute_async_script(
            "window.benchResult.then(arguments[arguments.length - 1])"
        )

    def __exit__(self, *exc):
        self.driver.quit()
        self.server.shutdown()
        self.server.server_close()
        self.profile.cleanup()


def browser_rows(batches: list[int], seconds: float) -> list[dict]:
    rows = []
    with Page() as page:
        for model in SHIPPED:
            for engine, threads in BROWSER:
                got = page.run(engine=engine, model=model, threads=threads,
                               batches=",".join(map(str, batches)), seconds=seconds)  # fmt: skip
                if isinstance(got, dict):
                    raise RuntimeError(f"{engine} ({threads} threads) on {model}: {got['error']}")
                rows += got
    return rows


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| world | model | engine | threads | batch | p50 ms | p99 ms | images/s | cold start ms |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['world']} | {r['model']} | {r['engine']} | {r['threads']} | {r['batch']} | "
            f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['images_per_s']:,.0f} | "
            f"{r['cold_start_ms']:.0f} |"
        )
    return lines


def plot(rows: list[dict], path: Path) -> None:
    """A grid: one row per world, one panel per model and batch, engines as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    worlds = sorted({r["world"] for r in rows}, reverse=True)  # node, then chromium
    cases = sorted({(r["model"], r["batch"]) for r in rows})
    fig, axes = plt.subplots(len(worlds), len(cases), figsize=(3.1 * len(cases), 2.4 * len(worlds)),
                             squeeze=False)  # fmt: skip
    for row, world in zip(axes, worlds, strict=True):
        for ax, (model, batch) in zip(row, cases, strict=True):
            mine = [
                r for r in rows if (r["world"], r["model"], r["batch"]) == (world, model, batch)
            ]
            names = [f"{r['engine']} {r['threads']}t" for r in mine]
            colours = ["tab:blue" if "onnxruntime" in r["engine"] else "tab:orange" for r in mine]
            ax.barh(names, [r["images_per_s"] for r in mine], color=colours)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{world}: {model}, batch {batch}", fontsize=9)
            ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("images/s (log scale)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per engine, model and batch")
    parser.add_argument("--batches", default="1,256")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--plot", type=Path, default=None, help="also draw them here (PNG)")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    make_models()
    rows = node_rows(batches, args.seconds) + browser_rows(batches, args.seconds)
    print("\n".join(table(rows)))
    if args.json:
        args.json.write_text(json.dumps({"seconds": args.seconds, "rows": rows}, indent=1) + "\n")
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())

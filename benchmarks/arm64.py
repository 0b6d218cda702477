"""The device path on 64-bit ARM, under emulation: the README's wheel folder installed offline
into a Debian bookworm arm64 userland (as on Raspberry Pi OS 12), run under qemu-user for each
named CPU, with answers compared to this x86 machine's on the same images.

    python benchmarks/arm64.py                          # Cortex-A72 (Pi 4), Cortex-A76 (Pi 5)
    python benchmarks/arm64.py --cpus cortex-a72 --limit 1000 --json
    python benchmarks/arm64.py --cpus haswell           # x86-64 without VNNI, also emulated

Needs Debian's qemu-user-static and mmdebstrap (`apt-get install qemu-user-static mmdebstrap`);
the arm64 packages come from the Debian sources this machine's apt already uses, the wheels
from the package index pip already uses. What it builds stays in --work and is reused. Under
emulation, `info`, `predict` on the example digits and `evaluate` run through the installed
command, and every shipped model's probabilities are compared with x86's. Emulation
proves that the install works and what the answers are; it says nothing of speed, memory or
16 KiB pages on a real board.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.mnist import load_split  # noqa: E402
from runtime.session import Classifier  # noqa: E402

MODELS = ("mnist_edge.int8.onnx", "mnist_edge.onnx", "mnist_cnn.onnx", "mnist_mlp.onnx")
SUITE = "bookworm"  # Debian 12, as Raspberry Pi OS 12: Python 3.11, glibc 2.36
PACKAGES = "python3,python3-venv,python3-pip,libstdc++6"  # onnxruntime needs libstdc++6
PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")
FP32_TOLERANCE = 1e-5
# What qemu 7.2 shows a guest as /proc/cpuinfo is the host's x86 file, on which onnxruntime's
# CPU detection crashes; the root's own proc/cpuinfo, in ARM's format, is read instead.
CPUS = {
    "cortex-a72": ("0xd08", "fp asimd evtstrm crc32 cpuid", "Raspberry Pi 4"),
    "cortex-a76": (
        "0xd0b",
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
        "dcpop asimddp",
        "Raspberry Pi 5",
    ),
    "max": (
        "0x000",
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt "
        "fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 asimdfhm dit uscat ilrcpc flagm sb "
        "dcpodp sve2 i8mm bf16",
        "qemu's newest ARM features",
    ),
    "haswell": (None, None, "x86-64 with AVX2, without VNNI"),
}

# Run inside the emulated Python: every shipped model's probabilities on the first N images.
PROBE = """
import json, platform, sys
import numpy as np
from runtime import Classifier
from runtime.cpu import cpu_name, int8_exact
from runtime.mnist import load_split
from runtime.models import default_model_name, resolve_model
data, limit, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
images = load_split("test", data).images[:limit]
for name in sys.argv[4:]:
    with Classifier(resolve_model(name), threads=1) as clf:
        np.save(f"{out}/{name}.npy", clf.predict_proba(images))
print(json.dumps({"machine": platform.machine(), "cpu": cpu_name(),
                  "default_model": default_model_name(), "int8_exact": int8_exact()}))
"""


@dataclass
class ModelCheck:
    model: str
    accuracy: float  # under emulation
    x86_accuracy: float
    agreement: float  # top-1, emulated vs this machine
    max_abs_diff: float
    bit_identical: bool


@dataclass
class CpuReport:
    cpu: str
    board: str
    machine: str
    cpu_name: str  # what `runtime.cpu.cpu_name()` says under emulation
    default_model: str
    predicted_examples: list[str]  # labels `mnist-edge predict examples/digits/*.png` printed
    evaluate_accuracy: float  # `mnist-edge evaluate --json` of the default model
    models: list[ModelCheck] = field(default_factory=list)
    seconds: float = 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpus", default="cortex-a72,cortex-a76", help=f"of {', '.join(CPUS)}")
    parser.add_argument("--limit", type=int, default=10000, help="test images (1..10000)")
    parser.add_argument("--data", type=Path, default=None, help="MNIST (default: as the CLI)")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "arm64")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/arm64.json")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args()
    cpus = [c.strip() for c in args.cpus.split(",") if c.strip()]
    unknown = [c for c in cpus if c not in CPUS]
    if unknown or not 1 <= args.limit <= 10000:
        parser.error(f"--cpus: expected some of {', '.join(CPUS)}; --limit: 1..10000")
    missing = [t for t in ("qemu-aarch64-static", "mmdebstrap") if shutil.which(t) is None]
    if missing:
        sys.exit(
            f"error: {', '.join(missing)} not found: apt-get install qemu-user-static mmdebstrap"
        )

    data = load_split("test", args.data)
    images, labels = data.images[: args.limit], data.labels[: args.limit]
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "w") as lock:  # one run per --work: they share the venv and out/
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another arm64.py run in {work}", file=sys.stderr, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        return run_all(args, cpus, work, data, images, labels)


def run_all(args, cpus, work, data, images, labels) -> int:
    root = arm64_root(work / "root")
    wheels = wheel_folder(work / "wheels")
    venv = install(root, wheels)
    x86 = {m: x86_probabilities(m, images) for m in MODELS}
    reports = []
    for cpu in cpus:
        start = time.perf_counter()
        report = run_cpu(cpu, root, venv, work, data.source, args.limit, x86, labels)
        report.seconds = round(time.perf_counter() - start, 1)
        reports.append(report)
        if not args.json:
            print_report(report)
    summary = {"images": args.limit, "suite": SUITE, "cpus": [asdict(r) for r in reports]}
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary))
    return 0


def arm64_root(root: Path) -> Path:
    """A Debian arm64 userland with Python, unpacked (not configured): no foreign architecture
    is added to this machine's dpkg. Built once."""
    if (root / "usr/bin/python3").exists():
        return root
    sources = next(
        p
        for p in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
        if p.is_file()
    )
    root.parent.mkdir(parents=True, exist_ok=True)
    run(["mmdebstrap", "--quiet", "--variant=extract", "--architectures=arm64",
         f"--include={PACKAGES}", SUITE, str(root), str(sources)])  # fmt: skip
    return root


def wheel_folder(folder: Path) -> Path:
    """The wheel folder exactly as the README's deploy section makes it."""
    shutil.rmtree(folder, ignore_errors=True)
    pip = [sys.executable, "-m", "pip"]
    run([*pip, "wheel", "--quiet", "--no-deps", "-w", str(folder), str(ROOT)])
    (wheel,) = folder.glob("mnist_edge-*.whl")
    platforms = [f"--platform={p}" for p in PLATFORMS]
    run([*pip, "download", "--quiet", "-d", str(folder), "--only-binary=:all:",
         "--python-version", "3.11", *platforms, str(wheel)])  # fmt: skip
    return folder


def install(root: Path, wheels: Path) -> Path:
    """`python3 -m venv` and `pip install --no-index --find-links wheels mnist-edge`, under
    emulation. (qemu-user cannot start the venv's pip script itself without binfmt_misc: the
    venv is made without pip and Debian's pip runs with the venv's Python.)"""
    venv = root / "opt" / "mnist-edge"
    if not (venv / "bin/python").exists():
        qemu(root, "cortex-a72", [str(root / "usr/bin/python3.11"), "-m", "venv", "--without-pip",
                                  str(venv)])  # fmt: skip
    pip = [str(venv / "bin/python"), str(root / "usr/lib/python3/dist-packages/pip")]
    qemu(root, "cortex-a72", [*pip, "install", "--quiet", "--no-index", "--force-reinstall",
                              "--find-links", str(wheels), "mnist-edge"])  # fmt: skip
    return venv


def run_cpu(cpu, root, venv, work, data, limit, x86, labels) -> CpuReport:
    out = work / "out" / cpu
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if cpu == "haswell":  # x86 without VNNI: this machine's own Python, emulated
        python, cli = [sys.executable], [sys.executable, "-m", "runtime.cli"]
        emulate = ["qemu-x86_64-static", "-cpu", "Haswell-v4"]
    else:
        write_cpuinfo(root, cpu)
        python = [str(venv / "bin/python")]
        cli = [*python, str(venv / "bin/mnist-edge")]
        emulate = ["qemu-aarch64-static", "-L", str(root), "-cpu", cpu]
    facts = json.loads(
        run([*emulate, *python, "-c", PROBE, str(data), str(limit), str(out), *MODELS])
    )
    examples = sorted((ROOT / "examples" / "digits").glob("*.png"))
    predicted = run([*emulate, *cli, "predict", *map(str, examples)]).splitlines()
    run([*emulate, *cli, "info"])
    # the CLI on the default model; every model's accuracy comes from the probe's probabilities
    args = ["evaluate", "--data", str(data), "--limit", str(limit), "--json"]
    evaluated = json.loads(run([*emulate, *cli, *args]))["accuracy"]
    report = CpuReport(
        cpu=cpu,
        board=CPUS[cpu][2],
        machine=facts["machine"],
        cpu_name=facts["cpu"],
        default_model=facts["default_model"],
        predicted_examples=[line.split("\t")[1] for line in predicted],
        evaluate_accuracy=evaluated,
    )
    for model in MODELS:
        found, expected = np.load(out / f"{model}.npy"), x86[model]
        report.models.append(
            ModelCheck(
                model=model,
                accuracy=float((found.argmax(1) == labels).mean()),
                x86_accuracy=float((expected.argmax(1) == labels).mean()),
                agreement=float((found.argmax(1) == expected.argmax(1)).mean()),
                max_abs_diff=float(np.abs(found.astype(np.float64) - expected).max()),
                bit_identical=bool(np.array_equal(found, expected)),
            )
        )
    return report


def write_cpuinfo(root: Path, cpu: str) -> None:
    part, features, _ = CPUS[cpu]
    cores = "".join(
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\n"
        f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
        f"CPU part\t: {part}\nCPU revision\t: 3\n\n"
        for i in range(2)
    )
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc" / "cpuinfo").write_text(cores)


def x86_probabilities(model: str, images: np.ndarray) -> np.ndarray:
    with Classifier(model, threads=1) as clf:
        return clf.predict_proba(images)


def qemu(root: Path, cpu: str, command: list[str]) -> str:
    write_cpuinfo(root, cpu)
    return run(["qemu-aarch64-static", "-L", str(root), "-cpu", cpu, *command])


def run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: {Path(command[0]).name} failed ({done.returncode}): "
                 f"{done.stderr.strip().splitlines()[-1:] or ''}")  # fmt: skip
    return done.stdout


def print_report(r: CpuReport) -> None:
    print(f"{r.cpu} ({r.board}): {r.machine}, CPU '{r.cpu_name}', default {r.default_model}, "
          f"examples read as {''.join(r.predicted_examples)}, {r.seconds:.0f} s")  # fmt: skip
    print(
        f"  {'model':<22} {'accuracy':>9} {'x86':>9} {'agreement':>10} {'max |dp|':>10}  same bits"
    )
    for m in r.models:
        print(f"  {m.model:<22} {m.accuracy:>9.2%} {m.x86_accuracy:>9.2%} {m.agreement:>10.2%} "
              f"{m.max_abs_diff:>10.2g}  {'yes' if m.bit_identical else 'no'}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

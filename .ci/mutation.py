#!/usr/bin/env python3
"""Mutation testing with mutmut over the modules that hold promises ([tool.mutmut] in
pyproject.toml): does some test fail when the code under it is broken?

    python .ci/mutation.py full      # every mutant (about an hour on 2 cores); resumable;
                                     # writes tests/mutation/results.json and prints the scores
    python .ci/mutation.py report    # the same files from what a stopped `full` had checked
    python .ci/mutation.py sample    # CI: 40 mutants of the modules the last commit touched
                                     # (of one drawn at random when it touched none)

A surviving mutant is a break that no test noticed. tests/mutation/survivors.toml lists each
one a full run left: under [equivalent] those that cannot be told from the original (with why),
under [open] those a test should catch and none does yet. `sample` fails on a survivor listed in
neither: a break that a change made possible and no test catches. mutmut follows which tests
reach which function only inside the pytest process, so a function that runs only in a child
process (the server's, the CLI's in a subprocess) is "no tests" here, counted against the score.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "tests" / "mutation" / "results.json"
EXPLAINED = ROOT / "tests" / "mutation" / "survivors.toml"
CAUGHT = ("killed", "timeout")  # a mutant that makes a test hang is caught by mutmut's timeout
TARGET = 0.85


def settings() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]


def statuses(workdir: Path) -> dict[str, str]:
    """Each mutant's outcome, from the .meta files mutmut keeps beside its mutated copies."""
    from mutmut.stats import status_by_exit_code

    found = {}
    for meta in (workdir / "mutants").rglob("*.py.meta"):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            found[name] = status_by_exit_code[code]
    return found


def module_of(name: str) -> str:
    """runtime.idx.x_read__mutmut_3 -> runtime/idx.py"""
    return name.split(".x")[0].replace(".", "/") + ".py"


def scores(found: dict[str, str]) -> dict[str, dict]:
    table = {}
    for module in sorted({module_of(n) for n in found}):
        counts = Counter(s for n, s in found.items() if module_of(n) == module)
        tried = sum(counts.values()) - counts["skipped"] - counts["not checked"]
        caught = sum(counts[s] for s in CAUGHT)
        score = round(caught / tried, 4) if tried else None  # None: none checked yet
        table[module] = {**dict(sorted(counts.items())), "score": score}
    return table


def tests_by_module(workdir: Path) -> dict[str, list[str]]:
    """The test files that reach each module, from mutmut's own record of a full run."""
    stats = json.loads((workdir / "mutants" / "mutmut-stats.json").read_text())
    files: dict[str, set[str]] = {}
    for function, tests in stats["tests_by_mangled_function_name"].items():
        module = module_of(function.rpartition(".")[0] + ".x")
        files.setdefault(module, set()).update(t.split("::")[0] for t in tests)
    return {module: sorted(tests) for module, tests in sorted(files.items())}


def run_mutmut(workdir: Path, names: list[str], timeout_s: float) -> None:
    env = {**os.environ, "PYTHONPATH": str(workdir / "mutants")}  # child processes too
    env.pop("CI", None)  # a test that skips is no kill either way; under CI=1 it would fail all
    if env.get("MNIST_DIR"):
        env["MNIST_DIR"] = str(Path(env["MNIST_DIR"]).resolve())
    mutmut = Path(sys.executable).parent / "mutmut"
    log = workdir / "mutants" / "run.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("w") as out:
        run = subprocess.Popen(
            [str(mutmut), "run", "--max-children", "2", *names],
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            run.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:  # what was checked stays in mutmut's files
            print(f"mutation: stopped after {timeout_s / 60:.0f} minutes", file=sys.stderr)
            os.killpg(run.pid, signal.SIGTERM)  # mutmut and the workers it forked
            run.wait()
    if run.returncode not in (0, -signal.SIGTERM):
        tail = log.read_text(errors="replace").replace("\r", "\n").splitlines()[-15:]
        print(
            "\n".join(["mutation: mutmut failed; the end of its output:", *tail]), file=sys.stderr
        )


def explained() -> dict[str, str]:
    """Every listed survivor, equivalent or open, with its reason."""
    listed = tomllib.loads(EXPLAINED.read_text()) if EXPLAINED.exists() else {}
    return {**listed.get("equivalent", {}), **listed.get("open", {})}


def write_open(survivors: list[str], reasons: dict[str, str], found: dict[str, str]) -> None:
    """survivors.toml with the run's survivors not yet listed added under [open]; what is
    listed already, and why, stays; what a test now kills leaves the file."""
    listed = tomllib.loads(EXPLAINED.read_text()) if EXPLAINED.exists() else {}
    equivalent = {
        n: why for n, why in listed.get("equivalent", {}).items()
        if found.get(n, "survived") == "survived"
    }  # fmt: skip
    still = {n: reasons.get(n, "no test catches it yet") for n in survivors if n not in equivalent}
    lines = ["# Mutants that survived .ci/mutation.py full: `mutmut show NAME` shows each.", "",
             "[equivalent]  # cannot be told from the original by any test"]  # fmt: skip
    lines += [f'"{n}" = {json.dumps(r)}' for n, r in sorted(equivalent.items())]
    lines += ["", "[open]  # a test should catch these; none does yet"]
    lines += [f'"{n}" = {json.dumps(r)}' for n, r in sorted(still.items())]
    EXPLAINED.write_text("\n".join(lines) + "\n")


def full(hours: float) -> int:
    run_mutmut(ROOT, [], hours * 3600)
    return report()


def report() -> int:
    """Scores and survivors from mutmut's files in mutants/ (after `full`, whole or stopped)."""
    configured = set(settings()["only_mutate"])
    found = {n: s for n, s in statuses(ROOT).items() if module_of(n) in configured}
    table = scores(found)
    survivors = sorted(n for n, s in found.items() if s == "survived")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "mutmut": _mutmut_version(),
                "commit": _git("rev-parse", "--short", "HEAD"),
                "modules": table,
                "unchecked": sorted(n for n, s in found.items() if s == "not checked"),
                # caught by mutmut's CPU-time limit: a sample on a busy machine may not be
                "timed_out": sorted(n for n, s in found.items() if s == "timeout"),
                "tests_by_module": tests_by_module(ROOT),
            },
            indent=1,
        )
        + "\n"
    )
    write_open(survivors, explained(), found)
    print(f"{'module':22} {'mutants':>7} {'checked':>7} {'caught':>6} {'survived':>8} "
          f"{'no tests':>8} {'score':>6}")  # fmt: skip
    for module, row in table.items():
        total = sum(v for k, v in row.items() if k != "score")
        checked = total - row.get("not checked", 0) - row.get("skipped", 0)
        caught = sum(row.get(s, 0) for s in CAUGHT)
        print(f"{module:22} {total:7} {checked:7} {caught:6} {row.get('survived', 0):8} "
              f"{row.get('no tests', 0):8} {_percent(row['score']):>6}")  # fmt: skip
    print(f"written {RESULTS.relative_to(ROOT)} and {EXPLAINED.relative_to(ROOT)}: "
          f"{len(survivors)} survivors")  # fmt: skip
    below = [m for m, row in table.items() if row["score"] is not None and row["score"] < TARGET]
    if below:
        print(f"below the {TARGET:.0%} target: {', '.join(below)}")
    return 1 if below else 0


def sample(count: int, minutes: float, module: str | None = None) -> int:
    """Mutate a scratch copy of the checkout, never the checkout itself."""
    from mutmut.mutation.file_mutation import mutate_file_contents
    from mutmut.utils.format_utils import get_mutant_name

    committed = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    known = committed.get("tests_by_module", {})
    configured = settings()["only_mutate"]
    modules = [m for m in configured if known.get(m)] or configured
    touched = set(_git("diff", "--name-only", "HEAD~1", "HEAD").split()) & set(modules)
    draw = random.Random(_git("rev-parse", "HEAD"))
    chosen = [module] if module else sorted(touched) or [draw.choice(modules)]
    # not drawn: what the full run has not reached yet, and what only a time limit caught
    unchecked = set(committed.get("unchecked", [])) | set(committed.get("timed_out", []))
    names = [
        full_name
        for m in chosen
        for name in mutate_file_contents(m, (ROOT / m).read_text()).mutant_names
        if (full_name := get_mutant_name(Path(m), name)) not in unchecked
    ]
    if not names:  # `mutmut run` with no names would run every mutant
        print(f"mutation sample: no mutant of {', '.join(chosen)} that the full run checked")
        return 0
    picked = sorted(draw.sample(names, min(count, len(names))))
    tests = {t for m in chosen for t in known.get(m, [])}
    if tests and committed.get("commit"):  # and test files written since the record was made
        newer = _git("diff", "--name-only", committed["commit"], "--", "tests/").split()
        tests |= {t for t in newer if Path(t).name.startswith("test_") and (ROOT / t).exists()}
    tests = sorted(tests) or None
    with tempfile.TemporaryDirectory(prefix="mutation-") as scratch:
        workdir = Path(scratch)
        for path in _git("ls-files").splitlines():
            if (ROOT / path).is_file():
                (workdir / path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / path, workdir / path)
        _narrow(workdir / "pyproject.toml", chosen, tests)
        run_mutmut(workdir, picked, minutes * 60)
        found = statuses(workdir)
    reasons = explained()
    outcome = Counter(found.get(n, "not checked") for n in picked)
    print(f"mutation sample: {len(picked)} mutants of {', '.join(chosen)}: {dict(outcome)}")
    unexplained = [n for n in picked if found.get(n) == "survived" and n not in reasons]
    for name in (n for n in picked if found.get(n) == "survived"):
        listed = "listed" if name in reasons else f"NOT in {EXPLAINED.relative_to(ROOT)}"
        print(f"survived ({listed}): {name}")
    return 1 if unexplained else 0


def _narrow(pyproject: Path, modules: list[str], tests: list[str] | None) -> None:
    """The copy's [tool.mutmut] mutates only `modules` and runs only `tests` (None: all)."""
    text = pyproject.read_text()
    text = re.sub(r"(?ms)^only_mutate = \[.*?\]$", f"only_mutate = {json.dumps(modules)}", text)
    if tests:
        text = re.sub(
            r"(?m)^pytest_add_cli_args_test_selection = .*$",
            f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
            text,
        )
    pyproject.write_text(text)


def _percent(score: float | None) -> str:
    return "-" if score is None else f"{score:.1%}"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()


def _mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    whole = commands.add_parser("full", help="every mutant; writes tests/mutation/results.json")
    whole.add_argument("--hours", type=float, default=3.0, help="stop after this long")
    commands.add_parser("report", help="results.json and survivors.toml from mutants/ as it is")
    some = commands.add_parser("sample", help="a few mutants of what the last commit touched")
    some.add_argument("--count", type=int, default=40)
    some.add_argument("--minutes", type=float, default=8.0, help="stop after this long")
    some.add_argument("--module", help="this module (runtime/inputs.py), not what was touched")
    args = parser.parse_args()
    if args.command == "full":
        return full(args.hours)
    if args.command == "report":
        return report()
    return sample(args.count, args.minutes, args.module)


if __name__ == "__main__":
    sys.exit(main())

"""Scoring archives larger than one machine handles: the same Classifier on Ray Data.

The inputs are cut into shards on the driver (from file headers alone), read and scored by
actors that each load the model once and run single-threaded (`map_batches` with a callable
class, Ray Data's way for batch inference), and streamed back in order into one output file.
Needs the scale extra (Ray); the device install has none of it.

A local Ray (no address) is Ray's single-machine mode: every server on loopback, its token in
this process's environment rather than in ~/.ray, and a reaper that stops its agents if the
driver is killed. A cluster's address is checked to answer within a bounded time first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.contract import NUM_CLASSES, Overrides
from runtime.errors import DataError, InputError, MnistEdgeError, ModelError
from runtime.files import atomic_path, writable_target
from runtime.inputs import Shard, plan_shards, read_shard
from runtime.session import Classifier
from runtime.settings import SessionSettings

# Images per task. At 45,000-300,000 images/s per core, a task of a few hundred images is
# mostly scheduling; 4,096 measured within a few percent of the largest shards tried.
SHARD_IMAGES = 4096
FORMATS = (".jsonl", ".parquet")
CONNECT_SECONDS = 30.0  # for a cluster to answer at --ray-address (ray.init retries for ever)
_ADDRESS = re.compile(r"(ray://)?(\[[0-9a-fA-F:]+\]|[\w.-]+):(\d{1,5})")
_EXCEPTION_LINE = re.compile(r"\s*[\w.]+(Error|Exception): ")
_PROBE = """
import logging, sys
import ray
ray.init(address=sys.argv[1], logging_level=logging.ERROR, log_to_driver=False)
"""


@dataclass(frozen=True)
class RayRun:
    output: str
    images: int
    shards: int
    workers: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


class _Score:
    """One actor: the model loaded once; each call reads its shards and scores them."""

    model: str | None = None  # set on a subclass per run (see _scorer)
    overrides: Overrides = Overrides()

    def __init__(self):
        settings = SessionSettings(threads=1)
        self.clf = Classifier(self.model, settings=settings, overrides=self.overrides)
        self.labels = self.clf.contract.labels

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names, indices, probs = [], [], []
        for path, kind, start, stop in zip(
            batch["path"], batch["kind"], batch["start"], batch["stop"], strict=True
        ):
            try:
                shard = Shard(str(path), str(kind), int(start), int(stop))
                shard_names, images = read_shard(shard)
                probs.append(self.clf.finite(self.clf.proba_of_images(images)))
            except MnistEdgeError as e:  # the user's error travels as data, whole
                return _failed(e)
            names += shard_names
            indices += range(int(start), int(start) + len(images))
        p = np.concatenate(probs)
        best = p.argmax(axis=1)
        return {
            "input": np.array(names, dtype=object),
            "index": np.array(indices, dtype=np.int64),
            "label": np.array([self.labels[i] for i in best], dtype=object),
            "confidence": p.max(axis=1).astype(np.float64),
            "probabilities": p,
            "error": np.array([""] * len(names), dtype=object),
        }


def _failed(error: MnistEdgeError) -> dict[str, np.ndarray]:
    """One row that carries an error, which the driver raises in the inputs' order."""
    return {
        "input": np.array([""], dtype=object),
        "index": np.array([-1], dtype=np.int64),
        "label": np.array([""], dtype=object),
        "confidence": np.zeros(1),
        "probabilities": np.zeros((1, NUM_CLASSES), np.float32),
        "error": np.array([f"{type(error).__name__}:{error}"], dtype=object),
    }


def predict_on_ray(
    paths: list[Path],
    output: Path,
    model: str | None = None,
    overrides: Overrides | None = None,
    address: str | None = None,
    workers: int | None = None,
    shard_images: int = SHARD_IMAGES,
    connect_seconds: float = CONNECT_SECONDS,
) -> RayRun:
    """Score `paths` on Ray (a local instance, or the cluster at `address`) into `output`."""
    if output.suffix not in FORMATS:
        raise InputError(f"--output {output}: expected a .jsonl or .parquet file")
    writable_target(output)
    shards = plan_shards(paths, shard_images)
    with Classifier(model, overrides=overrides) as clf:  # a bad model fails here, in one line
        model = str(clf.path)
    ray = _start(address, connect_seconds)
    workers = workers or max(int(ray.cluster_resources().get("CPU", 1)) - 1, 1)
    ds = ray.data.from_items(
        [{"path": s.path, "kind": s.kind, "start": s.start, "stop": s.stop} for s in shards],
        override_num_blocks=max(len(shards), 1),
    )
    with warnings.catch_warnings():  # the only way to set max_restarts is marked deprecated
        warnings.filterwarnings("ignore", message=".*ray_remote_args")
        scored = ds.map_batches(
            _scorer(model, overrides or Overrides()),
            batch_size=1,  # one shard per call: a shard is already thousands of images
            concurrency=workers,
            num_cpus=1,
            batch_format="numpy",
            # no actor restarts: Ray otherwise logs a spurious error line for every actor
            # (ray-project/ray#57733); a scoring run that loses an actor fails, in one line
            ray_remote_args_fn=lambda: {"max_restarts": 0},
        )
    begin = time.perf_counter()
    logging.disable(logging.ERROR)  # Ray Data logs each failure itself; ours is the one line
    try:
        count = _write(scored, output)
    except MnistEdgeError:
        raise
    except Exception as e:  # Ray's own failure (a lost node, a cluster that went away)
        raise MnistEdgeError(f"ray: {type(e).__name__}: {str(e).strip().splitlines()[0]}") from None
    finally:
        logging.disable(logging.NOTSET)
    return RayRun(str(output), count, len(shards), workers, round(time.perf_counter() - begin, 2))


def _scorer(model: str | None, overrides: Overrides) -> type[_Score]:
    """The actor class with this run's model in it: it travels with the class, not as
    constructor arguments in the object store (which Ray warns about for restartable actors)."""
    return type("Score", (_Score,), {"model": model, "overrides": overrides})


def _start(address: str | None, connect_seconds: float):
    """Ray, initialised for this run (a local instance, or the cluster at `address`)."""
    if address is None:
        _local_environment()
    else:
        check_address(address, connect_seconds)
    import ray

    if ray.is_initialized():
        return ray
    ray.init(
        address=address,
        logging_level=logging.ERROR,
        log_to_driver=False,
        include_dashboard=False,
        configure_logging=True,
    )
    if address is None:
        _reap_when_gone()
    with warnings.catch_warnings():  # Ray Data's own deprecations, once per process
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows in the order the inputs were given
    context.enable_progress_bars = False  # one line of our own instead of Ray's bars
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return ray


def _local_environment() -> None:
    """What a local Ray reads from the environment, set before it is imported: its servers on
    loopback alone (Ray's single-machine mode, as on macOS and Windows), and a token that
    lives in the environment of this run's processes instead of being written to ~/.ray."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if not {"RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & set(os.environ):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def _reap_when_gone() -> None:
    """A reaper for the local Ray just started: it kills what is left of it once this process
    has ended, however it ended (runtime.reaper). It hears of Ray's processes, and of those
    Ray starts later (its actors), once a second; its pipe closes when this process ends."""
    from runtime import reaper

    if not reaper.available():
        return
    told = set(reaper.descendants(os.getpid()))
    watcher = subprocess.Popen(
        [sys.executable, "-m", "runtime.reaper"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        text=True,
    )

    def tell(processes) -> None:
        watcher.stdin.writelines(f"{pid} {start}\n" for pid, start in processes)
        watcher.stdin.flush()

    def keep_telling() -> None:
        with contextlib.suppress(OSError, ValueError):  # the reaper or this process ends
            while True:
                time.sleep(1.0)
                new = set(reaper.descendants(os.getpid())) - told
                new = {p for p in new if p[0] != watcher.pid}
                tell(new)
                told.update(new)

    tell(told)
    threading.Thread(target=keep_telling, name="mnist-edge-reaper", daemon=True).start()


def check_address(address: str, seconds: float) -> None:
    """One line within about `seconds` when no Ray cluster answers at `address` (HOST:PORT,
    ray://HOST:PORT or auto); ray.init itself retries for ever."""
    where = f"--ray-address {address}"
    if address != "auto":
        match = _ADDRESS.fullmatch(address)
        if match is None:
            raise InputError(f"{where}: expected HOST:PORT, ray://HOST:PORT or auto")
        host, port = match.group(2).strip("[]"), int(match.group(3))
        try:
            socket.create_connection((host, port), timeout=seconds).close()
        except OSError as e:
            reason = e.strerror or type(e).__name__
            raise InputError(f"{where}: cannot reach {host}:{port} ({reason})") from None
    try:  # in a process of its own, so that a ray.init that never returns can be stopped
        probe = subprocess.run(
            [sys.executable, "-c", _PROBE, address],
            capture_output=True,
            text=True,
            timeout=seconds,
        )
    except subprocess.TimeoutExpired:
        raise InputError(f"{where}: no Ray cluster answered within {seconds:g} s") from None
    if probe.returncode != 0:
        raise InputError(f"{where}: cannot join the Ray cluster ({_cause(probe.stderr)})")


def _cause(stderr: str) -> str:
    """The line of a failed ray.init's traceback that says why: a missing token first (its
    ConnectionError says only "failed to connect"), else the last exception."""
    errors = [s.strip() for s in stderr.splitlines() if _EXCEPTION_LINE.match(s)]
    auth = [e for e in errors if "AuthenticationError" in e]
    line = auth[0] if auth else (errors or ["no reason given"])[-1]
    return line.split(". ")[0]


def _write(ds, output: Path) -> int:  # ds: a ray.data.Dataset
    count = 0
    with atomic_path(output) as tmp:
        if output.suffix == ".jsonl":
            with tmp.open("w") as f:
                for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
                    for row in _rows(batch):
                        f.write(json.dumps(row) + "\n")
                        count += 1
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            writer = None
            for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
                table = pa.Table.from_pylist(list(_rows(batch)))
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                count += table.num_rows
            if writer is not None:
                writer.close()
    return count


def _rows(batch: dict[str, np.ndarray]):
    for i in range(len(batch["input"])):
        if batch["error"][i]:
            kind, _, message = str(batch["error"][i]).partition(":")
            raise _ERRORS.get(kind, MnistEdgeError)(message)
        yield {
            "input": str(batch["input"][i]),
            "index": int(batch["index"][i]),
            "label": str(batch["label"][i]),
            "confidence": round(float(batch["confidence"][i]), 6),
            "probabilities": [float(q) for q in batch["probabilities"][i]],
        }


_ERRORS = {cls.__name__: cls for cls in (InputError, DataError, ModelError)}

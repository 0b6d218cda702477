"""An interrupted training run (Ctrl-C or kill) continues from its last completed epoch."""

import errno
import json
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

keras = pytest.importorskip("keras", reason="needs the train extra: pip install '.[train]'")

from runtime.cli import app  # noqa: E402
from runtime.errors import InputError, InputWarning, OutputError  # noqa: E402
from tests.conftest import real_mnist_dir  # noqa: E402
from train.cli import register  # noqa: E402

register(app)
from train.fit import TrainConfig, train  # noqa: E402

pytestmark = pytest.mark.tensorflow


class InterruptAfter(keras.callbacks.Callback):
    """Acts like Ctrl-C at the end of an epoch, after the checkpoint is written."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


@pytest.fixture
def data():
    folder = real_mnist_dir()
    if folder is None:
        pytest.skip("needs real MNIST: set MNIST_DIR or see the README's Data section")
    return folder


def test_interrupted_run_resumes_from_its_last_epoch(data, tmp_path):
    config = TrainConfig(arch="mlp", epochs=4, limit=1500, data=data, out=tmp_path, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[InterruptAfter(2)])
    assert not (tmp_path / "mnist_mlp.keras").exists()  # nothing final was written
    assert len(json.loads((tmp_path / "mnist_mlp.history.json").read_text())["loss"]) == 2

    with pytest.raises(InputError, match="an interrupted run is there: pass --resume"):
        train(config)

    result = train(TrainConfig(**{**config.__dict__, "resume": True}))
    assert result.resumed_from_epoch == 2 and result.epochs == 4
    assert (tmp_path / "mnist_mlp.keras").is_file()
    history = json.loads((tmp_path / "mnist_mlp.history.json").read_text())
    assert len(history["loss"]) == 4  # two before the interruption, two after
    assert history["loss"][3] < history["loss"][0]
    assert not (tmp_path / ".mnist_mlp.checkpoint").exists()  # removed once complete
    assert result.test_accuracy > 0.5


def test_resume_without_a_checkpoint_is_refused(data, tmp_path):
    result = CliRunner().invoke(
        app, ["train", "--arch", "mlp", "--out", str(tmp_path), "--data", str(data), "--resume"]
    )
    assert result.exit_code == 2
    assert "--resume: expected an interrupted run's checkpoint" in result.stderr


@pytest.mark.slow
def test_killed_process_resumes_through_the_cli(data, tmp_path):
    args = [
        sys.executable,
        "-m",
        "runtime.cli",
        "train",
        "--arch",
        "mlp",
        "--epochs",
        "6",
        "--limit",
        "1500",
        "--data",
        str(data),
        "--out",
        str(tmp_path),
    ]
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / ".mnist_mlp.checkpoint" / "training_metadata.json"
    deadline = time.monotonic() + 120
    while not state.exists() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert state.exists(), "the run ended before its first checkpoint"

    resumed = subprocess.run([*args, "--resume", "--json"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert result["resumed_from_epoch"] >= 1 and result["epochs"] == 6
    assert (tmp_path / "mnist_mlp.keras").is_file()


class DiskFullAfter(keras.callbacks.Callback):
    """Acts like a disk that fills while the checkpoint of an epoch is written."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_training_is_one_error_that_says_how_to_go_on(data, tmp_path):
    config = TrainConfig(arch="mlp", epochs=3, limit=1000, data=data, out=tmp_path, verbose=0)
    with pytest.raises(OutputError, match=r"No space left on device\): make room, then continue"):
        train(config, callbacks=[DiskFullAfter(2)])
    result = train(TrainConfig(**{**config.__dict__, "resume": True}))
    assert result.resumed_from_epoch >= 1 and (tmp_path / "mnist_mlp.keras").is_file()


@pytest.mark.parametrize("resume", [False, True])
def test_a_checkpoint_with_no_completed_epoch_blocks_neither_way(data, tmp_path, resume):
    # what a disk that filled during the first checkpoint leaves: a truncated weights file and
    # no state
    checkpoint = tmp_path / ".mnist_mlp.checkpoint"
    checkpoint.mkdir()
    (checkpoint / "latest.weights.h5").write_bytes(b"\x89HDF\r\n" + bytes(100))
    config = TrainConfig(
        arch="mlp", epochs=1, limit=500, data=data, out=tmp_path, verbose=0, resume=resume
    )
    with pytest.warns(InputWarning, match="no completed epoch .* starting afresh"):
        result = train(config)
    assert result.resumed_from_epoch == 0 and (tmp_path / "mnist_mlp.keras").is_file()

"""Fit a model on MNIST and save it with its history and test metrics."""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from runtime.contract import IMAGE_SIZE, NUM_CLASSES
from runtime.errors import InputError, InputWarning, OutputError
from runtime.files import atomic_path, write_json
from runtime.mnist import Split, load_split
from runtime.preprocess import as_nhwc
from train.augment import NO_AUGMENT, PEOPLE, Augment, augment
from train.curves import plot_history
from train.models import BUILDERS, load_keras


@dataclass(frozen=True)
class Recipe:
    """How one architecture is trained by default."""

    epochs: int
    batch_size: int
    optimizer: str  # "sgd" or "adam"
    learning_rate: float
    cosine_decay: bool  # decay the rate to zero over the run, else keep it constant
    augment: Augment = NO_AUGMENT
    distill: float = 0.0  # weight of a teacher's soft targets (0: labels only)
    temperature: float = 4.0  # softening of those targets
    warmup_epochs: int = 0  # ramp the rate up from zero first (with cosine_decay)


RECIPES = {
    # The seed tutorial: plain SGD for 10 epochs; its batch size and rate are Keras' defaults.
    "mlp": Recipe(
        epochs=10,
        batch_size=32,
        optimizer="sgd",
        learning_rate=0.01,
        cosine_decay=False,
    ),
    # The teacher: Adam with a cosine decay, under augmentation that covers how people write.
    "cnn": Recipe(
        epochs=30,
        batch_size=128,
        optimizer="adam",
        learning_rate=3e-3,
        cosine_decay=True,
        augment=PEOPLE,
    ),
    # The edge model: small enough for tens of microseconds per digit; it learns from the cnn
    # (distillation) under stronger augmentation, for longer.
    "edge": Recipe(
        epochs=40,
        batch_size=128,
        optimizer="adam",
        learning_rate=4e-3,
        cosine_decay=True,
        augment=PEOPLE,
        distill=0.7,
        warmup_epochs=1,
    ),
}


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "cnn"
    epochs: int | None = None  # None: the recipe's
    seed: int = 0  # weights, shuffling and augmentation all derive from it
    limit: int | None = None  # train on the first N images only (tests, quick tries)
    data: Path | None = None  # None: runtime.mnist.find_data's search order
    out: Path = Path("runs")
    resume: bool = False  # continue an interrupted run from its last completed epoch
    teacher: Path = Path("exported/mnist_cnn.keras")  # for recipes that distill
    verbose: int | None = None  # Keras verbosity; None: a progress bar on a terminal
    recipe: Recipe | None = None  # None: the arch's (RECIPES); ablations pass their own


@dataclass(frozen=True)
class TrainResult:
    arch: str
    model_path: str
    test_accuracy: float
    test_loss: float
    train_seconds: float  # of this invocation; an interrupted run's earlier time is not counted
    epochs: int
    resumed_from_epoch: int  # 0 for a run that was not interrupted
    train_images: int
    seed: int
    recipe: dict
    versions: dict


def train(config: TrainConfig, callbacks: Sequence[keras.callbacks.Callback] = ()) -> TrainResult:
    """Train `config.arch`, evaluate on the test split, save model, history and metrics.

    Each epoch is checkpointed in `<out>/.mnist_<arch>.checkpoint/` (two generations, so a kill
    while writing loses at most one epoch); `resume=True` continues from there.
    """
    if config.arch not in BUILDERS:
        raise InputError(f"--arch: expected one of {', '.join(BUILDERS)}, found {config.arch!r}")
    recipe = config.recipe or RECIPES[config.arch]
    if config.epochs is not None:
        if config.epochs < 1:
            raise InputError(f"--epochs: expected a positive count, found {config.epochs}")
        recipe = replace(recipe, epochs=config.epochs)
    out = Path(config.out)
    stem = out / f"mnist_{config.arch}"
    checkpoint = out / f".mnist_{config.arch}.checkpoint"
    resumed_from = _check_resume(checkpoint, config)
    train_split, test_split = load_split("train", config.data), load_split("test", config.data)
    if config.limit is not None:
        train_split = Split(
            train_split.images[: config.limit],
            train_split.labels[: config.limit],
            train_split.source,
        )

    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    model = BUILDERS[config.arch]()
    trainer = _with_teacher(model, recipe, config.teacher) if recipe.distill else model
    steps = recipe.epochs * -(-len(train_split) // recipe.batch_size)
    trainer.compile(
        optimizer=_optimizer(recipe, steps, steps // recipe.epochs),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"--out {out}: cannot create the folder ({e.strerror})") from None
    history_path = stem.with_suffix(".history.json")
    history = EpochLog(history_path, keep_epochs=resumed_from)
    backup = keras.callbacks.BackupAndRestore(str(checkpoint), double_checkpoint=True)
    verbose = config.verbose if config.verbose is not None else (1 if sys.stdout.isatty() else 2)
    start = time.perf_counter()
    try:
        trainer.fit(
            _dataset(train_split, recipe, config.seed),
            epochs=recipe.epochs,
            shuffle=False,  # the dataset shuffles itself, seeded
            verbose=verbose,
            callbacks=[backup, history, *callbacks],
        )
    except OSError as e:  # a full disk while checkpointing: what was completed is kept
        raise OutputError(
            f"--out {out}: cannot write the checkpoint ({e.strerror or e}): make room, then "
            f"continue with --resume"
        ) from None
    seconds = time.perf_counter() - start
    x_test, y_test = _arrays(test_split)
    probs = model.predict(x_test, batch_size=512, verbose=0)  # the model alone, not a trainer
    test_loss = float(np.mean(keras.losses.categorical_crossentropy(y_test, probs)))
    test_accuracy = float(np.mean(probs.argmax(axis=1) == test_split.labels))

    model_path = stem.with_suffix(".keras")
    with atomic_path(model_path) as tmp:
        model.save(tmp)
    plot_history(history.history, stem.with_suffix(".history.png"), f"mnist_{config.arch}")
    result = TrainResult(
        arch=config.arch,
        model_path=str(model_path),
        test_accuracy=round(float(test_accuracy), 6),
        test_loss=round(float(test_loss), 6),
        train_seconds=round(seconds, 1),
        epochs=recipe.epochs,
        resumed_from_epoch=resumed_from,
        train_images=len(train_split),
        seed=config.seed,
        recipe=asdict(recipe),
        versions=versions(),
    )
    write_json(stem.with_suffix(".metrics.json"), asdict(result))
    return result


def _with_teacher(student: keras.Model, recipe: Recipe, teacher_path: Path) -> keras.Model:
    from train.distill import Distiller

    teacher = load_keras(teacher_path)
    distiller = Distiller(student, teacher, alpha=recipe.distill, temperature=recipe.temperature)
    # built before fit: checkpoints need it
    distiller(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 1), np.float32))
    return distiller


class EpochLog(keras.callbacks.Callback):
    """Writes the per-epoch history after every epoch, so an interrupted run keeps its past."""

    def __init__(self, path: Path, keep_epochs: int):
        super().__init__()
        self.path = path
        previous = _read_json(path, "history") if keep_epochs and path.is_file() else {}
        self.history = {k: v[:keep_epochs] for k, v in previous.items()}

    def on_epoch_begin(self, epoch, logs=None):
        # Keras prints "Epoch i/n" only when n > 1: a one-epoch run gets its header here
        if self.params.get("epochs") == 1 and self.params.get("verbose"):
            print("Epoch 1/1", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        rate = self.model.optimizer.learning_rate  # a schedule's value at this step
        logs = {**(logs or {}), "learning_rate": float(keras.ops.convert_to_numpy(rate))}
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        write_json(self.path, self.history)


def _check_resume(checkpoint: Path, config: TrainConfig) -> int:
    """The epoch an interrupted run reached (0 when starting afresh); refuse ambiguity.

    A checkpoint folder with no completed epoch (a run stopped, or a disk that filled, before
    the first epoch's state was written) holds nothing to keep: it is removed, with a warning,
    whether or not --resume was given, so that neither way is blocked."""
    state = checkpoint / "training_metadata.json"
    if checkpoint.is_dir() and not state.is_file():
        warnings.warn(
            f"{checkpoint}: no completed epoch in this interrupted run's checkpoint: "
            "starting afresh",
            InputWarning,
            stacklevel=2,
        )
        shutil.rmtree(checkpoint)
        if config.resume:
            return 0
    if config.resume:
        if not state.is_file():
            raise InputError(
                f"--resume: expected an interrupted run's checkpoint in {checkpoint}, found none"
            )
        try:
            return int(_read_json(state, "checkpoint state")["epoch"])
        except (KeyError, TypeError, ValueError):
            raise InputError(
                f"{state}: expected the checkpoint's epoch, found none: delete "
                f"{checkpoint} to start over"
            ) from None
    if checkpoint.exists():
        raise InputError(
            f"{checkpoint}: an interrupted run is there: pass --resume to continue it, "
            "or delete the folder to start over"
        )
    return 0


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: expected the run's {what} as JSON ({e})") from None


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }


def _arrays(split: Split) -> tuple[np.ndarray, np.ndarray]:
    x = as_nhwc(split.images)  # (N, 28, 28, 1) float32 in [0, 1]
    y = keras.utils.to_categorical(split.labels, NUM_CLASSES)  # one-hot, for cross-entropy
    return x, y


def _dataset(split: Split, recipe: Recipe, seed: int) -> tf.data.Dataset:
    x, y = _arrays(split)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(recipe.batch_size)
    if recipe.augment.any:
        rng = tf.random.Generator.from_seed(seed)  # one stream, drawn in order: reproducible
        ds = ds.map(lambda images, labels: (augment(images, recipe.augment, rng), labels))
    return ds.prefetch(tf.data.AUTOTUNE)


def _optimizer(recipe: Recipe, steps: int, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    rate = recipe.learning_rate
    if recipe.cosine_decay and recipe.warmup_epochs:
        warmup = recipe.warmup_epochs * steps_per_epoch
        rate = keras.optimizers.schedules.CosineDecay(
            0.0, max(steps - warmup, 1), warmup_target=recipe.learning_rate, warmup_steps=warmup
        )
    elif recipe.cosine_decay:
        rate = keras.optimizers.schedules.CosineDecay(recipe.learning_rate, decay_steps=steps)
    if recipe.optimizer == "sgd":
        return keras.optimizers.SGD(rate)
    return keras.optimizers.Adam(rate)

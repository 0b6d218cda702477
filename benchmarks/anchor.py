"""Train the anchor the edge model is measured against: Keras' "simple MNIST convnet"
(keras-io examples/vision/mnist_convnet.py) as written there: Conv32-Pool-Conv64-Pool-Dropout-
Dense10, Adam, batch 128, 15 epochs, 10% of the training set held out for validation.

    python benchmarks/anchor.py [--data DIR]      # writes benchmarks/anchor/mnist_convnet.keras
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
from keras import layers

from runtime.contract import NUM_CLASSES
from runtime.files import atomic_path, write_json
from runtime.mnist import load_split
from runtime.preprocess import NHWC_SHAPE, as_nhwc

OUT = Path(__file__).resolve().parent / "anchor"


def build() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input(shape=NHWC_SHAPE),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="keras_simple_convnet",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=os.environ.get("MNIST_DIR"))
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    train, test = load_split("train", args.data), load_split("test", args.data)
    x, y = as_nhwc(train.images), keras.utils.to_categorical(train.labels, NUM_CLASSES)
    model = build()
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x, y, batch_size=128, epochs=15, validation_split=0.1, verbose=2)
    _, accuracy = model.evaluate(
        as_nhwc(test.images), keras.utils.to_categorical(test.labels, NUM_CLASSES), verbose=0
    )
    OUT.mkdir(exist_ok=True)
    with atomic_path(OUT / "mnist_convnet.keras") as tmp:
        model.save(tmp)
    write_json(
        OUT / "mnist_convnet.metrics.json",
        {"test_accuracy": round(float(accuracy), 6), "params": model.count_params()},
    )
    print(f"test accuracy {accuracy:.4%}, {model.count_params()} parameters")


if __name__ == "__main__":
    main()

"""How tests/data/pytorch_mnist_fixed_batch.onnx was made: a real PyTorch export, as PyTorch's
examples/mnist writes it (inputs Normalize((0.1307,), (0.3081,)), log_softmax out, the default
fixed batch of 1). Not run by the tests: it needs torch, which the project does not depend on.

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 onnx numpy
    MNIST_DIR=../shared/data/mnist /tmp/torchenv/bin/python tests/data/make_pytorch_model.py

One epoch of Adam on the 60,000 training images (16 s on 2 cores); 98.31% on the test set in
PyTorch itself.
"""

import gzip
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

OUT = Path(__file__).with_name("pytorch_mnist_fixed_batch.onnx")
MNIST = Path(os.environ.get("MNIST_DIR", "../shared/data/mnist"))


def idx(name: str) -> np.ndarray:
    with gzip.open(MNIST / name) as f:
        data = f.read()
    ndim = data[3]
    dims = np.frombuffer(data[4 : 4 + 4 * ndim], ">u4")
    return np.frombuffer(data[4 + 4 * ndim :], np.uint8).reshape(dims)


def normalized(images: np.ndarray) -> torch.Tensor:
    return torch.tensor((images / 255.0 - 0.1307) / 0.3081, dtype=torch.float32)[:, None]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, 1)
        self.fc1 = nn.Linear(32 * 12 * 12, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return F.log_softmax(self.fc2(x), dim=1)


def main() -> None:
    torch.manual_seed(0)
    x, y = normalized(idx("train-images-idx3-ubyte.gz")), idx("train-labels-idx1-ubyte.gz")
    y = torch.tensor(y.astype(np.int64))
    net = Net()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    order = torch.randperm(len(x))
    for i in range(0, len(x), 128):
        batch = order[i : i + 128]
        opt.zero_grad()
        F.nll_loss(net(x[batch]), y[batch]).backward()
        opt.step()
    net.eval()
    torch.onnx.export(net, torch.zeros(1, 1, 28, 28), str(OUT), dynamo=False)
    with torch.no_grad():
        test = net(normalized(idx("t10k-images-idx3-ubyte.gz"))).argmax(1).numpy()
    print(f"wrote {OUT}; accuracy {(test == idx('t10k-labels-idx1-ubyte.gz')).mean():.4f}")


if __name__ == "__main__":
    main()

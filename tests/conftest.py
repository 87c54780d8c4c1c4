"""Shared test setup.

torch and torchvision are imported before anything can import tensorflow: the other order aborts
the process on these machines (two LLVMs). Thread counts are fixed so timings and results repeat.
"""

import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import torch  # noqa: E402
import torchvision  # noqa: E402,F401

torch.set_num_threads(2)


@pytest.fixture
def fashion_mnist_files() -> None:
    """Used by ``helpers.needs_fmnist``: a test that reads Fashion-MNIST fails (never skips) when it is missing."""
    from helpers import require_fashion_mnist

    require_fashion_mnist()

"""Data for both frameworks: Fashion-MNIST (the offline default), CIFAR-10 and ImageNet-style folders.

One :class:`DataConfig` and one set of splits feed both pipelines, so PyTorch and Keras see the same images:
:mod:`~inception_lib.data.readers` finds, verifies and parses the files and carves out the splits (framework-free;
validation comes out of the training data, the test split stays apart), :mod:`~inception_lib.data.torch_pipeline`
and :mod:`~inception_lib.data.tf_pipeline` batch them (normalized; NCHW for torch, NHWC for TF).

Lookup order: an explicit ``root`` (alone), ``$INCEPTION_LIB_DATA``, the Debian package's system folder
(``$INCEPTION_LIB_SYSTEM_DATA`` replaces ``/usr/share/datasets``; empty: none), the download cache
(``~/.cache/inception_lib`` or ``$INCEPTION_LIB_CACHE``), then with ``download=True`` torchvision's download into the
cache (``$INCEPTION_LIB_FASHION_MNIST_MIRROR``: from a mirror). Every file is verified against the published release;
the errors say where we looked and how to fix it.

Importing tensorflow before torchvision aborts the process, so this package imports neither: each pipeline imports
its framework inside its functions (in a process that uses both, import torch first).
"""

from __future__ import annotations

from inception_lib.data import readers, tf_pipeline, torch_pipeline
from inception_lib.data.readers import *  # noqa: F403 - each module lists its public names in __all__
from inception_lib.data.tf_pipeline import *  # noqa: F403
from inception_lib.data.torch_pipeline import *  # noqa: F403

__all__ = readers.__all__ + tf_pipeline.__all__ + torch_pipeline.__all__

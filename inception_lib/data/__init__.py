"""Data for both frameworks: Fashion-MNIST (the offline default), CIFAR-10 and ImageNet-style folders.

One interface, three layers, in three modules: :mod:`~inception_lib.data.readers` (files, splits; framework-free),
:mod:`~inception_lib.data.torch_pipeline` and :mod:`~inception_lib.data.tf_pipeline`. Everything public is
importable from ``inception_lib.data``.

* **Files -> numpy.** :func:`load_arrays` finds, verifies and parses the small datasets into
  ``(images uint8 N x H x W x C, labels int64)``; :class:`ImageFolder` lists an ImageNet-style folder
  (``root/train/<class>/*.jpg``, ``root/val/<class>/*.jpg``) and decodes one image at a time with PIL.
* **One config -> splits.** :class:`DataConfig` holds every data setting in one place (airbench style);
  :func:`load_splits` turns it into the train / val / test :class:`Split` objects that both frameworks use.
  The validation set is carved out of the *training* data by :func:`train_val_split`; the test split is
  kept apart and should be touched once, at the end (for an ImageNet folder its ``val/`` folder is the test
  split, as in the paper, which reports on the ILSVRC validation set).
* **Splits -> batches.** PyTorch: :func:`torch_loaders` (``DataLoader`` with workers) and
  :class:`DeviceTensorLoader` / :func:`device_loaders` (the whole small dataset as one uint8 tensor on the
  GPU, augmented there in batches, so a fast GPU never waits for the loader). TensorFlow / Keras:
  :func:`tf_datasets` (``tf.data`` pipelines). Batches are normalized float32: NCHW for torch, NHWC for TF.

Where the files come from (first hit wins): an explicit ``root`` argument (used alone: nothing else is
searched), the folder in the ``INCEPTION_LIB_DATA`` environment variable (directly or in a
``fashion-mnist/`` / ``cifar-10-batches-py/`` subfolder), the system folder of the Debian package
(``/usr/share/datasets/fashion-mnist/``; ``INCEPTION_LIB_SYSTEM_DATA=<folder>`` replaces
``/usr/share/datasets``, and an empty value searches no system folder), this library's download cache
(``~/.cache/inception_lib``, or ``INCEPTION_LIB_CACHE``), and finally torchvision's download when
``download=True`` and the internet is reachable. Downloads go to the cache, never into a data folder of
yours; nothing here writes anywhere else. ``INCEPTION_LIB_FASHION_MNIST_MIRROR=<base URL>`` makes that
download fetch the four Fashion-MNIST files from ``<base URL><file name>`` instead of torchvision's mirrors
(a local copy, a proxy, or a test server); what comes from it is verified like any other file.

Every file is verified before use (size and MD5 against the published releases, plus the format's own
structure). A missing file raises :class:`DatasetNotFoundError` saying where we looked and how to get the
data; a damaged one raises :class:`CorruptDatasetError` naming the file, what was expected and what was
found.

The paper's training augmentation (``augment="paper"``, Section 6 of Szegedy et al. 2014): a random crop
whose area is uniform in 8%-100% of the image and whose aspect ratio is in [3/4, 4/3], resized to the
training resolution with an interpolation drawn with equal probability from bilinear, nearest, bicubic and
area; a horizontal flip with probability 1/2; and photometric distortions in the spirit of Howard (2013):
brightness, contrast and saturation factors each uniform in ``[1 - PHOTOMETRIC_STRENGTH, 1 +
PHOTOMETRIC_STRENGTH]`` = [0.6, 1.4] (Howard used [0.5, 1.5]; 0.4 is the strength of the common
ImageNet recipes), applied in that fixed order. In PyTorch the aspect ratio is log-uniform (torchvision's
``RandomResizedCrop`` convention, 10 attempts, then a centre crop); in TensorFlow the crop comes from
``tf.image.stateless_sample_distorted_bounding_box`` (area_range (0.08, 1), aspect_ratio_range (3/4, 4/3),
which draws the ratio uniformly). The evaluation transform resizes to the resolution (no crop for the
28 / 32 px datasets; for folders: shorter side to resolution / 0.875, then a centre crop).

Framework imports. Importing this module imports neither torch nor tensorflow (importing tensorflow before
torchvision aborts the process on these machines): torch / torchvision are imported inside the torch
functions and tensorflow inside :func:`tf_datasets`. In a process that uses both, import torch first.
The on-device loader draws its order and augmentation on its device.
"""

from __future__ import annotations

from inception_lib.data.readers import (
    ARRAY_DATASETS,
    AUGMENTS,
    CACHE_ENV,
    CIFAR10_MD5,
    CLASSES,
    DATA_ENV,
    DATASETS,
    DEFAULT_VAL_SIZE,
    FASHION_MNIST_FILES,
    FASHION_MNIST_MIRROR_ENV,
    INTERPOLATIONS,
    NATIVE_SHAPE,
    NORMALIZATION,
    PHOTOMETRIC_STRENGTH,
    SYSTEM_DATA_ENV,
    SYSTEM_DIRS,
    CorruptDatasetError,
    DataConfig,
    DatasetNotFoundError,
    ImageFolder,
    Split,
    UnverifiedDatasetWarning,
    cache_dir,
    decode_image,
    find_dataset,
    load_arrays,
    load_splits,
    read_idx,
    system_dir,
    train_val_split,
)
from inception_lib.data.tf_pipeline import tf_datasets
from inception_lib.data.torch_pipeline import (
    DeviceTensorLoader,
    EpochSampler,
    device_loaders,
    torch_loaders,
    torch_transform_batch,
)

__all__ = [
    "ARRAY_DATASETS",
    "AUGMENTS",
    "CACHE_ENV",
    "CIFAR10_MD5",
    "CLASSES",
    "DATASETS",
    "DATA_ENV",
    "DEFAULT_VAL_SIZE",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_MIRROR_ENV",
    "INTERPOLATIONS",
    "NATIVE_SHAPE",
    "NORMALIZATION",
    "PHOTOMETRIC_STRENGTH",
    "SYSTEM_DATA_ENV",
    "SYSTEM_DIRS",
    "CorruptDatasetError",
    "DataConfig",
    "DatasetNotFoundError",
    "DeviceTensorLoader",
    "EpochSampler",
    "ImageFolder",
    "Split",
    "UnverifiedDatasetWarning",
    "cache_dir",
    "decode_image",
    "device_loaders",
    "find_dataset",
    "load_arrays",
    "load_splits",
    "read_idx",
    "system_dir",
    "tf_datasets",
    "torch_loaders",
    "torch_transform_batch",
    "train_val_split",
]

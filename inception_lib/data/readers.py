"""Files -> numpy, framework-free: where the datasets are, their verification and parsing, the splits.

Neither torch nor tensorflow is imported here.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import math
import os
import pickle
import struct
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    pass


# ----------------------------------------------------------------------------------------------------
# Constants: names, classes, normalization, where to look
# ----------------------------------------------------------------------------------------------------

ARRAY_DATASETS: tuple[str, ...] = ("fashion_mnist", "cifar10")
"""Datasets small enough to live in memory as numpy arrays (:func:`load_arrays`)."""

DATASETS: tuple[str, ...] = (*ARRAY_DATASETS, "imagenet_folder")
"""Every dataset name :class:`DataConfig` accepts."""

AUGMENTS: tuple[str, ...] = ("none", "flip", "paper")
"""Training augmentations: none, random horizontal flip, or the paper's (see the module docstring)."""

INTERPOLATIONS: tuple[str, ...] = ("bilinear", "nearest", "bicubic", "area")
"""The paper's random resize interpolations, drawn with equal probability."""

PHOTOMETRIC_STRENGTH: float = 0.4
"""Brightness / contrast / saturation factors are uniform in [1 - s, 1 + s] (Howard 2013 used 0.5)."""

DEFAULT_VAL_SIZE: int = 5000
"""Images held out of the training data for validation (model selection); the test split stays unseen."""

CLASSES: dict[str, tuple[str, ...]] = {
    "fashion_mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    "cifar10": (
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    ),
}
"""Class names in label order (for folders the names are the sorted sub-folder names)."""

NATIVE_SHAPE: dict[str, tuple[int, int, int]] = {
    "fashion_mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
}
"""Image shape (H, W, C) as stored."""

NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    # Mean and (population) std of all pixels of the 60,000 training images, on the 0..1 scale;
    # tests/test_data.py recomputes them from the real files.
    "fashion_mnist": ((0.2860405969887955,), (0.35302424451492254,)),
    # Per channel (R, G, B), over the 50,000 CIFAR-10 training images.
    "cifar10": ((0.4913996, 0.4821584, 0.4465309), (0.2470322, 0.2434851, 0.2615878)),
    # The ImageNet training-set statistics every torchvision model uses.
    "imagenet_folder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
"""Per-dataset (mean, std) per channel, computed on the training data (the val part included)."""

DATA_ENV = "INCEPTION_LIB_DATA"
"""Environment variable naming a folder that holds the datasets (searched after an explicit root)."""

CACHE_ENV = "INCEPTION_LIB_CACHE"
"""Environment variable overriding the download cache folder (default ``~/.cache/inception_lib``)."""

SYSTEM_DIRS: dict[str, Path] = {
    "fashion_mnist": Path("/usr/share/datasets/fashion-mnist"),
    "cifar10": Path("/usr/share/datasets/cifar-10"),
}
"""System-wide folders (the Debian package ``dataset-fashion-mnist`` installs the first); see :func:`system_dir`."""

SYSTEM_DATA_ENV = "INCEPTION_LIB_SYSTEM_DATA"
"""Environment variable replacing the parent of :data:`SYSTEM_DIRS` (``/usr/share/datasets``): set to a folder,
``<folder>/fashion-mnist`` and ``<folder>/cifar-10`` are searched instead; set to the empty string, no system
folder is searched (e.g. to rehearse a machine without the Debian package, as CI does for Colab)."""

FASHION_MNIST_MIRROR_ENV = "INCEPTION_LIB_FASHION_MNIST_MIRROR"
"""Environment variable naming a base URL (``http://host:port/path/``) that ``download=True`` fetches the four
Fashion-MNIST ``.gz`` files from, instead of torchvision's ``FashionMNIST.mirrors``. The files may be the
upstream archives or any re-compressed copy (e.g. Debian's): each is verified after the download (size and MD5
of the archive, or MD5 of its content), and a file that fails is deleted from the cache."""

# Sub-folders searched inside a data folder, per dataset ("" = the folder itself).
_SUBDIRS: dict[str, tuple[str, ...]] = {
    "fashion_mnist": ("", "fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
    "cifar10": ("cifar-10-batches-py", ""),
    "imagenet_folder": ("", "imagenet"),
}

_IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


# ----------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not where we looked; the message says where that was and how to get them."""


class CorruptDatasetError(ValueError):
    """A dataset file exists but is damaged or is not the published file; the message says how to fix it."""


class UnverifiedDatasetWarning(UserWarning):
    """A file passed the structure checks but is not the published release (e.g. small test data)."""


_HOW_TO = {
    "fashion_mnist": (
        "How to get Fashion-MNIST (any one of):\n"
        "  * Debian / Ubuntu: sudo apt-get install dataset-fashion-mnist "
        "(installs /usr/share/datasets/fashion-mnist/)\n"
        "  * put the four files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz in a folder and pass root=<folder> "
        f"or set {DATA_ENV}=<folder> (the files directly there or in <folder>/fashion-mnist/)\n"
        "  * with internet access: pass download=True (torchvision downloads them into the cache "
        f"folder, ~/.cache/inception_lib or ${CACHE_ENV}; ${FASHION_MNIST_MIRROR_ENV}=<base URL> "
        "downloads them from a mirror of yours)"
    ),
    "cifar10": (
        "How to get CIFAR-10 (any one of):\n"
        "  * download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, unpack it "
        "and pass root=<folder holding cifar-10-batches-py/> "
        f"or set {DATA_ENV}=<that folder>\n"
        "  * with internet access: pass download=True (torchvision downloads it into the cache "
        f"folder, ~/.cache/inception_lib or ${CACHE_ENV})"
    ),
    "imagenet_folder": (
        "How to get an ImageNet-style folder: pass root=<folder> (or set "
        f"{DATA_ENV}=<folder>, searched directly and in <folder>/imagenet/) where <folder> holds "
        "train/<class>/*.jpg and val/<class>/*.jpg (the class sub-folders of val/ named like those of "
        "train/). ImageNet itself needs a registration at https://image-net.org; it is never downloaded."
    ),
}


def _fix_corrupt(name: str) -> str:
    base = (
        "Fix: delete or replace the damaged file (copy it again from its source, or for the Debian "
        "package: sudo apt-get install --reinstall dataset-fashion-mnist), or pass download=True with "
        "internet access to fetch a fresh copy into the cache folder."
    )
    if name == "cifar10":
        base = base.replace(
            "or for the Debian package: sudo apt-get install --reinstall dataset-fashion-mnist",
            "or unpack cifar-10-python.tar.gz again",
        )
    return base


# ----------------------------------------------------------------------------------------------------
# Lookup
# ----------------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The download cache (``$INCEPTION_LIB_CACHE`` or ``~/.cache/inception_lib``); the only place written."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "inception_lib"


def system_dir(name: str) -> Path | None:
    """The system folder searched for ``name``: :data:`SYSTEM_DIRS` unless ``$INCEPTION_LIB_SYSTEM_DATA`` is set.

    ``None`` when there is none (an unknown name, or the variable set to the empty string).
    """
    default = SYSTEM_DIRS.get(name)
    env = os.environ.get(SYSTEM_DATA_ENV)
    if default is None or env is None:
        return default
    if not env.strip():
        return None
    return Path(env).expanduser() / default.name


def _required_files(name: str, split: str) -> tuple[str, ...]:
    if name == "fashion_mnist":
        return tuple(spec.filename for spec in FASHION_MNIST_FILES[split])
    if name == "cifar10":
        return _CIFAR_FILES[split]
    raise ValueError(_unknown_dataset(name, ARRAY_DATASETS))


def _search_bases(root: str | os.PathLike[str] | None, name: str) -> list[tuple[str, Path]]:
    """(label, folder) pairs in lookup order; an explicit root is used alone."""
    if root is not None:
        return [("root argument", Path(root).expanduser())]
    bases: list[tuple[str, Path]] = []
    env = os.environ.get(DATA_ENV)
    if env:
        bases.append((f"${DATA_ENV}", Path(env).expanduser()))
    system = system_dir(name)
    if system is not None:
        bases.append(("system folder", system))
    bases.append(("download cache", cache_dir()))
    return bases


def _candidates(root: str | os.PathLike[str] | None, name: str) -> list[tuple[str, Path]]:
    out = []
    for label, base in _search_bases(root, name):
        for sub in _SUBDIRS[name]:
            out.append((label, base / sub if sub else base))
    if root is None:  # torchvision's own download layout inside the cache
        sub = {"fashion_mnist": "FashionMNIST/raw", "cifar10": "cifar-10-batches-py"}.get(name)
        if sub:
            out.append(("download cache", cache_dir() / sub))
    seen: set[Path] = set()
    unique = []
    for label, path in out:
        if path not in seen:
            seen.add(path)
            unique.append((label, path))
    return unique


def find_dataset(
    name: str, split: str = "train", root: str | os.PathLike[str] | None = None, download: bool = False
) -> Path:
    """The folder holding ``split`` of ``name`` (see the lookup order in the module docstring).

    Raises :class:`DatasetNotFoundError` listing every folder searched and how to get the data.
    """
    if name not in ARRAY_DATASETS:
        raise ValueError(_unknown_dataset(name, ARRAY_DATASETS))
    if split not in ("train", "test"):
        raise ValueError(
            f"split must be 'train' or 'test', not {split!r}; the validation set is carved out of "
            "'train' by train_val_split() / load_splits()"
        )
    needed = _required_files(name, split)
    looked: list[str] = []
    for label, folder in _candidates(root, name):
        present = [f for f in needed if (folder / f).is_file()]
        if len(present) == len(needed):
            return folder
        if present:
            missing = [f for f in needed if f not in present]
            looked.append(f"  {folder} ({label}): has {present}, missing {missing}")
        else:
            state = "none of the files" if folder.is_dir() else "no such folder"
            looked.append(f"  {folder} ({label}): {state}")
    download_note = ""
    if download:
        try:
            return _download(name)
        except Exception as err:  # noqa: BLE001 - any failure means "no data", reported below
            download_note = f"\nThe download (download=True) failed: {type(err).__name__}: {err}"
    else:
        download_note = "\n(download=False: no download was tried.)"
    raise DatasetNotFoundError(
        f"{name} ({split} split) not found. Looked for {list(needed)} in:\n"
        + "\n".join(looked)
        + download_note
        + "\n"
        + _HOW_TO[name]
    )


def _download(name: str) -> Path:
    """Download with torchvision into the cache folder (needs internet); returns the folder.

    torchvision's "Downloading ..." / "Extracting ..." lines and progress bars are kept out of the caller's output
    (a notebook's outputs stay the same whether the data was on the machine or not); errors still surface.
    """
    target = cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return _download_quietly(name, target)


def _download_quietly(name: str, target: Path) -> Path:
    import torchvision

    if name == "fashion_mnist":
        mirror = os.environ.get(FASHION_MNIST_MIRROR_ENV, "").strip()
        if not mirror:
            for train in (True, False):
                torchvision.datasets.FashionMNIST(str(target), train=train, download=True)
            return target / "FashionMNIST" / "raw"
        return _download_fashion_mirror(target, mirror.rstrip("/") + "/")
    torchvision.datasets.CIFAR10(str(target), train=True, download=True)
    return target / "cifar-10-batches-py"


def _download_fashion_mirror(target: Path, mirror: str) -> Path:
    """torchvision's Fashion-MNIST download from ``mirror`` (``$INCEPTION_LIB_FASHION_MNIST_MIRROR``).

    The class attributes ``FashionMNIST.mirrors`` / ``resources`` are swapped for the download and restored
    after it. torchvision's MD5 check is left to :func:`_verify_idx` (which also accepts re-compressed copies
    such as Debian's); a file that fails it is removed, so a bad mirror leaves nothing behind in the cache.
    """
    from torchvision.datasets import FashionMNIST

    raw = target / "FashionMNIST" / "raw"
    saved = FashionMNIST.mirrors, FashionMNIST.resources
    FashionMNIST.mirrors = [mirror]
    FashionMNIST.resources = [(filename, None) for filename, _ in saved[1]]
    failure: BaseException | None = None
    try:
        FashionMNIST(str(target), train=True, download=True)
    except Exception as err:  # noqa: BLE001 - re-raised below, once the cache is cleaned
        failure = err
    finally:
        FashionMNIST.mirrors, FashionMNIST.resources = saved
    for split in FASHION_MNIST_FILES.values():
        for spec in split:
            path = raw / spec.filename
            if not path.is_file():
                continue
            try:
                _verify_idx(path, spec)
            except CorruptDatasetError as err:
                for bad in (path, path.with_suffix("")):  # the .gz and torchvision's extracted copy
                    bad.unlink(missing_ok=True)
                raise CorruptDatasetError(f"{err}\n(downloaded from {mirror}{spec.filename})") from failure
    if failure is not None:
        raise failure
    return raw


def _unknown_dataset(name: object, valid: Sequence[str]) -> str:
    return f"unknown dataset {name!r}; valid names: {', '.join(valid)}"


# ----------------------------------------------------------------------------------------------------
# Fashion-MNIST: idx files
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _IdxSpec:
    filename: str
    magic: int
    shape: tuple[int, ...]
    payload_md5: str  # MD5 of the decompressed idx bytes
    archives: dict[str, tuple[int, str]]  # MD5 of the .gz -> (size in bytes, where it comes from)

    @property
    def payload_size(self) -> int:
        return 4 + 4 * len(self.shape) + math.prod(self.shape)


# The upstream archives are torchvision's (its FashionMNIST.resources MD5s). The Debian package ships the
# same compressed streams with the gzip header's file-name field dropped (hence 24 / 23 bytes smaller and
# a different MD5); the decompressed payloads are identical, so the payload MD5 is the decisive check and
# any re-compressed copy of the original data is accepted too.
FASHION_MNIST_FILES: dict[str, tuple[_IdxSpec, _IdxSpec]] = {
    "train": (
        _IdxSpec(
            "train-images-idx3-ubyte.gz", 2051, (60000, 28, 28), "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            {
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d": (26421880, "upstream release (torchvision's MD5)"),
                "cf8536b0aa1a6ac5fa3f23001093305c": (26421856, "Debian dataset-fashion-mnist"),
            },
        ),
        _IdxSpec(
            "train-labels-idx1-ubyte.gz", 2049, (60000,), "9018921c3c673c538a1fc5bad174d6f9",
            {
                "25c81989df183df01b3e8a0aad5dffbe": (29515, "upstream release (torchvision's MD5)"),
                "10bea18fdb374794d4bb42e356e600c9": (29491, "Debian dataset-fashion-mnist"),
            },
        ),
    ),
    "test": (
        _IdxSpec(
            "t10k-images-idx3-ubyte.gz", 2051, (10000, 28, 28), "8181f5470baa50b63fa0f6fddb340f0a",
            {
                "bef4ecab320f06d8554ea6380940ec79": (4422102, "upstream release (torchvision's MD5)"),
                "f78720b4224f21cce2f2ccf2d7a94c9a": (4422079, "Debian dataset-fashion-mnist"),
            },
        ),
        _IdxSpec(
            "t10k-labels-idx1-ubyte.gz", 2049, (10000,), "15d484375f8d13e6eb1aabb0c3f46965",
            {
                "bb300cfdad3c16e7a12a480ee83cd310": (5148, "upstream release (torchvision's MD5)"),
                "0d30e22e447f3c33dab9ed536400ac01": (5125, "Debian dataset-fashion-mnist"),
            },
        ),
    ),
}
"""Per split, the (images, labels) idx files with their magic numbers, shapes and checksums."""


def _md5_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _parse_idx_bytes(data: bytes, source: str) -> np.ndarray:
    if len(data) < 4:
        raise CorruptDatasetError(f"{source}: {len(data)} bytes, too short for an idx header")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or ndim == 0:
        raise CorruptDatasetError(
            f"{source}: bad idx magic number {struct.unpack('>I', data[:4])[0]} (expected 0x0000080N: "
            "unsigned bytes, N dimensions)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptDatasetError(f"{source}: truncated idx header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != math.prod(dims):
        raise CorruptDatasetError(
            f"{source}: idx header says shape {dims} = {math.prod(dims)} bytes, found "
            f"{len(data) - header} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Parse an idx file (the MNIST family's format; ``.gz`` or raw) of unsigned bytes into numpy.

    A generic reader: no checksum (see :func:`load_arrays` for the verified Fashion-MNIST path).
    """
    path = Path(path)
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise CorruptDatasetError(f"{path}: cannot decompress ({type(err).__name__}: {err})") from err
    return _parse_idx_bytes(data, str(path))


def _verify_idx(path: Path, spec: _IdxSpec) -> tuple[bytes, str]:
    """Decompress and verify one Fashion-MNIST file; returns (payload, provenance)."""
    size = path.stat().st_size
    md5 = _md5_file(path)
    known = ", ".join(f"{m} ({s} bytes, {src})" for m, (s, src) in spec.archives.items())
    expected = (
        f"expected the archive to be one of: {known}; or any gzip whose decompressed content is "
        f"{spec.payload_size} bytes with MD5 {spec.payload_md5}"
    )
    try:
        with gzip.open(path, "rb") as f:
            payload = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise CorruptDatasetError(
            f"Corrupt Fashion-MNIST file {path}: not a complete gzip file ({type(err).__name__}: {err}). "
            f"Found {size} bytes with MD5 {md5}; {expected}.\n" + _fix_corrupt("fashion_mnist")
        ) from err
    payload_md5 = _md5_bytes(payload)
    if len(payload) != spec.payload_size or payload_md5 != spec.payload_md5:
        raise CorruptDatasetError(
            f"Corrupt Fashion-MNIST file {path}: found an archive of {size} bytes with MD5 {md5} whose "
            f"content is {len(payload)} bytes with MD5 {payload_md5}; {expected}.\n"
            + _fix_corrupt("fashion_mnist")
        )
    if md5 in spec.archives and spec.archives[md5][0] == size:
        provenance = spec.archives[md5][1]
    else:
        provenance = "re-compressed copy, content verified"
    return payload, provenance


@functools.lru_cache(maxsize=8)
def _load_idx_cached(real_path: str, size: int, mtime_ns: int, split: str, index: int) -> np.ndarray:
    spec = FASHION_MNIST_FILES[split][index]
    payload, _ = _verify_idx(Path(real_path), spec)
    arr = _parse_idx_bytes(payload, real_path)
    if arr.shape != spec.shape or struct.unpack(">I", payload[:4])[0] != spec.magic:
        raise CorruptDatasetError(
            f"{real_path}: magic {struct.unpack('>I', payload[:4])[0]} / shape {arr.shape}, expected "
            f"magic {spec.magic} / shape {spec.shape}.\n" + _fix_corrupt("fashion_mnist")
        )
    arr = arr.copy()
    arr.flags.writeable = False
    return arr


def _load_fashion_mnist(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for index, spec in enumerate(FASHION_MNIST_FILES[split]):
        real = (folder / spec.filename).resolve()
        st = real.stat()
        out.append(_load_idx_cached(str(real), st.st_size, st.st_mtime_ns, split, index))
    images, labels = out
    if labels.max() > 9:
        raise CorruptDatasetError(f"{folder}: labels outside 0..9")
    return images[..., None].copy(), labels.astype(np.int64)


# ----------------------------------------------------------------------------------------------------
# CIFAR-10: python pickles
# ----------------------------------------------------------------------------------------------------

_CIFAR_FILES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}

CIFAR10_MD5: dict[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
"""MD5 of the published CIFAR-10 python batches (torchvision's ``CIFAR10.train_list`` / ``test_list``)."""

_CIFAR_ROWS = 10000


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (N x 32 x 32 x 3 uint8, N int64).

    The batches are Python pickles, and unpickling runs code chosen by the file's author: load only
    CIFAR-10 files from a source you trust (the official tarball or your own copy of it).
    """
    md5 = _md5_file(path)
    fix = _fix_corrupt("cifar10")
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")  # noqa: S301 - trusted CIFAR files only (see above)
    except Exception as err:  # noqa: BLE001 - truncated / altered pickles raise many types
        raise CorruptDatasetError(
            f"Corrupt CIFAR-10 file {path}: cannot unpickle it ({type(err).__name__}: {err}); "
            f"MD5 {md5}, expected {CIFAR10_MD5.get(path.name, '?')}.\n{fix}"
        ) from err
    if not isinstance(batch, dict):
        raise CorruptDatasetError(f"Corrupt CIFAR-10 file {path}: a {type(batch).__name__}, expected a dict.\n{fix}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = getattr(data, "shape", type(data).__name__), getattr(data, "dtype", None)
        raise CorruptDatasetError(
            f"Corrupt CIFAR-10 file {path}: b'data' must be a uint8 array of shape (N, 3072), found "
            f"{found}.\n{fix}"
        )
    if labels is None or len(labels) != data.shape[0]:
        raise CorruptDatasetError(
            f"Corrupt CIFAR-10 file {path}: {data.shape[0]} images but "
            f"{'no' if labels is None else len(labels)} b'labels'.\n{fix}"
        )
    y = np.asarray(labels, dtype=np.int64)
    if y.size and (y.min() < 0 or y.max() > 9):
        raise CorruptDatasetError(f"Corrupt CIFAR-10 file {path}: labels outside 0..9.\n{fix}")
    expected_md5 = CIFAR10_MD5.get(path.name)
    if md5 != expected_md5:
        if data.shape[0] == _CIFAR_ROWS:
            raise CorruptDatasetError(
                f"Corrupt CIFAR-10 file {path}: {_CIFAR_ROWS} rows like the published file but MD5 {md5}, "
                f"expected {expected_md5}.\n{fix}"
            )
        warnings.warn(
            f"{path} is not the published CIFAR-10 batch ({data.shape[0]} rows, MD5 {md5}); it passed the "
            "structure checks and is used as is",
            UnverifiedDatasetWarning,
            stacklevel=3,
        )
    # Each row is planar: 1024 red, then 1024 green, then 1024 blue values, each image row-major.
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), y


def _load_cifar10(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    parts = [_read_cifar_batch(folder / f) for f in _CIFAR_FILES[split]]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ----------------------------------------------------------------------------------------------------
# The in-memory interface
# ----------------------------------------------------------------------------------------------------


def load_arrays(
    name: str, split: str, root: str | os.PathLike[str] | None = None, download: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Load a small dataset as ``(images uint8 N x H x W x C, labels int64 N)``, verified.

    ``split`` is ``"train"`` or ``"test"``: the validation set comes from :func:`train_val_split`.
    One representation for both frameworks; class names are ``CLASSES[name]``. CIFAR-10 batches are
    Python pickles: load only files from a source you trust (unpickling can run code).
    """
    if name not in ARRAY_DATASETS:
        raise ValueError(_unknown_dataset(name, ARRAY_DATASETS))
    folder = find_dataset(name, split, root=root, download=download)
    if name == "fashion_mnist":
        return _load_fashion_mnist(folder, split)
    return _load_cifar10(folder, split)


def train_val_split(n: int, val_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic random split of ``range(n)`` into (train_idx, val_idx), both int64.

    Not stratified. The indices come in a seeded random order, so a prefix of ``train_idx`` (the
    ``subset`` option) is a random sample, also for class-sorted folders. The validation set is for
    choosing models and hyperparameters; the test split is separate and should be evaluated once, at
    the end.
    """
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be in [0, {n}) for {n} training examples, got {val_size}")
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    return perm[val_size:], perm[:val_size]


# ----------------------------------------------------------------------------------------------------
# ImageNet-style folders
# ----------------------------------------------------------------------------------------------------


class ImageFolder:
    """``folder/<class>/<image>``, listed eagerly, decoded lazily with PIL (like torchvision's ImageFolder).

    Classes are the sorted sub-folder names; labels index them. ``self[i]`` returns
    ``(uint8 H x W x 3 RGB array, label)``; ``self.samples`` holds ``(path, label)`` pairs.
    """

    def __init__(self, folder: str | os.PathLike[str], classes: Sequence[str] | None = None) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DatasetNotFoundError(f"image folder {self.folder} not found.\n{_HOW_TO['imagenet_folder']}")
        found = sorted(e.name for e in os.scandir(self.folder) if e.is_dir())
        if not found:
            raise DatasetNotFoundError(
                f"no class sub-folders in {self.folder}.\n{_HOW_TO['imagenet_folder']}"
            )
        if classes is not None and list(classes) != found:
            raise ValueError(
                f"{self.folder} has classes {found[:5]}... but {list(classes)[:5]}... were expected "
                "(val/ must have the same class folders as train/)"
            )
        self.classes: list[str] = found
        self.class_to_idx: dict[str, int] = {c: i for i, c in enumerate(found)}
        self.samples: list[tuple[str, int]] = []
        for c in found:
            files = sorted(
                p for p in (self.folder / c).rglob("*") if p.is_file() and p.suffix.lower() in _IMG_EXTENSIONS
            )
            self.samples.extend((str(p), self.class_to_idx[c]) for p in files)
        if not self.samples:
            raise DatasetNotFoundError(
                f"no images ({', '.join(_IMG_EXTENSIONS)}) under {self.folder}.\n{_HOW_TO['imagenet_folder']}"
            )
        self.targets = np.array([s[1] for s in self.samples], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        path, label = self.samples[index]
        return decode_image(path), label


def decode_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode one image file to uint8 H x W x 3 RGB (grayscale / CMYK / palette images are converted)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise CorruptDatasetError(f"cannot decode image {path}: {type(err).__name__}: {err}") from err


def _find_image_folder(root: str | os.PathLike[str] | None) -> Path:
    looked = []
    for label, folder in _candidates(root, "imagenet_folder"):
        if label == "download cache":
            continue
        if (folder / "train").is_dir():
            return folder
        looked.append(f"  {folder} ({label}): no train/ sub-folder")
    if not looked:
        looked.append(f"  (no root argument and ${DATA_ENV} is not set)")
    raise DatasetNotFoundError(
        "ImageNet-style folder not found. Looked in:\n" + "\n".join(looked) + "\n" + _HOW_TO["imagenet_folder"]
    )


# ----------------------------------------------------------------------------------------------------
# Config and splits
# ----------------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    """Every data setting in one place; :func:`torch_loaders`, :func:`device_loaders` and
    :func:`tf_datasets` all read this, so both frameworks see the same data.

    resolution: side of the square network input (224 the paper, 96 d2l); None = native (28 / 32 px;
    224 for folders). channels: 1 or 3 (grayscale is repeated to 3 when asked; None = native).
    val_size: images held out of the training data (None = 5000). subset: keep only the first N training
    images after the split; eval_subset: the same for val and test (fast tests, CPU runs).
    mean / std: None = ``NORMALIZATION[dataset]`` (repeated when grayscale becomes 3 channels).
    seed drives shuffling and augmentation; split_seed the train/val split (kept apart, so changing the
    training seed does not move images between train and val).
    """

    dataset: str = "fashion_mnist"
    root: str | None = None
    resolution: int | None = None
    channels: int | None = None
    val_size: int | None = None
    subset: int | None = None
    eval_subset: int | None = None
    augment: str = "none"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    seed: int = 0
    split_seed: int = 0
    batch_size: int = 128
    eval_batch_size: int | None = None
    num_workers: int = 0
    download: bool = False

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(_unknown_dataset(self.dataset, DATASETS))
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {self.augment!r}")
        if self.channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1 or 3 (or None = native), got {self.channels!r}")
        if self.channels == 1 and self.native_channels == 3:
            raise ValueError(f"{self.dataset} is RGB: channels=1 is only for grayscale datasets")
        if self.resolution is not None and self.resolution < 1:
            raise ValueError(f"resolution must be positive, got {self.resolution}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        for name in ("subset", "eval_subset"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive int or None, got {value}")

    @property
    def native_channels(self) -> int:
        """Channels as stored: 1 for Fashion-MNIST, 3 otherwise."""
        return NATIVE_SHAPE[self.dataset][2] if self.dataset in NATIVE_SHAPE else 3

    @property
    def image_channels(self) -> int:
        """Channels of the batches."""
        return self.channels or self.native_channels

    @property
    def image_size(self) -> int:
        """Side of the square batches."""
        if self.resolution is not None:
            return self.resolution
        return NATIVE_SHAPE[self.dataset][0] if self.dataset in NATIVE_SHAPE else 224

    @property
    def norm_mean(self) -> tuple[float, ...]:
        """Per-channel mean subtracted from the 0..1 pixels (length = image_channels)."""
        return self._expand(self.mean if self.mean is not None else NORMALIZATION[self.dataset][0])

    @property
    def norm_std(self) -> tuple[float, ...]:
        """Per-channel std the pixels are divided by (length = image_channels)."""
        return self._expand(self.std if self.std is not None else NORMALIZATION[self.dataset][1])

    @property
    def num_classes(self) -> int:
        """Number of classes (for a folder dataset: the class sub-folders of train/)."""
        if self.dataset in CLASSES:
            return len(CLASSES[self.dataset])
        return len(ImageFolder(_find_image_folder(self.root) / "train").classes)

    @property
    def effective_val_size(self) -> int:
        return DEFAULT_VAL_SIZE if self.val_size is None else self.val_size

    @property
    def eval_batch(self) -> int:
        return self.eval_batch_size or self.batch_size

    @property
    def eval_crop(self) -> float | None:
        """Centre-crop fraction at evaluation: None (plain resize) for the small datasets."""
        return None if self.dataset in ARRAY_DATASETS else 0.875

    def _expand(self, values: Sequence[float]) -> tuple[float, ...]:
        values = tuple(float(v) for v in values)
        if len(values) == 1 and self.image_channels == 3:
            return values * 3
        if len(values) != self.image_channels:
            raise ValueError(f"{len(values)} normalization values for {self.image_channels} channels")
        return values


@dataclass
class Split:
    """One split as both frameworks consume it: in-memory images or image paths, plus labels."""

    name: str
    labels: np.ndarray
    images: np.ndarray | None = None
    paths: list[str] | None = None
    classes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.labels)


def load_splits(cfg: DataConfig) -> dict[str, Split]:
    """Train / val / test for ``cfg``: val is carved from the training data, test is the separate test set.

    ``subset`` trims train (after the split), ``eval_subset`` trims val and test.
    """
    if cfg.dataset in ARRAY_DATASETS:
        x_train, y_train = load_arrays(cfg.dataset, "train", root=cfg.root, download=cfg.download)
        x_test, y_test = load_arrays(cfg.dataset, "test", root=cfg.root, download=cfg.download)
        train_idx, val_idx = train_val_split(len(y_train), cfg.effective_val_size, cfg.split_seed)
        train_idx = train_idx[: cfg.subset]
        val_idx = val_idx[: cfg.eval_subset]
        test_idx = np.arange(len(y_test))[: cfg.eval_subset]
        classes = CLASSES[cfg.dataset]
        return {
            "train": Split("train", y_train[train_idx], images=x_train[train_idx], classes=classes),
            "val": Split("val", y_train[val_idx], images=x_train[val_idx], classes=classes),
            "test": Split("test", y_test[test_idx], images=x_test[test_idx], classes=classes),
        }
    folder = _find_image_folder(cfg.root)
    train = ImageFolder(folder / "train")
    test = ImageFolder(folder / "val", classes=train.classes)
    train_idx, val_idx = train_val_split(len(train), cfg.effective_val_size, cfg.split_seed)
    train_idx = train_idx[: cfg.subset]
    val_idx = val_idx[: cfg.eval_subset]
    classes = tuple(train.classes)

    def pick(folder_ds: ImageFolder, idx: np.ndarray, name: str) -> Split:
        return Split(
            name, folder_ds.targets[idx], paths=[folder_ds.samples[i][0] for i in idx], classes=classes
        )

    return {
        "train": pick(train, train_idx, "train"),
        "val": pick(train, val_idx, "val"),
        "test": pick(test, np.arange(len(test))[: cfg.eval_subset], "test"),
    }



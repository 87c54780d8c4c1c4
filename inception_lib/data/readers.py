"""Files -> numpy, framework-free (neither torch nor tensorflow is imported here): where the datasets are, their
verification and parsing, and the train / val / test splits both frameworks share.
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

import numpy as np

__all__ = [
    "ARRAY_DATASETS", "CACHE_ENV", "CLASSES", "DATA_ENV", "DATASETS", "DEFAULT_VAL_SIZE", "FASHION_MNIST_FILES",
    "FASHION_MNIST_MIRROR_ENV", "INTERPOLATIONS", "NORMALIZATION", "SYSTEM_DATA_ENV", "SYSTEM_DIRS", "CorruptDatasetError",
    "DataConfig", "DatasetNotFoundError", "ImageFolder", "Split", "UnverifiedDatasetWarning", "cache_dir", "decode_image",
    "find_dataset", "load_arrays", "load_splits", "read_idx", "system_dir", "train_val_split",
]

ARRAY_DATASETS: tuple[str, ...] = ("fashion_mnist", "cifar10")  # small enough to live in memory (load_arrays)
DATASETS: tuple[str, ...] = (*ARRAY_DATASETS, "imagenet_folder")
AUGMENTS: tuple[str, ...] = ("none", "flip", "paper")  # training augmentation: none, horizontal flip, the paper's
INTERPOLATIONS: tuple[str, ...] = ("bilinear", "nearest", "bicubic", "area")  # the paper's random resize, equally likely
PHOTOMETRIC_STRENGTH: float = 0.4  # brightness / contrast / saturation factors uniform in [1 - s, 1 + s] (Howard: 0.5)
DEFAULT_VAL_SIZE: int = 5000  # held out of the training data for model selection; the test split stays unseen

CLASSES: dict[str, tuple[str, ...]] = {  # in label order (a folder's classes are its sorted sub-folder names)
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}
# (H, W, C) as stored; for folders, the default input size.
_NATIVE_SHAPE = {"fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3), "imagenet_folder": (224, 224, 3)}

NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    # (mean, population std) per channel of the training images on the 0..1 scale (tests/test_data.py recomputes
    # Fashion-MNIST's from the files); for folders, the ImageNet statistics every torchvision model uses.
    "fashion_mnist": ((0.2860405969887955,), (0.35302424451492254,)),
    "cifar10": ((0.4913996, 0.4821584, 0.4465309), (0.2470322, 0.2434851, 0.2615878)),
    "imagenet_folder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

DATA_ENV = "INCEPTION_LIB_DATA"  # a folder holding the datasets (searched after an explicit root)
CACHE_ENV = "INCEPTION_LIB_CACHE"  # replaces the download cache ~/.cache/inception_lib
# The Debian package dataset-fashion-mnist installs the first. $INCEPTION_LIB_SYSTEM_DATA replaces their parent
# /usr/share/datasets; set to the empty string, no system folder is searched (a machine without the package).
SYSTEM_DIRS = {"fashion_mnist": Path("/usr/share/datasets/fashion-mnist"), "cifar10": Path("/usr/share/datasets/cifar-10")}
SYSTEM_DATA_ENV = "INCEPTION_LIB_SYSTEM_DATA"
# A base URL that download=True fetches the four Fashion-MNIST .gz files from instead of torchvision's mirrors;
# each file is verified like any other, and one that fails is deleted from the cache.
FASHION_MNIST_MIRROR_ENV = "INCEPTION_LIB_FASHION_MNIST_MIRROR"

# Sub-folders searched inside each data folder ("" = the folder itself); they include torchvision's download layout.
_SUBDIRS: dict[str, tuple[str, ...]] = {
    "fashion_mnist": ("", "fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
    "cifar10": ("cifar-10-batches-py", ""),
    "imagenet_folder": ("", "imagenet"),
}
_IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not where we looked; the message says where that was and how to get them."""


class CorruptDatasetError(ValueError):
    """A dataset file exists but is damaged or is not the published file; the message says how to fix it."""


class UnverifiedDatasetWarning(UserWarning):
    """A file passed the structure checks but is not the published release (e.g. small test data)."""


_DOWNLOAD = "  * with internet access: pass download=True (torchvision downloads {} into the cache folder, ~/.cache/inception_lib"
_HOW_TO = {
    "fashion_mnist": "How to get Fashion-MNIST (any one of):\n"
        "  * Debian / Ubuntu: sudo apt-get install dataset-fashion-mnist (installs /usr/share/datasets/fashion-mnist/)\n"
        "  * put the four files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        f"t10k-labels-idx1-ubyte.gz in a folder and pass root=<folder> or set {DATA_ENV}=<folder> (the files directly there "
        f"or in <folder>/fashion-mnist/)\n{_DOWNLOAD.format('them')} or ${CACHE_ENV}; ${FASHION_MNIST_MIRROR_ENV}=<base URL> "
        "downloads them from a mirror of yours)",
    "cifar10": "How to get CIFAR-10 (any one of):\n"
        "  * download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, unpack it and pass "
        f"root=<folder holding cifar-10-batches-py/> or set {DATA_ENV}=<that folder>\n{_DOWNLOAD.format('it')} or ${CACHE_ENV})",
    "imagenet_folder": f"How to get an ImageNet-style folder: pass root=<folder> (or set {DATA_ENV}=<folder>, searched "
        "directly and in <folder>/imagenet/) where <folder> holds train/<class>/*.jpg and val/<class>/*.jpg (the class "
        "sub-folders of val/ named like those of train/). ImageNet itself needs a registration at https://image-net.org; it "
        "is never downloaded.",
}
_FIX = ("Fix: delete or replace the damaged file (copy it again from its source, or {}), or pass download=True with "
        "internet access to fetch a fresh copy into the cache folder.")
_FIX_FASHION = _FIX.format("for the Debian package: sudo apt-get install --reinstall dataset-fashion-mnist")
_FIX_CIFAR = _FIX.format("unpack cifar-10-python.tar.gz again")


def _unknown_dataset(name: object, valid: Sequence[str]) -> str:
    return f"unknown dataset {name!r}; valid names: {', '.join(valid)}"


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# --- Fashion-MNIST (idx files) and CIFAR-10 (python pickles): the published files ---

@dataclass(frozen=True)
class _IdxSpec:
    filename: str
    shape: tuple[int, ...]
    payload_md5: str  # of the decompressed idx bytes: the decisive check
    archives: dict[str, tuple[int, str]]  # MD5 of a known .gz -> (its size in bytes, where it comes from)


# The upstream MD5s are torchvision's (FashionMNIST.resources). Debian ships the same compressed streams without the
# gzip header's file-name field (so 24 / 23 bytes smaller); any re-compressed copy of the same payload is accepted too.
_UP, _DEB = "upstream release (torchvision's MD5)", "Debian dataset-fashion-mnist"
FASHION_MNIST_FILES: dict[str, tuple[_IdxSpec, _IdxSpec]] = {  # per split, its (images, labels) files
    "train": (
        _IdxSpec("train-images-idx3-ubyte.gz", (60000, 28, 28), "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                 {"8d4fb7e6c68d591d4c3dfef9ec88bf0d": (26421880, _UP), "cf8536b0aa1a6ac5fa3f23001093305c": (26421856, _DEB)}),
        _IdxSpec("train-labels-idx1-ubyte.gz", (60000,), "9018921c3c673c538a1fc5bad174d6f9",
                 {"25c81989df183df01b3e8a0aad5dffbe": (29515, _UP), "10bea18fdb374794d4bb42e356e600c9": (29491, _DEB)}),
    ),
    "test": (
        _IdxSpec("t10k-images-idx3-ubyte.gz", (10000, 28, 28), "8181f5470baa50b63fa0f6fddb340f0a",
                 {"bef4ecab320f06d8554ea6380940ec79": (4422102, _UP), "f78720b4224f21cce2f2ccf2d7a94c9a": (4422079, _DEB)}),
        _IdxSpec("t10k-labels-idx1-ubyte.gz", (10000,), "15d484375f8d13e6eb1aabb0c3f46965",
                 {"bb300cfdad3c16e7a12a480ee83cd310": (5148, _UP), "0d30e22e447f3c33dab9ed536400ac01": (5125, _DEB)}),
    ),
}
_CIFAR10_MD5 = {  # the published python batches (torchvision's CIFAR10.train_list / test_list)
    "data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
}
_CIFAR_ROWS = 10000  # per published batch
_FILES = {  # dataset -> split -> the files it needs
    "fashion_mnist": {split: tuple(s.filename for s in specs) for split, specs in FASHION_MNIST_FILES.items()},
    "cifar10": {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
}


# --- Lookup and download ---

def cache_dir() -> Path:
    """The download cache (``$INCEPTION_LIB_CACHE`` or ``~/.cache/inception_lib``); the only place written."""
    env, xdg = os.environ.get(CACHE_ENV), os.environ.get("XDG_CACHE_HOME")
    if env:
        return Path(env).expanduser()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "inception_lib"


def system_dir(name: str) -> Path | None:
    """The system folder searched for ``name`` (see :data:`SYSTEM_DATA_ENV`); None where there is none."""
    default = SYSTEM_DIRS.get(name)
    env = os.environ.get(SYSTEM_DATA_ENV)
    if default is None or env is None:
        return default
    return Path(env).expanduser() / default.name if env.strip() else None


def _candidates(root: str | os.PathLike[str] | None, name: str) -> list[tuple[str, Path]]:
    """(label, folder) in lookup order, each folder once: an explicit root alone, else $INCEPTION_LIB_DATA, the
    system folder and the download cache, each directly and in the dataset's usual sub-folders."""
    if root is not None:
        bases = [("root argument", Path(root).expanduser())]
    else:
        env, system = os.environ.get(DATA_ENV), system_dir(name)
        bases = [(f"${DATA_ENV}", Path(env).expanduser())] if env else []
        bases += [("system folder", system)] if system is not None else []
        bases.append(("download cache", cache_dir()))
    found: dict[Path, str] = {}
    for label, base in bases:
        for sub in _SUBDIRS[name]:
            found.setdefault(base / sub, label)
    return [(label, path) for path, label in found.items()]


def find_dataset(name: str, split: str = "train", root: str | os.PathLike[str] | None = None,
                 download: bool = False) -> Path:
    """The folder holding ``split`` of ``name``, else :class:`DatasetNotFoundError` naming every folder searched."""
    if name not in ARRAY_DATASETS:
        raise ValueError(_unknown_dataset(name, ARRAY_DATASETS))
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}; the validation set is carved out of "
                         "'train' by train_val_split() / load_splits()")
    needed = _FILES[name][split]
    looked: list[str] = []
    for label, folder in _candidates(root, name):
        present = [f for f in needed if (folder / f).is_file()]
        if len(present) == len(needed):
            return folder
        missing = [f for f in needed if f not in present]
        state = f"has {present}, missing {missing}" if present else "none of the files" if folder.is_dir() else "no such folder"
        looked.append(f"  {folder} ({label}): {state}")
    note = "\n(download=False: no download was tried.)"
    if download:
        try:
            return _download(name)
        except Exception as err:  # noqa: BLE001 - any failure means "no data", reported below
            note = f"\nThe download (download=True) failed: {type(err).__name__}: {err}"
    raise DatasetNotFoundError(f"{name} ({split} split) not found. Looked for {list(needed)} in:\n"
                               + "\n".join(looked) + note + "\n" + _HOW_TO[name])


def _download(name: str) -> Path:
    """torchvision's download into the cache (needs internet); returns the folder. Its "Downloading ..." lines and
    progress bars are kept out of the caller's output (a notebook prints the same whether the data was here or not)."""
    target = cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    mirror = os.environ.get(FASHION_MNIST_MIRROR_ENV, "").strip()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import torchvision
        if name == "cifar10":
            torchvision.datasets.CIFAR10(str(target), train=True, download=True)
            return target / "cifar-10-batches-py"
        if mirror:
            return _download_fashion_mirror(target, mirror.rstrip("/") + "/")
        for train in (True, False):
            torchvision.datasets.FashionMNIST(str(target), train=train, download=True)
        return target / "FashionMNIST" / "raw"


def _download_fashion_mirror(target: Path, mirror: str) -> Path:
    """torchvision's Fashion-MNIST download from ``mirror`` (its ``mirrors`` / ``resources`` swapped meanwhile), verified
    by :func:`_verify_idx` instead of its MD5s (re-compressed copies pass too); a file that fails leaves the cache."""
    from torchvision.datasets import FashionMNIST
    raw = target / "FashionMNIST" / "raw"
    saved = FashionMNIST.mirrors, FashionMNIST.resources
    FashionMNIST.mirrors, FashionMNIST.resources = [mirror], [(filename, None) for filename, _ in saved[1]]
    failure: BaseException | None = None
    try:
        FashionMNIST(str(target), train=True, download=True)
    except Exception as err:  # noqa: BLE001 - re-raised below, once the cache is cleaned
        failure = err
    finally:
        FashionMNIST.mirrors, FashionMNIST.resources = saved
    for spec in (s for specs in FASHION_MNIST_FILES.values() for s in specs):
        path = raw / spec.filename
        try:
            if path.is_file():
                _verify_idx(path, spec)
        except CorruptDatasetError as err:
            for bad in (path, path.with_suffix("")):  # the .gz and torchvision's extracted copy
                bad.unlink(missing_ok=True)
            raise CorruptDatasetError(f"{err}\n(downloaded from {mirror}{spec.filename})") from failure
    if failure is not None:
        raise failure
    return raw


# --- Parsing and verification ---

def _parse_idx_bytes(data: bytes, source: str) -> np.ndarray:
    if len(data) < 4:
        raise CorruptDatasetError(f"{source}: {len(data)} bytes, too short for an idx header")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or ndim == 0:
        raise CorruptDatasetError(f"{source}: bad idx magic number {struct.unpack('>I', data[:4])[0]} (expected "
                                  "0x0000080N: unsigned bytes, N dimensions)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptDatasetError(f"{source}: truncated idx header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != math.prod(dims):
        raise CorruptDatasetError(f"{source}: idx header says shape {dims} = {math.prod(dims)} bytes, found "
                                  f"{len(data) - header} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Parse any idx file of unsigned bytes (the MNIST family's format; ``.gz`` or raw); no checksum."""
    path = Path(path)
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise CorruptDatasetError(f"{path}: cannot decompress ({type(err).__name__}: {err})") from err
    return _parse_idx_bytes(data, str(path))


def _verify_idx(path: Path, spec: _IdxSpec) -> tuple[bytes, str]:
    """Decompress and verify one Fashion-MNIST file; returns (payload, provenance)."""
    raw = path.read_bytes()
    size, md5 = len(raw), _md5(raw)
    payload_size = 4 + 4 * len(spec.shape) + math.prod(spec.shape)  # the idx header: magic, one uint32 per dimension
    known = ", ".join(f"{m} ({s} bytes, {src})" for m, (s, src) in spec.archives.items())
    expected = (f"expected the archive to be one of: {known}; or any gzip whose decompressed content is "
                f"{payload_size} bytes with MD5 {spec.payload_md5}.\n{_FIX_FASHION}")
    try:
        with gzip.open(io.BytesIO(raw), "rb") as f:
            payload = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise CorruptDatasetError(f"Corrupt Fashion-MNIST file {path}: not a complete gzip file ({type(err).__name__}: "
                                  f"{err}). Found {size} bytes with MD5 {md5}; {expected}") from err
    if len(payload) != payload_size or _md5(payload) != spec.payload_md5:
        raise CorruptDatasetError(f"Corrupt Fashion-MNIST file {path}: found an archive of {size} bytes with MD5 {md5} "
                                  f"whose content is {len(payload)} bytes with MD5 {_md5(payload)}; {expected}")
    known_size, source = spec.archives.get(md5, (None, ""))
    return payload, source if known_size == size else "re-compressed copy, content verified"


@functools.lru_cache(maxsize=8)
def _load_idx_cached(real_path: str, size: int, mtime_ns: int, split: str, index: int) -> np.ndarray:
    """One verified file as a read-only array, cached while the file keeps its size and mtime."""
    return _parse_idx_bytes(_verify_idx(Path(real_path), FASHION_MNIST_FILES[split][index])[0], real_path)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (N x 32 x 32 x 3 uint8, N int64). Unpickling runs code chosen by the file's author: load only
    CIFAR-10 files from a source you trust (the official tarball or your own copy of it)."""
    md5, expected_md5 = _md5(path.read_bytes()), _CIFAR10_MD5.get(path.name)

    def corrupt(what: str) -> CorruptDatasetError:
        return CorruptDatasetError(f"Corrupt CIFAR-10 file {path}: {what}.\n{_FIX_CIFAR}")

    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")  # noqa: S301 - trusted CIFAR files only (see above)
    except Exception as err:  # noqa: BLE001 - truncated / altered pickles raise many types
        raise corrupt(f"cannot unpickle it ({type(err).__name__}: {err}); MD5 {md5}, expected "
                      f"{expected_md5 or '?'}") from err
    if not isinstance(batch, dict):
        raise corrupt(f"a {type(batch).__name__}, expected a dict")
    data, labels = batch.get(b"data", batch.get("data")), batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = getattr(data, "shape", type(data).__name__), getattr(data, "dtype", None)
        raise corrupt(f"b'data' must be a uint8 array of shape (N, 3072), found {found}")
    if labels is None or len(labels) != data.shape[0]:
        raise corrupt(f"{data.shape[0]} images but {'no' if labels is None else len(labels)} b'labels'")
    y = np.asarray(labels, dtype=np.int64)
    if y.size and (y.min() < 0 or y.max() > 9):
        raise corrupt("labels outside 0..9")
    if md5 != expected_md5:
        if data.shape[0] == _CIFAR_ROWS:
            raise corrupt(f"{_CIFAR_ROWS} rows like the published file but MD5 {md5}, expected {expected_md5}")
        warnings.warn(f"{path} is not the published CIFAR-10 batch ({data.shape[0]} rows, MD5 {md5}); it passed the "
                      "structure checks and is used as is", UnverifiedDatasetWarning, stacklevel=3)
    # Each row is planar: 1024 red, then 1024 green, then 1024 blue values, each image row-major.
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), y


def load_arrays(name: str, split: str, root: str | os.PathLike[str] | None = None,
                download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A small dataset as ``(images uint8 N x H x W x C, labels int64 N)``, verified; one representation for both
    frameworks. ``split`` is ``"train"`` or ``"test"`` (validation comes from :func:`train_val_split`). CIFAR-10
    batches are Python pickles: load only files from a source you trust (unpickling can run code)."""
    folder = find_dataset(name, split, root=root, download=download)
    if name == "fashion_mnist":
        paths = [(folder / spec.filename).resolve() for spec in FASHION_MNIST_FILES[split]]
        stats = [p.stat() for p in paths]
        images, labels = (_load_idx_cached(str(p), st.st_size, st.st_mtime_ns, split, i)
                          for i, (p, st) in enumerate(zip(paths, stats)))
        return images[..., None].copy(), labels.astype(np.int64)
    parts = [_read_cifar_batch(folder / f) for f in _FILES[name][split]]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def train_val_split(n: int, val_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n)`` into (train_idx, val_idx), int64, not stratified. The indices come in
    random order, so a prefix of ``train_idx`` (the ``subset`` option) is a random sample, also of a sorted folder."""
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be in [0, {n}) for {n} training examples, got {val_size}")
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    return perm[val_size:], perm[:val_size]


# --- ImageNet-style folders ---

class ImageFolder:
    """``folder/<class>/<image>``, listed eagerly, decoded lazily with PIL, like torchvision's ImageFolder (without
    torch, for both frameworks): classes are the sorted sub-folder names, ``self[i]`` is ``(uint8 H x W x 3, label)``."""

    def __init__(self, folder: str | os.PathLike[str], classes: Sequence[str] | None = None) -> None:
        self.folder = Path(folder)
        how = _HOW_TO["imagenet_folder"]
        if not self.folder.is_dir():
            raise DatasetNotFoundError(f"image folder {self.folder} not found.\n{how}")
        found = sorted(e.name for e in os.scandir(self.folder) if e.is_dir())
        if not found:
            raise DatasetNotFoundError(f"no class sub-folders in {self.folder}.\n{how}")
        if classes is not None and list(classes) != found:
            raise ValueError(f"{self.folder} has classes {found[:5]}... but {list(classes)[:5]}... were expected "
                             "(val/ must have the same class folders as train/)")
        self.classes: list[str] = found
        self.class_to_idx: dict[str, int] = {c: i for i, c in enumerate(found)}
        self.samples: list[tuple[str, int]] = [
            (str(p), i) for i, c in enumerate(found)
            for p in sorted(p for p in (self.folder / c).rglob("*") if p.is_file() and p.suffix.lower() in _IMG_EXTENSIONS)
        ]
        if not self.samples:
            raise DatasetNotFoundError(f"no images ({', '.join(_IMG_EXTENSIONS)}) under {self.folder}.\n{how}")
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
        if label != "download cache":  # nothing is ever downloaded into it
            if (folder / "train").is_dir():
                return folder
            looked.append(f"  {folder} ({label}): no train/ sub-folder")
    looked = looked or [f"  (no root argument and ${DATA_ENV} is not set)"]
    raise DatasetNotFoundError("ImageNet-style folder not found. Looked in:\n" + "\n".join(looked) + "\n"
                               + _HOW_TO["imagenet_folder"])


# --- Config and splits ---

@dataclass
class DataConfig:
    """Every data setting in one place, read by the pipelines of both frameworks so that they see the same data.

    resolution: side of the square input (None = native; 224 for folders). channels: 1 or 3 (None = native).
    val_size: held out of the training data (None = 5000). subset / eval_subset: the first N images of train / of val
    and test. mean / std: None = ``NORMALIZATION[dataset]``. seed: shuffling and augmentation; split_seed: the
    train / val split (apart, so that another training seed moves no image between train and val).
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
        if self.channels == 1 and _NATIVE_SHAPE[self.dataset][2] == 3:
            raise ValueError(f"{self.dataset} is RGB: channels=1 is only for grayscale datasets")
        if self.resolution is not None and self.resolution < 1:
            raise ValueError(f"resolution must be positive, got {self.resolution}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        for name, value in (("subset", self.subset), ("eval_subset", self.eval_subset)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive int or None, got {value}")

    @property
    def image_channels(self) -> int:
        return self.channels or _NATIVE_SHAPE[self.dataset][2]

    @property
    def image_size(self) -> int:
        return self.resolution if self.resolution is not None else _NATIVE_SHAPE[self.dataset][0]

    @property
    def norm_mean(self) -> tuple[float, ...]:
        return self._per_channel(self.mean if self.mean is not None else NORMALIZATION[self.dataset][0])

    @property
    def norm_std(self) -> tuple[float, ...]:
        return self._per_channel(self.std if self.std is not None else NORMALIZATION[self.dataset][1])

    @property
    def num_classes(self) -> int:
        """For a folder dataset: the class sub-folders of train/."""
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
        """Centre-crop fraction at evaluation: None (a plain resize) for the small datasets."""
        return None if self.dataset in ARRAY_DATASETS else 0.875

    def _per_channel(self, values: Sequence[float]) -> tuple[float, ...]:
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
    """Train / val / test for ``cfg``: val is carved from the training data, test is the separate test set (for a
    folder, its val/, as in the paper). ``subset`` trims train (after the split), ``eval_subset`` val and test."""
    if cfg.dataset in ARRAY_DATASETS:
        train, test = (load_arrays(cfg.dataset, s, root=cfg.root, download=cfg.download) for s in ("train", "test"))
        classes = CLASSES[cfg.dataset]

        def pick(name: str, data: tuple[np.ndarray, np.ndarray], idx: np.ndarray) -> Split:
            return Split(name, data[1][idx], images=data[0][idx], classes=classes)
    else:
        folder = _find_image_folder(cfg.root)
        train_folder = ImageFolder(folder / "train")
        test_folder = ImageFolder(folder / "val", classes=train_folder.classes)
        train, test = (([p for p, _ in f.samples], f.targets) for f in (train_folder, test_folder))
        classes = tuple(train_folder.classes)

        def pick(name: str, data: tuple[list[str], np.ndarray], idx: np.ndarray) -> Split:
            return Split(name, data[1][idx], paths=[data[0][i] for i in idx], classes=classes)

    train_idx, val_idx = train_val_split(len(train[1]), cfg.effective_val_size, cfg.split_seed)
    return {"train": pick("train", train, train_idx[: cfg.subset]), "val": pick("val", train, val_idx[: cfg.eval_subset]),
            "test": pick("test", test, np.arange(len(test[1]))[: cfg.eval_subset])}

"""Tests for inception_lib.data: lookup, verification, parsing, splits, and both frameworks' pipelines.

Fashion-MNIST tests use the real files of the Debian package (skipped where it is not installed);
CIFAR-10 and ImageNet-style folders are tested on tiny data written here in the real formats.
TensorFlow is imported only inside the tests that need it, after torch / torchvision (imported first,
at the top: the other order aborts the process).
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision  # noqa: F401 - must be imported before tensorflow
from helpers import assert_close, needs_fmnist

from inception_lib import data as D
from inception_lib.data import readers, torch_pipeline

FMNIST = D.SYSTEM_DIRS["fashion_mnist"]


# ------------------------------------------------------------------------------------------------
# Fixtures and helpers
# ------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user data folder or real download cache leaks into a test."""
    monkeypatch.delenv(D.DATA_ENV, raising=False)
    monkeypatch.delenv(D.SYSTEM_DATA_ENV, raising=False)
    monkeypatch.delenv(D.FASHION_MNIST_MIRROR_ENV, raising=False)
    monkeypatch.setenv(D.CACHE_ENV, str(tmp_path / "cache"))


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _link_fashion(dst: Path, skip: tuple[str, ...] = ()) -> Path:
    """A Fashion-MNIST folder of symlinks to the system files (nothing copied, nothing written there)."""
    dst.mkdir(parents=True, exist_ok=True)
    for split in D.FASHION_MNIST_FILES.values():
        for spec in split:
            if spec.filename not in skip:
                (dst / spec.filename).symlink_to(FMNIST / spec.filename)
    return dst


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _cifar_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


@pytest.fixture()
def cifar_root(tmp_path: Path) -> tuple[Path, dict[str, tuple[np.ndarray, list[int]]]]:
    """A CIFAR-10 python-format folder with 3 images per batch (labels and pixels known)."""
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        rows = _cifar_rows(3, rng)
        labels = [(3 * i + j) % 10 for j in range(3)]
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": rows,
                 b"filenames": [f"img{j}.png".encode() for j in range(3)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        written[name] = (rows, labels)
    return tmp_path / "data", written


@pytest.fixture()
def image_root(tmp_path: Path) -> Path:
    """An ImageNet-style folder: train/<class>/*.jpg (4 per class) and val/<class>/*.jpg (2 per class)."""
    from PIL import Image

    colors = {"dog": (200, 30, 30), "ant": (30, 200, 30), "cat": (30, 30, 200)}
    root = tmp_path / "imagenet"
    for split, count in (("train", 4), ("val", 2)):
        for cls, color in colors.items():
            d = root / split / cls
            d.mkdir(parents=True)
            for k in range(count):
                size = (40 + 8 * k, 30 + 4 * k)  # varied, non-square sizes
                Image.new("RGB", size, color).save(d / f"{cls}_{k}.JPEG", quality=95)
    (root / "train" / "ant" / "notes.txt").write_text("not an image")
    return root


# ------------------------------------------------------------------------------------------------
# Fashion-MNIST: real files, lookup, verification, errors
# ------------------------------------------------------------------------------------------------


@needs_fmnist
def test_fashion_mnist_real_files_load_verified() -> None:
    x_train, y_train = D.load_arrays("fashion_mnist", "train")
    x_test, y_test = D.load_arrays("fashion_mnist", "test")
    assert x_train.shape == (60000, 28, 28, 1) and x_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28, 1) and x_test.dtype == np.uint8
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    assert np.array_equal(np.bincount(y_train), [6000] * 10)
    assert np.array_equal(np.bincount(y_test), [1000] * 10)
    assert len(D.CLASSES["fashion_mnist"]) == 10
    # Each file's checksums verified: the Debian archives are known ones and their contents match.
    for split in D.FASHION_MNIST_FILES.values():
        for spec in split:
            path = FMNIST / spec.filename
            assert _md5(path) in spec.archives
            _, provenance = readers._verify_idx(path, spec)
            assert provenance == "Debian dataset-fashion-mnist"


def test_fashion_checksums_are_torchvisions() -> None:
    """The upstream MD5s are torchvision's; Debian's archives differ only by the gzip name field."""
    tv = dict(torchvision.datasets.FashionMNIST.resources)
    for split in D.FASHION_MNIST_FILES.values():
        for spec in split:
            upstream = [(md5, size) for md5, (size, src) in spec.archives.items() if src.startswith("upstream")]
            debian = [size for size, src in spec.archives.values() if src.startswith("Debian")]
            assert upstream[0][0] == tv[spec.filename]
            assert upstream[0][1] == debian[0] + len(spec.filename.removesuffix(".gz")) + 1


@needs_fmnist
def test_normalization_constants_match_data() -> None:
    x, _ = D.load_arrays("fashion_mnist", "train")
    pixels = x.astype(np.float64) / 255.0
    (mean,), (std,) = D.NORMALIZATION["fashion_mnist"]
    assert pixels.mean() == pytest.approx(mean, abs=1e-9)
    assert pixels.std() == pytest.approx(std, abs=1e-9)


@needs_fmnist
def test_lookup_root_env_var_and_subfolder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    direct = _link_fashion(tmp_path / "direct")
    assert D.find_dataset("fashion_mnist", "test", root=direct) == direct
    data = tmp_path / "data"
    _link_fashion(data / "fashion-mnist")
    monkeypatch.setenv(D.DATA_ENV, str(data))
    assert D.find_dataset("fashion_mnist", "test") == data / "fashion-mnist"
    x, y = D.load_arrays("fashion_mnist", "test")
    assert x.shape == (10000, 28, 28, 1) and y.shape == (10000,)
    # An env folder without Fashion-MNIST falls through to the system folder.
    monkeypatch.setenv(D.DATA_ENV, str(tmp_path / "direct" / "nothing"))
    assert D.find_dataset("fashion_mnist", "test") == FMNIST


def test_missing_root_says_where_and_how(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(D.DatasetNotFoundError) as info:
        D.load_arrays("fashion_mnist", "train", root=empty)
    assert isinstance(info.value, FileNotFoundError)
    msg = str(info.value)
    assert str(empty) in msg and "train-images-idx3-ubyte.gz" in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert D.DATA_ENV in msg and "download=True" in msg
    assert list(empty.iterdir()) == []  # nothing written


@needs_fmnist
def test_partial_folder_names_missing_file(tmp_path: Path) -> None:
    folder = _link_fashion(tmp_path / "partial", skip=("train-labels-idx1-ubyte.gz",))
    with pytest.raises(D.DatasetNotFoundError, match="missing.*train-labels-idx1-ubyte.gz"):
        D.load_arrays("fashion_mnist", "train", root=folder)


def test_download_failure_is_wrapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("no route to host")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(D.DatasetNotFoundError, match="download.*failed.*no route to host"):
        D.load_arrays("fashion_mnist", "train", root=tmp_path / "none", download=True)


@needs_fmnist
def test_system_data_env_replaces_or_hides_the_system_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert D.system_dir("fashion_mnist") == FMNIST and D.system_dir("imagenet_folder") is None
    other = tmp_path / "datasets"
    _link_fashion(other / "fashion-mnist")
    monkeypatch.setenv(D.SYSTEM_DATA_ENV, str(other))
    assert D.system_dir("fashion_mnist") == other / "fashion-mnist"
    assert D.system_dir("cifar10") == other / "cifar-10"
    assert D.find_dataset("fashion_mnist", "test") == other / "fashion-mnist"
    monkeypatch.setenv(D.SYSTEM_DATA_ENV, "")  # empty: no system folder at all (a machine without the package)
    assert D.system_dir("fashion_mnist") is None
    with pytest.raises(D.DatasetNotFoundError) as info:
        D.load_arrays("fashion_mnist", "test")
    assert "system folder" not in str(info.value) and "download cache" in str(info.value)


@needs_fmnist
def test_download_through_mirror_is_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$INCEPTION_LIB_FASHION_MNIST_MIRROR: torchvision's real download, from a server on 127.0.0.1."""
    import functools
    import http.server
    import threading

    served = tmp_path / "mirror"
    _link_fashion(served, skip=("t10k-labels-idx1-ubyte.gz",))
    labels = FMNIST / "t10k-labels-idx1-ubyte.gz"
    (served / labels.name).write_bytes(_flip_byte(labels.read_bytes()))  # first a damaged copy
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args: object) -> None:  # keep the test's output clean
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, *args: object) -> None:  # torchvision's redirect probe hangs up early
            pass

    server = Server(("127.0.0.1", 0), functools.partial(Handler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    saved = torchvision.datasets.FashionMNIST.mirrors, torchvision.datasets.FashionMNIST.resources
    try:
        monkeypatch.setenv(D.SYSTEM_DATA_ENV, "")
        monkeypatch.setenv(D.FASHION_MNIST_MIRROR_ENV, f"http://127.0.0.1:{server.server_port}/mirror")
        raw = D.cache_dir() / "FashionMNIST" / "raw"
        with pytest.raises(D.DatasetNotFoundError, match=r"(?s)download.*failed.*Corrupt.*t10k-labels.*127\.0\.0\.1"):
            D.load_arrays("fashion_mnist", "test", download=True)
        assert not (raw / labels.name).exists() and (raw / "t10k-images-idx3-ubyte.gz").is_file()
        assert (torchvision.datasets.FashionMNIST.mirrors, torchvision.datasets.FashionMNIST.resources) == saved
        assert set(requests) == {f"/mirror/{s.filename}" for split in D.FASHION_MNIST_FILES.values() for s in split}
        (served / labels.name).unlink()
        (served / labels.name).symlink_to(labels)
        requests.clear()
        x, y = D.load_arrays("fashion_mnist", "test", download=True)
        assert set(requests) == {f"/mirror/{labels.name}"}  # the verified files were kept: only the bad one again
    finally:
        server.shutdown()
        server.server_close()
    x_ref, y_ref = D.load_arrays("fashion_mnist", "test", root=FMNIST)
    assert np.array_equal(x, x_ref) and np.array_equal(y, y_ref)
    assert D.find_dataset("fashion_mnist", "train") == raw  # all four files came into the cache
    assert (torchvision.datasets.FashionMNIST.mirrors, torchvision.datasets.FashionMNIST.resources) == saved


def _truncate(b: bytes) -> bytes:
    return b[: len(b) // 2]


def _flip_byte(b: bytes) -> bytes:
    mid = len(b) // 2
    return b[:mid] + bytes([b[mid] ^ 0xFF]) + b[mid + 1 :]


def _altered_payload(b: bytes) -> bytes:
    payload = bytearray(gzip.decompress(b))
    payload[100] = (payload[100] + 1) % 10  # one label changed, still a valid idx file
    return gzip.compress(bytes(payload))


def _wrong_magic(b: bytes) -> bytes:
    payload = bytearray(gzip.decompress(b))
    payload[3] = 3
    return gzip.compress(bytes(payload))


@needs_fmnist
@pytest.mark.parametrize(
    ("damage", "expect"),
    [
        (_truncate, "not a complete gzip file"),
        (_flip_byte, "train-labels-idx1-ubyte.gz"),
        (_altered_payload, "MD5 9018921c3c673c538a1fc5bad174d6f9"),
        (_wrong_magic, "expected the archive to be one of"),
    ],
    ids=["truncated", "flipped-byte", "altered-content", "wrong-magic"],
)
def test_corrupt_file_raises_and_nothing_is_touched(tmp_path: Path, damage, expect: str) -> None:
    folder = _link_fashion(tmp_path / "fm", skip=("train-labels-idx1-ubyte.gz",))
    original = FMNIST / "train-labels-idx1-ubyte.gz"
    md5_before = _md5(original)
    (folder / original.name).write_bytes(damage(original.read_bytes()))
    before = _tree(folder)
    with pytest.raises(D.CorruptDatasetError) as info:
        D.load_arrays("fashion_mnist", "train", root=folder)
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert str(folder / original.name) in msg and expect in msg
    assert "expected" in msg.lower() and "Fix:" in msg
    assert _tree(folder) == before  # the damaged copy untouched, nothing added
    assert _md5(original) == md5_before


@needs_fmnist
def test_recompressed_copy_is_accepted(tmp_path: Path) -> None:
    folder = _link_fashion(tmp_path / "fm", skip=("t10k-labels-idx1-ubyte.gz",))
    original = FMNIST / "t10k-labels-idx1-ubyte.gz"
    (folder / original.name).write_bytes(gzip.compress(gzip.decompress(original.read_bytes()), mtime=0))
    _, y = D.load_arrays("fashion_mnist", "test", root=folder)
    _, y_ref = D.load_arrays("fashion_mnist", "test")
    assert np.array_equal(y, y_ref)
    assert readers._verify_idx(folder / original.name, D.FASHION_MNIST_FILES["test"][1])[1].startswith("re-compressed")


def test_read_idx_parses_generic_files(tmp_path: Path) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = b"\x00\x00\x08\x03" + b"".join(int(d).to_bytes(4, "big") for d in arr.shape) + arr.tobytes()
    (tmp_path / "a-idx3-ubyte").write_bytes(raw)
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    assert np.array_equal(D.read_idx(tmp_path / "a-idx3-ubyte"), arr)
    assert np.array_equal(D.read_idx(tmp_path / "a-idx3-ubyte.gz"), arr)
    (tmp_path / "short").write_bytes(raw[:-1])
    with pytest.raises(D.CorruptDatasetError, match="shape"):
        D.read_idx(tmp_path / "short")


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="fashion_mnist, cifar10"):
        D.load_arrays("mnist", "train")
    with pytest.raises(ValueError, match="imagenet_folder"):
        D.DataConfig(dataset="imagenet")
    with pytest.raises(ValueError, match="train_val_split"):
        D.load_arrays("fashion_mnist", "val")


def test_import_loads_no_framework() -> None:
    code = "import sys, inception_lib.data; assert not {'torch', 'tensorflow'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="augment"):
        D.DataConfig(augment="heavy")
    with pytest.raises(ValueError, match="grayscale"):
        D.DataConfig(dataset="cifar10", channels=1)
    cfg = D.DataConfig(channels=3, resolution=96)
    assert cfg.image_size == 96 and cfg.image_channels == 3 and len(cfg.norm_mean) == 3
    assert D.DataConfig().image_size == 28 and D.DataConfig(dataset="cifar10").image_size == 32
    assert D.DataConfig().effective_val_size == D.DEFAULT_VAL_SIZE == 5000
    assert D.DataConfig(dataset="cifar10").num_classes == 10


# ------------------------------------------------------------------------------------------------
# CIFAR-10 (tiny, real pickle format)
# ------------------------------------------------------------------------------------------------


def test_cifar10_pickles_load_planar_rgb(cifar_root) -> None:
    root, written = cifar_root
    with pytest.warns(D.UnverifiedDatasetWarning, match="not the published"):
        x, y = D.load_arrays("cifar10", "train", root=root)
    assert x.shape == (15, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    assert y.tolist() == [label for k in range(1, 6) for label in written[f"data_batch_{k}"][1]]
    rows, _ = written["data_batch_2"]
    # Planar rows: R plane (1024), then G, then B; pixel (row 5, col 7) of the 2nd batch's 1st image.
    for c in range(3):
        assert x[3, 5, 7, c] == rows[0, c * 1024 + 5 * 32 + 7]
    with pytest.warns(D.UnverifiedDatasetWarning):
        xt, yt = D.load_arrays("cifar10", "test", root=root / "cifar-10-batches-py")  # the folder itself
    assert xt.shape == (3, 32, 32, 3) and yt.tolist() == written["test_batch"][1]


def test_cifar10_corrupt_and_missing(cifar_root, tmp_path: Path) -> None:
    root, _ = cifar_root
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.warns(D.UnverifiedDatasetWarning), pytest.raises(D.CorruptDatasetError, match="data_batch_3"):
        D.load_arrays("cifar10", "train", root=root)
    with open(batch, "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.warns(D.UnverifiedDatasetWarning), pytest.raises(D.CorruptDatasetError, match=r"\(N, 3072\)"):
        D.load_arrays("cifar10", "train", root=root)
    with pytest.raises(D.DatasetNotFoundError, match="cifar-10-python.tar.gz"):
        D.load_arrays("cifar10", "train", root=tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------------
# ImageNet-style folders
# ------------------------------------------------------------------------------------------------


def test_image_folder_classes_and_lazy_decoding(image_root: Path) -> None:
    ds = D.ImageFolder(image_root / "train")
    assert ds.classes == ["ant", "cat", "dog"]  # sorted, like torchvision's ImageFolder
    assert len(ds) == 12 and ds.targets.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    img, label = ds[4]
    assert label == 1 and img.dtype == np.uint8 and img.shape == (30, 40, 3)
    assert np.abs(img.reshape(-1, 3).mean(0) - [30, 30, 200]).max() < 8  # cat is blue
    tv = torchvision.datasets.ImageFolder(str(image_root / "train"))
    assert tv.classes == ds.classes and [s[1] for s in tv.samples] == ds.targets.tolist()

    cfg = D.DataConfig(dataset="imagenet_folder", root=str(image_root), val_size=3, resolution=32,
                       batch_size=4, augment="paper")
    assert cfg.num_classes == 3
    splits = D.load_splits(cfg)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [9, 3, 6]
    assert set(splits["train"].paths).isdisjoint(splits["val"].paths)
    loaders = D.torch_loaders(cfg)
    x, y = next(iter(loaders["train"]))
    assert x.shape == (4, 3, 32, 32) and y.dtype == torch.int64
    x, y = next(iter(loaders["test"]))
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [0, 0, 1, 1]
    with pytest.raises(D.DatasetNotFoundError, match="train/<class>"):
        D.load_splits(D.DataConfig(dataset="imagenet_folder", root=str(image_root / "train" / "ant")))


# ------------------------------------------------------------------------------------------------
# Splits
# ------------------------------------------------------------------------------------------------


def test_train_val_split_disjoint_complete_deterministic() -> None:
    train, val = D.train_val_split(1000, 100, seed=3)
    assert len(val) == 100 and len(train) == 900
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(range(1000))
    again = D.train_val_split(1000, 100, seed=3)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    assert not np.array_equal(val, D.train_val_split(1000, 100, seed=4)[1])
    with pytest.raises(ValueError):
        D.train_val_split(10, 10, seed=0)


@needs_fmnist
def test_load_splits_subset_and_separate_test() -> None:
    cfg = D.DataConfig(subset=1000, eval_subset=200)
    s = D.load_splits(cfg)
    assert [len(s[k]) for k in ("train", "val", "test")] == [1000, 200, 200]
    x_test, y_test = D.load_arrays("fashion_mnist", "test")
    assert np.array_equal(s["test"].images, x_test[:200]) and np.array_equal(s["test"].labels, y_test[:200])
    full = D.load_splits(D.DataConfig())
    assert [len(full[k]) for k in ("train", "val", "test")] == [55000, 5000, 10000]


# ------------------------------------------------------------------------------------------------
# PyTorch
# ------------------------------------------------------------------------------------------------


@needs_fmnist
@pytest.mark.parametrize(("resolution", "channels", "augment"), [(96, 3, "flip"), (None, None, "none")])
def test_torch_loaders_shapes_and_normalization(resolution, channels, augment) -> None:
    cfg = D.DataConfig(resolution=resolution, channels=channels, augment=augment, subset=256,
                       eval_subset=1000, batch_size=64, eval_batch_size=1000)
    loaders = D.torch_loaders(cfg)
    size, c = cfg.image_size, cfg.image_channels
    assert len(loaders["train"]) == 4 and len(loaders["val"]) == 1
    x, y = next(iter(loaders["train"]))
    assert x.shape == (64, c, size, size) and x.dtype == torch.float32 and y.dtype == torch.int64
    x, y = next(iter(loaders["val"]))
    assert x.shape == (1000, c, size, size)
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05  # normalized
    if resolution is None:  # native: exactly (pixel / 255 - mean) / std
        split = D.load_splits(cfg)["val"]
        ref = (split.images[..., 0] / 255.0 - cfg.norm_mean[0]) / cfg.norm_std[0]
        assert_close(x[:, 0], ref, 1e-6, "normalized pixels vs float64")  # 4.6e-8 relative observed (float32 rounding)
        assert np.array_equal(y.numpy(), split.labels)


@needs_fmnist
def test_torch_loaders_deterministic_and_worker_independent() -> None:
    cfg = D.DataConfig(resolution=48, channels=3, augment="paper", subset=128, eval_subset=64, batch_size=32)

    def epochs(loader, n: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [next(iter(loader)) for _ in range(n)]

    a = epochs(D.torch_loaders(cfg)["train"])
    b = epochs(D.torch_loaders(cfg)["train"])
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[0][1], a[1][1])  # next epoch: new order
    workers = D.torch_loaders(D.DataConfig(**{**cfg.__dict__, "num_workers": 2}))["train"]
    workers.sampler.set_epoch(1)
    xw, yw = next(iter(workers))
    assert torch.equal(xw, a[1][0]) and torch.equal(yw, a[1][1])  # same batches with 2 workers
    other = next(iter(D.torch_loaders(D.DataConfig(**{**cfg.__dict__, "seed": 1}))["train"]))
    assert not torch.equal(other[1], a[0][1])


@needs_fmnist
def test_device_tensor_loader_cpu() -> None:
    cfg = D.DataConfig(resolution=64, channels=3, augment="paper", subset=200, eval_subset=100, batch_size=32)
    loaders = D.device_loaders(cfg, device="cpu")
    train = loaders["train"]
    assert train.device.type == "cpu" and len(train) == 200 // 32 and len(loaders["val"]) == 4
    batches = list(train)
    assert len(batches) == 6
    x, y = batches[0]
    assert x.shape == (32, 3, 64, 64) and x.dtype == torch.float32 and y.dtype == torch.int64
    second_epoch = list(train)
    assert not torch.equal(second_epoch[0][1], y)  # epochs differ
    train.set_epoch(0)  # a resumed run replays epoch 0 exactly
    replay = list(train)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(batches, replay))
    fresh = D.device_loaders(cfg, device="cpu")["train"]
    fresh.set_epoch(1)
    assert torch.equal(next(iter(fresh))[0], second_epoch[0][0])
    # Evaluation batches: in order, identical to the DataLoader path.
    xv = torch.cat([b[0] for b in loaders["val"]])
    yv = torch.cat([b[1] for b in loaders["val"]])
    dl = D.torch_loaders(cfg)["val"]
    assert_close(xv, torch.cat([b[0] for b in dl]), 1e-5, "device vs DataLoader batches")  # 0 observed (same kernels)
    assert torch.equal(yv, torch.cat([b[1] for b in dl]))


def test_paper_augmentation_sizes_ranges_and_randomness() -> None:
    n = 2000
    g = torch.Generator().manual_seed(0)
    x0, y0, w, h = torch_pipeline._crop_params(n, 40, 60, g)
    area = (w * h) / (40 * 60)
    assert area.min() >= 0.08 - 0.02 and area.max() <= 1.0
    assert ((w / h) >= 3 / 4 - 0.1).all() and ((w / h) <= 4 / 3 + 0.1).all()
    assert (x0 >= 0).all() and (x0 + w <= 60).all() and (y0 >= 0).all() and (y0 + h <= 40).all()
    assert area.std() > 0.15  # spread over the range, not a constant crop
    kwargs = dict(size=24, channels=3, mean=(0.5,) * 3, std=(0.25,) * 3, augment="paper", train=True)
    img = torch.randint(0, 256, (8, 3, 40, 60), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    out1 = D.torch_transform_batch(img, generator=torch.Generator().manual_seed(1), **kwargs)
    out2 = D.torch_transform_batch(img, generator=torch.Generator().manual_seed(1), **kwargs)
    out3 = D.torch_transform_batch(img, generator=torch.Generator().manual_seed(2), **kwargs)
    assert out1.shape == (8, 3, 24, 24) and torch.equal(out1, out2) and not torch.equal(out1, out3)
    gray = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    out = D.torch_transform_batch(gray, generator=g, **{**kwargs, "size": 96})
    assert out.shape == (5, 3, 96, 96)
    assert torch.equal(out[:, 0], out[:, 1])  # grayscale repeated to 3 channels
    # Crop-and-resize is exact: the whole image at its own size is the identity in every mode.
    full = (torch.zeros(4, dtype=torch.float64),) * 2 + (torch.full((4,), 32.0, dtype=torch.float64),) * 2
    src = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    assert_close(torch_pipeline._crop_resize(src, full, torch.arange(4), 32), src, 1e-6, "identity crop")  # 0 observed


# ------------------------------------------------------------------------------------------------
# TensorFlow (imported only here, after torch)
# ------------------------------------------------------------------------------------------------


@needs_fmnist
def test_tf_datasets_nhwc_batches() -> None:
    import tensorflow as tf  # installed by `make setup`: a missing TensorFlow fails here (importorskip skipped)
    cfg = D.DataConfig(resolution=96, channels=3, augment="paper", subset=64, eval_subset=50,
                       batch_size=16, eval_batch_size=25)
    ds = D.tf_datasets(cfg)
    x, y = next(iter(ds["train"]))
    assert tuple(x.shape) == (16, 96, 96, 3) and x.dtype == tf.float32 and y.dtype == tf.int64
    assert ds["train"].cardinality().numpy() == 4 and ds["val"].cardinality().numpy() == 2
    x2, y2 = next(iter(D.tf_datasets(cfg)["train"]))
    assert np.array_equal(y.numpy(), y2.numpy()) and np.array_equal(x.numpy(), x2.numpy())  # seeded: the same run
    xv, yv = next(iter(ds["val"]))
    assert tuple(xv.shape) == (25, 96, 96, 3)
    # Evaluation batches match the torch pipeline (NHWC vs NCHW), natively and resized.
    for resolution in (None, 96):
        c = D.DataConfig(resolution=resolution, subset=64, eval_subset=25, eval_batch_size=25)
        xt, yt = next(iter(D.tf_datasets(c)["val"]))
        xp, yp = next(iter(D.torch_loaders(c)["val"]))
        assert tuple(xt.shape) == (25, c.image_size, c.image_size, 1)
        # two frameworks' resize kernels: 1.4e-6 relative observed at 96 px (0 at 28 px, no resize)
        assert_close(xt.numpy(), xp.permute(0, 2, 3, 1), 1e-4, f"tf vs torch at {resolution}")
        assert np.array_equal(yt.numpy(), yp.numpy())


def test_tf_datasets_image_folder(image_root: Path) -> None:
    import tensorflow  # noqa: F401 - installed by `make setup`: missing, this fails (importorskip skipped)
    cfg = D.DataConfig(dataset="imagenet_folder", root=str(image_root), val_size=3, resolution=32,
                       batch_size=4, augment="flip")
    ds = D.tf_datasets(cfg)
    x, y = next(iter(ds["train"]))
    assert tuple(x.shape) == (4, 32, 32, 3)
    x, y = next(iter(ds["test"]))
    assert tuple(x.shape) == (4, 32, 32, 3) and y.numpy().tolist() == [0, 0, 1, 1]


def test_paper_augmentation_on_a_gpu_needs_no_host_sync() -> None:
    """The GPU path of the paper's crop + resize gives each image what the CPU path gives it, and it reads nothing
    back to the host (no nonzero / item / tolist / bool / numpy): checked with a public ``TorchFunctionMode``."""
    import torch
    from torch.overrides import TorchFunctionMode

    from inception_lib.data import torch_pipeline as TP

    host_reads = {torch.Tensor.nonzero, torch.nonzero, torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__,
                  torch.Tensor.numpy, torch.Tensor.cpu}

    class NoHostReads(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            assert func not in host_reads, f"{func} reads a tensor back to the host"
            return func(*args, **(kwargs or {}))

    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (16, 3, 40, 36), generator=g, dtype=torch.uint8).float() / 255
    boxes = TP._crop_params(16, 40, 36, g)
    modes = torch.arange(16) % 4  # every interpolation, several times
    with NoHostReads():
        fast = TP._crop_resize(x, boxes, modes, 24, sync_free=True)
        normalized = TP.torch_transform_batch((x * 255).to(torch.uint8), size=24, channels=3, mean=(0.5, 0.4, 0.3),
                                              std=(0.2, 0.3, 0.4), augment="flip", train=True, generator=g)
    assert torch.equal(fast, TP._crop_resize(x, boxes, modes, 24))
    assert normalized.shape == (16, 3, 24, 24) and torch.isfinite(normalized).all()
    with pytest.raises(AssertionError, match="reads a tensor back"), NoHostReads():
        TP._crop_resize(x, boxes, modes, 24)  # the CPU path indexes by mode (a host read): the check can fail

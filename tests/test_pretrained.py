"""The shipped weights: checksum, metadata, the recorded test accuracy in PyTorch and Keras, refusals; export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_close, require_fashion_mnist

from inception_lib import data, pretrained
from inception_lib import evaluate as E
from inception_lib import train as T
from inception_lib.pytorch import GoogLeNet, architecture
from inception_lib.runfiles import check_architecture

NAME = "fashion_mnist"


@pytest.fixture(scope="module")
def shipped() -> pretrained.Weights:
    assert NAME in pretrained.available()
    return pretrained.get(NAME)


@pytest.fixture(scope="module")
def test_set() -> tuple[torch.Tensor, np.ndarray]:
    require_fashion_mnist()
    images, labels = data.load_arrays("fashion_mnist", "test")
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels


def _logits(model: torch.nn.Module, w: pretrained.Weights, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    prep = w.transforms()
    with torch.no_grad():
        return torch.cat([model(prep(x[i : i + batch])) for i in range(0, len(x), batch)])


def test_entry_says_what_the_file_is(shipped: pretrained.Weights) -> None:
    m = shipped.meta
    assert shipped.path.stat().st_size <= 15 * 2**20
    assert pretrained.sha256_file(shipped.path) == shipped.sha256
    assert m["categories"] == list(data.CLASSES["fashion_mnist"]) and m["dtype"] == "float16"
    model = GoogLeNet.from_pretrained(NAME)
    assert not model.training
    check_architecture(m["architecture"], architecture(model))
    assert m["num_params"] == sum(p.numel() for p in model.parameters())
    record = Path(__file__).resolve().parents[1] / m["run"]["record"]
    doc = json.loads(record.read_text())
    assert doc["seed"] == m["run"]["seed"] and doc["versions"]["git_commit"] == m["run"]["git_commit"]
    assert m["metrics"]["test_n"] == 10_000


def test_shipped_weights_reproduce_their_test_accuracy(shipped: pretrained.Weights,
                                                        test_set: tuple[torch.Tensor, np.ndarray]) -> None:
    """The first 2,000 test images (the entry records their accuracy beside the whole split's): another CPU may flip
    a near-tie, hence 0.1 point (2 images)."""
    x, y = test_set
    n = pretrained.FIRST_N
    recorded = shipped.meta["metrics"][f"test_top1_first_{n}"]
    top1 = float((_logits(GoogLeNet.from_pretrained(NAME), shipped, x[:n]).argmax(1).numpy() == y[:n]).mean())
    assert abs(top1 - recorded) <= 1e-3, (top1, recorded)
    assert shipped.meta["metrics"]["test_top1"] > 0.93


def test_keras_loads_the_same_weights(shipped: pretrained.Weights, test_set: tuple[torch.Tensor, np.ndarray]) -> None:
    from inception_lib.keras import from_pretrained, inference_model

    x, _ = test_set
    x = x[:256]
    expected = _logits(GoogLeNet.from_pretrained(NAME), shipped, x)
    k = inference_model(from_pretrained(NAME))
    got = torch.from_numpy(np.asarray(k(shipped.transforms()(x).permute(0, 2, 3, 1).numpy(), training=False)))
    assert_close(got, expected, rtol=1e-4)
    assert (got.argmax(1) == expected.argmax(1)).float().mean() >= 255 / 256


def test_a_changed_file_or_another_architecture_is_refused(shipped: pretrained.Weights, tmp_path: Path) -> None:
    shutil.copy(shipped.path, tmp_path / shipped.file)
    shutil.copy(pretrained.WEIGHTS_DIR / f"{NAME}.json", tmp_path / f"{NAME}.json")
    raw = bytearray((tmp_path / shipped.file).read_bytes())
    raw[-100] ^= 1
    (tmp_path / shipped.file).write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256"):
        pretrained.get(NAME, tmp_path).state_dict()
    a = shipped.architecture
    other = GoogLeNet(num_classes=10, in_channels=1, variant="bn", image_size=96, aux_logits=a["aux_logits"])
    with pytest.raises(ValueError, match="image_size"):
        pretrained.load_into(other, NAME)
    with pytest.raises(ValueError, match="available"):
        pretrained.get("imagenet")


def test_export_writes_float16_weights_their_accuracy_and_an_entry(tmp_path: Path) -> None:
    require_fashion_mnist()
    cfg = T.TrainConfig(variant="bn", resolution=32, aux_weight=0.0, subset=64, val_size=32, batch_size=16, epochs=1,
                        lr=0.01, threads=1, out_dir=str(tmp_path / "run"), eval_subset=32)
    T.train(cfg, verbose=False, test=True)
    w = pretrained.export(tmp_path / "run", "tiny", out_dir=tmp_path / "w", test_n=64)
    again = pretrained.get("tiny", tmp_path / "w")
    assert again == w and w.meta["metrics"]["test_n"] == 64 and "test_top1_first_64" in w.meta["metrics"]
    model = pretrained.build_torch(again)
    trained, _ = T.load_checkpoint(tmp_path / "run" / T.LAST, weights=w.meta["weights"])
    for k, v in trained.state_dict().items():
        if v.is_floating_point():
            assert torch.equal(model.state_dict()[k], v.half().float()), k
    res = E.evaluate_model(model, cfg, "test", eval_subset=64)
    assert res.top1 == w.meta["metrics"]["test_top1"]

"""Tests for inception_lib.evaluate: metrics by hand, the paper's crops pixel for pixel, averaging of softmaxes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision  # noqa: F401  (torch and torchvision before anything that might import tensorflow)
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision.transforms.v2 import functional as TF

from inception_lib import evaluate as E

# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


class MeanPool(nn.Module):
    """Logits = per-channel mean of the image: invariant to crops of a constant image, and hand-computable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class TopLeftPixel(nn.Module):
    """Logits = the top-left pixel of each channel: a model that *does* depend on the crop."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, 0, 0]


def linear_model(seed: int, channels: int = 3, classes: int = 4, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, classes))


def constant_images(channel_values: list[list[float]], h: int, w: int) -> torch.Tensor:
    v = torch.tensor(channel_values, dtype=torch.float32)
    return v[:, :, None, None].expand(-1, -1, h, w).contiguous()


def torch_softmax(x: torch.Tensor) -> np.ndarray:
    return torch.softmax(x.double(), dim=1).numpy()


# Five images whose channel means (= MeanPool logits) are written out, with labels, for hand computation:
#   means      label  rank of label  top1  top2
#   [3, 1, 0]  0      0              yes   yes
#   [0, 2, 1]  2      1              no    yes
#   [1, 0, 5]  2      0              yes   yes
#   [4, 3, 0]  1      1              no    yes
#   [0, 1, 2]  0      2              no    no
# => top1 = 2/5 = 0.4, top2 = 4/5 = 0.8; argmax preds = [0, 1, 2, 0, 2]
# confusion (true, pred): (0,0) (2,1) (2,2) (1,0) (0,2) -> [[1,0,1],[1,0,0],[0,1,1]]; per class 1/2, 0/1, 1/2
MEANS = [[3, 1, 0], [0, 2, 1], [1, 0, 5], [4, 3, 0], [0, 1, 2]]
LABELS = [0, 2, 2, 1, 0]
CM_EXPECTED = np.array([[1, 0, 1], [1, 0, 0], [0, 1, 1]])


# --------------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------------

# 4 samples, 6 classes:
#   row 0: label 0 has the top score                          -> rank 0: top1 yes, top5 yes
#   row 1: scores 1..6, label 1 (score 2) beaten by 4 classes -> rank 4: top1 no,  top5 yes
#   row 2: scores 6..1, label 5 (score 1) beaten by 5 classes -> rank 5: top1 no,  top5 no
#   row 3: label 2 has the only nonzero score                 -> rank 0: top1 yes, top5 yes
SCORES = np.array(
    [[5, 1, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1], [0, 0, 9, 0, 0, 0]], dtype=np.float32
)
SCORE_LABELS = np.array([0, 1, 5, 2])


def test_topk_hand_example():
    assert E.topk_correct(SCORES, SCORE_LABELS, ks=(1, 2, 5, 6)) == {1: 2, 2: 2, 5: 3, 6: 4}
    acc = E.topk_accuracy(SCORES, SCORE_LABELS)
    assert acc == {1: 0.5, 5: 0.75}


def test_topk_accepts_torch_and_probabilities():
    logits = torch.from_numpy(SCORES)
    probs = torch.softmax(logits, dim=1)
    assert E.topk_accuracy(logits, torch.from_numpy(SCORE_LABELS)) == {1: 0.5, 5: 0.75}
    assert E.topk_accuracy(probs, SCORE_LABELS) == {1: 0.5, 5: 0.75}


def test_topk_ties_break_towards_lower_index():
    # a constant output must not count as correct for every class
    zeros = np.zeros((3, 4))
    assert E.topk_correct(zeros, [0, 1, 3], ks=(1, 2)) == {1: 1, 2: 2}


def test_topk_matches_torch_topk_without_ties():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 17, generator=g)
    labels = torch.randint(0, 17, (200,), generator=g)
    for k in (1, 3, 5):
        expected = (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).sum().item()
        assert E.topk_correct(logits, labels, ks=(k,))[k] == expected


def test_k_larger_than_num_classes_raises():
    with pytest.raises(ValueError, match="top-5 is undefined with only 3 classes"):
        E.topk_accuracy(np.zeros((2, 3)), [0, 1], ks=(1, 5))
    with pytest.raises(ValueError, match="k must be >= 1"):
        E.topk_correct(np.zeros((2, 3)), [0, 1], ks=(0,))
    with pytest.raises(ValueError, match="labels must lie in"):
        E.topk_correct(np.zeros((2, 3)), [0, 3], ks=(1,))


def test_confusion_matrix_and_per_class_accuracy_hand_example():
    preds = [0, 1, 1, 2, 2, 2]
    labels = [0, 1, 2, 2, 2, 0]
    # (true, pred) pairs: (0,0) (1,1) (2,1) (2,2) (2,2) (0,2); class 3 never occurs
    cm = E.confusion_matrix(preds, labels, num_classes=4)
    expected = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 1, 2, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(cm, expected)
    acc = E.per_class_accuracy(cm)
    np.testing.assert_allclose(acc[:3], [0.5, 1.0, 2 / 3])
    assert np.isnan(acc[3])
    # 2-D scores are reduced with argmax
    np.testing.assert_array_equal(E.confusion_matrix(np.eye(4)[preds], labels, 4), expected)
    with pytest.raises(ValueError, match="preds must lie in"):
        E.confusion_matrix([4], [0], 4)


def test_plot_confusion_matrix_normalizes_rows():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.array([[1, 3], [0, 2]])
    _fig, ax = E.plot_confusion_matrix(cm, ["a", "b"], title="t")
    np.testing.assert_allclose(ax.images[0].get_array(), [[0.25, 0.75], [0.0, 1.0]])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert len(ax.texts) == 4
    fig2, ax2 = plt.subplots()
    fig3, ax3 = E.plot_confusion_matrix(cm, ax=ax2, normalize=False)
    assert ax3 is ax2 and fig3 is fig2
    np.testing.assert_allclose(ax2.images[0].get_array(), cm)
    plt.close("all")


def test_softmax_and_ensemble_probs():
    a = np.array([[1.0, 2.0, 3.0]])
    b = np.array([[0.0, 0.0, 0.0]])
    np.testing.assert_allclose(E.softmax(a), torch_softmax(torch.tensor(a)))
    pa, pb = E.softmax(a), E.softmax(b)
    np.testing.assert_allclose(E.ensemble_probs([pa, pb]), (pa + pb) / 2)
    with pytest.raises(ValueError, match="same shape"):
        E.ensemble_probs([pa, np.zeros((2, 3))])
    with pytest.raises(ValueError, match="at least one"):
        E.ensemble_probs([])


# --------------------------------------------------------------------------------------------------
# crops
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def landscape() -> torch.Tensor:
    return torch.rand(3, 300, 400, generator=torch.Generator().manual_seed(1))


def test_resize_shorter_side_matches_torchvision(landscape):
    for size in (256, 352):
        ours = E.resize_shorter_side(landscape, size)
        theirs = TF.resize(landscape, [size], antialias=True)
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    portrait = landscape.transpose(1, 2).contiguous()
    assert E.resize_shorter_side(portrait, 256).shape == (3, 341, 256)
    u8 = (landscape * 255).to(torch.uint8)
    torch.testing.assert_close(E.resize_shorter_side(u8, 256), TF.resize(u8, [256], antialias=True), rtol=0, atol=0)


def test_ten_crops(landscape):
    crops = E.ten_crops(landscape, crop=224, resize=256)
    assert crops.shape == (10, 3, 224, 224)
    resized = TF.resize(landscape, [256], antialias=True)  # 3 x 256 x 341
    assert resized.shape == (3, 256, 341)
    assert torch.equal(crops[0], resized[:, :224, :224])
    assert torch.equal(crops[3], resized[:, 32:, 341 - 224 :])
    for ours, theirs in zip(crops[:5], TF.five_crop(resized, [224, 224])):
        assert torch.equal(ours, theirs)
    for i in range(5):
        assert torch.equal(crops[i + 5], crops[i].flip(-1))
    with pytest.raises(ValueError):
        E.ten_crops(landscape, crop=300, resize=256)


@pytest.mark.parametrize(("h", "w"), [(300, 400), (400, 300), (260, 260)])
def test_paper_144_crops_shapes(h, w):
    img = torch.rand(3, h, w, generator=torch.Generator().manual_seed(2))
    assert E.paper_144_crops(img).shape == (144, 3, 224, 224)
    # 3 squares x 6 crops x 2 mirrors = 36 per scale
    assert E.paper_144_crops(img, scales=(256,)).shape[0] == 36
    assert E.paper_144_crops(img, scales=(256, 320)).shape[0] == 72


def test_paper_144_crops_known_answers_landscape(landscape):
    crops = E.paper_144_crops(landscape)
    resized = TF.resize(landscape, [256], antialias=True)  # 3 x 256 x 341

    def idx(scale: int, square: int, mirrored: int, c: int) -> int:
        return ((scale * 3 + square) * 2 + mirrored) * 6 + c

    left = resized[:, :, :256]
    right = resized[:, :, 341 - 256 :]
    # crop 5 of a square is the whole square resized to 224 x 224
    torch.testing.assert_close(crops[idx(0, 0, 0, 5)], TF.resize(left, [224, 224], antialias=True), rtol=0, atol=0)
    assert torch.equal(crops[idx(0, 0, 0, 0)], left[:, :224, :224])  # top-left of the left square
    assert torch.equal(crops[idx(0, 2, 0, 1)], right[:, :224, 256 - 224 :])  # top-right of the right square
    assert torch.equal(crops[idx(0, 0, 0, 4)], left[:, 16:240, 16:240])  # centre
    # mirrors follow their originals in the same order
    for c in range(6):
        assert torch.equal(crops[idx(0, 1, 1, c)], crops[idx(0, 1, 0, c)].flip(-1))
    # the last scale, 352: shorter side 352, long side int(352 * 400 / 300) = 469
    r352 = TF.resize(landscape, [352], antialias=True)
    assert r352.shape == (3, 352, 469)
    assert torch.equal(crops[idx(3, 2, 0, 3)], r352[:, 128:, 469 - 224 :])  # bottom-right of the right square


def test_paper_144_crops_portrait_and_square():
    portrait = torch.rand(3, 400, 300, generator=torch.Generator().manual_seed(3))
    crops = E.paper_144_crops(portrait, scales=(256,))
    resized = TF.resize(portrait, [256], antialias=True)  # 3 x 341 x 256
    top, bottom = resized[:, :256], resized[:, 341 - 256 :]
    torch.testing.assert_close(crops[5], TF.resize(top, [224, 224], antialias=True), rtol=0, atol=0)
    assert torch.equal(crops[24], bottom[:, :224, :224])  # square 2 (bottom), unmirrored, top-left
    square = torch.rand(3, 260, 260, generator=torch.Generator().manual_seed(4))
    sc = E.paper_144_crops(square, scales=(256,))
    assert torch.equal(sc[:12], sc[12:24]) and torch.equal(sc[:12], sc[24:36])
    with pytest.raises(ValueError, match="smaller than the crop"):
        E.paper_144_crops(square, scales=(200,))


def test_make_crops_schemes(landscape):
    assert E.make_crops(landscape, "1").shape == (1, 3, 300, 400)
    centre = E.make_crops(landscape, "center")
    assert torch.equal(centre[0], TF.center_crop(TF.resize(landscape, [256], antialias=True), [224, 224]))
    assert E.make_crops(landscape, 10).shape[0] == 10
    assert E.make_crops(landscape, 144, scales=(256,)).shape[0] == 36
    with pytest.raises(ValueError, match="unknown crop scheme"):
        E.make_crops(landscape, "12")


# --------------------------------------------------------------------------------------------------
# prediction, evaluation, ensembles
# --------------------------------------------------------------------------------------------------


def test_multi_crop_softmax_average_known_answer(landscape):
    # A crop-dependent model: averaging must be of softmaxes (the paper), not of logits.
    batch = landscape[None]
    probs = E.multi_crop_predict(TopLeftPixel(), batch, "10")
    crops = E.ten_crops(landscape)
    expected = torch_softmax(crops[:, :, 0, 0]).mean(axis=0, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-6)
    logit_avg = torch_softmax(crops[:, :, 0, 0].mean(0, keepdim=True))
    assert not np.allclose(probs, logit_avg)


@pytest.mark.parametrize("scheme", ["center", "10", "144"])
def test_multi_crop_invariant_model_equals_single_crop(scheme):
    model = linear_model(seed=0)
    raw = constant_images([[0.1, 0.5, -0.3], [1.0, -1.0, 0.2]], 240, 300)  # constant: every crop is the same
    single = E.multi_crop_predict(model, raw[:, :, :224, :224], "1")
    multi = E.multi_crop_predict(model, list(raw), scheme, chunk_size=50)
    assert multi.shape == (2, 4)
    np.testing.assert_allclose(multi, single, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(multi.sum(axis=1), 1.0)


def test_multi_crop_uses_eval_mode_and_restores_training():
    model = linear_model(seed=0, dropout=0.9)
    model.train()
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    p1 = E.multi_crop_predict(model, x, "1")
    p2 = E.multi_crop_predict(model, x, "1", chunk_size=1)
    np.testing.assert_allclose(p1, p2, rtol=1e-6)  # dropout off: deterministic, chunking irrelevant
    model.eval()
    np.testing.assert_allclose(p1, torch_softmax(model(x).detach()), rtol=1e-6)
    model.train()
    E.multi_crop_predict(model, x, "1")
    assert model.training


def test_evaluate_hand_computation():
    images = constant_images(MEANS, 6, 6)
    loader = DataLoader(TensorDataset(images, torch.tensor(LABELS)), batch_size=2)
    result = E.evaluate(MeanPool(), loader, ks=(1, 2))
    assert result.n == 5
    assert result.top1 == pytest.approx(0.4)
    assert result.topk == {1: pytest.approx(0.4), 2: pytest.approx(0.8)}
    assert result.top5 is None and result.top5_error is None
    assert result.top1_error == pytest.approx(0.6)
    np.testing.assert_array_equal(result.confusion_matrix, CM_EXPECTED)
    np.testing.assert_allclose(result.per_class_accuracy, [0.5, 0.0, 0.5])
    d = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert d["n"] == 5 and d["confusion_matrix"] == CM_EXPECTED.tolist() and d["cost"] == 1
    with pytest.raises(ValueError, match="top-5 is undefined"):
        E.evaluate(MeanPool(), loader)  # default ks=(1, 5) with 3 classes
    with pytest.raises(ValueError, match="expected num_classes=4"):
        E.evaluate(MeanPool(), loader, ks=(1,), num_classes=4)


def test_evaluate_multi_crop_raw_resolution_lists():
    # raw images of different sizes, collated as lists; constant images so every crop gives the same answer
    sizes = [(230, 300), (300, 230), (256, 256), (240, 400), (250, 250)]
    images = [constant_images([m], h, w)[0] for m, (h, w) in zip(MEANS, sizes)]
    dataset = list(zip(images, LABELS))
    loader = DataLoader(dataset, batch_size=2, collate_fn=E.list_collate)
    result = E.evaluate(MeanPool(), loader, crops="10", ks=(1, 2))
    assert result.top1 == pytest.approx(0.4) and result.topk[2] == pytest.approx(0.8)
    np.testing.assert_array_equal(result.confusion_matrix, CM_EXPECTED)
    assert result.crops == "10" and result.cost == 10


def test_evaluate_channels_last_callable():
    # a Keras-style model: a plain callable on NHWC numpy returning logits
    images = constant_images(MEANS, 6, 6).permute(0, 2, 3, 1).numpy()

    def nhwc_model(x: np.ndarray) -> np.ndarray:
        assert isinstance(x, np.ndarray) and x.shape[-1] == 3
        return x.mean(axis=(1, 2))

    loader = [(images[:3], np.array(LABELS[:3])), (images[3:], np.array(LABELS[3:]))]
    result = E.evaluate(nhwc_model, loader, ks=(1, 2), channels_last=True)
    assert result.top1 == pytest.approx(0.4)
    np.testing.assert_array_equal(result.confusion_matrix, CM_EXPECTED)


def test_ensemble_of_two_models_averages_softmaxes():
    m1, m2 = linear_model(seed=1), linear_model(seed=2)
    x = torch.rand(6, 3, 5, 5, generator=torch.Generator().manual_seed(6))
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    with torch.no_grad():
        expected = (torch_softmax(m1(x)) + torch_softmax(m2(x))) / 2
    p = E.ensemble_probs([E.multi_crop_predict(m1, x), E.multi_crop_predict(m2, x)])
    np.testing.assert_allclose(p, expected, rtol=1e-6)

    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    result = E.evaluate_ensemble([m1, m2], loader, ks=(1, 2))
    hand = E.topk_accuracy(expected, y.numpy(), ks=(1, 2))
    assert result.topk == pytest.approx(hand)
    assert result.num_models == 2 and result.cost == 2
    assert len(result.members) == 2
    assert result.members[0].topk == pytest.approx(E.evaluate(m1, loader, ks=(1, 2)).topk)
    assert "members" in result.to_dict()


def test_importing_evaluate_imports_no_framework():
    code = (
        "import sys, inception_lib; before = set(sys.modules); import inception_lib.evaluate; "
        "new = set(sys.modules) - before; "
        "bad = sorted(m for m in new if m.split('.')[0] in ('torch', 'torchvision', 'tensorflow', 'keras')); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

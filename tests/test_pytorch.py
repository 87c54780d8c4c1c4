"""The PyTorch GoogLeNet: exact counts, Table 1 shapes, FLOPs, train/eval outputs, clear errors."""

from pathlib import Path

import pytest
import torch
import torchvision
from paper_values import TABLE1_OUTPUT
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from inception_lib import arithmetic as A
from inception_lib import spec
from inception_lib.pytorch import GoogLeNet, GoogLeNetOutputs, InceptionAux, InceptionModule

VARIANTS = ["paper", "bn", "torchvision"]


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("aux", [False, True])
@pytest.mark.parametrize("classes", [1000, 10])
def test_param_counts_equal_arithmetic(variant, aux, classes):
    m = GoogLeNet(classes, aux, variant, init_weights=False)
    assert n_params(m) == A.count_params(variant, classes, aux)


def test_param_counts_literal_and_torchvision():
    assert n_params(GoogLeNet(1000, False, "paper", init_weights=False)) == 6_998_552
    assert n_params(GoogLeNet(1000, True, "paper", init_weights=False)) == 13_378_280
    assert n_params(GoogLeNet(10, True, "paper", init_weights=False)) == 10_334_030
    for aux, expected in [(False, 6_624_904), (True, 13_004_888)]:
        ours = GoogLeNet(1000, aux, "torchvision", init_weights=False)
        tv = torchvision.models.googlenet(weights=None, aux_logits=aux, init_weights=False)
        assert n_params(ours) == n_params(tv) == expected


@pytest.mark.parametrize("variant", VARIANTS)
def test_block_shapes_at_224_equal_table1(variant):
    m = GoogLeNet(1000, False, variant, init_weights=False).eval()
    with torch.no_grad():
        feats = m.features(torch.zeros(1, 3, 224, 224))
    for name, (h, w, c) in TABLE1_OUTPUT.items():
        if name in feats:
            assert tuple(feats[name].shape[1:]) == (c, h, w), name
    assert tuple(feats["conv2"].shape[1:]) == (192, 56, 56)
    assert tuple(feats["inception_5b"].shape[1:]) == (1024, 7, 7)


@pytest.mark.parametrize("variant,size", [("paper", 96), ("bn", 96), ("torchvision", 96), ("paper", 31), ("torchvision", 15)])
def test_shapes_at_small_sizes_match_arithmetic(variant, size):
    m = GoogLeNet(10, False, variant, in_channels=1, init_weights=False).eval()
    with torch.no_grad():
        feats = m.features(torch.zeros(2, 1, size, size))
        logits = m(torch.zeros(2, 1, size, size))
    expected = A.shapes(variant, size, in_channels=1)
    for name, t in feats.items():
        h, w, c = expected[name]
        assert tuple(t.shape[1:]) == (c, h, w), name
    assert logits.shape == (2, 10)
    if size == 96:  # d2l's 96x96 shapes: 192x12x12 after pool2, 480x6x6 after pool3, 1024x3x3 at the end
        assert tuple(feats["pool2"].shape[1:]) == (192, 12, 12)
        assert tuple(feats["pool3"].shape[1:]) == (480, 6, 6)
        assert tuple(feats["inception_5b"].shape[1:]) == (1024, 3, 3)


def _flops_by_module(model, x):
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_flop_counts()


@pytest.mark.parametrize("variant", ["paper", "torchvision"])
def test_macs_equal_flop_counter(variant):
    m = GoogLeNet(1000, False, variant, init_weights=False).eval()
    counts = _flops_by_module(m, torch.zeros(1, 3, 224, 224))
    total = sum(counts["Global"].values())
    assert total == 2 * A.count_macs(variant)
    rows = {r.name: r for r in A.trace(variant, 224)}
    for block in spec.INCEPTION_BLOCKS + (spec.layer("conv1"), spec.layer("conv2")):
        key = f"GoogLeNet.{block.name}"
        assert sum(counts[key].values()) == 2 * rows[block.name].macs, block.name
    assert sum(counts["GoogLeNet.fc"].values()) == 2 * 1024 * 1000


def test_train_mode_returns_three_heads_eval_returns_logits():
    torch.manual_seed(0)
    m = GoogLeNet(10, True, "paper", in_channels=1, image_size=96)
    x = torch.randn(2, 1, 96, 96)
    m.train()
    out = m(x)
    assert isinstance(out, GoogLeNetOutputs)
    assert out.logits.shape == out.aux1.shape == out.aux2.shape == (2, 10)
    m.eval()
    y = m(x)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 10)
    assert torch.equal(y, m(x))  # dropout off in eval: deterministic
    no_aux = GoogLeNet(10, False, "bn", in_channels=1).train()
    out = no_aux(x)  # a plain tensor, as torchvision's: cross_entropy(model(x), y) works in training
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)


def test_aux_heads_are_not_run_in_eval():
    m = GoogLeNet(10, True, "bn", in_channels=1, image_size=96).eval()
    calls = []
    m.aux1.register_forward_hook(lambda *a: calls.append(1))
    m(torch.zeros(1, 1, 96, 96))
    assert calls == []


def test_building_blocks():
    block = spec.layer("inception_3a")
    mod = InceptionModule.from_spec(192, block)
    assert mod(torch.zeros(1, 192, 28, 28)).shape == (1, 256, 28, 28)
    assert n_params(mod) == sum(A.inception_weights(192, block).values()) + 64 + 96 + 128 + 16 + 32 + 32
    tv_like = InceptionModule.from_spec(192, block, "torchvision")
    assert tv_like.conv5x5.conv.kernel_size == (3, 3)
    aux = InceptionAux(512, 1000)
    assert n_params(aux) == 3_188_840
    assert aux(torch.zeros(1, 512, 14, 14)).shape == (1, 1000)


def test_dropout_and_variant_overrides():
    m = GoogLeNet(10, True, "paper", dropout=0.2, aux_dropout=0.5, init_weights=False)
    assert m.dropout.p == 0.2 and m.aux1.dropout.p == 0.5
    assert GoogLeNet(10, False, "torchvision", init_weights=False).dropout.p == 0.2
    assert GoogLeNet(10, False, "paper", init_weights=False).dropout.p == 0.4


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(variant="inception_v3"), "unknown variant 'inception_v3'"),
        (dict(num_classes=0), "num_classes must be a positive integer"),
        (dict(in_channels=0), "in_channels must be a positive integer"),
        (dict(in_channels=1, transform_input=True), "transform_input .* in_channels=3"),
        (dict(aux_logits=True, image_size=46), "aux_pool='adaptive4x4'"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GoogLeNet(**kwargs)


def test_input_errors_are_clear():
    m = GoogLeNet(10, False, "paper", in_channels=1, init_weights=False).eval()
    with pytest.raises(ValueError, match="minimum is 31x31"):
        m(torch.zeros(1, 1, 30, 30))
    with pytest.raises(ValueError, match="takes 1 input channel"):
        m(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="channels-last"):
        m(torch.zeros(1, 64, 64, 1))
    with pytest.raises(ValueError, match="N x C x H x W"):
        m(torch.zeros(1, 64, 64))
    aux = GoogLeNet(10, True, "paper", in_channels=1, image_size=224, init_weights=False).train()
    with pytest.raises(ValueError, match="built for 224x224"):
        aux(torch.zeros(2, 1, 96, 96))
    aux.eval()
    assert aux(torch.zeros(1, 1, 96, 96)).shape == (1, 10)  # eval mode: aux heads not used, any size works


def test_init_per_variant():
    torch.manual_seed(0)
    paper = GoogLeNet(1000, False, "paper")
    bound = (3.0 / (3 * 7 * 7)) ** 0.5  # Caffe "xavier": U(-sqrt(3/fan_in), +)
    w = paper.conv1.conv.weight
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert torch.all(paper.conv1.conv.bias == 0.2)
    paper_aux = GoogLeNet(10, True, "paper", image_size=96)
    for head in (paper_aux.aux1, paper_aux.aux2):  # BVLC's loss1/fc, loss2/fc: bias 0.2; the classifiers 0
        assert torch.all(head.fc1.bias == 0.2) and torch.all(head.fc2.bias == 0)
    assert torch.all(paper_aux.fc.bias == 0)
    tv = GoogLeNet(1000, False, "torchvision")
    assert abs(tv.fc.weight.std().item() - 0.01) < 0.001
    bn = GoogLeNet(1000, False, "bn")
    assert torch.all(bn.conv1.bn.weight == 1) and bn.conv1.conv.bias is None


def test_cpu_fast_paths_match_under_torch_func() -> None:
    """The fast max pool and LRN run under vmap / grad (public APIs only, no private torch checks) and match."""
    from inception_lib.pytorch import FastLocalResponseNorm, FastMaxPool2d

    x = torch.randn(3, 2, 16, 9, 9).round(decimals=1)  # rounded: ties inside the pooling windows
    for fast, ref in ((FastMaxPool2d(3, 2, ceil_mode=True), nn.MaxPool2d(3, 2, ceil_mode=True)),
                      (FastLocalResponseNorm(5, 1e-4, 0.75, 1.0), nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0))):
        assert torch.equal(torch.func.vmap(fast)(x), torch.func.vmap(ref)(x))
        grads = [torch.func.grad(lambda z, m=m: (m(z) * z.mean()).sum())(x[0]) for m in (fast, ref)]
        assert torch.equal(*grads)
    source = (Path(__file__).parents[1] / "inception_lib" / "pytorch.py").read_text()
    assert "torch._C" not in source

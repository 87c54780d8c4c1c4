"""Exact weight conversion: PyTorch <-> Keras for every variant, torchvision -> inception_lib."""

import numpy as np
import pytest
import torch
import torchvision
from helpers import assert_close

from inception_lib.convert import from_torchvision, keras_to_torch, torch_to_keras, torchvision_key_map
from inception_lib.pytorch import GoogLeNet


def nontrivial(model: GoogLeNet, size: int, seed: int = 0) -> GoogLeNet:
    """Random weights with real BatchNorm statistics (one calibration pass), then random scale/shift.

    Logits then have magnitude ~1-20, so the comparisons below check every output, not only its noise.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None  # cumulative average over the calibration batch
        model.train()
        model(torch.randn(4, model.in_channels, size, size, generator=g))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.2, 0.2, generator=g)
    return model.eval()


def to_nhwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).numpy()


CASES = [(v, s) for v in ("paper", "bn", "torchvision") for s in (224, 96)] + [("paper", 240)]  # 240: ceil pooling matters

KERAS_VS_TORCH_RTOL = 1e-4
"""Keras (TF/oneDNN) vs PyTorch on the same weights: two frameworks' float32 kernels. Observed max |diff| / max |logit|
on a 2-core AVX2 machine 4e-7 - 2.8e-6 over the cases here; 2.6e-6 on a Xeon with AVX-512/AMX (1.3e-4 on logits of
~50, where an absolute 1e-4 failed). The error grows with the logits' scale, so the tolerance is relative to it."""

TORCH_VS_TORCH_RTOL = 1e-5
"""inception_lib vs torchvision modules, same weights, same PyTorch kernels: observed 0 (bit-identical) here; the
bound leaves room for a kernel chosen differently (float32 reordering, ~1e-6 relative)."""


@pytest.mark.parametrize("variant,size", CASES)
def test_torch_to_keras_and_back_same_logits(variant, size):
    torch.manual_seed(0)
    t = nontrivial(GoogLeNet(10, True, variant, image_size=size), size)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    k = torch_to_keras(t)
    with torch.no_grad():
        ref = t(x).numpy()
        feats = t.features(x)
        aux = [t.aux1(feats["inception_4a"]).numpy(), t.aux2(feats["inception_4d"]).numpy()]
    assert np.abs(ref).max() > 0.1  # the check below is not trivially satisfied
    out = [o.numpy() for o in k(to_nhwc(x), training=False)]
    assert_close(out[0], ref, KERAS_VS_TORCH_RTOL, "logits")
    assert_close(out[1], aux[0], KERAS_VS_TORCH_RTOL, "aux1 logits")  # aux heads too (flatten order permuted)
    assert_close(out[2], aux[1], KERAS_VS_TORCH_RTOL, "aux2 logits")
    back = keras_to_torch(k).eval()
    for (name, a), (_, b) in zip(t.state_dict().items(), back.state_dict().items()):
        if not name.endswith("num_batches_tracked"):  # a counter, not a weight: Keras has none
            assert torch.equal(a, b), name


def test_keras_to_torch_from_keras_weights():
    import keras

    from inception_lib.keras import GoogLeNet as KGoogLeNet

    keras.utils.set_random_seed(0)  # Keras initialisers draw from the global seed: unseeded, new weights every run
    k = KGoogLeNet(10, True, "bn", input_shape=(96, 96, 1))
    t = keras_to_torch(k).eval()
    x = torch.randn(2, 1, 96, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = t(x).numpy()
    assert np.abs(ref).max() > 1  # logits of ~35 (seed 0): an absolute tolerance would depend on this scale
    assert_close(k(to_nhwc(x), training=False)[0], ref, KERAS_VS_TORCH_RTOL, "logits")


def test_architecture_mismatch_is_refused():
    from inception_lib.keras import GoogLeNet as KGoogLeNet

    t = GoogLeNet(10, False, "paper", init_weights=False)
    with pytest.raises(ValueError, match="architectures differ"):
        torch_to_keras(t, KGoogLeNet(10, False, "bn"))


@pytest.mark.parametrize("transform_input", [False, True])
def test_from_torchvision_reproduces_outputs(transform_input):
    torch.manual_seed(0)
    tv = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True, transform_input=transform_input)
    nontrivial_bn = tv
    with torch.no_grad():
        for m in nontrivial_bn.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    tv.eval()
    ours = from_torchvision(tv).eval()
    assert ours.variant.transform_input is transform_input
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert_close(ours(x), tv(x), TORCH_VS_TORCH_RTOL, "eval logits")
    # and the same through a bare state_dict (as loaded with torch.load(..., weights_only=True))
    ours2 = from_torchvision(tv.state_dict(), transform_input=transform_input).eval()
    with torch.no_grad():
        assert_close(ours2(x), tv(x), TORCH_VS_TORCH_RTOL, "eval logits (state_dict)")
    # the torchvision training-mode outputs (aux heads) agree too
    tv.train()
    ours.train()
    torch.manual_seed(5)
    a = tv(x)
    torch.manual_seed(5)
    b = ours(x)
    assert_close(b.logits, a.logits, TORCH_VS_TORCH_RTOL, "train logits")
    assert_close(b.aux1, a.aux_logits1, TORCH_VS_TORCH_RTOL, "train aux1 logits")
    assert_close(b.aux2, a.aux_logits2, TORCH_VS_TORCH_RTOL, "train aux2 logits")


def test_from_torchvision_rejects_other_checkpoints():
    state = GoogLeNet(10, False, "paper", init_weights=False).state_dict()
    with pytest.raises(ValueError, match="does not look like a torchvision GoogLeNet"):
        from_torchvision(state)
    with pytest.raises(KeyError, match="unexpected key"):
        torchvision_key_map("features.0.weight")

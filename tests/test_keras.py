"""The Keras 3 GoogLeNet: exact counts equal to PyTorch's, Table 1 shapes, clear errors."""

import numpy as np
import pytest
import torch  # noqa: F401  (torch before tensorflow)
from helpers import assert_close
from paper_values import TABLE1_OUTPUT

from inception_lib import arithmetic as A
from inception_lib import spec
from inception_lib.keras import CeilAvgPool2D, CeilMaxPool2D, GoogLeNet, LocalResponseNorm, inference_model
from inception_lib.pytorch import GoogLeNet as TorchGoogLeNet


def trainable(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.parametrize("variant", ["paper", "bn", "torchvision"])
@pytest.mark.parametrize("aux", [False, True])
@pytest.mark.parametrize("classes", [1000, 10])
def test_param_counts_equal_pytorch_and_arithmetic(variant, aux, classes):
    k = GoogLeNet(classes, aux, variant)
    t = TorchGoogLeNet(classes, aux, variant, init_weights=False)
    expected = A.count_params(variant, classes, aux)
    assert trainable(k) == sum(p.numel() for p in t.parameters()) == expected


def test_literal_counts():
    assert trainable(GoogLeNet(1000, False, "paper")) == 6_998_552
    assert trainable(GoogLeNet(1000, True, "paper")) == 13_378_280
    assert trainable(GoogLeNet(10, True, "paper")) == 10_334_030
    assert trainable(GoogLeNet(1000, False, "torchvision")) == 6_624_904
    assert trainable(GoogLeNet(1000, True, "torchvision")) == 13_004_888


@pytest.mark.parametrize("variant", ["paper", "torchvision"])
def test_block_shapes_at_224_equal_table1(variant):
    k = GoogLeNet(1000, True, variant)
    for name, (h, w, c) in TABLE1_OUTPUT.items():
        if name in ("conv2", "fc") or name.startswith("pool5"):
            continue
        layer = k.get_layer(name if not name.startswith("conv") else f"{name}_relu")
        assert tuple(layer.output.shape[1:]) == (h, w, c), name
    assert tuple(k.get_layer("conv2_relu").output.shape[1:]) == (56, 56, 192)
    assert tuple(k.get_layer("aux1_pool").output.shape[1:]) == (4, 4, 512)
    assert tuple(k.get_layer("aux2_pool").output.shape[1:]) == (4, 4, 528)
    assert [tuple(o.shape) for o in k.outputs] == [(None, 1000)] * 3


@pytest.mark.parametrize("variant,size", [("paper", 96), ("bn", 96), ("torchvision", 96), ("paper", 31), ("torchvision", 15)])
def test_shapes_at_small_sizes(variant, size):
    k = GoogLeNet(10, False, variant, input_shape=(size, size, 1))
    expected = A.shapes(variant, size, in_channels=1)
    for name in [b.name for b in spec.INCEPTION_BLOCKS] + ["pool1", "pool2", "pool3", "pool4"]:
        assert tuple(k.get_layer(name).output.shape[1:]) == expected[name], name
    y = k(np.zeros((2, size, size, 1), "float32"), training=False)
    assert tuple(y.shape) == (2, 10)


def test_outputs_and_inference_model():
    import keras

    keras.utils.set_random_seed(0)
    k = GoogLeNet(10, True, "paper", input_shape=(96, 96, 1))
    assert k.output_names == ["fc", "aux1_fc2", "aux2_fc2"]
    x = np.random.default_rng(0).random((2, 96, 96, 1), dtype=np.float32)
    logits, aux1, aux2 = k(x, training=True)
    assert logits.shape == aux1.shape == aux2.shape == (2, 10)
    infer = inference_model(k)
    assert len(infer.outputs) == 1
    assert_close(infer(x, training=False).numpy(), k(x, training=False)[0].numpy(), rtol=1e-6, what="inference model")
    assert "aux1_fc1" not in [layer.name for layer in infer.layers]


@pytest.mark.parametrize("pooling", [None, "avg", "max"])
def test_include_top_false_gives_the_features_of_5b(pooling):
    """As keras.applications: no classifier; the 5b map, or its global average / max. Same values as PyTorch's."""
    from inception_lib import convert

    torch.manual_seed(0)
    t = TorchGoogLeNet(10, aux_logits=False, variant="bn", in_channels=1, image_size=64).eval()
    k = convert.torch_to_keras(t)
    features = GoogLeNet(10, variant="bn", input_shape=(64, 64, 1), include_top=False, pooling=pooling)
    assert not any(name.startswith(("aux", "fc")) for name in (layer.name for layer in features.layers))
    features.set_weights([w for layer in k.layers if layer.name in {f.name for f in features.layers}
                          for w in layer.get_weights()])
    x = np.random.default_rng(0).random((2, 64, 64, 1), dtype=np.float32)
    with torch.no_grad():
        ref = t.features(torch.from_numpy(x.transpose(0, 3, 1, 2)))["inception_5b"].numpy().transpose(0, 2, 3, 1)
    ref = {None: ref, "avg": ref.mean(axis=(1, 2)), "max": ref.max(axis=(1, 2))}[pooling]
    out = np.asarray(features(x, training=False))
    assert out.shape == ref.shape == ((2, 2, 2, 1024) if pooling is None else (2, 1024))
    assert_close(out, ref, rtol=1e-5, what=f"features, pooling={pooling}")  # observed ~1e-7


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(variant="v3"), "unknown variant 'v3'"),
        (dict(num_classes=0), "num_classes must be a positive integer"),
        (dict(input_shape=(30, 30, 3), aux_logits=False), "minimum is 31x31"),
        (dict(input_shape=(3, 224, 224)), "channels-first"),
        (dict(input_shape=(None, None, 3)), "fixed height and width"),
        (dict(input_shape=(224, 224)), r"\(height, width, channels\)"),
        (dict(input_shape=(46, 46, 3), aux_logits=True), "aux_pool='adaptive4x4'"),
        (dict(input_shape=(224, 224, 1), variant="torchvision", transform_input=True), "3 input channels"),
        (dict(include_top=False, pooling="mean"), "pooling must be None, 'avg' or 'max'"),
        (dict(pooling="avg"), "applies only with include_top=False"),
    ],
)
def test_errors_are_clear(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GoogLeNet(**kwargs)


def test_custom_layers_match_pytorch():
    x = np.random.default_rng(1).random((2, 9, 9, 12), dtype=np.float32)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    lrn = LocalResponseNorm(5, 1e-2, 0.75, 1.0)(x).numpy()  # large alpha so the test can fail
    ref = torch.nn.LocalResponseNorm(5, 1e-2, 0.75, 1.0)(xt).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(lrn, ref, rtol=1e-5, atol=1e-6)
    pool = CeilMaxPool2D(3, 2)(x - 0.5).numpy()
    ref = torch.nn.MaxPool2d(3, 2, ceil_mode=True)(xt - 0.5).permute(0, 2, 3, 1).numpy()
    assert pool.shape == ref.shape == (2, 4, 4, 12)
    np.testing.assert_array_equal(pool, ref)
    for size, out in ((9, 3), (6, 2), (15, 5), (14, 4)):  # the aux heads' 5x5/3 average pool, Caffe's ceil rounding
        xs = np.random.default_rng(size).random((2, size, size, 3), dtype=np.float32)
        avg = CeilAvgPool2D(5, 3)(xs).numpy()
        ref = torch.nn.AvgPool2d(5, 3, ceil_mode=True)(torch.from_numpy(xs).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
        assert avg.shape == ref.shape == (2, out, out, 3)
        np.testing.assert_allclose(avg, ref, rtol=1e-5)  # values in [0, 1): relative to their scale


def test_keras_model_saves_and_loads(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    k = GoogLeNet(10, True, "torchvision", input_shape=(32, 32, 1))
    path = tmp_path / "m.keras"
    k.save(path)
    k2 = keras.models.load_model(path)
    x = np.random.default_rng(0).random((1, 32, 32, 1), dtype=np.float32)
    assert_close(k2(x, training=False)[0].numpy(), k(x, training=False)[0].numpy(), rtol=1e-6, what="reloaded model")


@pytest.mark.parametrize("variant,kw", [("paper", {}), ("bn", {"dropout": 0.3}), ("torchvision", {})])
def test_architecture_is_read_from_the_layers(variant, kw):
    from inception_lib.keras import architecture

    arch = architecture(GoogLeNet(7, True, variant, input_shape=(96, 96, 1), **kw))
    assert arch == {"variant": spec.get_variant(variant, **kw), "num_classes": 7, "aux_logits": True,
                    "in_channels": 1, "image_size": (96, 96)}
    assert architecture(GoogLeNet(7, False, variant, input_shape=(96, 96, 3)))["aux_logits"] is False
    with pytest.raises(ValueError, match="not a GoogLeNet classifier"):
        architecture(GoogLeNet(7, False, variant, input_shape=(96, 96, 1), include_top=False))


def test_reloaded_model_converts_with_its_architecture_checked(tmp_path):
    """After save / load_model the architecture is still known: conversion builds the right PyTorch model,
    and refuses a PyTorch model of another architecture."""
    import keras

    from inception_lib import convert
    from inception_lib.keras import architecture

    keras.utils.set_random_seed(0)
    k = GoogLeNet(10, True, "bn", input_shape=(64, 64, 1))
    k.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert architecture(loaded) == architecture(k)
    t = convert.keras_to_torch(loaded).eval()
    assert (t.variant, t.num_classes, t.in_channels, t.aux_logits) == (spec.VARIANTS["bn"], 10, 1, True)
    x = np.random.default_rng(0).random((2, 64, 64, 1), dtype=np.float32)
    with torch.no_grad():
        y = t(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    assert_close(y, loaded(x, training=False)[0].numpy(), 1e-4, "reloaded Keras vs converted PyTorch")
    with pytest.raises(ValueError, match="architectures differ"):
        convert.keras_to_torch(loaded, TorchGoogLeNet(10, True, "torchvision", in_channels=1, image_size=64))

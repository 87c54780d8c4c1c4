"""GoogLeNet in Keras 3 (functional API, channels_last), built from :mod:`inception_lib.spec`.

Layer names match the PyTorch module paths with ``.`` replaced by ``_`` (``conv1``,
``inception_3a_conv3x3_reduce``, ``aux1_fc1``, ``fc`` ...), and every BatchNorm is ``<conv>_bn``.

Import torch (if you use it) *before* this module: tensorflow imported first aborts torchvision.

>>> model = GoogLeNet(num_classes=10, aux_logits=True, variant="bn", input_shape=(96, 96, 1))  # doctest: +SKIP
>>> logits, aux1, aux2 = model(x, training=True)
>>> infer = inference_model(model)       # main head only, for predict()
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence, Union

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402

from inception_lib import arithmetic, spec  # noqa: E402
from inception_lib.spec import LRN, Conv, Inception, MaxPool, Variant  # noqa: E402

__all__ = ["GoogLeNet", "architecture", "inference_model", "from_pretrained", "conv_unit", "inception_module", "aux_head",
           "LocalResponseNorm", "CeilMaxPool2D", "AdaptiveAvgPool2D", "TransformInput"]


# ---------------------------------------------------------------------------------------------
# Layers Keras does not ship with PyTorch's semantics
# ---------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="inception_lib")
class LocalResponseNorm(layers.Layer):
    """LRN across channels, PyTorch / Caffe convention: a / (k + alpha/size * sum a^2) ** beta.

    (TF's ``tf.nn.local_response_normalization`` takes a radius and an alpha *not* divided by size.)

    Computed in the layer's compute dtype (float32, float64), except under the mixed float16 / bfloat16
    policies: there the squares, window sums and power are taken in float32 (a float16 square overflows above
    256; ``1 + alpha/size * sum`` needs more than bfloat16's 8 bits), as PyTorch's autocast does, and the
    result is cast back to the compute dtype.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def call(self, x):
        dtype = keras.backend.standardize_dtype(x.dtype)
        low = dtype in ("float16", "bfloat16")
        if low:
            x = ops.cast(x, "float32")
        sq = ops.square(x)
        before, after = self.size // 2, (self.size - 1) // 2
        padded = ops.pad(sq, [[0, 0], [0, 0], [0, 0], [before, after]])
        channels = x.shape[-1]
        window = padded[..., 0:channels]
        for i in range(1, self.size):
            window = window + padded[..., i:i + channels]
        out = x / ops.power(self.k + (self.alpha / self.size) * window, self.beta)
        return ops.cast(out, dtype) if low else out

    def get_config(self) -> dict:
        return {**super().get_config(), "size": self.size, "alpha": self.alpha, "beta": self.beta, "k": self.k}


def _ceil_pads(h: int, w: int, kernel: int, stride: int) -> tuple[int, int]:
    """Bottom / right padding that makes "valid" pooling give Caffe's ceil-mode output size."""
    oh, ow = (arithmetic.pool_output_size(s, kernel, stride) for s in (h, w))
    return max(0, (oh - 1) * stride + kernel - h), max(0, (ow - 1) * stride + kernel - w)


@keras.saving.register_keras_serializable(package="inception_lib")
class CeilMaxPool2D(layers.Layer):
    """Max pooling that rounds the output size up (Caffe / PyTorch ``ceil_mode=True``).

    Keras has no ceil mode; padding the bottom/right with -inf and pooling "valid" gives the same
    windows, so 112 -> 56 as in Table 1 (plain "valid" would give 55).
    """

    def __init__(self, pool_size: int, strides: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pool_size, self.strides = pool_size, strides

    def call(self, x):
        ph, pw = _ceil_pads(x.shape[1], x.shape[2], self.pool_size, self.strides)
        if ph or pw:
            x = ops.pad(x, [[0, 0], [0, ph], [0, pw], [0, 0]], constant_values=float("-inf"))
        return ops.max_pool(x, self.pool_size, self.strides, padding="valid")

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, arithmetic.pool_output_size(h, self.pool_size, self.strides),
                arithmetic.pool_output_size(w, self.pool_size, self.strides), c)

    def get_config(self) -> dict:
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides}


@keras.saving.register_keras_serializable(package="inception_lib")
class CeilAvgPool2D(CeilMaxPool2D):
    """Average pooling with Caffe's ceil-mode output size (the aux heads' 5x5/3 pool).

    A last, partial window averages only its in-bounds pixels, as Caffe and PyTorch (``ceil_mode=True``,
    no padding) do: zero-pad the bottom/right, pool "valid", and rescale each window by kernel^2 / in-bounds count.
    """

    def call(self, x):
        h, w = x.shape[1], x.shape[2]
        ph, pw = _ceil_pads(h, w, self.pool_size, self.strides)
        if not (ph or pw):
            return ops.average_pool(x, self.pool_size, self.strides, padding="valid")
        x = ops.pad(x, [[0, 0], [0, ph], [0, pw], [0, 0]])
        y = ops.average_pool(x, self.pool_size, self.strides, padding="valid")
        k, s = self.pool_size, self.strides
        rows = np.array([min(k, h - i * s) for i in range(y.shape[1])], dtype="float64")
        cols = np.array([min(k, w - j * s) for j in range(y.shape[2])], dtype="float64")
        scale = (k * k) / np.outer(rows, cols)  # static: the map size is fixed when the model is built
        return y * ops.convert_to_tensor(scale[None, :, :, None], dtype=y.dtype)


@keras.saving.register_keras_serializable(package="inception_lib")
class AdaptiveAvgPool2D(layers.Layer):
    """PyTorch's ``adaptive_avg_pool2d``: bin i covers [floor(i*H/n), ceil((i+1)*H/n)).

    torchvision's aux heads use it (bins overlap at 14x14), so the Keras port needs the same bins.
    """

    def __init__(self, output_size: int = 4, **kwargs) -> None:
        super().__init__(**kwargs)
        self.output_size = output_size

    def call(self, x):
        h, w, n = x.shape[1], x.shape[2], self.output_size
        rows = []
        for i in range(n):
            h0, h1 = (i * h) // n, -(-((i + 1) * h) // n)
            cols = []
            for j in range(n):
                w0, w1 = (j * w) // n, -(-((j + 1) * w) // n)
                cols.append(ops.mean(x[:, h0:h1, w0:w1, :], axis=(1, 2)))
            rows.append(ops.stack(cols, axis=1))
        return ops.stack(rows, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_size, self.output_size, input_shape[3])

    def get_config(self) -> dict:
        return {**super().get_config(), "output_size": self.output_size}


@keras.saving.register_keras_serializable(package="inception_lib")
class TransformInput(layers.Layer):
    """torchvision's ``transform_input``: ImageNet mean/std-normalised RGB -> TF's (x - 0.5) / 0.5."""

    def call(self, x):
        scale = ops.convert_to_tensor([0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5], dtype=x.dtype)
        shift = ops.convert_to_tensor([(0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5], dtype=x.dtype)
        return x * scale + shift


# ---------------------------------------------------------------------------------------------
# Builder
# ---------------------------------------------------------------------------------------------


def _initializers(v: Variant) -> tuple[object, object, object, object]:
    """(conv kernel, conv bias, dense kernel, dense bias) initialisers matching the PyTorch side."""
    if v.init == "caffe_xavier":
        xavier = keras.initializers.VarianceScaling(1.0, "fan_in", "uniform")
        return xavier, keras.initializers.Constant(0.2), xavier, "zeros"
    if v.init == "kaiming":
        return (keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal"), "zeros",
                keras.initializers.RandomNormal(stddev=0.01), "zeros")
    normal = keras.initializers.RandomNormal(stddev=0.01)
    return normal, "zeros", normal, "zeros"


def conv_unit(x, name: str, filters: int, kernel: int, v: Variant, stride: int = 1, padding: int = 0):
    """conv (+ BN) + ReLU, named like the PyTorch ConvUnit at the same path."""
    k_init, b_init, _, _ = _initializers(v)
    if stride == 1 and padding == kernel // 2:
        pad = "same"  # symmetric for odd kernels at stride 1, as in PyTorch
    else:
        if padding:
            x = layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)  # symmetric, unlike "same" at stride 2
        pad = "valid"
    x = layers.Conv2D(filters, kernel, strides=stride, padding=pad, use_bias=v.conv_bias,
                      kernel_initializer=k_init, bias_initializer=b_init, name=name)(x)
    if v.batchnorm:
        x = layers.BatchNormalization(epsilon=v.bn_eps, momentum=1.0 - v.bn_momentum, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def inception_module(x, block: Inception, v: Variant):
    """Figure 2(b) on one row of Table 1: four branches, concatenated on channels (the last axis in Keras)."""
    n = block.name
    k5 = v.branch5x5_kernel
    b1 = conv_unit(x, f"{n}_conv1x1", block.n1x1, 1, v)
    b2 = conv_unit(x, f"{n}_conv3x3_reduce", block.n3x3_reduce, 1, v)
    b2 = conv_unit(b2, f"{n}_conv3x3", block.n3x3, 3, v, padding=1)
    b3 = conv_unit(x, f"{n}_conv5x5_reduce", block.n5x5_reduce, 1, v)
    b3 = conv_unit(b3, f"{n}_conv5x5", block.n5x5, k5, v, padding=k5 // 2)
    b4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{n}_pool")(x)
    b4 = conv_unit(b4, f"{n}_pool_proj", block.pool_proj, 1, v)
    return layers.Concatenate(axis=-1, name=n)([b1, b2, b3, b4])


def aux_head(x, head: spec.AuxHead, num_classes: int, v: Variant):
    """Section 5's auxiliary classifier: pool -> 1x1 conv 128 -> FC 1024 -> dropout 0.7 -> linear."""
    _, _, d_init, db_init = _initializers(v)
    n = head.name
    if v.aux_pool == "adaptive4x4":
        x = AdaptiveAvgPool2D(4, name=f"{n}_pool")(x)
    else:
        x = CeilAvgPool2D(head.pool_kernel, strides=head.pool_stride, name=f"{n}_pool")(x)  # Caffe's rounding
    x = conv_unit(x, f"{n}_conv", head.conv_channels, 1, v)
    x = layers.Flatten(name=f"{n}_flatten")(x)  # NHWC order; the converter permutes fc1 to match NCHW
    fc1_bias = keras.initializers.Constant(0.2) if v.init == "caffe_xavier" else db_init  # BVLC's loss1/fc, loss2/fc
    x = layers.Dense(head.fc_units, activation="relu", kernel_initializer=d_init, bias_initializer=fc1_bias,
                     name=f"{n}_fc1")(x)
    x = layers.Dropout(v.aux_dropout, name=f"{n}_dropout")(x)
    return layers.Dense(num_classes, kernel_initializer=d_init, bias_initializer=db_init, name=f"{n}_fc2")(x)


def _validate_input_shape(input_shape: Sequence[Optional[int]], v: Variant) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {tuple(input_shape)}")
    h, w, c = input_shape
    if h is None or w is None:
        raise ValueError("input_shape needs a fixed height and width (the pooling layers are sized from them), "
                         f"got {tuple(input_shape)}")
    if c is None or c < 1:
        raise ValueError(f"input_shape must end with a positive channel count (channels_last), got {tuple(input_shape)}")
    if c > 4 and h <= 4:
        raise ValueError(f"input_shape {tuple(input_shape)} looks channels-first; Keras models here are channels_last "
                         "(height, width, channels)")
    m = arithmetic.min_input_size(v)
    if min(h, w) < m:
        raise ValueError(f"input {h}x{w} is too small for the {v.name!r} variant: the minimum is {m}x{m}; resize the images")
    return int(h), int(w), int(c)


def GoogLeNet(num_classes: int = 1000, aux_logits: bool = True, variant: Union[str, Variant] = "paper",
              input_shape: Sequence[Optional[int]] = (224, 224, 3), dropout: Optional[float] = None,
              aux_dropout: Optional[float] = None, transform_input: Optional[bool] = None,
              include_top: bool = True, pooling: Optional[str] = None, name: Optional[str] = None) -> keras.Model:
    """GoogLeNet / Inception v1 as a Keras functional model returning logits.

    Outputs: ``logits`` (layer ``fc``), plus ``aux1`` and ``aux2`` logits (layers ``aux1_fc2``,
    ``aux2_fc2``) when ``aux_logits``. Keras computes all outputs in every call; use
    :func:`inference_model` for the paper's inference network (aux heads discarded).

    As in Keras applications, ``include_top=False`` drops the classifier (average pool, dropout, ``fc``) and
    returns the features of inception (5b): the 7x7x1024 map with ``pooling=None``, a 1024 vector with ``"avg"``
    or ``"max"``; ``pooling`` applies only then. The aux heads are classifiers too: without the top they are not built.
    """
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max' (as in keras.applications), got {pooling!r}")
    if pooling is not None and include_top:
        raise ValueError(f"pooling={pooling!r} applies only with include_top=False (the top has its own average pool)")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    v = spec.get_variant(variant, dropout=dropout, aux_dropout=aux_dropout, transform_input=transform_input)
    h, w, c = _validate_input_shape(input_shape, v)
    if v.transform_input and c != 3:
        raise ValueError("transform_input remaps ImageNet RGB statistics and needs 3 input channels")
    _, _, d_init, db_init = _initializers(v)

    inputs = keras.Input(shape=(h, w, c), name="image")
    x = TransformInput(name="transform_input")(inputs) if v.transform_input else inputs
    aux_outputs = {}
    aux_by_block = {hd.after: hd for hd in spec.AUX_HEADS}
    for t in v.trunk():
        if isinstance(t, Conv):
            x = conv_unit(x, t.name, t.out_channels, t.kernel, v, t.stride, t.padding)
        elif isinstance(t, MaxPool):
            x = CeilMaxPool2D(t.kernel, t.stride, name=t.name)(x)
        elif isinstance(t, LRN):
            x = LocalResponseNorm(t.size, t.alpha, t.beta, t.k, name=t.name)(x)
        elif isinstance(t, Inception):
            x = inception_module(x, t, v)
            if aux_logits and include_top and t.name in aux_by_block:
                head = aux_by_block[t.name]
                arithmetic.aux_map_size(v, (h, w), head)  # clear error if the map is too small to pool
                aux_outputs[head.name] = aux_head(x, head, num_classes, v)
    if not include_top:
        if pooling == "avg":
            x = layers.GlobalAveragePooling2D(name="avgpool")(x)
        elif pooling == "max":
            x = layers.GlobalMaxPooling2D(name="maxpool")(x)
        return keras.Model(inputs, x, name=name or f"googlenet_{v.name}_features")
    x = layers.GlobalAveragePooling2D(name="avgpool")(x)  # 7x7/1 at 224
    x = layers.Dropout(v.dropout, name="dropout")(x)
    logits = layers.Dense(num_classes, kernel_initializer=d_init, bias_initializer=db_init, name="fc")(x)
    outputs = [logits, aux_outputs["aux1"], aux_outputs["aux2"]] if aux_logits else logits
    return keras.Model(inputs, outputs, name=name or f"googlenet_{v.name}")


def architecture(model: keras.Model) -> dict:
    """What a Keras GoogLeNet is, read from its layers: ``variant`` (a :class:`~inception_lib.spec.Variant`),
    ``num_classes``, ``aux_logits``, ``in_channels``, ``image_size``.

    Read from the layers, not remembered at build time, so it survives ``model.save`` / ``keras.saving.load_model``
    and a model can never claim another architecture than the one it has. The initialisation leaves no trace in
    the layers: the variant is the preset whose structure matches (``custom`` if none does).
    """
    names = {layer.name for layer in model.layers}
    if not {"conv1", "fc"} <= names:
        raise ValueError(f"{model.name!r} is not a GoogLeNet classifier built by inception_lib.keras.GoogLeNet "
                         "(no conv1 / fc layer); include_top=False models have no architecture to convert")
    aux = "aux1_fc2" in names
    pool4 = model.get_layer("pool4")
    found = {
        "norm": "bn" if "conv1_bn" in names else "lrn",
        "conv_bias": bool(model.get_layer("conv1").use_bias),
        "branch5x5_kernel": int(model.get_layer("inception_3a_conv5x5").kernel_size[0]),
        "pool4": (int(pool4.pool_size), int(pool4.strides)),
        "dropout": float(model.get_layer("dropout").rate),
        "transform_input": "transform_input" in names,
    }
    if found["norm"] == "bn":
        bn = model.get_layer("conv1_bn")
        found.update(bn_eps=float(bn.epsilon), bn_momentum=round(1.0 - float(bn.momentum), 12))
    if aux:
        found.update(aux_dropout=float(model.get_layer("aux1_dropout").rate),
                     aux_pool="adaptive4x4" if isinstance(model.get_layer("aux1_pool"), AdaptiveAvgPool2D)
                     else "avg5x5s3")
    structure = ("norm", "conv_bias", "branch5x5_kernel", "pool4", "aux_pool", "bn_eps", "bn_momentum")
    preset = next((p for p in spec.VARIANTS.values()
                   if all(getattr(p, k) == found[k] for k in structure if k in found)), None)
    variant = (dataclasses.replace(preset, **found) if preset is not None
               else spec.Variant("custom", **found))
    _, h, w, c = model.input_shape
    return {"variant": variant, "num_classes": int(model.get_layer("fc").units), "aux_logits": aux,
            "in_channels": int(c), "image_size": (int(h), int(w))}


def from_pretrained(name: str) -> keras.Model:
    """The Keras GoogLeNet with shipped weights (``inception_lib.pretrained.available()``).

    The weights go through the PyTorch model and :func:`inception_lib.convert.torch_to_keras` (so PyTorch must be
    installed, and imported before TensorFlow: ``import torch`` first in a fresh process). Keras computes the aux
    heads in every call; :func:`inference_model` keeps the main head only.
    """
    from inception_lib import convert, pretrained

    return convert.torch_to_keras(pretrained.build_torch(name))


def inference_model(model: keras.Model) -> keras.Model:
    """The same network with only the main head: the paper's inference model (shares weights)."""
    return keras.Model(model.input, model.get_layer("fc").output, name=f"{model.name}_inference")

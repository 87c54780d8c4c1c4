"""The paper's Table 1 (plus Figure 3 and the text on the auxiliary heads) as data.

Everything else in the package (arithmetic, the PyTorch and Keras builders, weight conversion, the
book's tables) reads the network from here, so a number can only be wrong in one place.

The departures from the paper that common code ships are a *ledger* of named options
(:class:`Variant`); the presets ``"paper"``, ``"bn"`` and ``"torchvision"`` are rows of it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Union

# --------------------------------------------------------------------------------------------
# Layer records. Names follow the paper / the BVLC Caffe model so code can be read against Table 1.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conv:
    """A convolution followed by ReLU (all convolutions in GoogLeNet use ReLU)."""

    name: str
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0


@dataclass(frozen=True)
class MaxPool:
    """Max pooling with Caffe's rounding (ceil mode), which gives Table 1's 112 -> 56 -> 28 -> 14 -> 7."""

    name: str
    kernel: int
    stride: int


@dataclass(frozen=True)
class LRN:
    """Local response normalisation across channels (Figure 3; constants from BVLC Caffe).

    b_c = a_c / (k + alpha / size * sum_{c' in window} a_{c'}^2) ** beta   (PyTorch's convention).
    """

    name: str
    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0


@dataclass(frozen=True)
class Inception:
    """One row of Table 1: the six filter counts of an inception module."""

    name: str
    n1x1: int
    n3x3_reduce: int
    n3x3: int
    n5x5_reduce: int
    n5x5: int
    pool_proj: int

    @property
    def out_channels(self) -> int:
        return self.n1x1 + self.n3x3 + self.n5x5 + self.pool_proj


@dataclass(frozen=True)
class AuxHead:
    """An auxiliary classifier (Section 5): avg pool 5x5/3, 1x1 conv 128, FC 1024, dropout 0.7, linear."""

    name: str
    after: str
    pool_kernel: int = 5
    pool_stride: int = 3
    conv_channels: int = 128
    fc_units: int = 1024
    loss_weight: float = 0.3


Layer = Union[Conv, MaxPool, LRN, Inception]

# The trunk, in order: Table 1 rows, with Figure 3's two LRN layers where the figure puts them.
# Output sizes at 224x224 are in the comments (Table 1's "output size" column).
TRUNK: tuple[Layer, ...] = (
    Conv("conv1", 64, kernel=7, stride=2, padding=3),  # 112 x 112 x 64
    MaxPool("pool1", 3, 2),  # 56 x 56 x 64
    LRN("norm1"),
    Conv("conv2_reduce", 64, kernel=1),  # 56 x 56 x 64   ("#3x3 reduce" column)
    Conv("conv2", 192, kernel=3, padding=1),  # 56 x 56 x 192
    LRN("norm2"),
    MaxPool("pool2", 3, 2),  # 28 x 28 x 192
    #         name           #1x1 #3x3red #3x3 #5x5red #5x5 poolproj
    Inception("inception_3a", 64, 96, 128, 16, 32, 32),  # 28 x 28 x 256
    Inception("inception_3b", 128, 128, 192, 32, 96, 64),  # 28 x 28 x 480
    MaxPool("pool3", 3, 2),  # 14 x 14 x 480
    Inception("inception_4a", 192, 96, 208, 16, 48, 64),  # 14 x 14 x 512
    Inception("inception_4b", 160, 112, 224, 24, 64, 64),  # 14 x 14 x 512
    Inception("inception_4c", 128, 128, 256, 24, 64, 64),  # 14 x 14 x 512
    Inception("inception_4d", 112, 144, 288, 32, 64, 64),  # 14 x 14 x 528
    Inception("inception_4e", 256, 160, 320, 32, 128, 128),  # 14 x 14 x 832
    MaxPool("pool4", 3, 2),  # 7 x 7 x 832
    Inception("inception_5a", 256, 160, 320, 32, 128, 128),  # 7 x 7 x 832
    Inception("inception_5b", 384, 192, 384, 48, 128, 128),  # 7 x 7 x 1024
)

AUX_HEADS: tuple[AuxHead, ...] = (
    AuxHead("aux1", after="inception_4a"),  # 4 x 4 x 512 after its pool
    AuxHead("aux2", after="inception_4d"),  # 4 x 4 x 528 after its pool
)

FEATURES = 1024  # channels after inception_5b, the input of the final linear layer
PAPER_IMAGE_SIZE = 224
PAPER_NUM_CLASSES = 1000

INCEPTION_BLOCKS: tuple[Inception, ...] = tuple(t for t in TRUNK if isinstance(t, Inception))


def layer(name: str) -> Layer:
    """The trunk layer called ``name`` (e.g. ``"inception_4a"``)."""
    for t in TRUNK:
        if t.name == name:
            return t
    raise KeyError(f"no layer {name!r} in the trunk; names are {[t.name for t in TRUNK]}")


# --------------------------------------------------------------------------------------------
# Table 1 as printed, for the errata: (params, ops) in the paper's own units (K params, M ops).
# --------------------------------------------------------------------------------------------

PRINTED_TABLE1: dict[str, tuple[str, str]] = {
    "conv1": ("2.7K", "34M"),
    "conv2": ("112K", "360M"),
    "inception_3a": ("159K", "128M"),
    "inception_3b": ("380K", "304M"),
    "inception_4a": ("364K", "73M"),
    "inception_4b": ("437K", "88M"),
    "inception_4c": ("463K", "100M"),
    "inception_4d": ("580K", "119M"),
    "inception_4e": ("840K", "170M"),
    "inception_5a": ("1072K", "54M"),
    "inception_5b": ("1388K", "71M"),
    "fc": ("1000K", "1M"),
}

# --------------------------------------------------------------------------------------------
# Variants: the fidelity ledger.
# --------------------------------------------------------------------------------------------

Norm = Literal["lrn", "bn"]
AuxPool = Literal["avg5x5s3", "adaptive4x4"]
Init = Literal["caffe_xavier", "kaiming", "trunc_normal_0.01"]


@dataclass(frozen=True)
class Variant:
    """Every way a GoogLeNet implementation departs from the paper, as one named option each.

    The ``"paper"`` preset has the paper's value in every field. Fields:

    - ``norm``: ``"lrn"`` = LRN after pool1 and after conv2 (Figure 3), no BatchNorm;
      ``"bn"`` = BatchNorm after every convolution (aux heads included), no LRN.
    - ``conv_bias``: convolutions carry a bias (the paper; BN makes it redundant).
    - ``bn_eps`` / ``bn_momentum``: BatchNorm constants, PyTorch convention (momentum 0.1 means
      running = 0.9 * running + 0.1 * batch; Keras calls that momentum 0.9).
    - ``branch5x5_kernel``: 5 in the paper; 3 in torchvision / TF-slim (a known bug kept for
      checkpoint compatibility, pytorch/vision#906).
    - ``pool4``: (kernel, stride) of the max pool before 5a: (3, 2) in Table 1, (2, 2) in torchvision.
    - ``dropout``: main-head dropout, 0.4 in Table 1, 0.2 in torchvision.
    - ``aux_dropout``: 0.7 in the paper and in torchvision.
    - ``aux_pool``: ``"avg5x5s3"`` (the paper: 14x14 -> 4x4 at 224 input; the output size rounds up as
      in Caffe's BVLC reference, so 6x6 -> 2x2 at 96 and 15x15 -> 5x5 at 240, and the aux FC width
      follows the map size) or ``"adaptive4x4"`` (torchvision: always 4x4).
    - ``transform_input``: torchvision's remapping of ImageNet-normalised input to TF's [-1, 1]
      convention (only used with its ported weights; not in the paper).
    - ``init``: weight initialisation. The paper states none; ``"caffe_xavier"`` is the BVLC
      replication's filler (uniform, scaled by fan-in; bias 0.2 on the convolutions and on the aux heads'
      FC-1024 layers ``loss1/fc`` / ``loss2/fc``, 0 on the classifiers), ``"kaiming"`` is He-normal
      (fan-out) for the BN variant, ``"trunc_normal_0.01"`` is torchvision's.
    """

    name: str
    norm: Norm = "lrn"
    conv_bias: bool = True
    bn_eps: float = 1e-3
    bn_momentum: float = 0.1
    branch5x5_kernel: int = 5
    pool4: tuple[int, int] = (3, 2)
    dropout: float = 0.4
    aux_dropout: float = 0.7
    aux_pool: AuxPool = "avg5x5s3"
    transform_input: bool = False
    init: Init = "caffe_xavier"

    def __post_init__(self) -> None:
        if self.norm not in ("lrn", "bn"):
            raise ValueError(f"norm must be 'lrn' or 'bn', got {self.norm!r}")
        if self.aux_pool not in ("avg5x5s3", "adaptive4x4"):
            raise ValueError(f"aux_pool must be 'avg5x5s3' or 'adaptive4x4', got {self.aux_pool!r}")
        if self.branch5x5_kernel not in (3, 5):
            raise ValueError(f"branch5x5_kernel must be 5 (paper) or 3 (torchvision), got {self.branch5x5_kernel}")
        for field in ("dropout", "aux_dropout"):
            p = getattr(self, field)
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{field} must be in [0, 1), got {p}")
        if self.init not in ("caffe_xavier", "kaiming", "trunc_normal_0.01"):
            raise ValueError(f"unknown init {self.init!r}")

    @property
    def batchnorm(self) -> bool:
        return self.norm == "bn"

    def trunk(self) -> tuple[Layer, ...]:
        """Table 1's trunk with this variant's choices applied (LRN kept or dropped, pool4 size)."""
        out: list[Layer] = []
        for t in TRUNK:
            if isinstance(t, LRN) and self.norm != "lrn":
                continue
            if isinstance(t, MaxPool) and t.name == "pool4":
                t = dataclasses.replace(t, kernel=self.pool4[0], stride=self.pool4[1])
            out.append(t)
        return tuple(out)

    def differences(self) -> dict[str, tuple[object, object]]:
        """Fields where this variant departs from the paper: {field: (paper value, this value)}."""
        paper = VARIANTS["paper"]
        diffs = {}
        for f in dataclasses.fields(self):
            if f.name == "name":
                continue
            a, b = getattr(paper, f.name), getattr(self, f.name)
            if a != b:
                diffs[f.name] = (a, b)
        return diffs


VARIANTS: dict[str, Variant] = {
    "paper": Variant("paper"),
    "bn": Variant("bn", norm="bn", conv_bias=False, init="kaiming"),
    "torchvision": Variant(
        "torchvision",
        norm="bn",
        conv_bias=False,
        branch5x5_kernel=3,
        pool4=(2, 2),
        dropout=0.2,
        aux_pool="adaptive4x4",
        init="trunc_normal_0.01",
    ),
}

# What each ledger field means in the paper vs in common code, for the book's table.
LEDGER_NOTES: dict[str, str] = {
    "norm": "LRN after pool1 and conv2 (Figure 3) vs BatchNorm after every conv",
    "conv_bias": "conv layers have a bias vs none (redundant before BatchNorm)",
    "bn_eps": "BatchNorm epsilon (only used with norm='bn')",
    "bn_momentum": "BatchNorm running-statistics momentum, PyTorch convention (only used with norm='bn')",
    "branch5x5_kernel": "the '5x5' branch is a real 5x5 vs a 3x3 (torchvision/TF-slim bug, vision#906)",
    "pool4": "max pool before 5a: 3x3/2 (Table 1) vs 2x2/2 (torchvision)",
    "dropout": "main-head dropout: 40% (Table 1) vs 20% (torchvision)",
    "aux_dropout": "aux-head dropout: 70% (Section 5)",
    "aux_pool": "aux head pool: avg 5x5/3 (Section 5; output size rounded up, as Caffe) vs adaptive to 4x4",
    "transform_input": "torchvision's re-normalisation of the input for its ported TF weights",
    "init": "weight initialisation (the paper states none; 'paper' follows the BVLC Caffe reference)",
}


def get_variant(variant: Union[str, Variant] = "paper", **overrides: object) -> Variant:
    """Look up a preset by name (or pass a Variant through), with fields overridden by keyword.

    >>> get_variant("paper", dropout=0.5).dropout
    0.5
    """
    if isinstance(variant, Variant):
        base = variant
    elif isinstance(variant, str):
        if variant not in VARIANTS:
            raise ValueError(
                f"unknown variant {variant!r}; choose one of {sorted(VARIANTS)} "
                "or pass an inception_lib.spec.Variant"
            )
        base = VARIANTS[variant]
    else:
        raise TypeError(f"variant must be a name or a Variant, got {type(variant).__name__}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if not overrides:
        return base
    names = {f.name for f in dataclasses.fields(Variant)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown Variant field(s) {unknown}; fields are {sorted(names)}")
    return dataclasses.replace(base, **overrides)


def architecture_record(variant: Variant, num_classes: int, in_channels: int, aux_logits: bool,
                        image_size: Union[int, tuple[int, int]]) -> dict:
    """What identifies a GoogLeNet: the dict both frameworks' checkpoints store and compare on load (JSON types)."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    v = {k: list(x) if isinstance(x, tuple) else x for k, x in dataclasses.asdict(variant).items()}
    return {"family": "googlenet", "variant": v, "num_classes": int(num_classes), "in_channels": int(in_channels),
            "aux_logits": bool(aux_logits), "image_size": [int(h), int(w)]}

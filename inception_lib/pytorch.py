"""GoogLeNet in PyTorch, built from :mod:`inception_lib.spec`.

Module names follow the paper (``conv1``, ``conv2_reduce``, ``conv2``, ``inception_3a`` ...
``inception_5b``, ``aux1``, ``aux2``, ``fc``) and match the Keras layer names, so the weight
converter is a name-for-name walk.

>>> m = GoogLeNet(num_classes=10, in_channels=1, variant="bn")      # doctest: +SKIP
>>> m.train(); out = m(x)        # GoogLeNetOutputs(logits, aux1, aux2); a plain tensor if aux_logits=False
>>> m.eval();  logits = m(x)     # aux heads are not run at inference, as in the paper
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from inception_lib import arithmetic, spec
from inception_lib.spec import LRN, Conv, Inception, MaxPool, Variant

__all__ = ["GoogLeNet", "GoogLeNetOutputs", "InceptionModule", "InceptionAux", "ConvUnit", "architecture"]


def _cpu_fast_path(x: torch.Tensor) -> bool:
    """Whether the CPU fast paths below apply: a plain NCHW-contiguous 4-D CPU tensor, in eager mode."""
    return (type(x) is torch.Tensor and x.device.type == "cpu" and x.dim() == 4 and x.numel() > 0
            and not torch.compiler.is_compiling() and x.is_contiguous())


class FastMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` with the same outputs and gradients, bit for bit, but faster on CPU.

    PyTorch's CPU max-pool kernel for NCHW tensors is scalar and is the slowest op of a GoogLeNet
    training step on CPU (15-20% of it at 96x96). The channels-last kernel is vectorised and picks the same
    element on ties (the first maximum in the window), so we take the argmax from it and gather
    the values from the NCHW input: autograd then routes gradients exactly as ``max_pool2d`` does.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.return_indices or not _cpu_fast_path(x):
            return super().forward(x)
        args = (self.kernel_size, self.stride, self.padding, self.dilation)
        # NHWC strides made by a permuted copy: ``contiguous(memory_format=channels_last)`` is refused under vmap.
        x_cl = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
        nchw = torch.contiguous_format  # plain NCHW strides even where H = W = 1 makes the layout ambiguous
        if not (x.requires_grad and torch.is_grad_enabled()):
            return F.max_pool2d(x_cl, *args, ceil_mode=self.ceil_mode).clone(memory_format=nchw)
        with torch.no_grad():
            _, idx = F.max_pool2d(x_cl, *args, ceil_mode=self.ceil_mode, return_indices=True)
        idx = idx.clone(memory_format=nchw)
        return x.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)


class FastLocalResponseNorm(nn.LocalResponseNorm):
    """``nn.LocalResponseNorm`` with the same outputs, bit for bit, about twice as fast on CPU.

    ``F.local_response_norm`` sums the squares over the channel window with ``avg_pool3d``, whose CPU
    kernel is scalar; summing shifted channel slices in the same order and dividing by ``size``
    gives the same float32 values with vectorised adds.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype not in (torch.float32, torch.float64) or not _cpu_fast_path(x):
            return super().forward(x)
        size, channels = self.size, x.shape[1]
        sq = F.pad(x * x, (0, 0, 0, 0, size // 2, (size - 1) // 2))
        window = sq[:, 0:channels].clone() if size == 1 else sq[:, 0:channels] + sq[:, 1:1 + channels]
        for i in range(2, size):
            window += sq[:, i:i + channels]
        div = window.div_(size).mul_(self.alpha).add_(self.k).pow(self.beta)
        return x / div


class GoogLeNetOutputs(NamedTuple):
    """Training-mode outputs: main logits and the two auxiliary heads' logits (None when off)."""

    logits: torch.Tensor
    aux1: Optional[torch.Tensor]
    aux2: Optional[torch.Tensor]


class ConvUnit(nn.Module):
    """Convolution (+ BatchNorm in the BN variants) + ReLU: the unit every conv in GoogLeNet uses."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                 padding: int = 0, *, variant: Variant) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=variant.conv_bias)
        self.bn = nn.BatchNorm2d(out_channels, eps=variant.bn_eps, momentum=variant.bn_momentum) if variant.batchnorm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x, inplace=True)


class InceptionModule(nn.Module):
    """Figure 2(b): 1x1, 1x1 -> 3x3, 1x1 -> 5x5 and 3x3 max pool -> 1x1, concatenated on channels.

    The arguments are one row of Table 1. ``variant`` decides BatchNorm, bias and the "5x5" kernel.
    """

    def __init__(self, in_channels: int, n1x1: int, n3x3_reduce: int, n3x3: int, n5x5_reduce: int,
                 n5x5: int, pool_proj: int, *, variant: Union[str, Variant] = "paper") -> None:
        super().__init__()
        v = spec.get_variant(variant)
        k5 = v.branch5x5_kernel
        self.conv1x1 = ConvUnit(in_channels, n1x1, 1, variant=v)
        self.conv3x3_reduce = ConvUnit(in_channels, n3x3_reduce, 1, variant=v)
        self.conv3x3 = ConvUnit(n3x3_reduce, n3x3, 3, padding=1, variant=v)
        self.conv5x5_reduce = ConvUnit(in_channels, n5x5_reduce, 1, variant=v)
        self.conv5x5 = ConvUnit(n5x5_reduce, n5x5, k5, padding=k5 // 2, variant=v)
        self.pool = FastMaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        self.pool_proj = ConvUnit(in_channels, pool_proj, 1, variant=v)
        self.out_channels = n1x1 + n3x3 + n5x5 + pool_proj

    @classmethod
    def from_spec(cls, in_channels: int, block: Inception, variant: Union[str, Variant] = "paper") -> InceptionModule:
        return cls(in_channels, block.n1x1, block.n3x3_reduce, block.n3x3, block.n5x5_reduce, block.n5x5,
                   block.pool_proj, variant=variant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (
            self.conv1x1(x),
            self.conv3x3(self.conv3x3_reduce(x)),
            self.conv5x5(self.conv5x5_reduce(x)),
            self.pool_proj(self.pool(x)),
        )
        return torch.cat(branches, dim=1)


class InceptionAux(nn.Module):
    """Auxiliary classifier (Section 5): pool -> 1x1 conv 128 -> FC 1024 -> dropout 0.7 -> linear.

    With ``aux_pool="avg5x5s3"`` (the paper) the pooled map is 4x4 at 224x224 input; at other input
    sizes the FC input width follows the map, so pass the ``map_size`` the model will see. The pool rounds
    its output size up, as Caffe does (``ceil_mode=True``: 6x6 -> 2x2 at 96 px input, 15x15 -> 5x5 at 240).
    """

    def __init__(self, in_channels: int, num_classes: int, *, variant: Union[str, Variant] = "paper",
                 head: spec.AuxHead = spec.AUX_HEADS[0], map_size: tuple[int, int] = (4, 4)) -> None:
        super().__init__()
        v = spec.get_variant(variant)
        self.adaptive = v.aux_pool == "adaptive4x4"
        self.pool_kernel, self.pool_stride = head.pool_kernel, head.pool_stride
        self.map_size = (4, 4) if self.adaptive else tuple(map_size)
        self.conv = ConvUnit(in_channels, head.conv_channels, 1, variant=v)
        self.fc1 = nn.Linear(head.conv_channels * self.map_size[0] * self.map_size[1], head.fc_units)
        self.dropout = nn.Dropout(v.aux_dropout)
        self.fc2 = nn.Linear(head.fc_units, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.adaptive:
            x = F.adaptive_avg_pool2d(x, (4, 4))
        else:
            # Caffe's rounding. count_include_pad=False: with no padding the same values and gradients in eager
            # mode, bit for bit, and torch.compile's inductor then divides an overhanging window correctly in the
            # backward pass too (it divides by the full 5x5 otherwise: pytorch/pytorch#198119, torch 2.14).
            x = F.avg_pool2d(x, self.pool_kernel, self.pool_stride, ceil_mode=True, count_include_pad=False)
        x = self.conv(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x), inplace=True)
        x = self.dropout(x)
        return self.fc2(x)


def architecture(model: GoogLeNet) -> dict:
    """What identifies a GoogLeNet's architecture (stored in checkpoints, compared on load)."""
    return spec.architecture_record(model.variant, model.num_classes, model.in_channels, model.aux_logits,
                                    model.image_size)


class GoogLeNet(nn.Module):
    """GoogLeNet / Inception v1 (Szegedy et al., 2014) for any variant of the fidelity ledger.

    Args:
        num_classes: size of the final linear layer (1000 for ImageNet).
        aux_logits: build the two auxiliary heads (on 4a and 4d); they only run in training mode.
        variant: ``"paper"``, ``"bn"``, ``"torchvision"`` or a :class:`~inception_lib.spec.Variant`.
        in_channels: 3 for RGB, 1 for Fashion-MNIST.
        image_size: the training resolution; only the paper's aux pool (avg 5x5/3) depends on it,
            since its FC width follows the pooled map (4x4 at 224).
        dropout, aux_dropout, transform_input: override the variant's value.
        init_weights: initialise as the variant says (False leaves PyTorch's defaults).

    In training mode with ``aux_logits`` ``forward`` returns :class:`GoogLeNetOutputs` (logits, aux1, aux2);
    otherwise (eval mode, or no aux heads) the main logits, as torchvision's GoogLeNet does.
    """

    def __init__(self, num_classes: int = 1000, aux_logits: bool = True, variant: Union[str, Variant] = "paper",
                 in_channels: int = 3, image_size: Union[int, tuple[int, int]] = 224,
                 dropout: Optional[float] = None, aux_dropout: Optional[float] = None,
                 transform_input: Optional[bool] = None, init_weights: bool = True) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer (3 for RGB, 1 for grayscale), got {in_channels!r}")
        v = spec.get_variant(variant, dropout=dropout, aux_dropout=aux_dropout, transform_input=transform_input)
        if v.transform_input and in_channels != 3:
            raise ValueError("transform_input remaps ImageNet RGB statistics and needs in_channels=3")
        self.variant = v
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.aux_logits = aux_logits
        self.image_size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.min_size = arithmetic.min_input_size(v)

        channels = in_channels
        self.trunk_names: list[str] = []
        for t in v.trunk():
            if isinstance(t, Conv):
                mod: nn.Module = ConvUnit(channels, t.out_channels, t.kernel, t.stride, t.padding, variant=v)
                channels = t.out_channels
            elif isinstance(t, MaxPool):
                mod = FastMaxPool2d(t.kernel, t.stride, ceil_mode=True)
            elif isinstance(t, LRN):
                mod = FastLocalResponseNorm(t.size, alpha=t.alpha, beta=t.beta, k=t.k)
            elif isinstance(t, Inception):
                mod = InceptionModule.from_spec(channels, t, v)
                channels = t.out_channels
            else:  # pragma: no cover - the spec only holds the four kinds
                raise TypeError(t)
            self.add_module(t.name, mod)
            self.trunk_names.append(t.name)

        self.aux_after: dict[str, str] = {}
        self.aux1: Optional[InceptionAux] = None
        self.aux2: Optional[InceptionAux] = None
        if aux_logits:
            shapes = arithmetic.shapes(v, self.image_size, in_channels)
            for head in spec.AUX_HEADS:
                map_size = arithmetic.aux_map_size(v, self.image_size, head)
                aux = InceptionAux(shapes[head.after][2], num_classes, variant=v, head=head, map_size=map_size)
                setattr(self, head.name, aux)
                self.aux_after[head.after] = head.name

        self.avgpool = nn.AdaptiveAvgPool2d(1)  # Table 1's 7x7/1 average pool at 224; global at any size
        self.dropout = nn.Dropout(v.dropout)
        self.fc = nn.Linear(spec.FEATURES, num_classes)
        if init_weights:
            self.reset_parameters()

    # ------------------------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """Initialise weights as the variant's ``init`` says (the paper states no scheme)."""
        init = self.variant.init
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if init == "caffe_xavier":
                    # Caffe's "xavier" filler: U(-a, a), a = sqrt(3 / fan_in); BVLC's conv bias 0.2.
                    bound = math.sqrt(3.0 / m.weight[0].numel())  # fan in: input channels x kernel area
                    nn.init.uniform_(m.weight, -bound, bound)
                    if m.bias is not None:
                        nn.init.constant_(m.bias, 0.2 if isinstance(m, nn.Conv2d) else 0.0)
                elif init == "kaiming":
                    if isinstance(m, nn.Conv2d):
                        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    else:
                        nn.init.normal_(m.weight, 0.0, 0.01)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                else:  # torchvision's truncated normal
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if init == "caffe_xavier":  # BVLC's loss1/fc and loss2/fc (the aux FC-1024 layers) also start with bias 0.2
            for m in self.modules():
                if isinstance(m, InceptionAux):
                    nn.init.constant_(m.fc1.bias, 0.2)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4:
            raise ValueError(f"expected a batch of images N x C x H x W, got a tensor of shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            hint = " (is the batch channels-last? permute to N x C x H x W)" if x.shape[-1] == self.in_channels else ""
            raise ValueError(f"this model takes {self.in_channels} input channel(s), got {x.shape[1]}{hint}; "
                             f"build it with in_channels={x.shape[1]} or convert the images")
        h, w = x.shape[-2:]
        if min(h, w) < self.min_size:
            raise ValueError(f"input {h}x{w} is too small for the {self.variant.name!r} variant: the minimum is "
                             f"{self.min_size}x{self.min_size} (every pool needs a non-empty map); resize the images")
        if self.training and self.aux_logits and not self._aux_adaptive and (h, w) != self.image_size:
            want = self.image_size
            try:
                ok = all(arithmetic.aux_map_size(self.variant, (h, w), hd) == arithmetic.aux_map_size(self.variant, want, hd)
                         for hd in spec.AUX_HEADS)
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(
                    f"the aux heads were built for {want[0]}x{want[1]} inputs (avg pool 5x5/3 then an FC sized for that map), "
                    f"got {h}x{w}: build with image_size={h}, use aux_pool='adaptive4x4', or aux_logits=False")

    @property
    def _aux_adaptive(self) -> bool:
        return self.variant.aux_pool == "adaptive4x4"

    def _transform_input(self, x: torch.Tensor) -> torch.Tensor:
        # torchvision's remapping from ImageNet mean/std normalisation to TF's (x - 0.5) / 0.5.
        x0 = x[:, 0:1] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
        x1 = x[:, 1:2] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
        x2 = x[:, 2:3] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
        return torch.cat((x0, x1, x2), 1)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every trunk layer's output by name (for shape checks and the book's feature maps)."""
        self._check_input(x)
        if self.variant.transform_input:
            x = self._transform_input(x)
        out = {}
        for name in self.trunk_names:
            x = getattr(self, name)(x)
            out[name] = x
        return out

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, GoogLeNetOutputs]:
        self._check_input(x)
        if self.variant.transform_input:
            x = self._transform_input(x)
        run_aux = self.training and self.aux_logits
        aux: dict[str, torch.Tensor] = {}
        for name in self.trunk_names:
            x = getattr(self, name)(x)
            if run_aux and name in self.aux_after:
                head = self.aux_after[name]
                aux[head] = getattr(self, head)(x)
        x = torch.flatten(self.avgpool(x), 1)  # N x 1024
        x = self.dropout(x)
        logits = self.fc(x)  # N x num_classes
        if run_aux:
            return GoogLeNetOutputs(logits, aux["aux1"], aux["aux2"])
        return logits

    @classmethod
    def from_pretrained(cls, name: str) -> GoogLeNet:
        """A GoogLeNet with shipped weights (``inception_lib.pretrained.available()``), in eval mode.

        The file's sha256 is checked first; ``inception_lib.pretrained.get(name).meta`` says what it is
        (dataset, classes, input transform, test accuracy, the run it came from).
        """
        from inception_lib import pretrained

        return pretrained.build_torch(name)

    def extra_repr(self) -> str:
        return f"variant={self.variant.name!r}, num_classes={self.num_classes}, aux_logits={self.aux_logits}"

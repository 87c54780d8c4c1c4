"""Framework-free arithmetic on the spec: output sizes, parameters and multiply-adds.

Conventions:

- *weights* are convolution / linear kernel entries only (no biases, no BatchNorm), which is what
  Table 1's "params" column appears to count;
- *parameters* are everything a framework counts (weights + biases + BatchNorm scale and shift);
- *multiply-adds* (MACs) of a conv are weights x output height x width; FLOPs = 2 x MACs.

The tests check these numbers against the built PyTorch and Keras models and against PyTorch's own
FLOP counter, so the book can print them with confidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

from inception_lib import spec
from inception_lib.spec import LRN, Conv, Inception, MaxPool, Variant

# ---------------------------------------------------------------------------------------------
# Single layers
# ---------------------------------------------------------------------------------------------


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution along one axis (floor rounding)."""
    return (size + 2 * padding - kernel) // stride + 1


def pool_output_size(size: int, kernel: int, stride: int, padding: int = 0, ceil_mode: bool = True) -> int:
    """Output length of a pooling window along one axis, with PyTorch's / Caffe's ceil-mode rule.

    In ceil mode a last, partial window is kept, unless it would start in the right-hand padding.
    """
    if ceil_mode:
        out = -(-(size + 2 * padding - kernel) // stride) + 1
        if (out - 1) * stride >= size + padding:
            out -= 1
        return out
    return (size + 2 * padding - kernel) // stride + 1


def conv_weights(in_channels: int, out_channels: int, kernel: int) -> int:
    """Kernel entries of a k x k convolution (no bias)."""
    return kernel * kernel * in_channels * out_channels


def conv_macs(in_channels: int, out_channels: int, kernel: int, out_h: int, out_w: int) -> int:
    """Multiply-adds of a k x k convolution producing an out_h x out_w map."""
    return conv_weights(in_channels, out_channels, kernel) * out_h * out_w


@dataclass(frozen=True)
class BranchCost:
    """A k x k branch computed directly vs after a 1x1 reduction (the paper's Section 4 argument)."""

    height: int
    width: int
    in_channels: int
    out_channels: int
    kernel: int
    reduce_channels: int
    naive_macs: int
    reduce_macs: int
    conv_macs: int
    naive_weights: int
    reduced_weights: int

    @property
    def reduced_macs(self) -> int:
        return self.reduce_macs + self.conv_macs

    @property
    def ratio(self) -> float:
        """How many times cheaper the reduced branch is."""
        return self.naive_macs / self.reduced_macs


def branch_cost(height: int, width: int, in_channels: int, out_channels: int, kernel: int, reduce_channels: int) -> BranchCost:
    """Cost of ``out_channels`` k x k filters on an h x w x c input, naive vs with a 1x1 reduction.

    >>> branch_cost(28, 28, 192, 32, 5, 16).naive_macs
    120422400
    """
    naive = conv_macs(in_channels, out_channels, kernel, height, width)
    red = conv_macs(in_channels, reduce_channels, 1, height, width)
    conv = conv_macs(reduce_channels, out_channels, kernel, height, width)
    return BranchCost(
        height, width, in_channels, out_channels, kernel, reduce_channels, naive, red, conv,
        naive_weights=conv_weights(in_channels, out_channels, kernel),
        reduced_weights=conv_weights(in_channels, reduce_channels, 1) + conv_weights(reduce_channels, out_channels, kernel),
    )


def inception_weights(in_channels: int, block: Inception, branch5x5_kernel: int = 5) -> dict[str, int]:
    """Kernel entries per branch unit of an inception module (the names the models use)."""
    k5 = branch5x5_kernel
    return {
        "conv1x1": conv_weights(in_channels, block.n1x1, 1),
        "conv3x3_reduce": conv_weights(in_channels, block.n3x3_reduce, 1),
        "conv3x3": conv_weights(block.n3x3_reduce, block.n3x3, 3),
        "conv5x5_reduce": conv_weights(in_channels, block.n5x5_reduce, 1),
        "conv5x5": conv_weights(block.n5x5_reduce, block.n5x5, k5),
        "pool_proj": conv_weights(in_channels, block.pool_proj, 1),
    }


def inception_naive_macs(in_channels: int, block: Inception, height: int, width: int) -> int:
    """Multiply-adds of the same module without any 1x1 reductions (Figure 2a, with pool proj kept).

    The 3x3 and 5x5 convolutions then act on all ``in_channels`` channels.
    """
    w = (
        conv_weights(in_channels, block.n1x1, 1)
        + conv_weights(in_channels, block.n3x3, 3)
        + conv_weights(in_channels, block.n5x5, 5)
        + conv_weights(in_channels, block.pool_proj, 1)
    )
    return w * height * width


# ---------------------------------------------------------------------------------------------
# The whole network
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerInfo:
    """One layer of the built trunk: shapes, weights, multiply-adds and framework parameter count."""

    name: str
    kind: str
    in_shape: tuple[int, int, int]  # (H, W, C)
    out_shape: tuple[int, int, int]
    weights: int
    macs: int
    params: int


def _unit_params(cin: int, cout: int, kernel: int, v: Variant) -> int:
    p = conv_weights(cin, cout, kernel)
    if v.conv_bias:
        p += cout
    if v.batchnorm:
        p += 2 * cout
    return p


def trace(
    variant: Union[str, Variant] = "paper",
    image_size: Union[int, tuple[int, int]] = 224,
    in_channels: int = 3,
) -> list[LayerInfo]:
    """Walk the trunk of ``variant`` at ``image_size``: per-layer shapes, weights, MACs, parameters.

    Raises ValueError where a layer would receive an empty map (the input is too small).
    """
    v = spec.get_variant(variant)
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    c = in_channels
    rows: list[LayerInfo] = []
    for t in v.trunk():
        if min(h, w) < 1:
            raise ValueError(f"the map before {t.name} is empty ({h}x{w}): input {image_size} is too small")
        ins = (h, w, c)
        if isinstance(t, Conv):
            h2, w2 = (conv_output_size(s, t.kernel, t.stride, t.padding) for s in (h, w))
            wt = conv_weights(c, t.out_channels, t.kernel)
            rows.append(LayerInfo(t.name, "conv", ins, (h2, w2, t.out_channels), wt, wt * h2 * w2,
                                  _unit_params(c, t.out_channels, t.kernel, v)))
            h, w, c = h2, w2, t.out_channels
        elif isinstance(t, MaxPool):
            h2, w2 = (pool_output_size(s, t.kernel, t.stride) for s in (h, w))
            if min(h2, w2) < 1:
                raise ValueError(f"input {image_size} is too small: {t.name} gets a {h}x{w} map")
            rows.append(LayerInfo(t.name, "max pool", ins, (h2, w2, c), 0, 0, 0))
            h, w = h2, w2
        elif isinstance(t, LRN):
            rows.append(LayerInfo(t.name, "lrn", ins, ins, 0, 0, 0))
        elif isinstance(t, Inception):
            ws = inception_weights(c, t, v.branch5x5_kernel)
            wt = sum(ws.values())
            unit_outputs = t.n1x1 + t.n3x3_reduce + t.n3x3 + t.n5x5_reduce + t.n5x5 + t.pool_proj
            params = wt + unit_outputs * ((1 if v.conv_bias else 0) + (2 if v.batchnorm else 0))
            rows.append(LayerInfo(t.name, "inception", ins, (h, w, t.out_channels), wt, wt * h * w, params))
            c = t.out_channels
    return rows


def shapes(variant: Union[str, Variant] = "paper", image_size: Union[int, tuple[int, int]] = 224,
           in_channels: int = 3) -> dict[str, tuple[int, int, int]]:
    """Output shape (H, W, C) of every trunk layer, by name."""
    return {r.name: r.out_shape for r in trace(variant, image_size, in_channels)}


def aux_map_size(variant: Union[str, Variant], image_size: Union[int, tuple[int, int]], head: spec.AuxHead) -> tuple[int, int]:
    """Spatial size of an aux head's pooled map (4x4 at 224 for both pool kinds).

    The paper's 5x5/3 average pool rounds its output size up, as Caffe does (BVLC's ``loss1/ave_pool``; PyTorch's
    ``ceil_mode=True``): a last, partial window is kept and averaged over its in-bounds pixels. At 224 both roundings
    give 14x14 -> 4x4; at 240 the 15x15 map pools to 5x5 (floor: 4x4), at 96 the 6x6 map to 2x2 (floor: 1x1).
    """
    v = spec.get_variant(variant)
    if v.aux_pool == "adaptive4x4":
        return (4, 4)
    h, w, _ = shapes(v, image_size)[head.after]
    oh, ow = (pool_output_size(s, head.pool_kernel, head.pool_stride) for s in (h, w))
    if min(oh, ow) < 1:
        smallest = head.pool_kernel - head.pool_stride + 1  # the smallest map with one window start inside it
        raise ValueError(
            f"the aux head {head.name} pools {h}x{w} with a {head.pool_kernel}x{head.pool_kernel}/{head.pool_stride} "
            f"window (ceil rounding), which needs at least {smallest}x{smallest}: use a larger image_size, "
            "aux_pool='adaptive4x4', or aux_logits=False"
        )
    return (oh, ow)


def aux_params(variant: Union[str, Variant], head: spec.AuxHead, in_channels: int, num_classes: int,
               map_size: tuple[int, int] = (4, 4)) -> int:
    """Parameters of one auxiliary head."""
    v = spec.get_variant(variant)
    p = _unit_params(in_channels, head.conv_channels, 1, v)
    flat = head.conv_channels * map_size[0] * map_size[1]
    p += flat * head.fc_units + head.fc_units
    p += head.fc_units * num_classes + num_classes
    return p


def count_params(
    variant: Union[str, Variant] = "paper",
    num_classes: int = 1000,
    aux_logits: bool = False,
    in_channels: int = 3,
    image_size: Union[int, tuple[int, int]] = 224,
) -> int:
    """Exact number of trainable parameters of the built model (what both frameworks report).

    >>> count_params("paper"), count_params("paper", aux_logits=True)
    (6998552, 13378280)
    """
    rows = trace(variant, image_size, in_channels)
    total = sum(r.params for r in rows)
    total += spec.FEATURES * num_classes + num_classes
    if aux_logits:
        by_name = {r.name: r for r in rows}
        for head in spec.AUX_HEADS:
            cin = by_name[head.after].out_shape[2]
            total += aux_params(variant, head, cin, num_classes, aux_map_size(variant, image_size, head))
    return total


def count_macs(variant: Union[str, Variant] = "paper", num_classes: int = 1000,
               image_size: Union[int, tuple[int, int]] = 224, in_channels: int = 3) -> int:
    """Multiply-adds of one inference pass (convolutions + final linear layer; aux heads off)."""
    rows = trace(variant, image_size, in_channels)
    return sum(r.macs for r in rows) + spec.FEATURES * num_classes


def min_input_size(variant: Union[str, Variant] = "paper", aux_logits: bool = False) -> int:
    """Smallest square input for which every layer (and, in training, the aux heads) gets a map."""
    for s in range(1, 1024):
        try:
            trace(variant, s)
            if aux_logits:
                for head in spec.AUX_HEADS:
                    aux_map_size(variant, s, head)
            return s
        except ValueError:
            continue
    raise RuntimeError("no input size up to 1024 works")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# Table 1, recomputed
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table1Row:
    """A row of Table 1 recomputed from the spec, beside the paper's printed params/ops."""

    name: str
    type: str
    patch: str
    output_size: tuple[int, int, int]
    depth: int
    filters: tuple[int, ...]  # #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj (as printed)
    weights: int
    macs: int
    printed_params: str
    printed_ops: str

    @property
    def weights_k1024(self) -> float:
        """Weights in units of 1024: the unit the printed params column seems to use."""
        return self.weights / 1024

    @property
    def macs_m(self) -> float:
        return self.macs / 1e6


def _parse_printed(s: str) -> float:
    return float(s.rstrip("KM"))


def table1(image_size: int = 224, num_classes: int = 1000) -> list[Table1Row]:
    """Table 1 recomputed (paper variant): output sizes, depth, filters, exact weights and MACs.

    The stem's ``conv2_reduce`` + ``conv2`` form one row, as in the paper. LRN rows are omitted
    (Table 1 has none). The printed params/ops sit beside the exact numbers so the errata show.
    """
    rows_by_name = {r.name: r for r in trace("paper", image_size)}
    out: list[Table1Row] = []
    depth_of = {"conv": 1, "inception": 2}
    for t in spec.TRUNK:
        r = rows_by_name.get(t.name)
        if isinstance(t, LRN) or t.name == "conv2_reduce":
            continue
        printed = spec.PRINTED_TABLE1.get(t.name, ("", ""))
        if isinstance(t, Conv):
            if t.name == "conv2":
                red = rows_by_name["conv2_reduce"]
                out.append(Table1Row("conv2", "convolution", "3x3/1", r.out_shape, 2, ("", 64, 192, "", "", ""),
                                     red.weights + r.weights, red.macs + r.macs, *printed))
            else:
                out.append(Table1Row(t.name, "convolution", f"{t.kernel}x{t.kernel}/{t.stride}", r.out_shape,
                                     depth_of["conv"], (), r.weights, r.macs, *printed))
        elif isinstance(t, MaxPool):
            out.append(Table1Row(t.name, "max pool", f"{t.kernel}x{t.kernel}/{t.stride}", r.out_shape, 0, (), 0, 0, "", ""))
        elif isinstance(t, Inception):
            f = (t.n1x1, t.n3x3_reduce, t.n3x3, t.n5x5_reduce, t.n5x5, t.pool_proj)
            out.append(Table1Row(t.name, "inception", "", r.out_shape, 2, f, r.weights, r.macs, *printed))
    h, w, c = out[-1].output_size
    out.append(Table1Row("pool5", "avg pool", f"{h}x{w}/1", (1, 1, c), 0, (), 0, 0, "", ""))
    out.append(Table1Row("dropout", "dropout (40%)", "", (1, 1, c), 0, (), 0, 0, "", ""))
    fc_w = c * num_classes
    out.append(Table1Row("fc", "linear", "", (1, 1, num_classes), 1, (), fc_w, fc_w, *spec.PRINTED_TABLE1["fc"]))
    out.append(Table1Row("softmax", "softmax", "", (1, 1, num_classes), 0, (), 0, 0, "", ""))
    return out


def table1_totals(rows: list[Table1Row] | None = None) -> dict[str, float]:
    """Column sums: exact weights and MACs vs the sums of the printed columns."""
    rows = rows if rows is not None else table1()
    printed_params = sum(_parse_printed(r.printed_params) for r in rows if r.printed_params)
    printed_ops = sum(_parse_printed(r.printed_ops) for r in rows if r.printed_ops)
    return {
        "weights": sum(r.weights for r in rows),
        "macs": sum(r.macs for r in rows),
        "depth": sum(r.depth for r in rows),
        "printed_params_k": printed_params,
        "printed_ops_m": printed_ops,
    }


def inception_reductions(image_size: int = 224) -> list[dict[str, object]]:
    """For each of the nine modules: MACs and weights with the 1x1 reductions vs without them."""
    rows_by_name = {r.name: r for r in trace("paper", image_size)}
    out = []
    for b in spec.INCEPTION_BLOCKS:
        r = rows_by_name[b.name]
        h, w, cin = r.in_shape
        naive = inception_naive_macs(cin, b, h, w)
        out.append({
            "block": b.name,
            "input": r.in_shape,
            "macs_reduced": r.macs,
            "macs_naive": naive,
            "ratio": naive / r.macs,
            "weights_reduced": r.weights,
            "weights_naive": naive // (h * w),
        })
    return out


def fc_vs_gap(height: int = 7, width: int = 7, channels: int = 1024, units: int = 1024) -> dict[str, int]:
    """Weights of a fully connected layer on the last map vs global average pooling (which has none)."""
    return {"fc_weights": height * width * channels * units, "gap_weights": 0}


def ratio_to_alexnet(alexnet_params: float = 60e6, variant: str = "paper") -> float:
    """The abstract's '12x fewer parameters than AlexNet', checked with the exact count (no aux)."""
    return alexnet_params / count_params(variant)


def scale_cost(width_multiplier: float) -> float:
    """A conv between two layers whose widths both grow by m costs m^2 as much (Section 3)."""
    return float(width_multiplier) ** 2


def human(n: float, unit: str = "") -> str:
    """Compact human-readable number, e.g. 1.58G."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n:g}{unit}"


def _off(exact: float, printed: str, units: Sequence[float]) -> bool:
    if not printed:
        return False
    value = float(printed.rstrip("KM"))
    return all(abs(exact / u - value) > 0.05 * max(exact / u, 1e-12) for u in units)


def table1_text(image_size: int = 224, num_classes: int = 1000) -> str:
    """Table 1 as text: exact numbers from :mod:`inception_lib.arithmetic` beside the printed ones."""
    rows = table1(image_size, num_classes)
    totals = table1_totals(rows)
    head = ("name", "type", "patch", "output", "depth", "#1x1", "#3x3r", "#3x3", "#5x5r", "#5x5", "pool",
            "params (exact)", "printed", "ops (exact)", "printed")
    body = []
    for r in rows:
        f = [str(v) for v in r.filters] + [""] * (6 - len(r.filters))
        h, w, c = r.output_size
        p_flag = "!" if _off(r.weights, r.printed_params, (1000, 1024)) else ""
        o_flag = "!" if _off(r.macs, r.printed_ops, (1e6,)) else ""
        body.append((r.name, r.type, r.patch, f"{h}x{w}x{c}", str(r.depth or ""), *f,
                     f"{r.weights:,}" if r.weights else "", f"{r.printed_params}{p_flag}",
                     f"{r.macs:,}" if r.macs else "", f"{r.printed_ops}{o_flag}"))
    body.append(("total", "", "", "", str(int(totals["depth"])), "", "", "", "", "", "",
                 f"{int(totals['weights']):,}", f"{totals['printed_params_k']:g}K",
                 f"{int(totals['macs']):,}", f"{totals['printed_ops_m']:g}M"))
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    numeric = set(range(4, len(head)))

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))).rstrip()

    title = (f"Table 1 (Szegedy et al. 2014) recomputed: paper variant, {image_size}x{image_size}x3 input, "
             f"{num_classes} classes; params = weights (no biases), ops = multiply-adds")
    note = ("'!' = the printed value is more than 5% off the exact one (params read as K = 1000 or 1024, "
            "ops as M = 1e6); the totals' printed column is the sum of the printed cells")
    return "\n".join([title, fmt(head), *(fmt(r) for r in body), note])

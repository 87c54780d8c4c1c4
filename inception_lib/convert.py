"""Exact weight conversion: PyTorch <-> Keras, and torchvision's GoogLeNet -> inception_lib.

Both implementations use the same names (PyTorch path ``a.b`` = Keras layer ``a_b``), so conversion
walks the PyTorch modules and, for each, fixes up what the frameworks store differently:

- conv kernels: PyTorch (out, in, kh, kw) vs Keras (kh, kw, in, out);
- dense kernels: (out, in) vs (in, out);
- BatchNorm: the same four tensors (epsilon is set from the variant on both sides);
- the aux head's FC after Flatten: PyTorch flattens (C, H, W), Keras (H, W, C), so fc1's input
  rows are permuted;
- padding and ceil-mode pooling are handled by the builders (ZeroPadding2D + valid conv for the
  stride-2 stem, -inf padding for ceil-mode pools), not by the weights.

Imports torch at call time and Keras only inside the Keras functions: import torch first.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Union

import numpy as np

__all__ = ["torch_to_keras", "keras_to_torch", "from_torchvision", "torchvision_key_map"]


def _units(torch_model) -> list[tuple[str, Any]]:
    from inception_lib.pytorch import ConvUnit

    return [(n, m) for n, m in torch_model.named_modules() if isinstance(m, ConvUnit)]


def _aux_fc1_to_keras(w: np.ndarray, channels: int, map_hw: tuple[int, int]) -> np.ndarray:
    """(units, C*H*W) PyTorch FC weight -> (H*W*C, units) Keras kernel."""
    h, wd = map_hw
    return w.reshape(w.shape[0], channels, h, wd).transpose(2, 3, 1, 0).reshape(h * wd * channels, w.shape[0])


def _aux_fc1_to_torch(k: np.ndarray, channels: int, map_hw: tuple[int, int]) -> np.ndarray:
    h, wd = map_hw
    units = k.shape[1]
    return k.reshape(h, wd, channels, units).transpose(3, 2, 0, 1).reshape(units, channels * h * wd)


def _linears(torch_model) -> list[tuple[str, Any]]:
    import torch.nn as nn

    return [(n, m) for n, m in torch_model.named_modules() if isinstance(m, nn.Linear)]


def _check_same_architecture(torch_model, keras_model) -> None:
    from inception_lib.keras import architecture

    cfg = architecture(keras_model)
    mine = {"variant": torch_model.variant, "num_classes": torch_model.num_classes,
            "aux_logits": torch_model.aux_logits, "in_channels": torch_model.in_channels}
    theirs = {k: cfg[k] for k in mine}
    # Dropout rates do not change weights; compare the rest of the variant.
    import dataclasses
    strip = {"dropout": 0.0, "aux_dropout": 0.0, "name": ""}
    if (dataclasses.replace(mine["variant"], **strip), *list(mine.values())[1:]) != (
            dataclasses.replace(theirs["variant"], **strip), *list(theirs.values())[1:]):
        raise ValueError(f"architectures differ: PyTorch {mine} vs Keras {theirs}")


def torch_to_keras(torch_model, keras_model=None):
    """Copy a PyTorch GoogLeNet's weights (and BN statistics) into a Keras GoogLeNet.

    Builds the Keras model (same variant, classes, aux heads, channels, training image size) when
    ``keras_model`` is None. Returns the Keras model.
    """
    from inception_lib import keras as ik

    if keras_model is None:
        keras_model = ik.GoogLeNet(torch_model.num_classes, torch_model.aux_logits, torch_model.variant,
                                   input_shape=(*torch_model.image_size, torch_model.in_channels))
    _check_same_architecture(torch_model, keras_model)
    for name, unit in _units(torch_model):
        kname = name.replace(".", "_")
        conv = unit.conv
        weights = [conv.weight.detach().cpu().numpy().transpose(2, 3, 1, 0)]
        if conv.bias is not None:
            weights.append(conv.bias.detach().cpu().numpy())
        keras_model.get_layer(kname).set_weights(weights)
        if unit.bn is not None:
            bn = unit.bn
            keras_model.get_layer(f"{kname}_bn").set_weights(
                [t.detach().cpu().numpy() for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var)])
    for name, lin in _linears(torch_model):
        kname = name.replace(".", "_")
        w = lin.weight.detach().cpu().numpy()
        if name.endswith("fc1"):
            aux = torch_model.get_submodule(name.rsplit(".", 1)[0])
            k = _aux_fc1_to_keras(w, aux.conv.conv.out_channels, aux.map_size)
        else:
            k = w.T
        keras_model.get_layer(kname).set_weights([k, lin.bias.detach().cpu().numpy()])
    return keras_model


def keras_to_torch(keras_model, torch_model=None):
    """Copy a Keras GoogLeNet's weights into a PyTorch GoogLeNet (built when ``torch_model`` is None)."""
    import torch

    from inception_lib.pytorch import GoogLeNet

    if torch_model is None:
        from inception_lib.keras import architecture

        cfg = architecture(keras_model)
        torch_model = GoogLeNet(cfg["num_classes"], cfg["aux_logits"], cfg["variant"], cfg["in_channels"],
                                cfg["image_size"], init_weights=False)
    _check_same_architecture(torch_model, keras_model)
    with torch.no_grad():
        for name, unit in _units(torch_model):
            kname = name.replace(".", "_")
            ws = keras_model.get_layer(kname).get_weights()
            unit.conv.weight.copy_(torch.from_numpy(ws[0].transpose(3, 2, 0, 1).copy()))
            if unit.conv.bias is not None:
                unit.conv.bias.copy_(torch.from_numpy(ws[1]))
            if unit.bn is not None:
                g, b, mean, var = keras_model.get_layer(f"{kname}_bn").get_weights()
                for t, a in zip((unit.bn.weight, unit.bn.bias, unit.bn.running_mean, unit.bn.running_var), (g, b, mean, var)):
                    t.copy_(torch.from_numpy(a))
        for name, lin in _linears(torch_model):
            k, b = keras_model.get_layer(name.replace(".", "_")).get_weights()
            if name.endswith("fc1"):
                aux = torch_model.get_submodule(name.rsplit(".", 1)[0])
                w = _aux_fc1_to_torch(k, aux.conv.conv.out_channels, aux.map_size)
            else:
                w = k.T
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
            lin.bias.copy_(torch.from_numpy(b))
    return torch_model


# ---------------------------------------------------------------------------------------------
# torchvision
# ---------------------------------------------------------------------------------------------

_TV_BLOCKS = {"inception3a": "inception_3a", "inception3b": "inception_3b", "inception4a": "inception_4a",
              "inception4b": "inception_4b", "inception4c": "inception_4c", "inception4d": "inception_4d",
              "inception4e": "inception_4e", "inception5a": "inception_5a", "inception5b": "inception_5b"}
_TV_BRANCHES = {"branch1": "conv1x1", "branch2.0": "conv3x3_reduce", "branch2.1": "conv3x3",
                "branch3.0": "conv5x5_reduce", "branch3.1": "conv5x5", "branch4.1": "pool_proj"}
_TV_STEM = {"conv1": "conv1", "conv2": "conv2_reduce", "conv3": "conv2"}


def torchvision_key_map(key: str) -> str:
    """Map a torchvision GoogLeNet state_dict key to inception_lib's name for the same tensor."""
    head, _, rest = key.partition(".")
    if head in _TV_STEM:
        return f"{_TV_STEM[head]}.{rest}"
    if head in _TV_BLOCKS:
        for tv, ours in _TV_BRANCHES.items():
            if rest.startswith(tv + "."):
                return f"{_TV_BLOCKS[head]}.{ours}.{rest[len(tv) + 1:]}"
    if head in ("aux1", "aux2", "fc"):
        return key
    raise KeyError(f"unexpected key {key!r} in a torchvision GoogLeNet state_dict")


def from_torchvision(tv_model_or_state_dict: Union[Any, Mapping[str, Any]], transform_input: Optional[bool] = None,
                     num_classes: Optional[int] = None):
    """An inception_lib ``"torchvision"``-variant GoogLeNet holding torchvision's weights.

    Accepts ``torchvision.models.googlenet(...)`` or its ``state_dict()`` (e.g. the ImageNet
    weights loaded with ``torch.load(path, weights_only=True)`` where the internet is reachable).
    ``transform_input`` defaults to the torchvision model's setting (False for a bare state dict).
    """
    from inception_lib.pytorch import GoogLeNet

    if hasattr(tv_model_or_state_dict, "state_dict"):
        state = tv_model_or_state_dict.state_dict()
        if transform_input is None:
            transform_input = bool(getattr(tv_model_or_state_dict, "transform_input", False))
    else:
        state = dict(tv_model_or_state_dict)
    if "fc.weight" not in state or "inception3a.branch1.conv.weight" not in state:
        raise ValueError("this does not look like a torchvision GoogLeNet state_dict (no 'fc.weight' / "
                         "'inception3a.branch1.conv.weight'); pass torchvision.models.googlenet(...) or its state_dict()")
    if state["inception3a.branch3.1.conv.weight"].shape[-1] != 3:
        raise ValueError("expected torchvision's 3x3 kernel in the '5x5' branch; this checkpoint differs")
    n_cls = int(state["fc.weight"].shape[0])
    if num_classes is not None and num_classes != n_cls:
        raise ValueError(f"the checkpoint has {n_cls} classes, not {num_classes}")
    aux = any(k.startswith("aux1.") for k in state)
    model = GoogLeNet(n_cls, aux, "torchvision", transform_input=bool(transform_input), init_weights=False)
    mapped = {torchvision_key_map(k): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(mapped, strict=True), None
    del missing, unexpected
    return model

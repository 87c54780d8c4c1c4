"""Every training hyperparameter in one place, shared by the PyTorch and Keras trainers.

A run directory holds ``config.json`` (this dataclass), ``history.json`` / ``history.csv`` (one row
per epoch, same schema for both frameworks) and checkpoints. The defaults are the paper's where the
paper says something (SGD momentum 0.9, lr x0.96 every 8 epochs, aux weight 0.3, Polyak averaging)
and stated choices where it does not (batch size, base lr, weight decay, epochs).
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from inception_lib import spec
from inception_lib.data import DATASETS

HISTORY_SCHEMA = "inception_lib.history/1"

# Keys of one epoch row in history.json / history.csv (both frameworks write exactly these).
EPOCH_KEYS: tuple[str, ...] = (
    "epoch",
    "lr",
    "train_loss",  # total: main + aux_weight * (aux1 + aux2)
    "train_loss_main",
    "train_loss_aux1",  # None when the aux heads are off
    "train_loss_aux2",
    "train_acc",  # main head, on the (augmented) training batches
    "train_acc_aux1",
    "train_acc_aux2",
    "val_loss",
    "val_acc",
    "val_acc_ema",  # the Polyak/EMA-averaged weights, evaluated separately; None when off
    "epoch_time_s",
    "wall_time_s",  # since the start of the run (resumed runs continue the count)
    "images_per_s",  # training images per second in this epoch
)

Schedule = Literal["paper", "cosine", "constant"]

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16", "fp64")
"""The values of :attr:`TrainConfig.precision`."""


def _opt(default: Any, help: str, **cli: Any) -> Any:
    """A config field with its command-line help (``__main__`` builds one option per field from these)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class TrainConfig:
    """All the knobs of a training run (airbench-style: one place, written next to the results).

    Every field is also an option of ``python -m inception_lib train`` (``aux_weight`` -> ``--aux-weight``),
    with the help text given here.
    """

    framework: Literal["pytorch", "keras"] = _opt("pytorch", "which trainer")
    # model
    variant: str = _opt("bn", "network variant of the fidelity ledger", choices=tuple(sorted(spec.VARIANTS)))
    aux_weight: float = _opt(spec.AUX_HEADS[0].loss_weight, "weight of each aux head's loss (the paper's 0.3; "
                             "0 = no heads)")
    aux_heads: Optional[bool] = _opt(None, "build the aux heads even at --aux-weight 0 (untrained: the paired "
                                     "control of an aux ablation); default: iff aux-weight > 0")
    dropout: Optional[float] = _opt(None, "main-head dropout (default: the variant's)")
    # data
    dataset: str = _opt("fashion_mnist", "dataset", choices=DATASETS)
    data_root: Optional[str] = _opt(None, "folder holding the dataset (default: the usual places)")
    download: bool = _opt(False, "download the dataset if it is missing (needs internet)")
    resolution: Optional[int] = _opt(96, "square input side (224 = the paper's; None = the images' own)")
    channels: Optional[int] = _opt(None, "input channels (default: the dataset's)", choices=(1, 3))
    val_size: int = _opt(5000, "training images held out for validation")
    split_seed: int = _opt(0, "seed of the train / validation split (kept apart from --seed)")
    subset: Optional[int] = _opt(None, "use only the first N training images")
    eval_subset: Optional[int] = _opt(None, "use only the first N validation / test images")
    augment: Literal["none", "flip", "paper"] = _opt("flip", "training augmentation (paper = Section 6's)")
    # optimisation
    epochs: int = _opt(10, "number of epochs")
    batch_size: int = _opt(128, "global batch size (all processes together under torchrun)")
    eval_batch_size: Optional[int] = _opt(None, "batch size of evaluation (default: batch-size)")
    lr: float = _opt(0.05, "base learning rate")
    momentum: float = _opt(0.9, "SGD momentum (the paper's 0.9)")
    nesterov: bool = _opt(False, "Nesterov momentum")
    weight_decay: float = _opt(5e-4, "L2 weight decay, added to the gradient (not on biases / BatchNorm)")
    schedule: Schedule = _opt("paper", "learning-rate schedule (paper: x lr-decay every decay-every epochs)")
    lr_decay: float = _opt(0.96, "the paper schedule's factor per period (0.96: 4 percent less)")
    decay_every: int = _opt(8, "the paper schedule's period in epochs")
    warmup_epochs: float = _opt(0.0, "linear warmup length in epochs")
    label_smoothing: float = _opt(0.0, "label smoothing")
    ema: bool = _opt(True, "keep an exponential moving average of the weights (the stand-in for Polyak averaging)")
    ema_decay: float = _opt(0.999, "EMA decay per step")
    # machinery
    seed: int = _opt(0, "random seed (initial weights, data order, augmentation)")
    device: str = _opt("auto", "auto | cpu | cuda | cuda:N | mps")
    # auto: CUDA -> bf16 where the GPU has it natively (compute capability >= 8.0), else fp16; CPU / MPS -> fp32.
    # fp64: weights, inputs and EMA in float64, no autocast (tiny demos that repeat across CPUs to ~1e-12).
    precision: str = _opt("auto", "auto | fp32 | bf16 (autocast / mixed_bfloat16, CPU too) | fp16 (+ loss "
                          "scaling) | fp64; the run records its choice", choices=PRECISIONS)
    channels_last: Optional[bool] = _opt(None, "PyTorch channels-last memory (default: on CUDA only)")
    compile: bool = _opt(False, "torch.compile the training model")
    deterministic: bool = _opt(False, "deterministic kernels (slower on a GPU)")
    threads: Optional[int] = _opt(None, "CPU threads")
    num_workers: int = _opt(0, "DataLoader workers (image folders, or --no-gpu-data)")
    gpu_data: bool = _opt(True, "keep small datasets on the device (no per-batch host-to-device copy)")
    sync_bn: bool = _opt(False, "SyncBatchNorm across processes under torchrun on CUDA")
    devices: Optional[list[str]] = _opt(None, "Keras: train on these devices with MirroredStrategy "
                                        "(default: every visible GPU)", nargs="+")
    run_eagerly: bool = _opt(False, "Keras: run the train step eagerly (debugging; slow)")
    max_steps_per_epoch: Optional[int] = _opt(None, "cut every epoch to N steps (tests)", flags=("--max-steps",))
    out_dir: str = _opt("runs/default", "run folder", flags=("--out", "--out-dir"))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # the choices a field's type or metadata names
            value, kind = getattr(self, f.name), _HINTS[f.name]
            allowed = typing.get_args(kind) if typing.get_origin(kind) is Literal else f.metadata.get("choices")
            if allowed is not None and value is not None and value not in allowed:
                raise ValueError(f"unknown {f.name} {value!r}; choose one of {list(allowed)}")
        for name, ok, rule in (
            ("epochs", self.epochs >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("lr", self.lr > 0, "> 0"),
            ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("lr_decay", self.lr_decay > 0, "> 0"),
            ("decay_every", self.decay_every >= 1, ">= 1"),
            ("warmup_epochs", 0 <= self.warmup_epochs < self.epochs, "in [0, epochs)"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
            ("ema_decay", 0 < self.ema_decay < 1, "in (0, 1)"),
            ("dropout", self.dropout is None or 0 <= self.dropout < 1, "in [0, 1) or None"),
            ("aux_weight", self.aux_weight >= 0, ">= 0"),
            ("val_size", self.val_size >= 0, ">= 0"),
            ("num_workers", self.num_workers >= 0, ">= 0"),
            *((name, getattr(self, name) is None or getattr(self, name) >= 1, ">= 1 or None") for name in
              ("resolution", "subset", "eval_subset", "eval_batch_size", "threads", "max_steps_per_epoch")),
        ):
            if not ok:
                raise ValueError(f"{name} must be {rule}, got {getattr(self, name)!r}")
        if self.aux_heads is False and self.aux_weight > 0:
            raise ValueError(f"aux_heads=False but aux_weight={self.aux_weight}: a loss weight needs the heads; "
                             "set aux_weight=0 to train without them")

    @property
    def aux_logits(self) -> bool:
        """Whether the model has its aux heads (they are trained only when ``aux_weight > 0``)."""
        return self.aux_weight > 0 if self.aux_heads is None else self.aux_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The config of a ``config.json``; the ``extra`` dict of earlier versions is read into its fields."""
        d = dict(d)
        d.update(d.pop("extra", None) or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}")
        return cls(**d)

    def save(self, path: Path | str) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path | str) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


_HINTS = typing.get_type_hints(TrainConfig)


def lr_at(cfg: TrainConfig, epoch: float) -> float:
    """Learning rate at a (fractional) epoch: the one schedule both frameworks use.

    ``paper``: cfg.lr * lr_decay ** floor(epoch / decay_every) ("decreasing the learning rate by 4%
    every 8 epochs"); ``cosine``: half-cosine from cfg.lr to 0 over the run; both after an optional
    linear warmup.
    """
    if cfg.warmup_epochs > 0 and epoch < cfg.warmup_epochs:
        return cfg.lr * (epoch + 1e-9) / cfg.warmup_epochs
    if cfg.schedule == "paper":
        return cfg.lr * cfg.lr_decay ** math.floor(epoch / cfg.decay_every)
    if cfg.schedule == "cosine":
        span = max(cfg.epochs - cfg.warmup_epochs, 1e-9)
        t = min(max((epoch - cfg.warmup_epochs) / span, 0.0), 1.0)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))
    return cfg.lr


def resolve_precision(requested: str, device_kind: str, bf16_native: bool = False,
                      channels_last: Optional[bool] = None) -> dict[str, Any]:
    """What a trainer does for ``TrainConfig.precision`` on a device: the record both trainers store.

    ``device_kind``: ``"cuda"`` (or TensorFlow's ``"gpu"``), ``"mps"`` or ``"cpu"``; ``bf16_native``: the GPU computes
    bfloat16 in hardware (compute capability >= 8.0; not Colab's T4). ``"auto"`` -> bf16 on such a GPU, fp16 with
    loss scaling on an older one, fp32 on CPU / MPS; an explicit value is taken as it is. ``channels_last`` None ->
    on CUDA only. Framework-free, so a test can force either answer.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {' | '.join(PRECISIONS)}, got {requested!r}")
    kind = "cuda" if device_kind in ("cuda", "gpu") else device_kind
    if requested == "fp64" and kind == "mps":
        raise ValueError("precision 'fp64' needs float64, which Apple's MPS does not have: use device='cpu'")
    if requested == "auto":
        if kind == "cuda":
            compute = "bf16" if bf16_native else "fp16"
            reason = ("CUDA device with native bf16" if bf16_native else
                      "CUDA device without native bf16 (compute capability < 8.0): fp16 with loss scaling")
        else:
            compute = "fp32"
            reason = f"{kind.upper()} device: fp32 (bf16 only when asked for)"
    else:
        compute = requested
        reason = "asked for"
        if requested == "bf16" and kind == "cuda" and not bf16_native:
            reason += " (this GPU has no native bf16: emulated, slower than fp16)"
    return {"requested": requested, "compute": compute, "params": "float64" if compute == "fp64" else "float32",
            "grad_scaler": compute == "fp16", "channels_last": kind == "cuda" if channels_last is None else bool(channels_last),
            "reason": reason}

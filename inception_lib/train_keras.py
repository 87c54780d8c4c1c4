"""Keras 3 training for GoogLeNet: the PyTorch trainer's recipe, config and run folder, on public Keras APIs.

Both trainers read one :class:`~inception_lib.config.TrainConfig` and write the same files, so a PyTorch run and a
Keras run go in one table. Where Keras's own optimizer, schedule and loss would train a different network, the
trainer uses PyTorch's, from :mod:`inception_lib.keras_optim` (which says why).

Checkpoints are Keras's own archive (``model.save``: weights and optimizer state) plus an ``inception_lib.json``
entry (epoch, step, architecture, config, history), written atomically; ``best.keras`` is a hard link to the best
epoch's ``last.keras``. Several GPUs -> ``MirroredStrategy``; precision as in PyTorch (a Keras dtype policy;
fp16 with ``LossScaleOptimizer``). Not the same as PyTorch, and said: a resumed run's data order is not the
uninterrupted run's (``tf.data`` reshuffles from a counter a new pipeline restarts), and Keras's BatchNorm keeps
the biased batch variance. Import torch (if used at all) before this module: tensorflow first aborts torchvision.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from keras import ops  # noqa: E402

from inception_lib import keras as keras_lib  # noqa: E402  (also registers the custom layers)
from inception_lib import repro, runfiles, spec  # noqa: E402
from inception_lib.config import EPOCH_KEYS, TrainConfig, lr_at, resolve_precision  # noqa: E402
from inception_lib.keras import GoogLeNet, inference_model  # noqa: E402
from inception_lib.runfiles import check_architecture, data_config  # noqa: F401  (data_config: the book uses it)

CHECKPOINT_FORMAT = "inception_lib.checkpoint/1"
"""The same format tag as the PyTorch checkpoints; ``framework`` in the metadata tells them apart."""
LAST = "last.keras"
BEST = "best.keras"
META_NAME = "inception_lib.json"
"""The metadata entry added to Keras's ``.keras`` zip archive (Keras's loader ignores unknown entries)."""


from inception_lib.keras_optim import LrAtSchedule, SparseCrossEntropy, TorchSGD  # noqa: E402


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> TorchSGD:
    """PyTorch's SGD (momentum, Nesterov, coupled L2 on kernels) driven by ``lr_at``; EMA when ``cfg.ema``."""
    return TorchSGD(LrAtSchedule(cfg, steps_per_epoch), momentum=float(cfg.momentum), nesterov=cfg.nesterov,
                    l2=float(cfg.weight_decay), ema_decay=float(cfg.ema_decay) if cfg.ema else None)


def _bn_buffers(model: keras.Model) -> list[Any]:
    """BatchNorm moving mean / variance in layer order (what PyTorch's ``use_buffers`` averages)."""
    out: list[Any] = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            out += [layer.moving_mean, layer.moving_variance]
    return out


# ----------------------------------------------------------------------------------------------------
# Model, data, architecture
# ----------------------------------------------------------------------------------------------------


def architecture(cfg: TrainConfig, num_classes: int, in_channels: int, image_size: int) -> dict[str, Any]:
    """What identifies the network (the PyTorch trainer's dict, so the two frameworks' checkpoints compare)."""
    return spec.architecture_record(spec.get_variant(cfg.variant, dropout=cfg.dropout), num_classes, in_channels,
                                    cfg.aux_logits, image_size)


def _model_architecture(model: keras.Model) -> dict[str, Any]:
    try:
        ic = keras_lib.architecture(model)
    except ValueError:
        return {"family": type(model).__name__}
    return spec.architecture_record(ic["variant"], ic["num_classes"], ic["in_channels"], ic["aux_logits"],
                                    ic["image_size"])


@contextlib.contextmanager
def _dtype_policy(name: Optional[str]) -> Iterator[None]:
    """Build layers under a dtype policy (mixed_bfloat16 on GPUs), then put the global policy back."""
    if name is None:
        yield
        return
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def build_model(cfg: TrainConfig, num_classes: int, in_channels: int, image_size: int,
                dtype_policy: Optional[str] = None) -> keras.Model:
    """The Keras GoogLeNet the config describes (aux heads as ``cfg.aux_logits`` says), returning logits."""
    with _dtype_policy(dtype_policy):
        return GoogLeNet(num_classes=num_classes, aux_logits=cfg.aux_logits, variant=cfg.variant,
                         input_shape=(image_size, image_size, in_channels), dropout=cfg.dropout)


def compile_model(model: keras.Model, cfg: TrainConfig, steps_per_epoch: int, *, run_eagerly: bool = False) -> Any:
    """Compile with the paper's weighted loss and PyTorch's SGD, build the optimizer; returns the optimizer.

    The optimizer is built here (not lazily in the first step) so that a checkpoint's optimizer state can be
    loaded before training, and the BatchNorm buffers are registered for averaging first. A model built under
    ``mixed_float16`` gets the :class:`TorchSGD` wrapped in ``keras.optimizers.LossScaleOptimizer`` (returned;
    ``.inner_optimizer`` is the TorchSGD); a ``float64`` model gets a float64 loss.
    """
    aux = isinstance(model.output, (list, tuple)) and len(model.outputs) == 3
    policy = model.dtype_policy.name
    optimizer = make_optimizer(cfg, steps_per_epoch)
    optimizer.average_buffers(_bn_buffers(model))
    if policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    loss = SparseCrossEntropy(cfg.label_smoothing, dtype="float64" if policy == "float64" else None)
    acc = keras.metrics.SparseCategoricalAccuracy
    floatx = keras.config.floatx()
    if policy == "float64":  # Keras sums the heads' losses in floatx: float64 too, not a float32 cast mid-way
        keras.config.set_floatx("float64")
    try:
        model.compile(optimizer=optimizer, loss=[loss] * 3 if aux else loss,
                      loss_weights=[1.0, cfg.aux_weight, cfg.aux_weight] if aux else None,
                      metrics=[[acc(name="accuracy")] for _ in range(3)] if aux else [acc(name="accuracy")],
                      run_eagerly=run_eagerly, jit_compile=bool(cfg.compile) and not run_eagerly)
    finally:
        keras.config.set_floatx(floatx)
    optimizer.build(model.trainable_variables)
    return optimizer


@contextlib.contextmanager
def ema_weights(model: keras.Model, optimizer: Optional[TorchSGD] = None) -> Iterator[bool]:
    """Temporarily put the EMA (Polyak) weights and averaged BatchNorm statistics into ``model``.

    Yields False (and changes nothing) when the optimizer keeps no averages. The raw values are copied out
    first and copied back afterwards, also when the body raises, so the training state is bit-for-bit
    unchanged; the averages themselves are never written.
    """
    opt = optimizer if optimizer is not None else model.optimizer
    opt = getattr(opt, "inner_optimizer", opt)  # fp16: the TorchSGD inside the LossScaleOptimizer
    pairs = opt.average_pairs() if isinstance(opt, TorchSGD) else []
    if not pairs:
        yield False
        return
    saved = [ops.convert_to_numpy(v) for v, _ in pairs]
    try:
        for v, a in pairs:
            v.assign(a)
        yield True
    finally:
        for (v, _), value in zip(pairs, saved):
            v.assign(value)


# ----------------------------------------------------------------------------------------------------
# Files: atomic writes, history, checkpoints
# ----------------------------------------------------------------------------------------------------


def _save_checkpoint(model: keras.Model, meta: dict[str, Any], path: Path) -> None:
    """``model.save`` (weights + optimizer state) plus the metadata entry, written atomically."""

    def fill(tmp: Path) -> None:
        model.save(tmp, overwrite=True)
        with zipfile.ZipFile(tmp, "a") as z:
            z.writestr(META_NAME, json.dumps(meta, indent=2))

    runfiles.atomic_file(path, fill)


def _link_or_copy(src: Path, dest: Path) -> None:
    """Make ``dest`` the same file as ``src``, atomically: a hard link (free) or else a copy.

    ``last.keras`` is later *replaced* (a new inode), never rewritten, so the link keeps this epoch's bytes.
    """

    def fill(tmp: Path) -> None:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:  # a filesystem without hard links
            shutil.copyfile(src, tmp)

    runfiles.atomic_file(dest, fill)


def _load_state(model: keras.Model, path: Path) -> None:
    """Model weights and optimizer state from a ``.keras`` checkpoint.

    ``model.load_weights(path.keras)`` would read the HDF5 file through the zip archive with thousands of
    small seeks (10 s here for GoogLeNet); one sequential copy to a temporary ``.weights.h5`` is much faster
    and loads the same state (Keras walks model and optimizer either way).
    """
    with tempfile.TemporaryDirectory(prefix="inception_lib_ckpt_") as tmpdir:
        weights = Path(tmpdir) / "state.weights.h5"
        try:  # zipfile checks the entry's CRC-32 as it reads
            with zipfile.ZipFile(path) as z, z.open("model.weights.h5") as src, open(weights, "wb") as dst:
                shutil.copyfileobj(src, dst, 16 << 20)
        except (zipfile.BadZipFile, KeyError, EOFError, zlib.error) as err:
            raise runfiles.corrupt_checkpoint(path, f"its model.weights.h5 entry cannot be read ({err})", _EXPECTED) from None
        model.load_weights(weights)


_EXPECTED = runfiles.CHECKPOINT_EXPECTED["keras"]


def read_checkpoint_meta(path: Union[str, Path]) -> dict[str, Any]:
    """The metadata of a Keras training checkpoint (epoch, step, architecture, config, history...).

    Raises FileNotFoundError, :class:`CorruptCheckpointError` (a damaged file: path, size and what to do) or
    ValueError (a file of another kind). Reads only the metadata entry (``train(resume=True)`` checks every entry).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            meta = json.loads(z.read(META_NAME)) if META_NAME in names else None
    except (zipfile.BadZipFile, EOFError, zlib.error, ValueError):  # ValueError: the JSON; json errors subclass it
        runfiles.check_zip_archive(path, _EXPECTED)  # says what is wrong with the file
        raise runfiles.corrupt_checkpoint(path, f"its {META_NAME} entry cannot be read", _EXPECTED) from None
    if meta is None:
        what = "a Keras archive" if "model.weights.h5" in names else "a zip archive"
        raise ValueError(f"{path} is not an inception_lib Keras training checkpoint: {what} without the {META_NAME} "
                         "entry that inception_lib's Keras trainer adds")
    if not isinstance(meta, dict):
        raise runfiles.corrupt_checkpoint(path, f"its {META_NAME} entry is not a JSON object", _EXPECTED)
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("framework") != "keras":
        raise ValueError(f"{path} is not an inception_lib Keras training checkpoint "
                         f"(format {meta.get('format')!r}, framework {meta.get('framework')!r})")
    return meta


def load_checkpoint(path: Union[str, Path], model: Optional[keras.Model] = None, *,
                    weights: str = "model") -> tuple[keras.Model, dict[str, Any]]:
    """Rebuild and compile the checkpoint's model, load weights and optimizer state; returns (model, meta).

    ``weights="ema"`` leaves the Polyak-averaged weights (and averaged BatchNorm statistics) in the model.
    A ``model`` of another architecture is refused with a ValueError naming both. (``keras.saving.load_model``
    also opens the file, after ``import inception_lib.train_keras``; it restores everything except the
    averaged BatchNorm statistics, which only this function can match to the model's layers.)
    """
    if weights not in ("model", "ema"):
        raise ValueError(f"weights must be 'model' or 'ema', got {weights!r}")
    path = Path(path)
    meta = read_checkpoint_meta(path)
    arch = meta["architecture"]
    cfg = TrainConfig.from_dict(meta["config"])
    if model is None:  # under the run's own dtype policy: an fp16 run's optimizer state is a LossScaleOptimizer's
        model = build_model(cfg, int(arch["num_classes"]), int(arch["in_channels"]), int(arch["image_size"][0]),
                            dtype_policy=POLICIES[(meta.get("precision") or {}).get("compute", "fp32")])
    check_architecture(arch, _model_architecture(model), where=path)
    optimizer = compile_model(model, cfg, int(meta["steps_per_epoch"]))
    _load_state(model, path)
    if weights == "ema":
        if not cfg.ema:
            raise ValueError(f"{path} has no EMA weights (trained with ema=False)")
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # fp16: the TorchSGD inside
        for v, a in optimizer.average_pairs():
            v.assign(a)
    return model, meta


# ----------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------


def _eval_step(model: keras.Model, eager: bool) -> Callable[[Any, Any], tuple[Any, Any, Any]]:
    """(sum of cross-entropy, correct, n) of the main head for one batch, in inference mode."""
    import tensorflow as tf

    infer = inference_model(model)

    def step(x: Any, y: Any) -> tuple[Any, Any, Any]:
        logits = tf.cast(infer(x, training=False), tf.float32)
        y = tf.cast(tf.reshape(y, [-1]), tf.int64)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=1), y), tf.float64)
        return tf.reduce_sum(tf.cast(ce, tf.float64)), tf.reduce_sum(correct), tf.size(y)

    return step if eager else tf.function(step, reduce_retracing=True)


def evaluate_loss_acc(step: Callable[[Any, Any], tuple[Any, Any, Any]], dataset: Any) -> tuple[Optional[float], Optional[float]]:
    """Mean cross-entropy (no label smoothing) and top-1 of the main head over a dataset (None if empty)."""
    loss = correct = 0.0
    n = 0
    for x, y in dataset:
        s, c, k = step(x, y)
        loss += float(s)
        correct += float(c)
        n += int(k)
    if n == 0:
        return None, None
    return loss / n, correct / n


def predict_logits(model: keras.Model, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """The main head's float32 logits and the labels over a dataset of (images, labels) batches."""
    infer = inference_model(model)
    logits, labels = [], []
    for x, y in dataset:
        logits.append(np.asarray(ops.convert_to_numpy(infer(x, training=False)), dtype=np.float32))
        labels.append(np.asarray(y).reshape(-1))
    return np.concatenate(logits), np.concatenate(labels)


# ----------------------------------------------------------------------------------------------------
# Callbacks
# ----------------------------------------------------------------------------------------------------


class _FiniteLossGuard(keras.callbacks.Callback):
    """Raise :class:`NonFiniteLossError` after the first batch whose loss is NaN / inf.

    Keras's logged ``loss`` is the running mean of the epoch, so it turns non-finite at the first bad batch
    and stays so. Unlike ``TerminateOnNaN`` (which stops quietly after finishing the epoch's callbacks) this
    raises at once, before any epoch-end callback could save the damaged weights.
    """

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int, ckpt: Path, last_good: Callable[[], int]) -> None:
        super().__init__()
        self.cfg, self.n, self.ckpt, self.last_good = cfg, steps_per_epoch, ckpt, last_good
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Optional[dict[str, Any]] = None) -> None:
        value = float((logs or {}).get("loss", 0.0))
        if math.isfinite(value):
            return
        lr = lr_at(self.cfg, self.epoch + batch / self.n)
        raise runfiles.diverged(f"training loss is {value} at epoch {self.epoch + 1}, step {batch + 1}/{self.n} "
                                f"(global step {self.epoch * self.n + batch + 1}), lr {lr:.4g}: the run diverged",
                                self.ckpt, self.last_good())


class _EpochRecorder(keras.callbacks.Callback):
    """One history row per epoch (exactly EPOCH_KEYS), then checkpoint and history files, atomically."""

    def __init__(self, run: _Run) -> None:
        super().__init__()
        self.run = run
        self.t0 = 0.0

    def on_epoch_begin(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        self.run.end_epoch(epoch, dict(logs or {}), self.t0, time.perf_counter())


@dataclasses.dataclass
class _Run:
    """The state of one training run that the callbacks read and update."""

    cfg: TrainConfig
    model: keras.Model
    optimizer: Any  # TorchSGD, or a LossScaleOptimizer around one (fp16)
    eval_step: Callable[[Any, Any], tuple[Any, Any, Any]]
    val: Any
    out: Path
    ckpt: Path
    arch: dict[str, Any]
    steps_per_epoch: int
    hardware: dict[str, Any]
    rows: list[dict[str, Any]]
    wall_offset: float
    t_run: float
    best: Optional[float]
    verbose: bool
    precision: Optional[dict[str, Any]] = None

    def doc(self, status: str, test: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """The history document of the run so far."""
        return runfiles.history_doc("keras", self.cfg, self.rows, status, test, self.hardware, self.precision)

    def end_epoch(self, epoch: int, logs: dict[str, Any], t0: float, t_end: float) -> None:
        cfg, n = self.cfg, self.steps_per_epoch
        train_time = t_end - t0
        val_loss, val_acc = evaluate_loss_acc(self.eval_step, self.val)
        if val_loss is not None and not math.isfinite(val_loss):
            # The last steps of the epoch blew the weights up after their (finite) losses were computed:
            # do not save them.
            raise runfiles.diverged(f"validation loss is {val_loss} after epoch {epoch + 1} (the training losses were "
                                    "finite, so the epoch's last update diverged)", self.ckpt,
                                    int(self.rows[-1]["epoch"]) if self.rows else 0)
        val_acc_ema = None
        with ema_weights(self.model, self.optimizer) as swapped:
            if swapped:
                val_acc_ema = evaluate_loss_acc(self.eval_step, self.val)[1]
        now = time.perf_counter()
        # Keras names the logs after the output layers (fc_loss, aux1_fc2_accuracy...); one output: plain names.
        names = (("fc", "aux1_fc2", "aux2_fc2") if cfg.aux_logits else ("", None, None))
        train = [None if h is None else float(logs[f"{h}_{m}" if h else m]) for m in ("loss", "accuracy") for h in names]
        row = dict(zip(EPOCH_KEYS, (epoch + 1, lr_at(cfg, epoch), float(logs["loss"]), *train, val_loss,
                                    val_acc, val_acc_ema, now - t0, self.wall_offset + (now - self.t_run),
                                    n * cfg.batch_size / max(train_time, 1e-9)), strict=True))
        self.rows.append(row)
        improved = val_acc is not None and (self.best is None or val_acc > self.best)
        if improved:
            self.best = val_acc
        meta = {
            "format": CHECKPOINT_FORMAT, "framework": "keras", "architecture": self.arch, "config": cfg.to_dict(),
            "epoch": epoch + 1, "step": int(ops.convert_to_numpy(self.optimizer.iterations)),
            "steps_per_epoch": n, "history": self.rows, "wall_time_s": row["wall_time_s"], "best_val_acc": self.best,
            "ema": bool(cfg.ema), "versions": runfiles.versions(), "precision": self.precision,
        }
        _save_checkpoint(self.model, meta, self.ckpt)
        if improved:  # the same bytes as last.keras at this epoch
            _link_or_copy(self.ckpt, self.out / BEST)
        runfiles.write_run(self.out, cfg, self.doc("running"))
        if self.verbose:
            print(runfiles.epoch_line(row, cfg.epochs), flush=True)


# ----------------------------------------------------------------------------------------------------
# Devices
# ----------------------------------------------------------------------------------------------------


POLICIES: dict[str, Optional[str]] = {"fp32": None, "bf16": "mixed_bfloat16", "fp16": "mixed_float16",
                                      "fp64": "float64"}
"""The Keras dtype policy of each resolved precision (None: Keras's default, float32)."""


def _gpu_bf16_native(gpus: Sequence[Any]) -> bool:
    """Whether every one of these physical GPUs has native bf16 (compute capability >= 8.0)."""
    import tensorflow as tf

    def capability(gpu: Any) -> tuple[int, ...]:
        try:
            return tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0,))
        except Exception:  # noqa: BLE001 - details are optional (e.g. a ROCm build)
            return (0,)

    return bool(gpus) and all(capability(g) >= (8, 0) for g in gpus)


def choose_precision(cfg: TrainConfig, uses_gpu: bool, bf16_native: bool) -> dict[str, Any]:
    """``cfg.precision`` resolved for Keras (:func:`inception_lib.config.resolve_precision`, as PyTorch).

    Keras models are NHWC whatever ``cfg.channels_last`` says, so the record says ``channels_last: True``.
    """
    return resolve_precision(cfg.precision, "cuda" if uses_gpu else "cpu", bf16_native, channels_last=True)


def _strategy(cfg: TrainConfig, bf16_native: Optional[bool] = None) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(distribution strategy, hardware facts, precision record) for ``cfg.device``.

    More than one visible GPU (or an explicit ``cfg.devices`` list) -> MirroredStrategy over them;
    otherwise the default strategy, on the GPU if there is one (``device="cpu"`` pins everything to the CPU).
    ``bf16_native`` None asks the visible GPUs (:func:`_gpu_bf16_native`); tests force True / False.
    """
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    device = cfg.device
    if device not in ("auto", "cpu", "cuda", "gpu", "mps") and not device.startswith(("cuda:", "gpu:")):
        raise ValueError(f"device must be auto, cpu, cuda / gpu or mps for Keras, got {device!r}")
    if device not in ("auto", "cpu") and not gpus:
        raise RuntimeError(f"device {device!r} asked for, but TensorFlow sees no GPU; use device='auto' or 'cpu'")
    hardware = dict(repro.hardware())
    explicit = cfg.devices
    if explicit:
        strategy = tf.distribute.MirroredStrategy(devices=list(explicit))
        where = ",".join(explicit)
    elif ":" in device:  # cuda:N / gpu:N, as torch spells one device
        index = int(device.split(":", 1)[1])
        if index >= len(gpus):
            raise RuntimeError(f"device {device!r} asked for, but TensorFlow sees {len(gpus)} GPU(s)")
        where = f"/GPU:{index}"
        strategy = tf.distribute.OneDeviceStrategy(where)
    elif device != "cpu" and len(gpus) > 1:  # every visible GPU, batch_size the global batch
        strategy = tf.distribute.MirroredStrategy()
        where = ",".join(g.name for g in gpus)
    elif device == "cpu" and gpus:
        where = "/CPU:0"
        strategy = tf.distribute.OneDeviceStrategy(where)  # keep a visible GPU out of it
    else:
        where = gpus[0].name if gpus else "/CPU:0"
        strategy = tf.distribute.get_strategy()
    uses_gpu = "GPU" in where.upper()
    phys = tf.config.list_physical_devices("GPU") if uses_gpu else []
    if uses_gpu:
        with contextlib.suppress(Exception):  # details are optional
            hardware["gpu"] = tf.config.experimental.get_device_details(phys[0]).get("device_name", "GPU")
            hardware["gpu_count"] = len(phys)
    hardware.update({"device": where, "world_size": int(strategy.num_replicas_in_sync)})
    if bf16_native is None:
        bf16_native = _gpu_bf16_native(phys)
    return strategy, hardware, choose_precision(cfg, uses_gpu, bf16_native)


# ----------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------


def _steps_per_epoch(cfg: TrainConfig, train_ds: Any) -> int:
    import tensorflow as tf

    card = int(train_ds.cardinality())
    if card == tf.data.INFINITE_CARDINALITY or card < 0:
        if cfg.max_steps_per_epoch is None:
            raise ValueError("the training dataset has no known length: set max_steps_per_epoch")
        return cfg.max_steps_per_epoch
    n = card if cfg.max_steps_per_epoch is None else min(card, cfg.max_steps_per_epoch)
    if n == 0:
        raise ValueError(f"the training set gives no full batch of {cfg.batch_size} images (subset={cfg.subset})")
    return n


def _one_target_per_head(x: Any, y: Any) -> tuple[Any, tuple[Any, Any, Any]]:
    """Keras wants one target per output: the main head and both aux heads learn the same label."""
    return x, (y, y, y)


def _check_batches(ds: Any, name: str, size: int, channels: int) -> None:
    spec_x = ds.element_spec[0]
    shape = tuple(spec_x.shape)
    if len(shape) != 4 or tuple(shape[1:]) != (size, size, channels):
        raise ValueError(f"the {name} dataset yields batches of shape {shape}; the model expects "
                         f"(batch, {size}, {size}, {channels}) (NHWC)")


def train(cfg: TrainConfig, *, resume: bool = False, datasets: Optional[Mapping[str, Any]] = None,
          overwrite: bool = False, test: bool = False, progress: Optional[bool] = None,
          verbose: bool = True) -> dict[str, Any]:
    """Train as ``cfg`` says with Keras, writing ``cfg.out_dir`` after every epoch; returns the history document.

    The keywords are :func:`inception_lib.train.train`'s; ``datasets`` (``{"train", "val"[, "test"]}`` batched
    ``tf.data`` datasets of NHWC images and labels, train dropping the remainder) replaces
    :func:`inception_lib.data.tf_datasets`. Every refusal (another architecture or config, a damaged checkpoint)
    comes before a file is written.
    """
    dcfg, out, ckpt_path = runfiles.preflight(cfg, "keras", LAST, resume=resume, overwrite=overwrite)
    num_classes, channels, size = dcfg.num_classes, dcfg.image_channels, dcfg.image_size
    arch = architecture(cfg, num_classes, channels, size)
    meta: Optional[dict[str, Any]] = None
    if resume:  # every refusal happens here, before a file is written
        meta = read_checkpoint_meta(ckpt_path)
        runfiles.check_zip_archive(ckpt_path, _EXPECTED)  # every entry's CRC, before data and model are built
        check_architecture(meta["architecture"], arch, where=ckpt_path)
        runfiles.check_resume_config(meta["config"], cfg, ckpt_path)

    _note_op_determinism(cfg.deterministic)
    return _train(cfg, dcfg, arch, out, ckpt_path, meta, datasets=datasets, test=test, progress=progress,
                  verbose=verbose)


_deterministic_run_seen = False
"""Whether a ``deterministic=True`` run of this module has switched TF op determinism on in this process."""


def _note_op_determinism(deterministic: bool) -> None:
    """TF op determinism is process-wide and one-way (no public API reads or undoes it): warn a later
    ``deterministic=False`` run in the same process that it still runs deterministic kernels."""
    global _deterministic_run_seen
    if deterministic:
        _deterministic_run_seen = True
    elif _deterministic_run_seen:
        import warnings

        warnings.warn("deterministic=False, but TensorFlow op determinism is still on from an earlier "
                      "deterministic=True run in this process (TensorFlow has no public way to turn it off): this run "
                      "uses deterministic kernels; start a new process to train without them", stacklevel=3)


def _train(cfg: TrainConfig, dcfg: Any, arch: dict[str, Any], out: Path, ckpt_path: Path,
           meta: Optional[dict[str, Any]], *, datasets: Optional[Mapping[str, Any]], test: bool,
           progress: Optional[bool], verbose: bool) -> dict[str, Any]:
    repro.seed_everything(cfg.seed, cfg.threads, tensorflow=True, deterministic=cfg.deterministic)
    strategy, hardware, prec = _strategy(cfg)
    policy = POLICIES[prec["compute"]]
    start_epoch = int(meta["epoch"]) if meta else 0
    if datasets is None:
        from inception_lib import data

        # A new pipeline restarts tf.data's reshuffle counter; a resumed part gets its own seed so that it
        # does not replay the first epochs' order (see the module docstring).
        datasets = data.tf_datasets(dataclasses.replace(dcfg, seed=dcfg.seed + start_epoch))
    size, channels = int(arch["image_size"][0]), int(arch["in_channels"])
    for name in ("train", "val"):
        if name not in datasets:
            raise ValueError(f"datasets needs a {name!r} split, got {sorted(datasets)}")
        _check_batches(datasets[name], name, size, channels)
    n_steps = _steps_per_epoch(cfg, datasets["train"])
    if meta is not None and int(meta["steps_per_epoch"]) != n_steps:
        raise ValueError(f"cannot resume {ckpt_path}: it was trained with {meta['steps_per_epoch']} steps per epoch, "
                         f"this data gives {n_steps}")
    eager = cfg.run_eagerly

    with strategy.scope():
        model = build_model(cfg, arch["num_classes"], channels, size, dtype_policy=policy)
        check_architecture(arch, _model_architecture(model), where="the model built from the config")
        optimizer = compile_model(model, cfg, n_steps, run_eagerly=eager)
    rows: list[dict[str, Any]] = []
    wall_offset, best = 0.0, None
    if meta is not None:
        _load_state(model, ckpt_path)  # weights and the optimizer state (buffers, EMA, iterations)
        step = int(ops.convert_to_numpy(optimizer.iterations))
        if step != int(meta["step"]):
            raise ValueError(f"{ckpt_path}: the optimizer state did not load (step {step}, expected {meta['step']})")
        rows = [dict(r) for r in meta["history"]][:start_epoch]
        wall_offset, best = float(meta["wall_time_s"]), meta.get("best_val_acc")

    run = _Run(cfg=cfg, model=model, optimizer=optimizer, eval_step=_eval_step(model, eager), val=datasets["val"],
               out=out, ckpt=ckpt_path, arch=arch, steps_per_epoch=n_steps, hardware=hardware, rows=rows,
               wall_offset=wall_offset, t_run=time.perf_counter(), best=best, verbose=verbose, precision=prec)
    if meta is None:  # a fresh run (overwrite: the old run's checkpoints go); a resumed one writes after its epochs
        runfiles.new_run_folder(out, cfg, run.doc("running"), LAST, BEST)
    train_ds = datasets["train"]
    if cfg.aux_logits:
        train_ds = train_ds.map(_one_target_per_head)
    # Each epoch is the first n_steps batches of a fresh shuffle (the PyTorch trainer's max_steps_per_epoch).
    train_ds = train_ds.take(n_steps).repeat()
    callbacks = [_FiniteLossGuard(cfg, n_steps, ckpt_path, lambda: int(run.rows[-1]["epoch"]) if run.rows else 0),
                 _EpochRecorder(run)]
    if start_epoch < cfg.epochs:
        with warnings_filtered():
            model.fit(train_ds, epochs=cfg.epochs, initial_epoch=start_epoch, steps_per_epoch=n_steps,
                      callbacks=callbacks, shuffle=False, verbose=1 if runfiles.progress_enabled(progress) else 0)

    test_result = None
    if test:
        test_result = _test_once(model, optimizer, datasets, arch, epoch=len(run.rows))
    elif meta is not None and start_epoch == cfg.epochs:  # nothing trained now: keep an earlier test result
        test_result = runfiles.previous_test(out, start_epoch)
    doc = run.doc("completed", test_result)
    runfiles.write_history(out, doc)
    if verbose and test_result is not None:
        print(runfiles.final_test_line(test_result), flush=True)
    return doc


@contextlib.contextmanager
def warnings_filtered() -> Iterator[None]:
    """Silence Keras's notice that a repeated dataset never ends (``steps_per_epoch`` bounds each epoch)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ran out of data.*")
        yield


def _test_once(model: keras.Model, optimizer: Any, datasets: Mapping[str, Any], arch: Mapping[str, Any],
               epoch: int) -> dict[str, Any]:
    """The final weights (and the EMA) on the test split, once, after all model selection."""
    from inception_lib import evaluate as E

    if "test" not in datasets:
        raise ValueError("test=True but the datasets have no 'test' split")
    k = int(arch["num_classes"])

    def run() -> dict[str, Any]:
        logits, labels = predict_logits(model, datasets["test"])
        return E.result_from_probs(logits, labels, E.default_ks(k), k).to_dict(include_confusion=False)

    result = run()
    with ema_weights(model, optimizer) as swapped:
        return runfiles.final_test(epoch, result, run() if swapped else None)

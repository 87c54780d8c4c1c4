"""PyTorch's SGD, learning-rate schedule and loss for Keras: the custom pieces the Keras trainer needs, on public APIs.

Why they are not Keras's own: ``keras.optimizers.SGD`` keeps ``lr`` inside its velocity (``v = m * v - lr * g``, the
same as PyTorch's only while ``lr`` is constant) and decays weights *decoupled* (about 10x less than PyTorch's coupled
L2 at momentum 0.9), and its ``use_ema`` averages no BatchNorm statistics. With them the two trainers would train
different networks; ``tests/test_train_parity.py`` holds these to PyTorch's numbers at 1e-9 (float64). Only the
documented optimizer hooks are used (``build``, ``add_variable_from_reference``, ``update_step``, ``apply``), so an
unpinned Keras (Colab's) does not break them; ``tests/test_public_apis.py`` checks that.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
from keras import ops  # noqa: E402

from inception_lib.config import TrainConfig, lr_at  # noqa: E402

__all__ = ["LrAtSchedule", "SparseCrossEntropy", "TorchSGD"]


def _lr_table(cfg: TrainConfig, steps_per_epoch: int) -> np.ndarray:
    """``lr_at(cfg, e + i / n)`` for every step of the run (and one past the end), the PyTorch argument."""
    n = steps_per_epoch
    return np.array([lr_at(cfg, s // n + (s % n) / n) for s in range(cfg.epochs * n + 1)], dtype=np.float64)


@keras.saving.register_keras_serializable(package="inception_lib")
class LrAtSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The learning rate of :func:`inception_lib.config.lr_at` at optimizer step ``step``.

    The values are computed in Python (by ``lr_at`` itself, so the two frameworks cannot drift apart) for
    every step of the run and looked up in the graph: ``step`` s is epoch ``s // n``, batch ``s % n``, the
    same ``epoch + i / n`` the PyTorch trainer passes. Steps past the end keep the last value.
    """

    def __init__(self, config: Union[TrainConfig, Mapping[str, Any]], steps_per_epoch: int) -> None:
        self.config = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(dict(config))
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.steps_per_epoch = int(steps_per_epoch)
        self.table = _lr_table(self.config, self.steps_per_epoch)

    def value(self, step: int) -> float:
        """The float64 value at ``step`` (what the graph uses, before the float32 cast)."""
        return float(self.table[min(max(int(step), 0), len(self.table) - 1)])

    def __call__(self, step: Any) -> Any:
        return self.at(step, "float32")

    def at(self, step: Any, dtype: str = "float32") -> Any:
        """The rate at ``step`` as a ``dtype`` tensor: :class:`TorchSGD` asks for float64 when it updates a float64
        variable (``precision="fp64"``), so that the rate is PyTorch's exactly, not its float32 rounding."""
        with np.errstate(over="ignore"):  # a diverging config may ask for more than float32 holds: inf
            table = ops.convert_to_tensor(self.table.astype(dtype))
        index = ops.clip(ops.cast(step, "int32"), 0, len(self.table) - 1)
        return ops.take(table, index)

    def get_config(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "steps_per_epoch": self.steps_per_epoch}


_UNUSED_OPTIONS = ("weight_decay", "use_ema", "ema_momentum", "ema_overwrite_frequency")


class _ModelRefs:
    """Model variables the optimizer reads (for the averages) but must not own: Keras tracks every
    ``keras.Variable`` assigned to an optimizer attribute as an optimizer variable (saved with its state), and
    a plain object is not looked into."""

    def __init__(self) -> None:
        self.trainable: list[Any] = []
        self.buffers: list[Any] = []
        self.index: dict[Any, int] = {}


@keras.saving.register_keras_serializable(package="inception_lib")
class TorchSGD(keras.optimizers.Optimizer):
    """``torch.optim.SGD`` (momentum, dampening 0, coupled L2) as a Keras optimizer, with ``AveragedModel``'s EMA.

    Per variable: ``g += l2 * w`` if ``ndim > 1`` (kernels only); ``buf = momentum * buf + g``; ``w -= lr * buf``
    (Nesterov: ``w -= lr * (g + momentum * buf)``). ``ema_decay`` (None: none): after every step ``avg += c * (var -
    avg)``, ``c = 1`` at the first step and ``1 - ema_decay`` after, for the trainable variables and the BatchNorm
    buffers given to :meth:`average_buffers`. The averages are optimizer variables (``model.save`` carries them);
    the model holds the trained weights (:func:`ema_weights` swaps the averages in). Variables, in order:
    ``iterations``, weight averages, momentum buffers, BatchNorm averages.
    """

    def __init__(self, learning_rate: Any = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 l2: float = 0.0, ema_decay: Optional[float] = None, **kwargs: Any) -> None:
        if ema_decay is None and kwargs.get("use_ema"):  # a config of the earlier SGD-based TorchSGD
            ema_decay = kwargs.get("ema_momentum") or 0.99
        for key in _UNUSED_OPTIONS:  # in the base Optimizer's config; not used (see the class docstring)
            kwargs.pop(key, None)
        super().__init__(learning_rate=learning_rate, **kwargs)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        if ema_decay is not None and not 0.0 <= ema_decay <= 1.0:
            raise ValueError(f"ema_decay must be in [0, 1] or None, got {ema_decay}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.l2 = float(l2)
        self.ema_decay = None if ema_decay is None else float(ema_decay)
        self.schedule = learning_rate if isinstance(learning_rate, LrAtSchedule) else None
        self.momentums: list[Any] = []
        self.averages: list[Any] = []
        self.buffer_averages: list[Any] = []
        self.model_refs = _ModelRefs()

    def average_buffers(self, variables: Sequence[Any]) -> None:
        """Also average these non-trainable variables (BatchNorm moving stats); call before ``build``."""
        if self.built:
            raise RuntimeError("average_buffers must be called before the optimizer is built")
        self.model_refs.buffers = list(variables)

    def average_pairs(self) -> list[tuple[Any, Any]]:
        """(model variable, its average) for every averaged variable: weights, then BatchNorm buffers."""
        if self.ema_decay is None:
            return []
        return list(zip(self.model_refs.trainable, self.averages)) + list(zip(self.model_refs.buffers,
                                                                               self.buffer_averages))

    def build(self, variables: Sequence[Any]) -> None:
        if self.built:
            return
        import tensorflow as tf

        super().build(variables)
        refs = self.model_refs
        refs.trainable = list(variables)
        # update_step gets the backend variable (under tf.distribute: one replica's copy of it), not the
        # keras.Variable: every form is mapped to the variable's position.
        strategy = tf.distribute.get_strategy()
        for i, v in enumerate(refs.trainable):
            if isinstance(v, keras.Variable):
                refs.index[v.path] = i
                v = v.value
            refs.index[v.ref()] = i
            for local in strategy.experimental_local_results(v):
                refs.index[local.ref()] = i
        if self.ema_decay is not None:
            self.averages = [self.add_variable_from_reference(v, name="average") for v in refs.trainable]
        if self.momentum != 0:
            self.momentums = [self.add_variable_from_reference(v, name="momentum") for v in refs.trainable]
        if self.ema_decay is not None:
            self.buffer_averages = [self.add_variable_from_reference(v, name="average") for v in refs.buffers]

    def variable_index(self, variable: Any) -> int:
        """The position of ``variable`` (a keras.Variable, or the backend variable update_step gets) in ``build``'s list."""
        key = variable.path if isinstance(variable, keras.Variable) else variable.ref()
        try:
            return self.model_refs.index[key]
        except KeyError:
            raise KeyError(f"{self.name}: {getattr(variable, 'name', variable)} is not a variable this optimizer was "
                           "built with (build it inside the distribution strategy's scope)") from None

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        # Python constants become tensors *of the variable's dtype* (ops.cast(0.9, "float64") would go through a
        # float32 constant: 0.8999999761581421), and a float64 variable gets the float64 learning rate.
        dtype = keras.backend.standardize_dtype(variable.dtype)
        if dtype == "float64" and self.schedule is not None:
            learning_rate = self.schedule.at(self.iterations, "float64")
        lr = ops.cast(learning_rate, dtype)
        g = ops.cast(gradient, dtype)
        if self.l2 and len(variable.shape) > 1:
            g = ops.add(g, ops.multiply(ops.convert_to_tensor(self.l2, dtype=dtype), variable))
        if self.momentum != 0:
            buf = self.momentums[self.variable_index(variable)]
            mom = ops.convert_to_tensor(self.momentum, dtype=dtype)
            self.assign(buf, ops.add(ops.multiply(buf, mom), g))  # PyTorch's first step (buf = g) included
            step = ops.add(g, ops.multiply(buf, mom)) if self.nesterov else buf
        else:
            step = g
        self.assign_sub(variable, ops.multiply(step, lr))

    def apply(self, grads: Any, trainable_variables: Any = None) -> None:
        """Keras's step (all-reduce, ``update_step`` for every variable, ``iterations += 1``), then the averages."""
        if self.ema_decay is None or len(grads) == 0:
            super().apply(grads, trainable_variables)
            return
        first = ops.equal(self.iterations, 0)  # read before the step counts itself
        super().apply(grads, trainable_variables)
        weights: dict[str, Any] = {}
        for var, average in self.average_pairs():
            dtype = keras.backend.standardize_dtype(var.dtype)
            if dtype not in weights:  # 1 - d in the variable's dtype (a float32 0.1 would be 0.10000000149)
                weights[dtype] = ops.where(first, ops.convert_to_tensor(1.0, dtype=dtype),
                                           ops.convert_to_tensor(1.0 - self.ema_decay, dtype=dtype))
            # avg += w * (var - avg), PyTorch's lerp. Under MirroredStrategy this runs per replica, on that
            # replica's copies (the averages are created with aggregation "none").
            self.assign_add(average, ops.multiply(ops.subtract(var, average), weights[dtype]))

    def load_own_variables(self, store: Any) -> None:
        """Keras's loader, plus: a state saved *with* BatchNorm-buffer averages loads into an optimizer built
        without them (``keras.saving.load_model`` cannot know the buffers): the buffer averages, stored last,
        are left out with a warning, and everything else (iterations, momentum, weight averages) loads."""
        saved, own = len(store.keys()), len(self.variables)
        if self.ema_decay is not None and not self.buffer_averages and own > 0 and saved > own:
            import warnings

            for i, variable in enumerate(self.variables):
                variable.assign(store[str(i)])
            warnings.warn(f"{self.name}: {saved - own} averaged BatchNorm statistics in the saved state were not "
                          "loaded (this optimizer was not given the model's BatchNorm variables; "
                          "inception_lib.train_keras.load_checkpoint restores them)", stacklevel=2)
            return
        super().load_own_variables(store)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        for key in _UNUSED_OPTIONS:
            config.pop(key, None)
        config.update({"momentum": self.momentum, "nesterov": self.nesterov, "l2": self.l2,
                       "ema_decay": self.ema_decay})
        return config


@keras.saving.register_keras_serializable(package="inception_lib")
class SparseCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy on logits with integer labels and PyTorch-style label smoothing.

    ``label_smoothing=0`` is plain sparse cross-entropy; otherwise the target is
    ``(1 - eps) * onehot + eps / num_classes`` (``torch.nn.CrossEntropyLoss(label_smoothing=eps)``).
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "sparse_cross_entropy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        if keras.backend.standardize_dtype(y_pred.dtype) != "float64":  # float16 / bfloat16 logits: float32
            y_pred = ops.cast(y_pred, "float32")
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        if self.label_smoothing == 0.0:
            return keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)
        onehot = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(onehot, y_pred, from_logits=True,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}

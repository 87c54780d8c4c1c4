"""The library uses public Keras / TensorFlow API only.

Colab's Keras is not pinned, and private attributes (``optimizer._get_variable_index``, ``_trainable_variables``,
``tensorflow.python...``) change or vanish between releases without a deprecation. This test reads the source of
every module in ``inception_lib/`` and ``scripts/`` (their syntax trees: docstrings and comments may name private
things) and fails, naming file and line, on

* imports of ``tensorflow.python``, ``tensorflow.core``, ``keras.src`` (and ``tf.__internal__`` / ``keras.src``
  reached as attributes);
* access to a known private Keras / TF attribute (:data:`KNOWN_PRIVATE`), on any object, also through
  ``getattr`` / ``hasattr`` / ``setattr`` with the name as a string;
* ``._name`` on an object that is Keras / TF by its name (:data:`KERAS_TF_OBJECT`: ``opt``, ``optimizer``,
  ``model``, ``layer``, ``strategy``, ``tf...``, ``keras...``, ...);
* inside a class that subclasses a Keras / TF class, ``self._name`` that the class itself does not define (an
  attribute or method of the Keras base class), and overrides of known private methods.

PyTorch internals are outside this test (``inception_lib/pytorch.py`` has two, guarded).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(ROOT / "inception_lib").rglob("*.py"), *(ROOT / "scripts").rglob("*.py")])

PRIVATE_MODULES = re.compile(r"^(tensorflow\.(python|core|compiler|tsl)|keras\.src|keras\._tf_keras|tf_keras\.src)(\.|$)")
"""Modules that are TF's / Keras's implementation, not their API (``tf.*`` / ``keras.*`` are)."""

KNOWN_PRIVATE = frozenset({
    # keras.optimizers.Optimizer internals (what train_keras.TorchSGD used before it used public hooks only)
    "_get_variable_index", "_var_key", "_trainable_variables", "_trainable_variables_indices",
    "_model_variables_moving_average", "_update_model_variables_moving_average",
    "_overwrite_model_variables_with_average_value", "_backend_apply_gradients", "_backend_update_step",
    "_distributed_tf_update_step", "_all_reduce_sum_gradients", "_learning_rate", "_get_current_learning_rate",
    "_iterations", "_distribution_strategy", "_variables", "_tracker", "_track_variable", "_untrack_variable",
    "_accumulated_gradients", "_buffer_refs", "_buffer_averages",
    # keras.Variable / Layer / Model internals
    "_value", "_layout", "_direct_assign", "_initialize", "_distribute_strategy", "_compile_config",
    "_layers", "_inbound_nodes", "_outbound_nodes", "_keras_history", "_build_shapes_dict", "_loss_tracker",
    "_jit_compile", "_run_eagerly", "_compile_loss", "_compile_metrics",
    # tf.distribute / tf.Variable internals
    "_distributed_container", "_get_on_device_or_primary", "_get_replica", "_unique_id", "_handle_name",
    "_primary", "_values",
})

KERAS_TF_OBJECT = re.compile(
    r"^(self\.)?(opt|optimizer|inner_optimizer|kopt|model|km|infer|layer|layers|strategy|distribution|tf|keras|"
    r"ops|backend|saving_lib)\b|^(tf|keras)\.")
"""Receivers that are Keras / TF objects by name (the start of the expression left of ``._name``)."""

KERAS_TF_BASE = re.compile(r"^(keras|tf|layers|models|optimizers|callbacks|losses|metrics|schedules)\.")
"""Base classes that are Keras / TF classes (``keras.layers.Layer``, ``layers.Layer`` after ``from keras import
layers``...); a subclass of such a class in the same module counts too."""


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


class _Checker(ast.NodeVisitor):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.found: list[str] = []
        self.own: list[set[str]] = []  # the self._names each enclosing Keras / TF subclass defines
        self.classes: dict[str, set[str]] = {}  # this module's Keras / TF subclasses -> their own names

    def flag(self, node: ast.AST, what: str) -> None:
        self.found.append(f"{self.path.relative_to(ROOT)}:{node.lineno}: {what}")

    # imports -----------------------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if PRIVATE_MODULES.match(alias.name):
                self.flag(node, f"imports the private module {alias.name}")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        mod = node.module or ""
        if PRIVATE_MODULES.match(mod):
            self.flag(node, f"imports from the private module {mod}")
        elif mod in ("tensorflow", "keras"):
            for alias in node.names:
                if PRIVATE_MODULES.match(f"{mod}.{alias.name}") or _private(alias.name):
                    self.flag(node, f"imports the private {mod}.{alias.name}")
        self.generic_visit(node)

    # classes deriving from Keras / TF ----------------------------------------------------------------
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        bases = [ast.unparse(b) for b in node.bases]
        local = [self.classes[b] for b in bases if b in self.classes]  # a Keras-based class of this module
        keras_based = bool(local) or any(KERAS_TF_BASE.match(b) for b in bases)
        if keras_based:
            for fn in node.body:
                if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.name in KNOWN_PRIVATE:
                    self.flag(fn, f"{node.name}.{fn.name} overrides a private Keras / TF method")
            own = set().union(*local) | {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
            for sub in ast.walk(node):
                targets = sub.targets if isinstance(sub, ast.Assign) else \
                    [sub.target] if isinstance(sub, (ast.AnnAssign, ast.AugAssign)) else []
                for t in targets:
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                        own.add(t.attr)
            self.classes[node.name] = own
            self.own.append(own)
        self.generic_visit(node)
        if keras_based:
            self.own.pop()

    # attribute access --------------------------------------------------------------------------------
    def _check_name(self, node: ast.AST, receiver: ast.AST, name: str) -> None:
        text = ast.unparse(receiver)
        if name == "__internal__" and KERAS_TF_OBJECT.match(text):
            self.flag(node, f"{text}.__internal__ is TensorFlow's internal namespace")
            return
        if not _private(name):
            return
        if name in KNOWN_PRIVATE:
            self.flag(node, f"{text}.{name} is a private Keras / TF attribute")
        elif KERAS_TF_OBJECT.match(text):
            self.flag(node, f"{text}.{name}: a private attribute of a Keras / TF object")
        elif text == "self" and self.own and name not in self.own[-1]:
            self.flag(node, f"self.{name} is not defined by this Keras / TF subclass: a private attribute of its base")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._check_name(node, node.value, node.attr)
        dotted = ast.unparse(node)
        if PRIVATE_MODULES.match(dotted) and not PRIVATE_MODULES.match(ast.unparse(node.value)):
            self.flag(node, f"{dotted} is a private module")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        fn = node.func
        if isinstance(fn, ast.Name) and fn.id in ("getattr", "hasattr", "setattr", "delattr") and len(node.args) >= 2:
            arg = node.args[1]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                self._check_name(node, node.args[0], arg.value)
        if isinstance(fn, (ast.Name, ast.Attribute)) and ast.unparse(fn).endswith("import_module") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and PRIVATE_MODULES.match(arg.value):
                self.flag(node, f"imports the private module {arg.value}")
        self.generic_visit(node)


def private_uses(source: str, path: Path) -> list[str]:
    """'file:line: what' for every private Keras / TF use in ``source``."""
    checker = _Checker(path)
    checker.visit(ast.parse(source, filename=str(path)))
    return sorted(checker.found, key=lambda f: int(f.split(":")[1]))


def test_the_sources_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in SOURCES}
    assert {"inception_lib/train_keras.py", "inception_lib/keras_optim.py", "inception_lib/keras.py",
            "inception_lib/convert.py"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_private_keras_or_tensorflow_api(path: Path):
    found = private_uses(path.read_text(encoding="utf-8"), path)
    assert not found, ("private Keras / TensorFlow API (breaks on an unpinned Keras; use the public API, see "
                       "tests/test_public_apis.py):\n  " + "\n  ".join(found))


BAD = '''
from tensorflow.python.framework import config as tf_config  # private
import tensorflow.python.eager.context  # private
from keras.src.optimizers import base_optimizer  # private
import keras
import tensorflow as tf

class Opt(keras.optimizers.SGD):
    def __init__(self):
        super().__init__()
        self._mine = 1

    def _backend_update_step(self, grads, trainable_variables, learning_rate):  # private
        pass

    def update_step(self, gradient, variable, learning_rate):
        m = self.momentums[self._get_variable_index(variable)]  # private
        lr = self._learning_rate  # private
        return self._mine + self._some_keras_thing  # private: not defined by Opt

class Sub(Opt):
    def f(self):
        return self._mine, self._other  # private: defined by neither Opt nor Sub

def ema(opt, model, strategy, torch_module):
    pairs = zip(opt._trainable_variables, getattr(opt, "_model_variables_moving_average", None))  # private
    strategy._extended_thing  # private
    model._private  # private
    tf.distribute._something  # private
    tf.__internal__.distribute.interim.maybe_merge_call  # private
    importlib.import_module("tensorflow.python.framework.config")  # private
    torch_module._own_thing, self_made._x
    return optimizer._iterations, anything._distribution_strategy  # private
'''
"""Private uses as train_keras.py had them, and more; each line with one ends in ``# private``."""


def test_the_checker_finds_each_kind_of_private_use():
    found = private_uses(BAD, ROOT / "inception_lib" / "bad.py")
    lines = sorted({int(f.split(":")[1]) for f in found})
    expected = [i + 1 for i, line in enumerate(BAD.splitlines()) if "# private" in line]
    assert lines == expected, "\n".join(found)
    assert not any("self._mine" in f for f in found)  # the subclass's own attribute is not Keras's
    assert any("self._some_keras_thing" in f for f in found) and any("self._other" in f for f in found)
    assert all(f.startswith("inception_lib/bad.py:") for f in found)


def test_the_checker_fails_on_the_trainer_as_it_was():
    """The lines of the earlier train_keras.py that used Keras / TF internals (verbatim), each one found."""
    old = '''
import keras
class TorchSGD(keras.optimizers.SGD):
    def update_step(self, gradient, variable, learning_rate):
        if dtype == "float64" and isinstance(self._learning_rate, LrAtSchedule):
            learning_rate = self._learning_rate.at(self.iterations, "float64")
        buf = self.momentums[self._get_variable_index(variable)]
    def _update_model_variables_moving_average(self, trainable_variables):
        pairs = [(v, a) for v, a in zip(trainable_variables, self._model_variables_moving_average) if a is not None]
def ema_weights(model, optimizer):
    averages = getattr(opt, "_model_variables_moving_average", None) if opt is not None else None
    pairs = [(v, a) for v, a in zip(opt._trainable_variables, averages) if a is not None]
    pairs = list(zip(optimizer._trainable_variables, optimizer._model_variables_moving_average))
def _op_determinism(value=None):
    from tensorflow.python.framework import config as tf_config
'''
    found = private_uses(old, ROOT / "inception_lib" / "train_keras.py")
    lines = {int(f.split(":")[1]) for f in found}
    assert lines == {5, 6, 7, 8, 9, 11, 12, 13, 15}, "\n".join(found)

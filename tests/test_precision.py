"""``TrainConfig.precision`` (auto | fp32 | bf16 | fp16 | fp64) and ``channels_last`` in both trainers, on CPU.

The GPU code paths run here on the CPU: bf16 autocast, fp16 autocast with ``torch.amp.GradScaler("cpu")``,
channels-last memory, float64 and ``torch.compile`` (inductor) of the model with its aux heads; for Keras
``mixed_bfloat16``, ``mixed_float16`` + ``LossScaleOptimizer`` and XLA (``jit_compile=True``). Each runs three
SGD steps from the same initial weights on the same batches as float32 (paper variant, 47 px: the smallest
input for which the aux heads work; batch 4; dropout off, so the steps are deterministic) and is compared
with float32: the three losses (relative to the loss, ~3.7 here) and, for PyTorch, the first step's change
of all the weights (relative norm: the backward pass and fp16's unscaling). Tolerances, and what this machine
gave::

    path           loss tolerance (observed)    first update (observed)   why
    bf16 autocast  5e-2 (2e-4; Keras 5e-4)      0.2  (6e-2)               8-bit mantissa
    fp16 + scaler  1e-2 (6e-5; Keras 3e-5)      5e-2 (1.2e-2)             11-bit mantissa
    fp64           1e-5 (6e-8)                  2e-3 (2.6e-4)             float32's own gradient error
    channels-last  1e-5 (6e-8)                  2e-4 (1.5e-5)             other kernels, other sum order
    torch.compile  1e-4 (6e-8)                  2e-4 (1.5e-5)             fused kernels
    Keras XLA      1e-4 (6e-8)                  -

The losses agree far inside the loss tolerances because this untrained network's logits are small (the loss
is mostly ln 10 per head); the first-update check is the sharp one. (The BatchNorm variant at this size is
too ill-conditioned for such checks: BatchNorm over 4 values of a 1x1 map amplifies rounding, so even fp64
and fp32 gradients differ by 2 %.)

Then the choice logic (``auto`` on CUDA with and without native bf16, and on CPU, forced through arguments
so it runs anywhere) and short real runs of both trainers that record their choice in history.json and the
checkpoint; fp64 PyTorch runs repeat bit for bit.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from torch import nn

from inception_lib import arithmetic, runfiles
from inception_lib import evaluate as E
from inception_lib import train as T
from inception_lib.config import PRECISIONS, TrainConfig, resolve_precision
from inception_lib.data import FASHION_MNIST_FILES, SYSTEM_DIRS

HAVE_FMNIST = all((SYSTEM_DIRS["fashion_mnist"] / s.filename).is_file() for p in FASHION_MNIST_FILES.values() for s in p)
needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason="apt-get install dataset-fashion-mnist")

RES = arithmetic.min_input_size("paper", aux_logits=True)  # 47: the aux heads' 5x5/3 pool needs a 5x5 map
BATCH, STEPS, LR = 4, 3, 1e-3
CPU = torch.device("cpu")
TOLERANCE = {"bf16": 5e-2, "fp16": 1e-2, "fp64": 1e-5, "channels_last": 1e-5, "compile": 1e-4, "xla": 1e-4}
# The first SGD step's parameter change, ||d - d_fp32|| / ||d_fp32||: the backward pass (and fp16's unscaling).
# float32's own gradient is only good to ~3e-4 here (fp64 vs fp32), so that bounds the fp64 check.
UPDATE_TOLERANCE = {"bf16": 0.2, "fp16": 5e-2, "fp64": 2e-3, "channels_last": 2e-4, "compile": 2e-4}


@pytest.fixture(autouse=True)
def _quiet_fast_io(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(runfiles.PROGRESS_ENV, "0")
    monkeypatch.setenv(runfiles.FSYNC_ENV, "0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: one thread per process runs faster than two fighting
    yield
    torch.set_num_threads(threads)


def max_rel(losses: list[float], ref: list[float]) -> float:
    return max(abs(a - b) / abs(b) for a, b in zip(losses, ref))


# ----------------------------------------------------------------------------------------------------
# The choice: one rule for both trainers
# ----------------------------------------------------------------------------------------------------


def test_auto_picks_bf16_fp16_or_fp32_by_device() -> None:
    bf16 = resolve_precision("auto", "cuda", bf16_native=True)
    assert bf16 == {"requested": "auto", "compute": "bf16", "params": "float32", "grad_scaler": False,
                    "channels_last": True, "reason": "CUDA device with native bf16"}
    fp16 = resolve_precision("auto", "cuda", bf16_native=False)  # a T4 (compute capability 7.5)
    assert (fp16["compute"], fp16["grad_scaler"], fp16["channels_last"]) == ("fp16", True, True)
    assert "compute capability < 8.0" in fp16["reason"]
    for kind in ("cpu", "mps"):
        cpu = resolve_precision("auto", kind, bf16_native=True)
        assert (cpu["compute"], cpu["grad_scaler"], cpu["channels_last"]) == ("fp32", False, False)
    assert resolve_precision("fp64", "cpu")["params"] == "float64"
    assert resolve_precision("bf16", "cpu", channels_last=True)["channels_last"] is True
    assert resolve_precision("fp32", "cuda", True, channels_last=False)["channels_last"] is False
    assert resolve_precision("bf16", "cuda", False)["reason"].startswith("asked for (this GPU has no native bf16")
    with pytest.raises(ValueError, match="MPS"):
        resolve_precision("fp64", "mps")
    with pytest.raises(ValueError, match=r"unknown precision 'half'; choose one of \['auto', 'fp32', 'bf16', 'fp16', 'fp64'\]"):
        TrainConfig(precision="half")
    assert PRECISIONS == ("auto", "fp32", "bf16", "fp16", "fp64") and TrainConfig().precision == "auto"
    assert not hasattr(TrainConfig(), "amp")


def test_both_trainers_resolve_alike() -> None:
    TK = pytest.importorskip("inception_lib.train_keras")
    for native, compute in ((True, "bf16"), (False, "fp16")):
        pt = T.choose_precision(TrainConfig(), torch.device("cuda"), bf16_native=native)
        k = TK.choose_precision(TrainConfig(framework="keras"), uses_gpu=True, bf16_native=native)
        assert pt["compute"] == k["compute"] == compute and pt["grad_scaler"] == k["grad_scaler"] == (compute == "fp16")
        assert TK.POLICIES[k["compute"]] == {"bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[compute]
    assert T.choose_precision(TrainConfig(), CPU)["compute"] == "fp32"
    _, _, prec = TK._strategy(TrainConfig(framework="keras", device="cpu"))
    assert (prec["compute"], prec["channels_last"]) == ("fp32", True)  # Keras is NHWC: always channels-last
    _, _, prec = TK._strategy(TrainConfig(framework="keras", device="cpu", precision="fp64"))
    assert TK.POLICIES[prec["compute"]] == "float64"


def test_cli_flags() -> None:
    from inception_lib.__main__ import _train_config, build_parser

    cfg = _train_config(build_parser().parse_args(["train", "--precision", "fp16", "--no-channels-last"]))
    assert (cfg.precision, cfg.channels_last) == ("fp16", False)
    cfg = _train_config(build_parser().parse_args(["train", "--channels-last"]))
    assert (cfg.precision, cfg.channels_last) == ("auto", True)
    assert (TrainConfig().precision, TrainConfig().channels_last) == ("auto", None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--amp"])


# ----------------------------------------------------------------------------------------------------
# PyTorch: a few steps in each precision against float32
# ----------------------------------------------------------------------------------------------------


def _batches(channels_first: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    shape = (BATCH, 1, RES, RES) if channels_first else (BATCH, RES, RES, 1)
    return [(rng.standard_normal(shape).astype(np.float32), rng.integers(0, 10, BATCH)) for _ in range(STEPS)]


def _torch_model(variant: str) -> nn.Module:
    torch.manual_seed(0)
    model = T.build_model(TrainConfig(variant=variant, resolution=RES, aux_weight=0.3), 10, 1)
    for m in model.modules():  # dropout off: the same steps in every precision
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model


class Steps(NamedTuple):
    losses: list[float]
    update: torch.Tensor  # the first step's change of every parameter, float64
    precision: dict[str, Any]
    seconds: list[float]


def _flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().to(torch.float64).flatten() for p in model.parameters()])


def _torch_steps(base: nn.Module, precision: str = "fp32", channels_last: bool | None = None,
                 compile: bool = False) -> Steps:
    """STEPS SGD steps through the trainer's own helpers (batch to device, autocast, loss, scaled step)."""
    cfg = TrainConfig(variant="paper", resolution=RES, aux_weight=0.3, batch_size=BATCH, lr=LR, precision=precision,
                      channels_last=channels_last, weight_decay=0.0)
    prec = T.choose_precision(cfg, CPU)
    model = copy.deepcopy(base).to(CPU, dtype=T._PARAM_DTYPES[prec["params"]])
    if prec["channels_last"]:
        model.to(memory_format=torch.channels_last)
    optimizer = T.make_optimizer(cfg, model)
    # A first scale of 2**10 instead of 2**16: no step of these three overflows, so they compare with float32
    # (the skipping itself: test_grad_scaler_on_cpu_scales_and_skips_overflowing_steps).
    scaler = T._grad_scaler(prec, CPU, init_scale=2.0**10)
    train_model = torch.compile(model) if compile else model
    criterion = nn.CrossEntropyLoss()
    losses, seconds, update = [], [], None
    w0 = _flat_params(model)
    for x, y in _batches():
        t0 = time.perf_counter()
        x, y = T._to_device(torch.from_numpy(x), torch.from_numpy(y), CPU, prec)
        assert x.dtype == T._PARAM_DTYPES[prec["params"]]
        with T._autocast(prec, CPU):
            outputs = train_model(x)
        assert outputs.logits.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}.get(prec["compute"], x.dtype)
        parts = T.compute_loss(outputs, y, criterion, cfg.aux_weight)
        assert parts.total.dtype == (torch.float64 if precision == "fp64" else torch.float32)
        T._backward_step(parts.total, optimizer, scaler)
        losses.append(parts.total.item())
        seconds.append(time.perf_counter() - t0)
        if update is None:
            update = _flat_params(model) - w0
    assert all(np.isfinite(losses)), losses
    if scaler is not None:
        assert scaler.get_scale() == 2.0**10  # no step skipped
    return Steps(losses, update, prec, seconds)


def update_rel(steps: Steps, ref: Steps) -> float:
    return float((steps.update - ref.update).norm() / ref.update.norm())


@pytest.fixture(scope="module")
def paper_fp32() -> tuple[nn.Module, Steps]:
    base = _torch_model("paper")
    return base, _torch_steps(base)


@pytest.mark.parametrize("precision,channels_last", [("bf16", None), ("fp16", None), ("fp64", None), ("fp32", True)])
def test_torch_precision_matches_fp32(paper_fp32: tuple[nn.Module, Steps], precision: str,
                                      channels_last: bool | None, record_property: Any) -> None:
    base, ref = paper_fp32
    steps = _torch_steps(base, precision, channels_last)
    assert steps.precision["compute"] == precision and steps.precision["grad_scaler"] == (precision == "fp16")
    name = "channels_last" if channels_last else precision
    loss, update = max_rel(steps.losses, ref.losses), update_rel(steps, ref)
    record_property(f"{name}_loss_rel", loss)
    record_property(f"{name}_update_rel", update)
    print(f"{name}: relative difference from float32: losses {loss:.2e} (tolerance {TOLERANCE[name]:.0e}), "
          f"first update {update:.2e} (tolerance {UPDATE_TOLERANCE[name]:.0e})")
    assert loss < TOLERANCE[name], (steps.losses, ref.losses)
    assert update < UPDATE_TOLERANCE[name]


def test_grad_scaler_on_cpu_scales_and_skips_overflowing_steps() -> None:
    """fp16's scaler on the CPU: the trainer's step scales the loss, skips an update whose gradients overflow
    (and halves the scale), applies the others; the weights stay float32."""
    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = T._grad_scaler(resolve_precision("fp16", "cpu"), CPU)
    assert scaler is not None and scaler.get_scale() == 2.0**16
    x = torch.randn(2, 4)
    before = model.weight.detach().clone()
    with torch.autocast("cpu", dtype=torch.float16):
        loss = model(x).float().sum() * 1e3  # 1e3 * 65536 overflows float16 in the backward pass
    T._backward_step(loss, opt, scaler)
    assert torch.equal(model.weight, before) and scaler.get_scale() == 2.0**15  # skipped
    with torch.autocast("cpu", dtype=torch.float16):
        loss = model(x).float().mean()
    T._backward_step(loss, opt, scaler)
    assert not torch.equal(model.weight, before) and model.weight.dtype == torch.float32


def test_torch_compile_with_aux_heads(paper_fp32: tuple[nn.Module, Steps], record_property: Any) -> None:
    """torch.compile (inductor, CPU) of the training model with aux heads: three steps equal eager float32.

    This caught a silent inductor bug (pytorch/pytorch#198119: the backward of a ceil-mode average pool
    divides an overhanging window by the full kernel; 15 % off in the first update here), which the aux
    heads' pool now avoids. The paper variant (no BatchNorm) keeps inductor's graph small; the options below
    only make the cold compile cheaper (one C++ file of scalar -O0 kernels: ~25 s here, ~5 s with inductor's
    cache warm; inductor's defaults take about 100 s for this graph, several minutes for the bn variant's),
    not what is compiled.
    """
    import torch._inductor.config as inductor_config

    base, ref = paper_fp32
    t0 = time.perf_counter()
    with inductor_config.patch({"cpp_wrapper": True, "cpp.vec_isa_ok": False, "aot_inductor.debug_compile": True}):
        steps = _torch_steps(base, compile=True)
    total = time.perf_counter() - t0
    loss, update = max_rel(steps.losses, ref.losses), update_rel(steps, ref)
    record_property("compile_first_step_s", steps.seconds[0])
    record_property("compile_loss_rel", loss)
    print(f"torch.compile: first step (compiles) {steps.seconds[0]:.1f} s, then {steps.seconds[1]:.2f} s; {total:.1f} s "
          f"in all; relative difference from eager: losses {loss:.2e}, first update {update:.2e}")
    assert loss < TOLERANCE["compile"], (steps.losses, ref.losses)
    assert update < UPDATE_TOLERANCE["compile"]


# ----------------------------------------------------------------------------------------------------
# PyTorch trainer: real runs record their choice
# ----------------------------------------------------------------------------------------------------


def tiny(out: Path, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = dict(variant="bn", resolution=32, aux_weight=0.0, subset=32, val_size=64, batch_size=16,
                                epochs=1, max_steps_per_epoch=2, lr=0.01, out_dir=str(out), threads=1,
                                eval_subset=16)
    base.update(kw)
    return TrainConfig(**base)


@needs_fmnist
@pytest.mark.parametrize("precision,channels_last", [("fp16", None), ("bf16", True)])
def test_torch_trainer_records_its_choice(tmp_path: Path, precision: str, channels_last: bool | None) -> None:
    cfg = tiny(tmp_path / precision, precision=precision, channels_last=channels_last, max_steps_per_epoch=1,
               ema=precision != "fp16")  # float16 kernels are slow on CPU: no second (EMA) evaluation
    doc = T.train(cfg, verbose=False)
    expected = {"requested": precision, "compute": precision, "params": "float32",
                "grad_scaler": precision == "fp16", "channels_last": bool(channels_last), "reason": "asked for"}
    assert doc["precision"] == expected
    assert json.loads((tmp_path / precision / "history.json").read_text())["precision"] == expected
    assert list(doc)[:6] == ["schema", "framework", "config", "versions", "hardware", "precision"]
    ckpt = torch.load(tmp_path / precision / T.LAST, weights_only=True)
    assert ckpt["precision"] == expected
    assert (ckpt["grad_scaler"] is not None) == (precision == "fp16")
    assert np.isfinite(doc["epochs"][0]["train_loss"]) and np.isfinite(doc["epochs"][0]["val_loss"])
    if precision == "fp16":  # the scaler's state (scale, growth tracker) is checkpointed and resumed
        assert ckpt["grad_scaler"]["scale"] <= 2.0**16
        doc = T.train(dataclasses.replace(cfg, epochs=2), resume=True, verbose=False)
        assert [r["epoch"] for r in doc["epochs"]] == [1, 2] and doc["precision"] == expected
        again = torch.load(tmp_path / precision / T.LAST, weights_only=True)["grad_scaler"]
        assert again["scale"] <= ckpt["grad_scaler"]["scale"]


@needs_fmnist
def test_torch_fp64_runs_repeat_exactly(tmp_path: Path) -> None:
    """fp64: weights, EMA and inputs in float64; two runs give the same history (timings aside)."""
    docs = [T.train(tiny(tmp_path / f"fp64_{i}", precision="fp64"), verbose=False) for i in range(2)]
    timing = {"epoch_time_s", "wall_time_s", "images_per_s"}
    rows = [[{k: v for k, v in r.items() if k not in timing} for r in d["epochs"]] for d in docs]
    assert rows[0] == rows[1] and len(rows[0]) == 1
    assert docs[0]["precision"]["params"] == "float64" and docs[0]["precision"]["compute"] == "fp64"
    ckpt = torch.load(tmp_path / "fp64_0" / T.LAST, weights_only=True)
    assert {v.dtype for v in ckpt["model"].values() if v.is_floating_point()} == {torch.float64}
    assert {v.dtype for k, v in ckpt["ema"].items() if k.startswith("module.") and v.is_floating_point()} == {torch.float64}
    res = E.evaluate_checkpoint(tmp_path / "fp64_0" / T.LAST, "val", eval_subset=16)  # a float32 model reads it
    assert res.n == 16


# ----------------------------------------------------------------------------------------------------
# Keras: policies and XLA against float32
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras_paper() -> tuple[Any, list[Any], list[float]]:
    TK = pytest.importorskip("inception_lib.train_keras")
    import keras

    keras.utils.set_random_seed(0)
    weights = _keras_model(None).get_weights()
    return TK, weights, _keras_steps(TK, weights, None)[0]


def _keras_model(policy: str | None) -> Any:
    from inception_lib import train_keras as TK
    from inception_lib.keras import GoogLeNet

    with TK._dtype_policy(policy):
        return GoogLeNet(10, aux_logits=True, variant="paper", input_shape=(RES, RES, 1), dropout=0.0, aux_dropout=0.0)


def _keras_steps(TK: Any, weights: list[Any], policy: str | None, xla: bool = False) -> tuple[list[float], Any, Any]:
    cfg = TrainConfig(framework="keras", variant="paper", resolution=RES, aux_weight=0.3, batch_size=BATCH, lr=LR,
                      compile=xla, weight_decay=0.0, ema=False)
    model = _keras_model(policy)
    model.set_weights(weights)
    optimizer = TK.compile_model(model, cfg, STEPS, run_eagerly=not xla)
    assert model.jit_compile == xla
    losses = [float(model.train_on_batch(x, (y, y, y), return_dict=True)["loss"]) for x, y in _batches(False)]
    assert all(np.isfinite(losses)), losses
    return losses, model, optimizer


# XLA runs in a fresh process: TensorFlow's op determinism, which any deterministic run in this process has switched
# on for good (TF has no public way to turn it off), makes Keras fall back from jit_compile=True.
XLA_STEPS = """
import json, sys
import numpy as np
import torch  # noqa: F401  (before tensorflow)
sys.path.insert(0, sys.argv[1])
import test_precision as P
from inception_lib import train_keras as TK
saved = np.load(sys.argv[2])
print(json.dumps(P._keras_steps(TK, [saved[f"w{i}"] for i in range(len(saved.files))], None, xla=True)[0]))
"""


@pytest.mark.parametrize("mode", ["xla", "bf16", "fp16"])
def test_keras_precision_matches_fp32(keras_paper: tuple[Any, list[Any], list[float]], mode: str,
                                      record_property: Any, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    import keras

    TK, weights, ref = keras_paper
    policy = {"xla": None, "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[mode]
    if mode == "xla":
        np.savez(tmp_path / "w.npz", **{f"w{i}": w for i, w in enumerate(weights)})
        proc = subprocess.run([sys.executable, "-c", XLA_STEPS, str(Path(__file__).parent), str(tmp_path / "w.npz")],
                              capture_output=True, text=True, timeout=600,
                              env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        losses = json.loads(proc.stdout.strip().splitlines()[-1])
    else:
        losses, model, optimizer = _keras_steps(TK, weights, policy)
    if mode == "fp16":
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        assert isinstance(optimizer.inner_optimizer, TK.TorchSGD) and int(optimizer.iterations) == STEPS
    if policy:
        assert model.get_layer("fc").compute_dtype == policy.split("_")[1]
        assert model.get_layer("fc").kernel.dtype == "float32"
    rel = max_rel(losses, ref)
    record_property(f"keras_max_rel_{mode}", rel)
    print(f"Keras {mode}: max relative loss difference {rel:.2e} (tolerance {TOLERANCE[mode]:.0e})")
    assert rel < TOLERANCE[mode], (losses, ref)


def test_keras_custom_layers_in_every_dtype_and_under_xla() -> None:
    """LocalResponseNorm, CeilMaxPool2D, AdaptiveAvgPool2D, TransformInput: float64, mixed bf16 / fp16, XLA."""
    pytest.importorskip("inception_lib.train_keras")
    import tensorflow as tf

    from inception_lib import keras as K
    from inception_lib.train_keras import _dtype_policy

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 9, 9, 3)) * 300).astype(np.float32)  # > 256: a float16 square overflows
    for make in (lambda: K.LocalResponseNorm(5, 1e-4, 0.75, 1.0), lambda: K.CeilMaxPool2D(3, 2), lambda: K.CeilAvgPool2D(5, 3),
                 lambda: K.AdaptiveAvgPool2D(4), lambda: K.TransformInput()):
        with _dtype_policy("float64"):
            layer = make()
            ref = np.asarray(layer(tf.constant(x)))
            assert ref.dtype == np.float64
            xla = np.asarray(tf.function(layer, jit_compile=True)(tf.constant(x)))
            np.testing.assert_allclose(xla, ref, rtol=1e-12, atol=1e-9)
        f32 = make()
        np.testing.assert_allclose(np.asarray(tf.function(f32, jit_compile=True)(tf.constant(x))), ref, rtol=1e-5, atol=1e-3)
        for policy, rtol in (("mixed_bfloat16", 2e-2), ("mixed_float16", 2e-3)):
            with _dtype_policy(policy):
                layer = make()
            out = tf.function(layer, jit_compile=True)(tf.constant(x))
            assert out.dtype.name == policy.split("_")[1]
            out = np.asarray(tf.cast(out, tf.float64))
            assert np.isfinite(out).all(), (type(layer).__name__, policy)
            np.testing.assert_allclose(out, ref, rtol=rtol, atol=rtol * np.abs(ref).max())


# ----------------------------------------------------------------------------------------------------
# Keras trainer: real runs record their choice
# ----------------------------------------------------------------------------------------------------


def keras_tiny(out: Path, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = dict(framework="keras", variant="torchvision", aux_weight=0.0, resolution=16, subset=8,
                                val_size=16, augment="none", epochs=1, batch_size=8, lr=0.01, max_steps_per_epoch=1,
                                out_dir=str(out), threads=1, eval_subset=8, run_eagerly=True)
    base.update(kw)
    return TrainConfig(**base)


@needs_fmnist
@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp64"])
def test_keras_trainer_records_its_choice(tmp_path: Path, precision: str) -> None:
    TK = pytest.importorskip("inception_lib.train_keras")
    out = tmp_path / precision
    doc = TK.train(keras_tiny(out, precision=precision, ema=precision == "fp16"), verbose=False)
    expected = {"requested": precision, "compute": precision, "params": "float64" if precision == "fp64" else "float32",
                "grad_scaler": precision == "fp16", "channels_last": True, "reason": "asked for"}
    assert doc["precision"] == expected
    assert json.loads((out / "history.json").read_text())["precision"] == expected
    assert TK.read_checkpoint_meta(out / TK.LAST)["precision"] == expected
    pt_doc = runfiles.history_doc("pytorch", TrainConfig(), [], "completed", None, {}, expected)
    assert list(doc) == list(pt_doc)  # the same keys in the same order as the PyTorch trainer's
    assert np.isfinite(doc["epochs"][0]["train_loss"]) and np.isfinite(doc["epochs"][0]["val_loss"])
    if precision == "fp16":  # the checkpoint reloads under its policy, LossScaleOptimizer and EMA included
        import keras

        model, _ = TK.load_checkpoint(out / TK.LAST, weights="ema")
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert model.get_layer("fc").compute_dtype == "float16"

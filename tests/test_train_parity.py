"""Whole-network training parity: the same GoogLeNet weights, the same batches, two training steps in each trainer.

PyTorch: :func:`inception_lib.train.build_model`, :func:`~inception_lib.train.make_optimizer` (SGD, momentum, coupled
L2 on kernels only), :func:`~inception_lib.train.compute_loss` (main + 0.3 * (aux1 + aux2)), ``lr_at`` per step and
``AveragedModel(use_buffers=True)``: the body of the trainer's step loop (``_train`` has no public step function, so
these lines repeat it). Keras: :func:`inception_lib.train_keras.build_model` and
:func:`~inception_lib.train_keras.compile_model` (TorchSGD, LrAtSchedule, loss weights, EMA of weights and BatchNorm
statistics), then ``train_on_batch`` (the step ``fit`` runs), eagerly. The weights are PyTorch's, copied into Keras
by :func:`inception_lib.convert.torch_to_keras`; dropout is switched off in both (its masks differ); float64
(``precision="fp64"``), so anything above ~1e-12 is a difference of algorithm, not of rounding.

Two steps, so that the momentum buffer (step 2: ``buf = 0.9 * buf + g``) and the EMA decay (step 1 copies) count.
Compared: the losses, every updated weight (the update ``w2 - w0``, relative to its own scale), the BatchNorm running
statistics and the EMA. The one stated difference: Keras updates the moving variance with the *biased* batch
variance, PyTorch with the unbiased one (``n / (n - 1)``, n = batch x height x width), so the expected Keras
variance is rebuilt from the batch variances the PyTorch forward saw.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch
from helpers import assert_close

from inception_lib.config import TrainConfig, lr_at

STEP_RTOL = 1e-9
"""float64, same weights, same batches. Observed max |diff| / max |expected| (2-core AVX-512 Xeon, 1 thread per
framework): losses 1.1e-14, updates w2 - w0 3.5e-12 (relative to each tensor's largest update), weights 2.4e-12, BN
running means 3.1e-13 and variances (against the rebuilt conventions) 1.8e-14, EMA 4.3e-13: float64 rounding of two
implementations, left ~300x room for other CPUs' kernels. It fails for any difference of algorithm (first failing
check): Keras lr x1.01 (conv1 weights ~1e-2), weight decay 0 in Keras (5e-4), momentum 0.89 (5e-3), EMA decay 0.91
(EMA 8e-3), aux weight 0.31 (loss 1e-2), L2 on BatchNorm scales and biases too (2e-7), and TorchSGD as it was
before its float64 fix (lr, momentum and L2 through float32 constants: weights 3.7e-9, updates ~2.6e-8)."""


def config(**kw) -> TrainConfig:
    base = dict(variant="torchvision", resolution=32, aux_weight=0.3, dropout=0.0, batch_size=8, epochs=1,
                lr=0.025, momentum=0.9, weight_decay=5e-4, ema=True, ema_decay=0.9, precision="fp64", seed=0)
    base.update(kw)
    return TrainConfig(**base)


def torch_state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def test_two_training_steps_are_the_same_in_pytorch_and_keras():
    import keras
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from inception_lib import convert
    from inception_lib import train as T
    from inception_lib import train_keras as TK

    torch.set_num_threads(1)
    cfg = config()
    n_steps, steps = 4, 2  # lr_at(cfg, i / n_steps) per step, as both trainers compute it
    g = torch.Generator().manual_seed(0)
    # float32 images made float64, as both trainers' batches are (Keras's Input layer is float32 under any policy)
    batches = [(torch.randn(cfg.batch_size, 1, 32, 32, generator=g).double(),
                torch.randint(0, 10, (cfg.batch_size,), generator=g)) for _ in range(steps)]

    torch.manual_seed(cfg.seed)
    tm = T.build_model(cfg, 10, 1).double()
    km = TK.build_model(dataclasses.replace(cfg, framework="keras"), 10, 1, 32, dtype_policy="float64")
    for head in ("aux1", "aux2"):  # the aux heads' dropout (0.7, no config field): off in both
        getattr(tm, head).dropout.p = 0.0
        km.get_layer(f"{head}_dropout").rate = 0.0
    convert.torch_to_keras(tm, km)
    w0 = torch_state(tm)
    keras_as_torch = copy.deepcopy(tm)

    # PyTorch: the trainer's step loop
    opt = T.make_optimizer(cfg, tm)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    ema = AveragedModel(tm, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    seen: dict[str, list[tuple[np.ndarray, int]]] = {}  # BN name -> [(biased batch variance, n)] per step

    def record(name):
        def hook(_, inputs):
            x = inputs[0].detach()
            seen.setdefault(name, []).append((x.var(dim=(0, 2, 3), unbiased=False).numpy(), x.numel() // x.shape[1]))
        return hook

    hooks = [m.register_forward_pre_hook(record(n)) for n, m in tm.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    tm.train()
    torch_losses = []
    for i, (x, y) in enumerate(batches):
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, i / n_steps)
        parts = T.compute_loss(tm(x), y, criterion, cfg.aux_weight)
        opt.zero_grad(set_to_none=True)
        parts.total.backward()
        opt.step()
        ema.update_parameters(tm)
        torch_losses.append(parts.total.item())
    for h in hooks:
        h.remove()

    # Keras: compile_model + train_on_batch (fit's step)
    kopt = TK.compile_model(km, dataclasses.replace(cfg, framework="keras"), n_steps, run_eagerly=True)
    keras_losses = []
    for x, y in batches:
        yy = y.numpy()
        logs = km.train_on_batch(x.permute(0, 2, 3, 1).numpy(), (yy, yy, yy), return_dict=True)
        keras_losses.append(float(logs["loss"]))
    assert int(keras.ops.convert_to_numpy(kopt.iterations)) == steps

    wt = torch_state(tm)
    wk = torch_state(convert.keras_to_torch(km, keras_as_torch))
    with TK.ema_weights(km, kopt) as swapped:
        assert swapped
        ek = torch_state(convert.keras_to_torch(km, keras_as_torch))
    et = {k[len("module."):]: v.detach().numpy() for k, v in ema.state_dict().items() if k.startswith("module.")}

    d = 1.0 - cfg.ema_decay
    checked = 0
    for name in wt:
        if name.endswith("running_var"):
            # Rebuild both conventions from the batch variances: running = 0.9 * running + 0.1 * var (momentum 0.1 in
            # PyTorch's convention, 0.9 in Keras's), with var unbiased (PyTorch) or biased (Keras).
            bn = name[: -len(".running_var")]
            rt, rk, hist_t, hist_k = w0[name].copy(), w0[name].copy(), [], []
            for var, n in seen[bn]:
                rt = 0.9 * rt + 0.1 * var * n / (n - 1)
                rk = 0.9 * rk + 0.1 * var
                hist_t.append(rt)
                hist_k.append(rk)
            assert_close(wt[name], rt, STEP_RTOL, f"{name} (PyTorch, unbiased)")
            assert_close(wk[name], rk, STEP_RTOL, f"{name} (Keras, biased)")
            for hist, ema_var, who in ((hist_t, et[name], "PyTorch"), (hist_k, ek[name], "Keras")):
                expected = hist[0]  # the EMA's first step copies, then lerps with weight 1 - decay
                for h in hist[1:]:
                    expected = expected + d * (h - expected)
                assert_close(ema_var, expected, STEP_RTOL, f"EMA {name} ({who})")
            continue
        assert_close(wk[name], wt[name], STEP_RTOL, name)
        assert_close(ek[name], et[name], STEP_RTOL, f"EMA {name}")
        if not name.endswith("running_mean"):
            update = wt[name] - w0[name]
            assert np.abs(update).max() > 0, f"{name} did not move: the comparison would prove nothing"
            assert_close(wk[name] - w0[name], update, STEP_RTOL, f"update of {name}")
            checked += 1
    assert checked == sum(1 for _ in tm.parameters())  # every parameter tensor: 187 for this variant
    assert_close(keras_losses, torch_losses, STEP_RTOL, "losses (main + 0.3 * aux)")


"""The Keras trainer: PyTorch's optimizer and schedule exactly, the shared history schema, checkpoints that
resume and refuse, and a clear stop on a diverging loss.

Training runs are tiny (16-32 Fashion-MNIST images at 32x32, batch 16, 1-2 steps per epoch) and eager
(``run_eagerly=True``): tracing GoogLeNet's training graph costs ~35 s of CPU, more than the runs.
torch is imported first (conftest.py too): tensorflow before torchvision aborts the process.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_close, needs_fmnist, require_fashion_mnist

from inception_lib import evaluate as E
from inception_lib import runfiles
from inception_lib import train as T
from inception_lib import train_keras as TK  # an import error fails the file (importorskip skipped it silently)
from inception_lib.config import EPOCH_KEYS, HISTORY_SCHEMA, TrainConfig, lr_at

SGD_RTOL = 1e-5
"""Keras TorchSGD (graph mode) vs torch.optim.SGD, 8 steps on values of ~1: max |diff| / max |value| <= 1.3e-7
observed (float32 rounding of two implementations)."""

HISTORY_KEYS = {"schema", "framework", "config", "versions", "hardware", "precision", "seed", "epochs", "status", "test"}


def small_cfg(out: Path, **kw) -> TrainConfig:
    base = dict(framework="keras", variant="torchvision", aux_weight=0.3, resolution=32, subset=16, val_size=500,
                augment="none", epochs=2, batch_size=16, lr=0.01, max_steps_per_epoch=1, out_dir=str(out), seed=0,
                deterministic=True, threads=1, eval_subset=16, run_eagerly=True)
    base.update(kw)
    return TrainConfig(**base)


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def saved_optimizer_state(path: Path) -> list[np.ndarray]:
    """Every optimizer variable stored in a .keras checkpoint, in order (Keras keeps them in model.weights.h5)."""
    import h5py

    with zipfile.ZipFile(path) as z:
        raw = z.read("model.weights.h5")
    with h5py.File(io.BytesIO(raw), "r") as f:
        group = f["optimizer/vars"]
        return [np.array(group[str(i)][()]) for i in range(len(group))]


@pytest.fixture(autouse=True)
def _quiet_fast_io(monkeypatch):
    monkeypatch.setenv(runfiles.PROGRESS_ENV, "0")
    monkeypatch.setenv(runfiles.FSYNC_ENV, "0")  # the rename is what the tests check; fsync is slow on the test disk


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    """One 2-epoch run with aux heads and EMA; tests copy its folder before changing anything."""
    require_fashion_mnist()  # fails, never skips: `make setup` installs the files
    out = tmp_path_factory.mktemp("keras_run") / "run"
    cfg = small_cfg(out)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(runfiles.FSYNC_ENV, "0")
        doc = TK.train(cfg, verbose=False, test=True)
    return cfg, doc, out


def copy_run(run_a, dest: Path) -> tuple[TrainConfig, Path]:
    cfg, _, out = run_a
    shutil.copytree(out, dest, ignore=shutil.ignore_patterns("best.keras"))  # 120 MB the tests do not need
    return dataclasses.replace(cfg, out_dir=str(dest)), dest


# ----------------------------------------------------------------------------------------------------
# Schedule and optimizer: the PyTorch trainer's numbers
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule,warmup", [("paper", 0.0), ("cosine", 0.5)])
def test_lr_schedule_equals_lr_at(schedule, warmup):
    import tensorflow as tf

    cfg = TrainConfig(framework="keras", schedule=schedule, warmup_epochs=warmup, epochs=4, decay_every=1,
                      lr_decay=0.5, lr=0.1)
    n = 3
    sched = TK.LrAtSchedule(cfg, n)
    graph = tf.function(lambda s: sched(s))
    for s in range(cfg.epochs * n + 2):
        expected = lr_at(cfg, min(s // n + (s % n) / n, cfg.epochs))  # PyTorch: lr_at(cfg, epoch + i / n)
        assert sched.value(s) == pytest.approx(expected, rel=1e-15, abs=0)
        assert float(graph(tf.constant(s))) == np.float32(expected)
    # The optimizer reads it at its own step counter (what a resumed run restores).
    opt = TK.make_optimizer(cfg, n)
    opt.build([])
    opt.iterations.assign(5)
    assert float(opt.learning_rate) == np.float32(lr_at(cfg, 1 + 2 / 3))
    # And it survives Keras serialization (the .keras checkpoint stores it).
    again = TK.LrAtSchedule.from_config(sched.get_config())
    assert np.array_equal(again.table, sched.table)


@pytest.mark.parametrize("nesterov", [False, True])
def test_torch_sgd_matches_torch_optim_sgd_and_ema(nesterov):
    """Same gradients, same changing lr: TorchSGD and its EMA == torch SGD (coupled L2 on kernels only) +
    AveragedModel(use_buffers=True), in graph mode."""
    import keras
    import tensorflow as tf
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    cfg = TrainConfig(framework="keras", lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=0.05,
                      schedule="cosine", warmup_epochs=0.5, epochs=3, ema=True, ema_decay=0.7)
    n, steps = 3, 8
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(4, 3)).astype(np.float32)
    b0 = rng.normal(size=(3,)).astype(np.float32)
    grads = [(rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)) for _ in range(steps)]
    stats = [rng.normal(size=(3,)).astype(np.float32) for _ in range(steps)]  # a stand-in for BN running stats

    kw, kb = keras.Variable(w0, name="kernel"), keras.Variable(b0, name="bias")
    kstat = keras.Variable(np.zeros(3, np.float32), trainable=False, name="stat")
    opt = TK.make_optimizer(cfg, n)
    opt.average_buffers([kstat])
    opt.build([kw, kb])

    @tf.function
    def k_step(gw, gb):
        opt.apply([gw, gb])

    lin = torch.nn.Linear(4, 3)
    lin.register_buffer("stat", torch.zeros(3))
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w0.T))
        lin.bias.copy_(torch.from_numpy(b0))
    topt = torch.optim.SGD([{"params": [lin.weight], "weight_decay": cfg.weight_decay},
                            {"params": [lin.bias], "weight_decay": 0.0}], lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=nesterov)
    ema = AveragedModel(lin, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)

    for s, ((gw, gb), st) in enumerate(zip(grads, stats)):
        kstat.assign(st)
        k_step(tf.constant(gw), tf.constant(gb))
        for g in topt.param_groups:
            g["lr"] = lr_at(cfg, s // n + (s % n) / n)
        lin.stat.copy_(torch.from_numpy(st))
        lin.weight.grad = torch.from_numpy(gw.T.copy())
        lin.bias.grad = torch.from_numpy(gb.copy())
        topt.step()
        ema.update_parameters(lin)

    assert_close(kw.numpy(), lin.weight.detach().numpy().T, SGD_RTOL, "kernel")
    assert_close(kb.numpy(), lin.bias.detach().numpy(), SGD_RTOL, "bias")
    buf = topt.state[lin.weight]["momentum_buffer"].numpy().T
    assert_close(opt.momentums[0].numpy(), buf, SGD_RTOL, "momentum buffer")
    avg_w, avg_b = opt.averages
    assert_close(avg_w.numpy(), ema.module.weight.detach().numpy().T, SGD_RTOL, "EMA kernel")
    assert_close(avg_b.numpy(), ema.module.bias.detach().numpy(), SGD_RTOL, "EMA bias")
    assert_close(opt.buffer_averages[0].numpy(), ema.module.stat.numpy(), SGD_RTOL, "EMA buffer")
    assert int(opt.iterations) == steps


def test_torch_sgd_config_round_trips_and_reads_the_earlier_keys():
    """get_config / from_config keep every setting; a config of the earlier TorchSGD (a keras.optimizers.SGD with
    Keras's use_ema / ema_momentum, as older .keras files hold) gives the same averaging."""
    cfg = TrainConfig(framework="keras", lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05, ema_decay=0.7, epochs=2)
    opt = TK.make_optimizer(cfg, 3)
    again = TK.TorchSGD.from_config(opt.get_config())
    assert (again.momentum, again.nesterov, again.l2, again.ema_decay) == (0.9, True, 0.05, 0.7)
    assert isinstance(again.schedule, TK.LrAtSchedule) and np.array_equal(again.schedule.table, opt.schedule.table)
    assert not {"use_ema", "ema_momentum", "weight_decay"} & set(opt.get_config())
    earlier = {**opt.get_config(), "ema_decay": None, "use_ema": True, "ema_momentum": 0.7, "weight_decay": None,
               "ema_overwrite_frequency": None}
    assert TK.TorchSGD.from_config(earlier).ema_decay == 0.7
    assert TK.make_optimizer(dataclasses.replace(cfg, ema=False), 3).ema_decay is None


def test_op_determinism_left_on_is_said(monkeypatch):
    """TF cannot turn op determinism off (no public API): a non-deterministic run after a deterministic one warns."""
    monkeypatch.setattr(TK, "_deterministic_run_seen", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TK._note_op_determinism(False)  # nothing switched it on here: silent
        TK._note_op_determinism(True)
    with pytest.warns(UserWarning, match="op determinism is still on"):
        TK._note_op_determinism(False)


def test_label_smoothing_equals_pytorch():
    logits = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)
    labels = np.array([0, 4, 2, 2, 1, 3])
    for eps in (0.0, 0.1):
        ours = float(TK.SparseCrossEntropy(eps)(labels, logits))
        theirs = torch.nn.CrossEntropyLoss(label_smoothing=eps)(torch.from_numpy(logits), torch.from_numpy(labels))
        assert ours == pytest.approx(theirs.item(), rel=1e-5)  # 6.5e-8 relative observed (eps 0.1; 0 at eps 0)


# ----------------------------------------------------------------------------------------------------
# A training run and its files
# ----------------------------------------------------------------------------------------------------


def test_training_lowers_loss_and_writes_history_config_checkpoint(run_a):
    cfg, doc, out = run_a
    assert {p.name for p in out.iterdir()} >= {"config.json", "history.json", "history.csv", "last.keras", "best.keras"}
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    assert json.loads((out / "config.json").read_text()) == json.loads(json.dumps(cfg.to_dict()))
    rows = doc["epochs"]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]  # the same 16 images again: the loss comes down
    for r in rows:
        assert math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"])
        # Total = main + aux_weight * (aux1 + aux2), each head reported, as in the PyTorch trainer.
        assert r["train_loss"] == pytest.approx(
            r["train_loss_main"] + cfg.aux_weight * (r["train_loss_aux1"] + r["train_loss_aux2"]), rel=1e-5)
        for k in ("train_acc", "train_acc_aux1", "train_acc_aux2", "val_acc", "val_acc_ema"):
            assert 0.0 <= r[k] <= 1.0
        assert r["lr"] == lr_at(cfg, r["epoch"] - 1)
        assert r["images_per_s"] > 0 and r["epoch_time_s"] > 0
    assert rows[1]["wall_time_s"] > rows[0]["wall_time_s"]
    meta = TK.read_checkpoint_meta(out / "last.keras")
    assert (meta["epoch"], meta["step"], meta["steps_per_epoch"]) == (2, 2, 1)
    assert meta["architecture"]["variant"]["name"] == "torchvision" and meta["architecture"]["aux_logits"] is True
    assert meta["config"] == json.loads(json.dumps(cfg.to_dict()))


def test_evaluate_works_on_keras_checkpoints(run_a, capsys):
    """`python -m inception_lib evaluate run/last.keras`: 1 crop in Keras (the trainer's own test number), 10 crops
    through the PyTorch crop code on the converted weights."""
    from inception_lib.__main__ import main

    _, doc, out = run_a
    res = E.evaluate_checkpoint(out / "last.keras", "test")
    assert res.n == doc["test"]["model"]["n"] and res.top1 == pytest.approx(doc["test"]["model"]["top1"])
    assert main(["evaluate", str(out / "last.keras"), "--crops", "10", "--eval-subset", "8"]) == 0
    assert "8 images, 10 crop(s)" in capsys.readouterr().out


def test_history_has_the_shared_schema(run_a, tmp_path):
    """history.json / .csv: the schema, exactly EPOCH_KEYS per row, the same keys as a PyTorch run's history."""
    cfg, doc, out = run_a
    on_disk = json.loads((out / "history.json").read_text())
    assert on_disk == json.loads(json.dumps(doc))
    assert set(on_disk) == HISTORY_KEYS
    assert on_disk["schema"] == HISTORY_SCHEMA and on_disk["framework"] == "keras"
    assert on_disk["status"] == "completed" and on_disk["seed"] == cfg.seed
    # test=True: the test split once, at the end, for the final weights and their EMA.
    assert on_disk["test"]["split"] == "test" and on_disk["test"]["epoch"] == 2
    assert on_disk["test"]["model"]["n"] == on_disk["test"]["ema"]["n"] == 16
    assert on_disk["config"] == json.loads(json.dumps(cfg.to_dict()))
    assert "tensorflow" in on_disk["versions"] and "keras" in on_disk["versions"]
    for row in on_disk["epochs"]:
        assert tuple(row) == EPOCH_KEYS
    lines = (out / "history.csv").read_text().splitlines()
    assert lines[0].split(",") == list(EPOCH_KEYS) and len(lines) == 1 + len(on_disk["epochs"])

    tcfg = dataclasses.replace(cfg, framework="pytorch", out_dir=str(tmp_path / "torch"), epochs=1,
                               max_steps_per_epoch=1, device="cpu", threads=1, eval_subset=16)
    threads = torch.get_num_threads()
    try:
        tdoc = json.loads(json.dumps(T.train(tcfg, verbose=False, progress=False)))
    finally:
        torch.set_num_threads(threads)
    assert set(tdoc) == set(on_disk)
    assert tuple(tdoc["epochs"][0]) == tuple(on_disk["epochs"][0]) == EPOCH_KEYS
    assert [k for k in tdoc["epochs"][0] if tdoc["epochs"][0][k] is None] == \
           [k for k in on_disk["epochs"][0] if on_disk["epochs"][0][k] is None]
    # Both checkpoints describe the network with the same architecture dict.
    tstate = torch.load(tmp_path / "torch" / T.LAST, map_location="cpu", weights_only=True)
    assert tstate["architecture"] == TK.read_checkpoint_meta(out / "last.keras")["architecture"]


def test_resume_continues_with_optimizer_state(run_a, tmp_path, monkeypatch):
    cfg, doc, _ = run_a
    cfg, out = copy_run(run_a, tmp_path / "resumed")
    cfg3 = dataclasses.replace(cfg, epochs=3)  # more epochs is a change a resume may make
    saved = saved_optimizer_state(out / "last.keras")
    restored: list[list[np.ndarray]] = []

    class Spy(TK._Run):  # sees the optimizer after the checkpoint is loaded, before training goes on
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            restored.append([np.array(v.numpy()) for v in self.optimizer.variables])

    monkeypatch.setattr(TK, "_Run", Spy)
    doc3 = TK.train(cfg3, resume=True, verbose=False)
    # Every optimizer variable (step counter, momentum buffers, EMA of weights and of BN statistics) is back,
    # bit for bit.
    assert len(restored) == 1 and len(restored[0]) == len(saved) > 3
    assert all(np.array_equal(a, b) for a, b in zip(restored[0], saved))
    assert int(saved[0]) == 2  # iterations: 2 epochs x 1 step
    rows = doc3["epochs"]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[:2] == json.loads(json.dumps(doc["epochs"]))  # the history so far is kept as it was
    assert rows[2]["wall_time_s"] > rows[1]["wall_time_s"]  # the clock continues
    assert rows[2]["lr"] == lr_at(cfg3, 2)
    after = TK.read_checkpoint_meta(out / "last.keras")
    assert (after["step"], after["epoch"]) == (3, 3)  # the step counter went on from 2


def test_checkpoint_of_another_architecture_is_refused_and_nothing_written(run_a, tmp_path):
    cfg, out = copy_run(run_a, tmp_path / "other")
    before = file_bytes(out)
    with pytest.raises(ValueError, match="different architecture") as err:
        TK.train(dataclasses.replace(cfg, variant="bn"), resume=True, verbose=False)
    assert "'torchvision'" in str(err.value) and "'bn'" in str(err.value)
    with pytest.raises(ValueError, match="aux_logits"):
        TK.train(dataclasses.replace(cfg, aux_weight=0.0), resume=True, verbose=False)
    with pytest.raises(FileExistsError, match="resume=True"):
        TK.train(cfg, verbose=False)
    with pytest.raises(ValueError, match="different configuration"):
        TK.train(dataclasses.replace(cfg, lr=0.5), resume=True, verbose=False)
    assert file_bytes(out) == before


def test_resume_with_nothing_left_to_train_keeps_the_folder_and_its_test(run_a, tmp_path):
    """As in PyTorch: a resumed run writes nothing before an epoch of its own is done, and a finished run resumed
    without --test keeps the test result it has (the Keras trainer used to rewrite config and history at once)."""
    cfg, doc, out = copy_run(run_a, tmp_path / "again")[0], run_a[1], tmp_path / "again"
    config_before = (out / "config.json").read_bytes()
    again = TK.train(cfg, resume=True, verbose=False)
    assert again["test"] == doc["test"] is not None
    assert again["epochs"] == json.loads(json.dumps(doc["epochs"])) and again["status"] == "completed"
    assert (out / "config.json").read_bytes() == config_before


@needs_fmnist
def test_diverging_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    """lr 0.01 in epoch 1, then x1e32 (1e30) in epoch 2: the loss turns non-finite at epoch 2, step 2.
    The error names them, and last.keras is byte for byte the one written at the end of epoch 1."""
    out = tmp_path / "diverge"
    cfg = small_cfg(out, aux_weight=0.0, ema=False, subset=32, max_steps_per_epoch=2, decay_every=1, lr_decay=1e32)
    written: list[bytes] = []
    save = TK._save_checkpoint

    def recording_save(model, meta, path):
        save(model, meta, path)
        written.append(path.read_bytes())

    monkeypatch.setattr(TK, "_save_checkpoint", recording_save)
    with pytest.raises(runfiles.NonFiniteLossError, match=r"epoch 2, step 2/2 \(global step 4\), lr 1e\+30") as err:
        TK.train(cfg, verbose=False)
    assert "the last good checkpoint" in str(err.value) and "end of epoch 1" in str(err.value)
    assert isinstance(err.value, FloatingPointError)  # what the CLI reports as a failed run
    assert len(written) == 1 and (out / "last.keras").read_bytes() == written[0]
    assert TK.read_checkpoint_meta(out / "last.keras")["epoch"] == 1
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history["epochs"]] == [1] and history["status"] == "running"


MIRRORED = """
import torch, torchvision  # before tensorflow
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import dataclasses, json, sys
import numpy as np
from inception_lib.config import TrainConfig
from inception_lib import train_keras as TK

cfg = TrainConfig.from_dict(json.loads(sys.argv[1]))
rng = np.random.default_rng(0)
x = rng.normal(size=(16, 32, 32, 1)).astype("float32")
y = rng.integers(0, 10, size=16)
data = {"train": tf.data.Dataset.from_tensor_slices((x, y)).batch(16, drop_remainder=True)}
data["val"] = data["train"]
seen = {}

class Spy(TK._Run):  # the weights before the first step, and every replica's copy after it
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        seen.setdefault("w0", [v.numpy() for v in self.model.trainable_variables])

    def end_epoch(self, epoch, *args):
        if epoch == 0:
            local = self.model.distribute_strategy.experimental_local_results
            seen["replicas"] = [[np.array(r) for r in local(v.value)] for v in self.model.trainable_variables]
        super().end_epoch(epoch, *args)

TK._Run = Spy
TK.train(cfg, datasets=data, verbose=False)
doc = TK.train(dataclasses.replace(cfg, epochs=2), datasets=data, resume=True, verbose=False)

# One device, the same weights: one step on each half batch (8 images, what each replica saw), from zero state.
single = dataclasses.replace(cfg, devices=None)
model = TK.build_model(single, 10, 1, 32)
opt = TK.compile_model(model, single, 1, run_eagerly=True)
halves = []
for part in (slice(0, 8), slice(8, 16)):
    for v, w in zip(model.trainable_variables, seen["w0"]):
        v.assign(w)
    for v in opt.variables:
        v.assign(np.zeros(v.shape, v.dtype))
    model.train_on_batch(x[part], y[part])
    halves.append([v.numpy() - w for v, w in zip(model.trainable_variables, seen["w0"])])

def rel(a, b):  # over the whole network: max |a - b| / max |b|
    return max(float(np.abs(p - q).max()) for p, q in zip(a, b)) / max(float(np.abs(q).max()) for q in b)

mirrored = [r[0] - w for r, w in zip(seen["replicas"], seen["w0"])]
mean = [(a + b) / 2 for a, b in zip(*halves)]
print(json.dumps({"world": doc["hardware"]["world_size"], "epochs": [r["epoch"] for r in doc["epochs"]],
                  "step": TK.read_checkpoint_meta(cfg.out_dir + "/last.keras")["step"],
                  "replicas_differ": rel([r[1] for r in seen["replicas"]], [r[0] for r in seen["replicas"]]),
                  "vs_mean": rel(mirrored, mean), "vs_half_a": rel(mirrored, halves[0]),
                  "vs_half_b": rel(mirrored, halves[1]), "vs_sum": rel(mirrored, [2 * m for m in mean]),
                  "tensors": len(mirrored)}))
"""

MIRRORED_RTOL = 1e-5
"""The two-replica update vs the mean of the two single-device half-batch updates (float32, eager): max |diff| over
the whole network / its largest update. Observed 4.1e-7 (the float32 rounding of ``w1 - w0``: a BatchNorm scale of 1.0
moved by 3e-5 is exact to 1e-7 only). Without averaging it is far off: each replica its own half's gradient 0.7-0.8,
their sum 0.5."""


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    """MirroredStrategy code path (2 replicas = 2 logical CPUs, eager): the replicas' gradients are averaged, both
    replicas hold the same weights, and the run checkpoints and resumes.

    One step on a global batch of 16 (8 per replica; no dropout, no aux heads: nothing random) from weights w0 must
    move w0 by the mean of the two single-device steps on the half batches (SGD's first step is linear in the
    gradient: ``-lr * (g + l2 * w0)``), and differ from either half's step and from their sum. The batches are
    given (random images), so no dataset is read. Multi-GPU (NCCL all-reduce, graph mode) is the same code with
    more devices; it cannot run here."""
    cfg = small_cfg(tmp_path / "mirrored", epochs=1, aux_weight=0.0, dropout=0.0, run_eagerly=True,
                    devices=["/cpu:0", "/cpu:1"])
    env = {**os.environ, runfiles.PROGRESS_ENV: "0", runfiles.FSYNC_ENV: "0"}
    res = subprocess.run([sys.executable, "-c", MIRRORED, json.dumps(cfg.to_dict())], capture_output=True, text=True,
                         env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert (out["world"], out["epochs"], out["step"]) == (2, [1, 2], 2)
    assert out["tensors"] > 100  # every trainable tensor of the network
    assert out["replicas_differ"] <= 1e-6, out  # one all-reduced gradient, one update: the same weights (0 observed)
    assert out["vs_mean"] <= MIRRORED_RTOL, out
    assert min(out["vs_half_a"], out["vs_half_b"], out["vs_sum"]) > 0.1, out


def test_overwrite_clears_the_old_runs_checkpoints(tmp_path):
    """--overwrite: the old run's last.keras / best.keras go before the new run trains, so a new run that fails in
    its first epoch (here: the loss turns non-finite at once) leaves no old checkpoint posing as its own."""
    out = tmp_path / "old"
    out.mkdir()
    (out / "last.keras").write_bytes(b"an old run's checkpoint")
    (out / "best.keras").write_bytes(b"an old run's best checkpoint")
    cfg = small_cfg(out, aux_weight=0.0, ema=False, lr=1e30, epochs=1)
    with pytest.raises(FileExistsError, match="already holds a run"):
        TK.train(cfg, verbose=False)
    with pytest.raises(runfiles.NonFiniteLossError):
        TK.train(cfg, overwrite=True, verbose=False)
    assert not (out / "last.keras").exists() and not (out / "best.keras").exists()

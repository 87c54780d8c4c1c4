"""Tests for inception_lib.train and inception_lib.distributed: a run that learns, its files, exact resumption,
refusals that leave files untouched, divergence, checkpoint evaluation, and DDP (2 x gloo) vs one process.

Everything runs on CPU on Fashion-MNIST subsets at 16-32 px, a few steps per epoch. fsync is skipped
(INCEPTION_LIB_FSYNC=0) except in the atomic-write test: the test disk is slow with it and the rename is what
the tests check.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import assert_close, needs_fmnist, require_fashion_mnist

from inception_lib import distributed as D
from inception_lib import evaluate as E
from inception_lib import repro, runfiles
from inception_lib import train as T
from inception_lib.config import EPOCH_KEYS, HISTORY_SCHEMA, TrainConfig, lr_at
from inception_lib.pytorch import GoogLeNet

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _quiet_fast_io(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(runfiles.PROGRESS_ENV, "0")
    monkeypatch.setenv(runfiles.FSYNC_ENV, "0")
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # the runs here use threads=1; leave the process as conftest set it


def tiny(out: Path, **kw: Any) -> TrainConfig:
    """A run that takes seconds: 32 px, the BN variant (it learns from scratch), no aux heads (need 47 px).

    One thread: on a loaded 2-core machine two OpenMP threads per process spin against each other (8x slower).
    """
    base: dict[str, Any] = dict(variant="bn", resolution=32, aux_weight=0.0, subset=128, val_size=64, batch_size=16,
                                epochs=3, lr=0.01, augment="flip", out_dir=str(out), eval_subset=32,
                                threads=1)
    base.update(kw)
    return TrainConfig(**base)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _loss_on(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    m = copy.deepcopy(model).train()  # batch statistics; the copy keeps the model's BN buffers untouched
    with torch.no_grad():
        out = m(x)
        return torch.nn.functional.cross_entropy(out if isinstance(out, torch.Tensor) else out.logits, y).item()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One 3-epoch run shared by the tests that only read it (or copy it before changing it)."""
    require_fashion_mnist()  # fails, never skips: `make setup` installs the files
    mp = pytest.MonkeyPatch()
    mp.setenv(runfiles.FSYNC_ENV, "0")
    mp.setenv(runfiles.PROGRESS_ENV, "0")
    threads = torch.get_num_threads()
    try:
        cfg = tiny(tmp_path_factory.mktemp("run") / "bn32")
        loaders = T.make_loaders(cfg, "cpu")
        loaders["train"].set_epoch(0)
        x, y = next(iter(loaders["train"]))
        repro.seed_everything(cfg.seed, None, deterministic=False)
        model = T.build_model(cfg, 10, 1)
        before = _loss_on(model, x, y)
        history = T.train(cfg, model=model, loaders=loaders, verbose=False)
        after = _loss_on(model, x, y)
    finally:
        mp.undo()
        torch.set_num_threads(threads)
    return {"cfg": cfg, "out": Path(cfg.out_dir), "history": history, "before": before, "after": after}


# ------------------------------------------------------------------------------------------------
# A run learns and writes its folder
# ------------------------------------------------------------------------------------------------


@needs_fmnist
def test_training_lowers_the_loss(run: dict[str, Any]) -> None:
    # The same training batch before / after 24 SGD steps: the fit must improve clearly.
    assert run["after"] < run["before"] - 0.2, (run["before"], run["after"])
    rows = run["history"]["epochs"]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


@needs_fmnist
def test_run_folder_history_config_and_checkpoint(run: dict[str, Any]) -> None:
    out, cfg = run["out"], run["cfg"]
    doc = json.loads((out / "history.json").read_text())
    assert doc == run["history"]
    assert set(doc) == {"schema", "framework", "config", "versions", "hardware", "precision", "seed", "epochs", "status",
                        "test"}
    assert (doc["schema"], doc["framework"], doc["status"], doc["test"], doc["seed"]) == (
        HISTORY_SCHEMA, "pytorch", "completed", None, 0)
    assert doc["config"] == cfg.to_dict() == json.loads((out / "config.json").read_text())
    assert "torch" in doc["versions"] and doc["hardware"]["world_size"] == 1
    rows = doc["epochs"]
    assert [tuple(r) for r in rows] == [EPOCH_KEYS] * 3
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert r["lr"] == pytest.approx(lr_at(cfg, r["epoch"] - 1))
        assert r["train_loss_aux1"] is None and r["train_acc_aux2"] is None  # heads off
        assert 0 <= r["val_acc"] <= 1 and 0 <= r["val_acc_ema"] <= 1 and r["images_per_s"] > 0
    assert rows[0]["wall_time_s"] < rows[1]["wall_time_s"] < rows[2]["wall_time_s"]
    with open(out / "history.csv") as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0]) == EPOCH_KEYS and len(table) == 3
    assert float(table[2]["val_loss"]) == pytest.approx(rows[2]["val_loss"]) and table[0]["train_loss_aux1"] == ""
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left behind

    ckpt = torch.load(out / T.LAST, weights_only=True)  # primitives and tensors only
    assert ckpt["format"] == T.CHECKPOINT_FORMAT and (ckpt["epoch"], ckpt["step"]) == (3, 24)
    assert ckpt["config"] == cfg.to_dict() and ckpt["history"] == rows
    assert ckpt["architecture"]["variant"]["name"] == "bn" and ckpt["architecture"]["num_classes"] == 10
    assert {"python", "numpy", "torch", "cuda"} <= set(ckpt["rng"][0])
    assert ckpt["optimizer"]["state"] and ckpt["ema"]["n_averaged"].item() == 24
    best = torch.load(out / T.BEST, weights_only=True)
    assert best["best_val_acc"] == max(r["val_acc"] for r in rows) and best["optimizer"] is None
    model, _ = T.load_checkpoint(out / T.LAST)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ckpt["model"].values()))


@needs_fmnist
def test_evaluate_checkpoint_matches_the_history(run: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    out = run["out"]
    res = E.evaluate_checkpoint(out / T.LAST, "val", "1", device="cpu")
    rows = run["history"]["epochs"]
    assert res.n == 32 and res.top1 == pytest.approx(rows[-1]["val_acc"]) and res.top5 is not None
    ema = E.evaluate_checkpoint(out / T.LAST, "val", "1", weights="ema", device="cpu")
    assert ema.top1 == pytest.approx(rows[-1]["val_acc_ema"])
    ten = E.evaluate_checkpoint(out / T.BEST, "test", "10", eval_subset=8, device="cpu")
    assert ten.n == 8 and ten.crops == "10" and ten.cost == 10
    with pytest.raises(ValueError, match="unknown crop scheme .7."):
        E.evaluate_checkpoint(out / T.LAST, "test", "7")


# ------------------------------------------------------------------------------------------------
# Exact resumption
# ------------------------------------------------------------------------------------------------


class _Interrupt(Exception):
    pass


@needs_fmnist
def test_interrupted_then_resumed_is_bit_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # torchvision variant at 16 px with aux heads (dropout 0.2 / 0.7 use the RNG), flip augmentation,
    # warmup + cosine schedule (per-step lr) and EMA: everything that must continue exactly.
    kw = dict(variant="torchvision", resolution=16, aux_weight=0.3, subset=64, batch_size=16, epochs=2,
              max_steps_per_epoch=3, schedule="cosine", warmup_epochs=0.5, ema_decay=0.9, lr=0.02,
              eval_subset=16)
    full = tiny(tmp_path / "full", **kw)
    T.train(full, verbose=False)

    part = tiny(tmp_path / "part", **kw)
    real = T.compute_loss
    calls = {"n": 0}

    def interrupt_in_epoch_2(*a: Any, **k: Any) -> T.LossParts:
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 2, step 2: after epoch 1's checkpoint, in the middle of an epoch
            raise _Interrupt
        return real(*a, **k)

    monkeypatch.setattr(T, "compute_loss", interrupt_in_epoch_2)
    with pytest.raises(_Interrupt):
        T.train(part, verbose=False)
    monkeypatch.setattr(T, "compute_loss", real)
    assert torch.load(tmp_path / "part" / T.LAST, weights_only=True)["epoch"] == 1
    T.train(part, resume=True, verbose=False)

    a = torch.load(tmp_path / "full" / T.LAST, weights_only=True)
    b = torch.load(tmp_path / "part" / T.LAST, weights_only=True)
    assert a["model"].keys() == b["model"].keys() and any("aux1" in k for k in a["model"])
    for group in ("model", "ema"):
        for k in a[group]:
            assert torch.equal(a[group][k], b[group][k]), (group, k)
    for i, st in a["optimizer"]["state"].items():
        assert torch.equal(st["momentum_buffer"], b["optimizer"]["state"][i]["momentum_buffer"])
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"]) == (2, 6)
    timing = {"epoch_time_s", "wall_time_s", "images_per_s"}
    strip = [{k: v for k, v in r.items() if k not in timing} for r in a["history"]]
    assert strip == [{k: v for k, v in r.items() if k not in timing} for r in b["history"]]
    assert a["history"][0]["train_loss_aux1"] is not None
    hist = json.loads((tmp_path / "part" / "history.json").read_text())
    assert [r["epoch"] for r in hist["epochs"]] == [1, 2] and hist["status"] == "completed"


# ------------------------------------------------------------------------------------------------
# Refusals: clear errors, nothing overwritten
# ------------------------------------------------------------------------------------------------


@needs_fmnist
def test_wrong_architecture_or_config_is_refused_and_nothing_changes(run: dict[str, Any]) -> None:
    out, cfg = run["out"], run["cfg"]
    before = {p.name: _sha(p) for p in out.iterdir()}
    with pytest.raises(ValueError, match="different architecture") as err:
        T.train(dataclasses.replace(cfg, variant="torchvision"), resume=True, verbose=False)
    msg = str(err.value)
    assert "variant='bn'" in msg and "variant='torchvision'" in msg and "branch5x5_kernel" in msg
    with pytest.raises(ValueError, match="different architecture.*num_classes: 10 .*vs 7"):
        T.load_checkpoint(out / T.LAST, GoogLeNet(num_classes=7, aux_logits=False, variant="bn", in_channels=1,
                                                  image_size=32))
    with pytest.raises(ValueError, match=r"different configuration: lr: 0.01 \(checkpoint\) vs 0.1"):
        T.train(dataclasses.replace(cfg, lr=0.1), resume=True, verbose=False)
    with pytest.raises(ValueError, match="at epoch 3, past epochs=2"):
        T.train(dataclasses.replace(cfg, epochs=2), resume=True, verbose=False)
    with pytest.raises(FileExistsError, match="already holds a run"):
        T.train(cfg, verbose=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        T.train(dataclasses.replace(cfg, out_dir=str(out.parent / "nothing")), resume=True)
    assert {p.name: _sha(p) for p in out.iterdir()} == before


def test_lr_at_follows_the_written_schedules() -> None:
    """lr_at against hand-computed values: the paper's -4% every 8 epochs, a cosine to zero, a linear warmup."""
    paper = TrainConfig(schedule="paper", lr=0.05, epochs=40)
    assert [lr_at(paper, e) for e in (0, 7.99, 8, 16.5, 39)] == pytest.approx(
        [0.05, 0.05, 0.048, 0.05 * 0.96 ** 2, 0.05 * 0.96 ** 4], rel=1e-12)
    cosine = TrainConfig(schedule="cosine", lr=0.1, epochs=10, warmup_epochs=2)
    assert [lr_at(cosine, e) for e in (1, 2, 6, 10)] == pytest.approx([0.05, 0.1, 0.05, 0.0], abs=1e-9)
    assert lr_at(TrainConfig(schedule="constant", lr=0.3), 123) == 0.3


@pytest.mark.parametrize(("field", "value", "match"), [
    ("variant", "inception_v3", "unknown variant 'inception_v3'"),
    ("dataset", "mnist", "unknown dataset 'mnist'"),
])
def test_unknown_variant_or_dataset(tmp_path: Path, field: str, value: str, match: str) -> None:
    """Refused when the config is made (before any trainer or file is touched)."""
    with pytest.raises(ValueError, match=match):
        tiny(tmp_path / "never", **{field: value})
    assert not (tmp_path / "never").exists()


@needs_fmnist
def test_nan_loss_stops_with_epoch_and_step_and_keeps_last_good_checkpoint(
        run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "copy"
    shutil.copytree(run["out"], out)
    before = {p.name: _sha(p) for p in out.iterdir()}
    real = T.compute_loss
    calls = {"n": 0}

    def nan_at_step_2(*a: Any, **k: Any) -> T.LossParts:
        calls["n"] += 1
        parts = real(*a, **k)
        return parts._replace(total=parts.total * float("nan")) if calls["n"] == 2 else parts

    monkeypatch.setattr(T, "compute_loss", nan_at_step_2)
    cfg = dataclasses.replace(run["cfg"], out_dir=str(out), epochs=4)
    with pytest.raises(runfiles.NonFiniteLossError, match=r"nan at epoch 4, step 2/8 .*last good checkpoint .*epoch 3"):
        T.train(cfg, resume=True, verbose=False)
    assert {p.name: _sha(p) for p in out.iterdir()} == before
    assert issubclass(runfiles.NonFiniteLossError, FloatingPointError)


@needs_fmnist
def test_divergent_learning_rate_stops_before_any_checkpoint(tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "lr", variant="torchvision", resolution=16, lr=1e30, subset=48, epochs=1)
    with pytest.raises(runfiles.NonFiniteLossError, match=r"epoch 1, step \d/3.*no checkpoint had been written"):
        T.train(cfg, verbose=False)
    assert not (tmp_path / "lr" / T.LAST).exists()


# ------------------------------------------------------------------------------------------------
# Small pieces
# ------------------------------------------------------------------------------------------------


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runfiles.FSYNC_ENV, "1")
    path = tmp_path / "last.pt"
    T._save_checkpoint({"a": torch.arange(3)}, path)
    good = path.read_bytes()

    def boom(f: Any) -> None:
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        runfiles.atomic_write(path, boom)
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.arange(3))


def test_no_weight_decay_on_biases_and_batchnorm() -> None:
    m = GoogLeNet(num_classes=10, aux_logits=False, variant="bn", in_channels=1, image_size=32)
    decay, no_decay = T.param_groups(m, 5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(m.parameters()))


def test_loss_is_main_plus_weighted_aux() -> None:
    from inception_lib.pytorch import GoogLeNetOutputs

    logits, a1, a2 = torch.randn(3, 4, 10, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([1, 2, 3, 4])
    ce = torch.nn.CrossEntropyLoss()
    parts = T.compute_loss(GoogLeNetOutputs(logits, a1, a2), y, ce, 0.3)
    assert torch.allclose(parts.total, ce(logits, y) + 0.3 * (ce(a1, y) + ce(a2, y)))
    assert T.compute_loss(GoogLeNetOutputs(logits, None, None), y, ce, 0.3).aux1 is None


def test_aux_ablation_control_arm_is_paired_with_the_aux_run(tmp_path: Path) -> None:
    """aux_heads=True, aux_weight=0: the same initial weights and random stream as the aux-0.3 run of the seed,
    the heads reported but untrained; the first step's main loss is the same in both arms, the trunks then part."""
    require_fashion_mnist()
    kw: dict[str, Any] = dict(resolution=48, subset=32, val_size=16, epochs=1, max_steps_per_epoch=2, ema=False,
                              eval_subset=16)
    treated = T.train(tiny(tmp_path / "aux", aux_weight=0.3, **kw), verbose=False)
    control = T.train(tiny(tmp_path / "ctl", aux_weight=0.0, aux_heads=True, **kw), verbose=False)
    repro.seed_everything(0, 1)
    init = T.build_model(tiny(tmp_path / "x", aux_weight=0.3, **kw), 10, 1).state_dict()
    repro.seed_everything(0, 1)
    assert all(torch.equal(v, init[k]) for k, v in
               T.build_model(tiny(tmp_path / "x", aux_weight=0.0, aux_heads=True, **kw), 10, 1).state_dict().items())
    a, c = treated["epochs"][0], control["epochs"][0]
    assert c["train_loss"] == c["train_loss_main"] and c["train_loss_aux1"] is not None
    assert a["train_loss"] > a["train_loss_main"]
    states = {name: torch.load(tmp_path / name / T.LAST, weights_only=True)["model"] for name in ("aux", "ctl")}
    heads = [k for k in init if k.startswith("aux") and "running" not in k and "batches" not in k]  # parameters
    assert heads and all(torch.equal(states["ctl"][k], init[k]) for k in heads)
    assert not all(torch.equal(states["aux"][k], init[k]) for k in heads)
    assert not all(torch.equal(states["ctl"][k], states["aux"][k]) for k in init if k.startswith("conv1"))
    with pytest.raises(ValueError, match="aux_heads=False"):
        TrainConfig(aux_weight=0.3, aux_heads=False)


@pytest.mark.parametrize("field, value", [("lr", -1.0), ("momentum", 3.0), ("ema_decay", 7.0), ("label_smoothing", 2.0),
                                          ("weight_decay", -1e-4), ("warmup_epochs", 20.0), ("dropout", 1.0),
                                          ("augment", "mixup"), ("threads", 0)])
def test_config_values_are_validated(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_progress_and_device_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    one = D.DistInfo()
    monkeypatch.setenv(runfiles.PROGRESS_ENV, "1")
    assert runfiles.progress_enabled(True, one.is_main) and not runfiles.progress_enabled(False, one.is_main)
    assert not runfiles.progress_enabled(True, D.DistInfo(rank=1, world_size=2).is_main)  # rank 0 only
    monkeypatch.setenv(runfiles.PROGRESS_ENV, "0")
    assert not runfiles.progress_enabled(True, one.is_main)
    assert T.resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            T.resolve_device("cuda")


def test_sharding_gives_each_rank_its_slice_of_the_global_batch() -> None:
    from inception_lib.data import EpochSampler

    batches = [(torch.arange(8) + 8 * i, torch.arange(8)) for i in range(3)]
    r1 = D.ShardedBatches(batches, D.DistInfo(rank=1, world_size=2))
    assert [x.tolist() for x, _ in r1] == [[4, 5, 6, 7], [12, 13, 14, 15], [20, 21, 22, 23]]
    full = list(EpochSampler(20, seed=3))
    shards = [list(D.ShardedBatchSampler(EpochSampler(20, seed=3), 8, D.DistInfo(rank=r, world_size=2)))
              for r in range(2)]
    assert [a + b for a, b in zip(*shards)] == [full[:8], full[8:16]]  # the incomplete batch is dropped
    with pytest.raises(ValueError, match="not divisible"):
        D.ShardedBatchSampler(EpochSampler(20), 9, D.DistInfo(rank=0, world_size=2))


@needs_fmnist
def test_dataloader_sharding_splits_the_same_global_batches(tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "dl", resolution=16, subset=48, gpu_data=False)  # torch DataLoaders, flip augmentation
    loaders = T.make_loaders(cfg, "cpu")
    assert isinstance(loaders["train"], torch.utils.data.DataLoader)
    T._set_epoch(loaders["train"], 1)
    full = list(loaders["train"])
    shards = []
    for r in range(2):
        mine = D.shard_train(loaders["train"], 16, D.DistInfo(rank=r, world_size=2))
        T._set_epoch(mine, 1)
        shards.append(list(mine))
    assert len(full) == len(shards[0]) == len(shards[1]) == 3
    for (x, y), (x0, y0), (x1, y1) in zip(full, *shards):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    val = [D.shard_eval(loaders["val"], D.DistInfo(rank=r, world_size=2)) for r in range(2)]
    assert sum(len(y) for v in val for _, y in v) == len(loaders["val"].dataset) == 32


# ------------------------------------------------------------------------------------------------
# DistributedDataParallel: 2 processes (torchrun, gloo) == 1 process on the same global batch
# ------------------------------------------------------------------------------------------------

DDP_RTOL = 1e-5
"""Per weight tensor, max |DDP - one process| / max |weight| after 4 SGD steps. The "paper" variant has no BatchNorm,
so the only difference is the order of floating-point sums (gradients averaged over 2 x 8 images vs 16): 2e-7
observed (fc.weight; 1.5e-8 absolute). The 4 steps move every tensor by 1.5e-4 to 1e-2 of its scale (median 1.5e-3),
so a wrong gradient average would break this bound. With BN the per-replica batch statistics (8 images, not 16)
would make the runs differ by far more."""


@needs_fmnist
def test_ddp_two_processes_match_one(tmp_path: Path) -> None:
    args = ["--variant", "paper", "--resolution", "32", "--aux-weight", "0", "--dropout", "0", "--subset", "64",
            "--val-size", "32", "--eval-subset", "16", "--batch-size", "16", "--max-steps", "2", "--epochs", "2",
            "--lr", "0.01", "--device", "cpu", "--threads", "1"]
    env = {**os.environ, runfiles.PROGRESS_ENV: "0", runfiles.FSYNC_ENV: "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "inception_lib", "train", *args, "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("epoch 2/2") == 1  # rank 0 alone prints
    ddp = torch.load(tmp_path / "ddp" / T.LAST, weights_only=True)
    assert len(ddp["rng"]) == 2 and json.loads((tmp_path / "ddp" / "history.json").read_text())["hardware"][
        "world_size"] == 2

    cfg = dataclasses.replace(TrainConfig.from_dict(ddp["config"]), out_dir=str(tmp_path / "one"))
    T.train(cfg, verbose=False)
    one = torch.load(tmp_path / "one" / T.LAST, weights_only=True)
    assert ddp["model"].keys() == one["model"].keys()
    # Both trained: every weight tensor moved from the shared initial weights (a no-op run would match too).
    repro.seed_everything(cfg.seed, threads=1)  # what the trainer does before it builds the model
    init = T.build_model(cfg, num_classes=10, in_channels=1).state_dict()
    moved = [k for k, v in one["model"].items() if v.is_floating_point() and not torch.equal(v, init[k])]
    assert len(moved) == sum(v.is_floating_point() for v in init.values()), "some weights never moved"
    for k in one["model"]:
        assert_close(ddp["model"][k], one["model"][k], DDP_RTOL, k)
    for a, b in zip(ddp["history"], one["history"]):  # losses: 1e-7 relative observed
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        # val_acc exactly: the smallest top-1 / top-2 logit gap is 0.11 (observed), the logits differ by ~1e-8
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5) and a["val_acc"] == b["val_acc"]


@needs_fmnist
def test_overwrite_clears_the_old_runs_checkpoints(tmp_path: Path) -> None:
    """As in the Keras trainer: with overwrite the old last.pt / best.pt go before the new run trains."""
    out = tmp_path / "old"
    out.mkdir()
    (out / T.LAST).write_bytes(b"an old run's checkpoint")
    (out / "best.pt").write_bytes(b"an old run's best checkpoint")
    cfg = tiny(out, lr=1e30, aux_weight=0.0, ema=False, epochs=1)
    with pytest.raises(FileExistsError, match="already holds a run"):
        T.train(cfg, verbose=False)
    with pytest.raises(runfiles.NonFiniteLossError):
        T.train(cfg, overwrite=True, verbose=False)
    assert not (out / T.LAST).exists() and not (out / "best.pt").exists()

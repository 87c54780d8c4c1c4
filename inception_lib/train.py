"""PyTorch training for GoogLeNet: the paper's recipe (Section 6) plus what a long run needs.

Loss ``main + aux_weight * (aux1 + aux2)``; SGD with momentum, the rate from :func:`~inception_lib.config.lr_at`
at every step, weight decay on kernels only (biases and BatchNorm undecayed, as BVLC Caffe's ``decay_mult: 0``);
Polyak averaging as an EMA of weights and BatchNorm buffers (``AveragedModel``). Precision is resolved once
(:func:`choose_precision`) and recorded: bf16 / fp16 autocast (fp16 with a ``GradScaler``), fp32, or fp64 for
demos whose numbers repeat across CPUs. Data-parallel under ``torchrun``. The run folder's files are written
atomically after every epoch (:mod:`inception_lib.runfiles`); ``resume=True`` continues from ``last.pt`` exactly,
because each epoch's data order and augmentation depend only on (seed, epoch). The test split is used only when
asked (``test=True``), once, at the end.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

import numpy as np
import torch
from torch import nn

from inception_lib import distributed as D
from inception_lib import repro, runfiles
from inception_lib.config import EPOCH_KEYS, TrainConfig, lr_at, resolve_precision
from inception_lib.pytorch import GoogLeNet, architecture
from inception_lib.runfiles import check_architecture, data_config

CHECKPOINT_FORMAT = "inception_lib.checkpoint/1"
LAST = "last.pt"
BEST = "best.pt"


# ----------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"``: CUDA (this process's GPU under torchrun), else Apple MPS, else CPU."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    dev = torch.device(next(k for k, ok in available.items() if ok) if name == "auto" else name)
    if not available.get(dev.type, True):
        raise RuntimeError(f"device {name!r} asked for, but {dev.type.upper()} is not available here; use "
                           "device='auto' or 'cpu'")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
    return dev


def build_model(cfg: TrainConfig, num_classes: int, in_channels: int) -> GoogLeNet:
    """The GoogLeNet the config describes (aux heads as ``cfg.aux_logits`` says)."""
    resolution = cfg.resolution if cfg.resolution is not None else _native_size(cfg.dataset)
    return GoogLeNet(num_classes=num_classes, aux_logits=cfg.aux_logits, variant=cfg.variant,
                     in_channels=in_channels, image_size=resolution, dropout=cfg.dropout)


def _native_size(dataset: str) -> int:
    from inception_lib import data

    return data.DataConfig(dataset=dataset).image_size


def make_loaders(cfg: TrainConfig, device: Union[str, torch.device] = "cpu") -> dict[str, Any]:
    """train / val / test loaders: on-device tensors for the small datasets (``gpu_data``), else DataLoaders.

    The train loader's order and augmentation depend only on (seed, epoch) (``set_epoch``), which is what
    makes exact resumption possible.
    """
    from inception_lib import data

    dcfg = data_config(cfg)
    if cfg.gpu_data and dcfg.dataset in data.ARRAY_DATASETS:
        return data.device_loaders(dcfg, device)
    return data.torch_loaders(dcfg)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: kernels / weight matrices with weight decay; biases and BatchNorm scales/shifts without."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.SGD:
    """SGD with momentum (the paper's 0.9) and decoupled groups (no decay on biases / BN)."""
    return torch.optim.SGD(param_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov)


class LossParts(NamedTuple):
    """The total training loss and its parts (aux parts None when the heads are off)."""

    total: torch.Tensor
    main: torch.Tensor
    aux1: Optional[torch.Tensor]
    aux2: Optional[torch.Tensor]


def _split_outputs(out: Any) -> tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    if isinstance(out, torch.Tensor):
        return out, None, None
    return out.logits, getattr(out, "aux1", None), getattr(out, "aux2", None)


def _wide(logits: torch.Tensor) -> torch.Tensor:
    """Logits for the loss: float16 / bfloat16 (autocast) -> float32; float32 and float64 as they are."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def compute_loss(outputs: Any, targets: torch.Tensor, criterion: Callable[..., torch.Tensor],
                 aux_weight: float) -> LossParts:
    """``main + aux_weight * (aux1 + aux2)`` (Section 5: "their loss is added to the total loss ... weighted by 0.3").

    Heads present at ``aux_weight=0`` (a paired ablation's control arm) have their losses reported, not trained.
    """
    logits, a1, a2 = _split_outputs(outputs)
    main = criterion(_wide(logits), targets)
    if a1 is None or a2 is None:
        return LossParts(main, main, None, None)
    l1, l2 = criterion(_wide(a1), targets), criterion(_wide(a2), targets)
    if aux_weight > 0:
        return LossParts(main + aux_weight * (l1 + l2), main, l1, l2)
    return LossParts(main, main, l1.detach(), l2.detach())


# ----------------------------------------------------------------------------------------------------
# Files: atomic writes, history, checkpoints
# ----------------------------------------------------------------------------------------------------


def _architecture(model: nn.Module) -> dict[str, Any]:
    if isinstance(model, GoogLeNet):
        return runfiles.json_normal(architecture(model))
    return {"family": type(model).__name__}


def _rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors and plain lists (loadable with ``weights_only=True``)."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {"python": [version, list(mt), gauss],
            "numpy": {"name": name, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                      "cached_gaussian": float(cached)},
            "torch": torch.get_rng_state(), "cuda": list(cuda)}


def _set_rng_state(s: Mapping[str, Any]) -> None:
    version, mt, gauss = s["python"]
    random.setstate((version, tuple(mt), gauss))
    n = s["numpy"]
    np.random.set_state((n["name"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(s["torch"])
    if s.get("cuda") and torch.cuda.is_available() and len(s["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(s["cuda"])


_EXPECTED = runfiles.CHECKPOINT_EXPECTED["pytorch"]


def _read_checkpoint(path: Union[str, Path]) -> dict[str, Any]:
    """The checkpoint dict; FileNotFoundError, CorruptCheckpointError (damaged file) or ValueError (another kind)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    runfiles.check_zip_archive(path, _EXPECTED)  # truncated / overwritten / changed bytes: CorruptCheckpointError
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError) as err:  # an intact zip that is no torch.save file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path} is not an inception_lib training checkpoint: torch.load(weights_only=True) cannot "
                         f"read it ({first[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = f"a dict with keys {sorted(map(str, state))[:8]}" if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is not an inception_lib training checkpoint (expected a dict with format "
                         f"{CHECKPOINT_FORMAT!r}, found {found})")
    return state


def _ema_weights(ema_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("module."):]: v for k, v in ema_state.items() if k.startswith("module.")}


def load_checkpoint(path: Union[str, Path], model: Optional[nn.Module] = None, *,
                    weights: str = "model") -> tuple[nn.Module, dict[str, Any]]:
    """Load a training checkpoint into ``model`` (built from the stored config when None).

    ``weights="ema"`` loads the Polyak-averaged weights. A model of another architecture (variant, classes,
    channels, aux heads, resolution) is refused with a ValueError naming both. Returns (model, checkpoint).
    """
    if weights not in ("model", "ema"):
        raise ValueError(f"weights must be 'model' or 'ema', got {weights!r}")
    state = _read_checkpoint(path)
    arch = state["architecture"]
    if model is None:
        cfg = TrainConfig.from_dict(state["config"])
        model = build_model(cfg, int(arch["num_classes"]), int(arch["in_channels"]))
    check_architecture(arch, _architecture(model), where=path)
    if weights == "ema":
        if state.get("ema") is None:
            raise ValueError(f"{path} has no EMA weights (trained with ema=False)")
        model.load_state_dict(_ema_weights(state["ema"]))
    else:
        model.load_state_dict(state["model"])
    return model, state


# ----------------------------------------------------------------------------------------------------
# Runtime set-up
# ----------------------------------------------------------------------------------------------------


def _configure_runtime(cfg: TrainConfig, device: torch.device) -> None:
    """Seeds, threads and kernel choice: deterministic kernels when asked, the fastest otherwise."""
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before the first cuBLAS call
    repro.seed_everything(cfg.seed, cfg.threads, deterministic=cfg.deterministic)
    if cfg.deterministic:
        # warn_only: a few CUDA backward kernels (adaptive pooling, index ops) have no deterministic version.
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic
        torch.backends.cudnn.deterministic = cfg.deterministic
        if not cfg.deterministic:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True


def _set_epoch(loader: Any, epoch: int) -> None:
    for obj in (loader, getattr(loader, "batch_sampler", None), getattr(loader, "sampler", None)):
        if obj is not None and hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
            return


_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_PARAM_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def choose_precision(cfg: TrainConfig, device: torch.device, bf16_native: Optional[bool] = None) -> dict[str, Any]:
    """``cfg.precision`` resolved for ``device`` (:func:`inception_lib.config.resolve_precision`): the record stored
    in history.json. ``bf16_native`` None asks the GPU (compute capability >= 8.0); tests force True / False."""
    if bf16_native is None:
        bf16_native = device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)
    return resolve_precision(cfg.precision, device.type, bool(bf16_native), cfg.channels_last)


def _autocast(prec: Mapping[str, Any], device: torch.device) -> Any:
    """``torch.autocast`` for bf16 / fp16 (any device type, CPU included); nothing for fp32 / fp64."""
    dtype = _AUTOCAST_DTYPES.get(prec["compute"])
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def _grad_scaler(prec: Mapping[str, Any], device: torch.device, **kwargs: Any) -> Optional[torch.amp.GradScaler]:
    """fp16's loss scaling (``torch.amp.GradScaler`` on the device's type, CPU too), else None. Its first scale,
    2**16, makes the first few steps overflow and be skipped while it halves to what the gradients allow."""
    return torch.amp.GradScaler(device.type, **kwargs) if prec["grad_scaler"] else None


def _to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device,
               prec: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch on the device, in the parameters' dtype (float64 for fp64), channels-last when asked."""
    x = x.to(device, non_blocking=True)
    if x.is_floating_point():
        x = x.to(_PARAM_DTYPES[prec["params"]])
    if prec["channels_last"]:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(device, non_blocking=True)


def _backward_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                   scaler: Optional[torch.amp.GradScaler]) -> None:
    """``backward`` and one optimizer step; with fp16's scaler: scale, backward, step (unscales; skips an
    update whose gradients hold inf / NaN), update the scale."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


@torch.no_grad()
def _eval_loss_acc(model: nn.Module, loader: Optional[Iterable[Any]], cfg: TrainConfig, device: torch.device,
                   prec: Mapping[str, Any], info: D.DistInfo) -> tuple[Optional[float], Optional[float]]:
    """Mean cross-entropy (no label smoothing) and top-1 of the main head over a (sharded) loader."""
    if loader is None:
        return None, None
    was = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64 if device.type != "mps" else torch.float32, device=device)
    try:
        for x, y in loader:
            x, y = _to_device(x, y, device, prec)
            with _autocast(prec, device):
                logits = model(x)
            logits = _wide(_split_outputs(logits)[0])
            sums[0] += nn.functional.cross_entropy(logits, y, reduction="sum")
            sums[1] += (logits.argmax(1) == y).sum()
            sums[2] += y.numel()
    finally:
        model.train(was)
    D.all_reduce_sum(sums, info)
    loss, correct, n = sums.tolist()
    if n == 0:
        return None, None
    return loss / n, correct / n


def _check_finite(window: list[torch.Tensor], info: D.DistInfo, epoch: int, first_step: int, n_steps: int,
                  global_step: int, lr: float, ckpt: Path, last_epoch: int) -> None:
    """Raise :class:`NonFiniteLossError` if any loss in the window (on any rank) is NaN / inf."""
    losses = torch.stack(window)
    bad = (~torch.isfinite(losses)).to(torch.float32)
    flag = D.all_reduce_max(bad.max().reshape(1), info)
    if flag.item() == 0:
        return
    local = bad.nonzero()
    k = int(local[0, 0]) if local.numel() else len(window) - 1
    step = first_step + k
    raise runfiles.diverged(f"training loss is {losses[k].item()} at epoch {epoch + 1}, step {step + 1}/{n_steps} "
                            f"(global step {global_step - len(window) + k + 1}), lr {lr:.4g}: the run diverged",
                            ckpt, last_epoch)


# ----------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------


def train(cfg: TrainConfig, *, model: Optional[nn.Module] = None, loaders: Optional[Mapping[str, Any]] = None,
          resume: bool = False, overwrite: bool = False, test: bool = False, progress: Optional[bool] = None,
          verbose: bool = True) -> dict[str, Any]:
    """Train as ``cfg`` says, writing ``cfg.out_dir`` after every epoch; returns the history document.

    Args:
        model: a GoogLeNet to train instead of ``build_model(cfg, ...)`` (its architecture is what the
            checkpoints record and check).
        loaders: ``{"train", "val"[, "test"]}`` instead of :func:`make_loaders`; the train loader should
            have ``set_epoch`` (itself, its sampler or batch sampler) for exact resumption.
        resume: continue from ``out_dir/last.pt``; the architecture and the config (except
            :data:`RESUMABLE_CHANGES`) must match, else ValueError.
        overwrite: start afresh in an ``out_dir`` that already holds a run (refused otherwise).
        test: after training, evaluate the final weights (and the EMA) on the test split once and store it in
            ``history["test"]``; never used for model selection.
        progress: tqdm bars; None = when stderr is a terminal. ``INCEPTION_LIB_PROGRESS=0`` turns them off.
        verbose: print one summary line per epoch (rank 0).

    Raises:
        NonFiniteLossError: the loss became NaN / inf (epoch and step named; files untouched since the last
            good epoch).
    """
    dcfg, out, ckpt_path = runfiles.preflight(cfg, "pytorch", LAST, resume=resume, overwrite=overwrite)

    env = D.env_info()
    device = resolve_device(cfg.device, env.local_rank)
    det_before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    info = D.init(device.type)
    try:
        with warnings.catch_warnings():
            if info.enabled and dcfg.image_channels == 1:
                # conv1's [64, 1, 7, 7] gradient comes back with a different (equivalent: a size-1 dim) stride
                # than DDP's bucket; harmless, and it would print on every rank.
                warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
            return _train(cfg, dcfg, device, info, out, ckpt_path, model=model, loaders=loaders, resume=resume,
                          test=test, progress=progress, verbose=verbose)
    finally:
        torch.use_deterministic_algorithms(det_before[0], warn_only=det_before[1])
        D.cleanup(info)


def _train(cfg: TrainConfig, dcfg: Any, device: torch.device, info: D.DistInfo, out: Path, ckpt_path: Path, *,
           model: Optional[nn.Module], loaders: Optional[Mapping[str, Any]], resume: bool, test: bool,
           progress: Optional[bool], verbose: bool) -> dict[str, Any]:
    _configure_runtime(cfg, device)
    if model is None:
        model = build_model(cfg, dcfg.num_classes, dcfg.image_channels)
    arch = _architecture(model)
    state: Optional[dict[str, Any]] = None
    if resume:
        state = _read_checkpoint(ckpt_path)
        check_architecture(state["architecture"], arch, where=ckpt_path)
        runfiles.check_resume_config(state["config"], cfg, ckpt_path)
    if info.rank:  # different dropout masks per replica (restored per rank on resume)
        torch.manual_seed(cfg.seed + 1_000_003 * info.rank)

    if loaders is None:
        loaders = make_loaders(cfg, device)
    train_loader = D.shard_train(loaders["train"], cfg.batch_size, info)
    val_loader = D.shard_eval(loaders["val"], info) if loaders.get("val") is not None else None
    n_steps = len(train_loader)
    if cfg.max_steps_per_epoch is not None:
        n_steps = min(n_steps, cfg.max_steps_per_epoch)
    if n_steps == 0:
        raise ValueError(f"the training set gives no full batch of {cfg.batch_size} images (subset={cfg.subset})")

    prec = choose_precision(cfg, device)
    model.to(device, dtype=_PARAM_DTYPES[prec["params"]])  # float64 for fp64 (the EMA copies it below)
    if prec["channels_last"]:
        model.to(memory_format=torch.channels_last)
    if info.enabled and device.type == "cuda" and cfg.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = make_optimizer(cfg, model)
    scaler = _grad_scaler(prec, device)
    ema = None
    if cfg.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        # Built from the model already on its device; its step counter n_averaged stays on the CPU, so the
        # per-step `n_averaged == 0` test inside update_parameters never waits for the GPU.
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)

    start_epoch, global_step, wall_offset, best = 0, 0, 0.0, None
    rows: list[dict[str, Any]] = []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("grad_scaler"):
            scaler.load_state_dict(state["grad_scaler"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        rngs = state["rng"]
        _set_rng_state(rngs[info.rank] if info.rank < len(rngs) else rngs[0])
        start_epoch, global_step = int(state["epoch"]), int(state["step"])
        wall_offset, best = float(state["wall_time_s"]), state.get("best_val_acc")
        rows = [dict(r) for r in state["history"]][:start_epoch]
        if start_epoch > cfg.epochs:
            raise ValueError(f"{ckpt_path} is at epoch {start_epoch}, past epochs={cfg.epochs}; ask for at least "
                             f"{start_epoch} epochs (or evaluate the checkpoint as it is)")

    train_model: nn.Module = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        # gradient_as_bucket_view: grads live in DDP's buckets (less memory, no stride-mismatch copies).
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                              gradient_as_bucket_view=True)
    if cfg.compile:
        train_model = torch.compile(train_model)  # type: ignore[assignment]
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    hardware = {**repro.hardware(), "device": str(device), "world_size": info.world_size}

    def doc(status: str, test: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        return runfiles.history_doc("pytorch", cfg, rows, status, test, hardware, prec)

    show = runfiles.progress_enabled(progress, info.is_main)
    check_every = 1 if device.type == "cpu" else 10  # a host sync per check; cheap on CPU
    acc_dtype = torch.float32 if device.type == "mps" else torch.float64

    if info.is_main and state is None:  # a resumed run changes nothing on disk before its first new epoch
        runfiles.new_run_folder(out, cfg, doc("running"), LAST, BEST)
    D.barrier(info)

    t_run = time.perf_counter()
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        _set_epoch(train_loader, epoch)
        lr0 = lr_at(cfg, epoch)
        stats = torch.zeros(8, dtype=acc_dtype, device=device)
        window: list[torch.Tensor] = []
        bar = None
        if show:
            from tqdm import tqdm

            bar = tqdm(total=n_steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True,
                       file=sys.stderr)
        lr = lr0
        for i, (x, y) in enumerate(train_loader):
            if i >= n_steps:
                break
            lr = lr_at(cfg, epoch + i / n_steps)
            for g in optimizer.param_groups:
                g["lr"] = lr
            x, y = _to_device(x, y, device, prec)
            with _autocast(prec, device):
                outputs = train_model(x)
            parts = compute_loss(outputs, y, criterion, cfg.aux_weight)
            global_step += 1
            window.append(parts.total.detach())
            if len(window) >= check_every or i + 1 == n_steps:
                last_good = int(rows[-1]["epoch"]) if rows else 0
                _check_finite(window, info, epoch, i + 1 - len(window), n_steps, global_step, lr, ckpt_path, last_good)
                window = []
            _backward_step(parts.total, optimizer, scaler)
            if ema is not None:
                ema.update_parameters(model)
            with torch.no_grad():
                logits, a1, a2 = _split_outputs(outputs)
                n = y.numel()
                zero = stats.new_zeros(())
                stats += torch.stack([
                    parts.total.detach().to(acc_dtype) * n, parts.main.detach().to(acc_dtype) * n,
                    (parts.aux1.detach().to(acc_dtype) * n) if parts.aux1 is not None else zero,
                    (parts.aux2.detach().to(acc_dtype) * n) if parts.aux2 is not None else zero,
                    (logits.argmax(1) == y).sum().to(acc_dtype),
                    (a1.argmax(1) == y).sum().to(acc_dtype) if a1 is not None and parts.aux1 is not None else zero,
                    (a2.argmax(1) == y).sum().to(acc_dtype) if a2 is not None and parts.aux2 is not None else zero,
                    stats.new_full((), float(n)),  # a fill kernel, not a host-to-device copy (no sync)
                ])
            if bar is not None:
                bar.update(1)
                if (i + 1) % check_every == 0 or i + 1 == n_steps:
                    s = stats.tolist()
                    elapsed = time.perf_counter() - t0
                    bar.set_postfix(loss=f"{s[0] / s[7]:.3f}", acc=f"{s[4] / s[7]:.3f}",
                                    img_s=f"{s[7] * info.world_size / max(elapsed, 1e-9):.0f}", refresh=False)
        if bar is not None:
            bar.close()
        D.all_reduce_sum(stats, info)
        s = stats.tolist()
        train_time = time.perf_counter() - t0
        aux_on = s[2] != 0.0  # the heads exist (trained or not)

        val_loss, val_acc = _eval_loss_acc(model, val_loader, cfg, device, prec, info)
        val_acc_ema = None
        if ema is not None:
            val_acc_ema = _eval_loss_acc(ema.module, val_loader, cfg, device, prec, info)[1]
        now = time.perf_counter()
        means = [v / s[7] if k in (0, 1, 4) or aux_on else None for k, v in enumerate(s[:7])]  # EPOCH_KEYS' order
        row = dict(zip(EPOCH_KEYS, (epoch + 1, lr0, *means, val_loss, val_acc, val_acc_ema, now - t0,
                                    wall_offset + (now - t_run), s[7] / train_time), strict=True))
        rows.append(row)
        improved = val_acc is not None and (best is None or val_acc > best)
        if improved:
            best = val_acc
        rngs = D.gather_objects(_rng_state(), info)
        if info.is_main:
            ckpt = {
                "format": CHECKPOINT_FORMAT, "framework": "pytorch", "architecture": arch, "config": cfg.to_dict(),
                "epoch": epoch + 1, "step": global_step, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "ema": ema.state_dict() if ema is not None else None,
                "rng": rngs, "history": rows, "wall_time_s": row["wall_time_s"], "best_val_acc": best,
                "versions": runfiles.versions(), "precision": prec,
                "grad_scaler": scaler.state_dict() if scaler is not None else None,
            }
            _save_checkpoint(ckpt, ckpt_path)
            if improved:  # the weights only: best.pt is for evaluation, last.pt for resuming
                _save_checkpoint({**ckpt, "optimizer": None, "rng": None}, out / BEST)
            runfiles.write_run(out, cfg, doc("running"))
            if verbose:
                print(runfiles.epoch_line(row, cfg.epochs), flush=True)
        D.barrier(info)

    test_result = None
    if test:
        test_result = _test_once(model, ema, loaders, device, info, epoch=len(rows))
    elif state is not None and start_epoch == cfg.epochs:  # nothing trained now: keep an earlier test result
        test_result = runfiles.previous_test(out, start_epoch)
    final = doc("completed", test_result)
    if info.is_main:
        runfiles.write_history(out, final)
        if verbose and test_result is not None:
            print(runfiles.final_test_line(test_result), flush=True)
    D.barrier(info)
    return final


def _save_checkpoint(ckpt: dict[str, Any], path: Path) -> None:
    """Atomic ``torch.save`` (a module-level function so tests can interrupt a run right after it)."""
    runfiles.atomic_write(path, lambda f: torch.save(ckpt, f))


def _test_once(model: nn.Module, ema: Any, loaders: Mapping[str, Any], device: torch.device, info: D.DistInfo,
               epoch: int) -> Optional[dict[str, Any]]:
    """The final weights (and the EMA) on the test split, rank 0 only (the others wait)."""
    from inception_lib import evaluate as E

    result = None
    if info.is_main:
        if "test" not in loaders:
            raise ValueError("test=True but the loaders have no 'test' split")
        k = model.num_classes

        def run(m: nn.Module) -> dict[str, Any]:
            return E.evaluate(m, loaders["test"], "1", E.default_ks(k), device=device, num_classes=k).to_dict(
                include_confusion=False)

        result = runfiles.final_test(epoch, run(model), None if ema is None else run(ema.module))
    D.barrier(info)
    return result

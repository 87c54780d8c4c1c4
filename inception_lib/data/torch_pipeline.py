"""Splits -> PyTorch batches: batched transforms (the paper's augmentation), DataLoaders, and an on-device loader that
keeps a small dataset on the GPU. torch is imported inside the functions (see the package docstring)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from inception_lib.data.readers import ARRAY_DATASETS, INTERPOLATIONS, PHOTOMETRIC_STRENGTH, DataConfig, decode_image, load_splits

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

    from inception_lib.data.readers import Split

__all__ = ["DeviceTensorLoader", "EpochSampler", "device_loaders", "torch_loaders", "torch_transform_batch"]


def _epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for (seed, epoch): different epochs get unrelated streams."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, epoch & 0xFFFFFFFF, 0x1C3]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1]))


# --- Batched transforms (shared by the DataLoader path and the on-device loader) ---

def _crop_params(n: int, h: int, w: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random-resized-crop boxes (x0, y0, width, height) for n images, torchvision's algorithm batched: area uniform
    in [0.08, 1], aspect ratio log-uniform in [3/4, 4/3], 10 attempts, then the whole image (ratio clamped) centred."""
    import torch

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g, dtype=torch.float64, device=g.device)

    attempts, lo, hi = 10, 3.0 / 4.0, 4.0 / 3.0
    area = h * w * (0.08 + 0.92 * rand(n, attempts))
    ratio = torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * rand(n, attempts))
    cw, ch = torch.round(torch.sqrt(area * ratio)), torch.round(torch.sqrt(area / ratio))
    ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first, has = ok.to(torch.int8).argmax(dim=1, keepdim=True), ok.any(dim=1)
    cw, ch = cw.gather(1, first)[:, 0], ch.gather(1, first)[:, 0]
    fw, fh = (w, round(w / lo)) if w / h < lo else (round(h * hi), h) if w / h > hi else (w, h)
    u = rand(n, 2)
    cw, ch = torch.where(has, cw, torch.full_like(cw, fw)), torch.where(has, ch, torch.full_like(ch, fh))
    x0 = torch.where(has, torch.floor(u[:, 0] * (w - cw + 1)), torch.full_like(cw, (w - fw) // 2))
    y0 = torch.where(has, torch.floor(u[:, 1] * (h - ch + 1)), torch.full_like(ch, (h - fh) // 2))
    return x0, y0, cw, ch


def _crop_resize(x: torch.Tensor, boxes: tuple[torch.Tensor, ...], modes: torch.Tensor, size: int,
                 sync_free: bool = False) -> torch.Tensor:
    """Crop box i of image i and resize it to size x size with interpolation ``INTERPOLATIONS[modes[i]]``.

    ``sync_free`` (on a GPU): every interpolation for every image, then each image's own picked on the device, with no
    host sync (4x the resampling, cheap there); otherwise each interpolation runs on its own images only (the CPU's
    choice). Each image's result is the same either way.
    """
    import torch
    import torch.nn.functional as F
    n, c, h, w = x.shape
    x0, y0, cw, ch = (b.to(device=x.device, dtype=torch.float32) for b in boxes)
    out = x.new_empty(n, c, size, size)
    for k, mode in enumerate(INTERPOLATIONS):
        if sync_free:
            sel, xs, (bx, by, bw, bh) = torch.arange(n, device=x.device), x, (x0, y0, cw, ch)
        else:
            sel = (modes == k).nonzero()[:, 0]
            if sel.numel() == 0:
                continue
            sel = sel.to(x.device)
            xs = x.index_select(0, sel)
            bx, by, bw, bh = (t.index_select(0, sel) for t in (x0, y0, cw, ch))
        if mode == "area":
            from torchvision.ops import roi_align
            # ceil(box / output) samples averaged per output pixel: area resampling when shrinking, bilinear else
            rois = torch.stack([torch.arange(len(sel), device=x.device, dtype=torch.float32),
                                bx, by, bx + bw, by + bh], dim=1)
            res = roi_align(xs, rois, output_size=size, spatial_scale=1.0, sampling_ratio=0, aligned=True)
        else:
            theta = torch.zeros(len(sel), 2, 3, device=x.device)
            theta[:, 0, 0], theta[:, 0, 2] = bw / w, (2 * bx + bw) / w - 1
            theta[:, 1, 1], theta[:, 1, 2] = bh / h, (2 * by + bh) / h - 1
            grid = F.affine_grid(theta, [len(sel), c, size, size], align_corners=False)
            res = F.grid_sample(xs, grid, mode=mode, padding_mode="border", align_corners=False)
        if sync_free:
            out = torch.where((modes == k).to(x.device).view(-1, 1, 1, 1), res, out)
        else:
            out.index_copy_(0, sel, res)
    return out.clamp_(0.0, 1.0)


def _channels(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """Per-channel constants (1, C, 1, 1) made on ``like``'s device by fill kernels: no host-to-device copy per batch."""
    import torch
    return torch.stack([like.new_full((), float(v)) for v in values]).view(1, -1, 1, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return x if x.shape[1] == 1 else (x * _channels((0.299, 0.587, 0.114), x)).sum(dim=1, keepdim=True)


def _photometric(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation (that order), each factor uniform in [1 - s, 1 + s]."""
    import torch
    s = PHOTOMETRIC_STRENGTH
    f = (1.0 + s * (2.0 * torch.rand(x.shape[0], 3, generator=g, device=g.device) - 1.0)).to(x.device, torch.float32)
    brightness, contrast, saturation = (f[:, i].view(-1, 1, 1, 1) for i in range(3))
    x = (x * brightness).clamp_(0.0, 1.0)
    m = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - m) * contrast + m).clamp_(0.0, 1.0)
    if x.shape[1] == 3:
        gray = _gray(x)
        x = ((x - gray) * saturation + gray).clamp_(0.0, 1.0)
    return x


def _random_flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    import torch
    flip = (torch.rand(x.shape[0], generator=g, device=g.device) < 0.5).to(x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x)


def _resize(x: torch.Tensor, size: int, eval_crop: float | None) -> torch.Tensor:
    """Evaluation geometry: a plain resize, or (folders) the shorter side to size / eval_crop, then a centre crop."""
    import torch.nn.functional as F
    h, w = x.shape[-2:]
    if eval_crop is None:
        if (h, w) == (size, size):
            return x
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=min(h, w) > size)
    short = max(size, round(size / eval_crop))
    nh, nw = (short, max(short, round(w * short / h))) if h <= w else (max(short, round(h * short / w)), short)
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=min(h, w) > short)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[..., top : top + size, left : left + size]


def torch_transform_batch(x: torch.Tensor, *, size: int, channels: int, mean: Sequence[float], std: Sequence[float],
                          augment: str = "none", train: bool = False, generator: torch.Generator | None = None,
                          eval_crop: float | None = None) -> torch.Tensor:
    """uint8 (N, C, H, W) on any device -> normalized float32 (N, channels, size, size) on that device.

    Training applies ``augment``, drawing from ``generator`` on the generator's device (on the GPU nothing is copied
    per batch; a seed gives other crops there than on the CPU). Grayscale becomes 3 channels last (cheapest).
    """
    import torch
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"expected a uint8 (N, C, H, W) tensor, got {x.dtype} {tuple(x.shape)}")
    x = x.float().div_(255.0)
    if train and augment != "none" and generator is None:
        raise ValueError("training augmentation needs a torch.Generator")
    if train and augment == "paper":
        n, _, h, w = x.shape
        modes = torch.randint(len(INTERPOLATIONS), (n,), generator=generator, device=generator.device)
        x = _crop_resize(x, _crop_params(n, h, w, generator), modes, size, sync_free=x.device.type != "cpu")
        x = _photometric(_random_flip(x, generator), generator)
    else:
        x = _resize(x, size, eval_crop)
        if train and augment == "flip":
            x = _random_flip(x, generator)
    if channels == 3 and x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return ((x - _channels(mean, x)) / _channels(std, x)).contiguous()


def _transform_kwargs(cfg: DataConfig, train: bool) -> dict[str, Any]:
    return {"size": cfg.image_size, "channels": cfg.image_channels, "mean": cfg.norm_mean, "std": cfg.norm_std,
            "augment": cfg.augment, "train": train, "eval_crop": cfg.eval_crop}


# --- DataLoader path (every dataset, folders included) ---

class EpochSampler:
    """Sampler of ``(index, augmentation_seed)`` pairs. Epoch e's order and augmentation depend only on (seed, e),
    not on the workers or on what ran before: ``set_epoch(e)`` replays it (otherwise each pass is the next epoch)."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        import torch
        epoch, self.epoch = self.epoch, self.epoch + 1
        g = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        seeds = torch.randint(0, 2**62, (self.n,), generator=g)
        return iter(zip(order.tolist(), seeds.tolist()))


class _TorchSplitDataset:
    """Map-style dataset over a :class:`Split`; key ``(index, seed)`` (train) or ``index``."""

    def __init__(self, split: Split, transform: dict[str, Any]) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        import torch
        index, seed = key if isinstance(key, tuple) else (key, None)
        split = self.split
        img = split.images[index] if split.images is not None else decode_image(split.paths[index])  # type: ignore[index]
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        return torch_transform_batch(x, generator=g, **self.transform)[0], int(split.labels[index])


def _worker_init(_: int) -> None:
    import torch
    torch.set_num_threads(1)  # per-sample work: one thread per worker avoids oversubscription


def torch_loaders(cfg: DataConfig) -> dict[str, torch.utils.data.DataLoader]:
    """``DataLoader`` s for train / val / test (float32 N x C x H x W normalized, int64 N), for every dataset. Train is
    shuffled by an :class:`EpochSampler` (``.sampler.set_epoch(e)`` to resume), augmented and drops its last batch.
    For the small datasets on a GPU, :func:`device_loaders` is much faster."""
    import torch
    from torch.utils.data import DataLoader
    workers = cfg.num_workers
    loaders = {}
    for name, split in load_splits(cfg).items():
        train = name == "train"
        loaders[name] = DataLoader(
            _TorchSplitDataset(split, _transform_kwargs(cfg, train)),  # type: ignore[arg-type]
            batch_size=cfg.batch_size if train else cfg.eval_batch,
            sampler=EpochSampler(len(split), cfg.seed, shuffle=True) if train else None,
            drop_last=train, generator=torch.Generator().manual_seed(cfg.seed), num_workers=workers,
            pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
            worker_init_fn=_worker_init if workers > 0 else None,
        )
    return loaders


# --- The whole small dataset on the device ---

class DeviceTensorLoader:
    """One in-memory :class:`Split` as a uint8 tensor on a device, batched and augmented there, so that a GPU never
    waits for a CPU loader. Used like the ``DataLoader`` of :func:`torch_loaders` (same batches at evaluation);
    epoch e's order and augmentation depend only on (seed, e): ``set_epoch(e)`` replays it."""

    def __init__(self, cfg: DataConfig, split: Split, device: str | torch.device | None = None) -> None:
        import torch
        if split.images is None:
            raise ValueError(f"{cfg.dataset}: DeviceTensorLoader needs an in-memory dataset {ARRAY_DATASETS}")
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.images = torch.from_numpy(np.ascontiguousarray(split.images)).to(self.device)
        self.labels = torch.from_numpy(np.asarray(split.labels, dtype=np.int64)).to(self.device)
        self.train = split.name == "train"
        self.batch_size = cfg.batch_size if self.train else cfg.eval_batch
        self.seed, self.epoch, self.transform = cfg.seed, 0, _transform_kwargs(cfg, self.train)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n, b = len(self.labels), self.batch_size
        return n // b if self.train else -(-n // b)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        import torch
        epoch, self.epoch = self.epoch, self.epoch + 1
        # The generator lives on the device: order and augmentation are drawn there, nothing is copied per batch.
        g = torch.Generator(device=self.device).manual_seed(_epoch_seed(self.seed, epoch))
        n = len(self.labels)
        order = torch.randperm(n, generator=g, device=self.device) if self.train else torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.images.index_select(0, idx).permute(0, 3, 1, 2)
            yield torch_transform_batch(x, generator=g, **self.transform), self.labels.index_select(0, idx)


def device_loaders(cfg: DataConfig, device: str | torch.device | None = None) -> dict[str, DeviceTensorLoader]:
    """:class:`DeviceTensorLoader` for train / val / test (device: cuda when present, else cpu)."""
    if cfg.dataset not in ARRAY_DATASETS:
        raise ValueError(f"device_loaders needs an in-memory dataset {ARRAY_DATASETS}; use torch_loaders")
    return {name: DeviceTensorLoader(cfg, split, device) for name, split in load_splits(cfg).items()}

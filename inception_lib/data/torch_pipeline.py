"""Splits -> PyTorch batches: the batched transforms (the paper's augmentation), DataLoaders, and the
on-device loader that keeps a small dataset on the GPU. torch is imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch


from inception_lib.data.readers import (
    ARRAY_DATASETS,
    INTERPOLATIONS,
    PHOTOMETRIC_STRENGTH,
    DataConfig,
    Split,
    decode_image,
    load_splits,
)


def _epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for (seed, epoch): different epochs get unrelated streams."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, epoch & 0xFFFFFFFF, 0x1C3]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1]))


# ----------------------------------------------------------------------------------------------------
# PyTorch: batched transforms (shared by the DataLoader path and the on-device loader)
# ----------------------------------------------------------------------------------------------------


def _crop_params(n: int, h: int, w: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random-resized-crop boxes (x0, y0, width, height) for n images, torchvision's algorithm batched.

    Area uniform in [0.08, 1] of the image, aspect ratio log-uniform in [3/4, 4/3], 10 attempts, then
    the whole image (ratio clamped) as a centre crop.
    """
    import torch

    attempts, lo, hi = 10, 3.0 / 4.0, 4.0 / 3.0
    area = h * w * (0.08 + 0.92 * torch.rand(n, attempts, generator=g, dtype=torch.float64, device=g.device))
    ratio = torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * torch.rand(n, attempts, generator=g,
                                                                                 dtype=torch.float64, device=g.device))
    cw = torch.round(torch.sqrt(area * ratio))
    ch = torch.round(torch.sqrt(area / ratio))
    ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = ok.to(torch.int8).argmax(dim=1, keepdim=True)
    has = ok.any(dim=1)
    cw = cw.gather(1, first)[:, 0]
    ch = ch.gather(1, first)[:, 0]
    in_ratio = w / h
    if in_ratio < lo:
        fw, fh = w, round(w / lo)
    elif in_ratio > hi:
        fw, fh = round(h * hi), h
    else:
        fw, fh = w, h
    u = torch.rand(n, 2, generator=g, dtype=torch.float64, device=g.device)
    cw = torch.where(has, cw, torch.full_like(cw, fw))
    ch = torch.where(has, ch, torch.full_like(ch, fh))
    x0 = torch.where(has, torch.floor(u[:, 0] * (w - cw + 1)), torch.full_like(cw, (w - fw) // 2))
    y0 = torch.where(has, torch.floor(u[:, 1] * (h - ch + 1)), torch.full_like(ch, (h - fh) // 2))
    return x0, y0, cw, ch


def _crop_resize(x: torch.Tensor, boxes: tuple[torch.Tensor, ...], modes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop box i of image i and resize it to size x size with interpolation ``INTERPOLATIONS[modes[i]]``."""
    import torch
    import torch.nn.functional as F

    n, c, h, w = x.shape
    x0, y0, cw, ch = (b.to(device=x.device, dtype=torch.float32) for b in boxes)
    out = x.new_empty(n, c, size, size)
    for k, mode in enumerate(INTERPOLATIONS):
        sel = (modes == k).nonzero()[:, 0]
        if sel.numel() == 0:
            continue
        sel = sel.to(x.device)
        xs = x.index_select(0, sel)
        bx, by, bw, bh = (t.index_select(0, sel) for t in (x0, y0, cw, ch))
        if mode == "area":
            from torchvision.ops import roi_align

            # roi_align averages ceil(box / output) samples per output pixel: area resampling when the
            # crop is shrunk, bilinear when it is enlarged.
            rois = torch.stack([torch.arange(len(sel), device=x.device, dtype=torch.float32),
                                bx, by, bx + bw, by + bh], dim=1)
            res = roi_align(xs, rois, output_size=size, spatial_scale=1.0, sampling_ratio=0, aligned=True)
        else:
            theta = torch.zeros(len(sel), 2, 3, device=x.device)
            theta[:, 0, 0] = bw / w
            theta[:, 0, 2] = (2 * bx + bw) / w - 1
            theta[:, 1, 1] = bh / h
            theta[:, 1, 2] = (2 * by + bh) / h - 1
            grid = F.affine_grid(theta, [len(sel), c, size, size], align_corners=False)
            res = F.grid_sample(xs, grid, mode=mode, padding_mode="border", align_corners=False)
        out.index_copy_(0, sel, res)
    return out.clamp_(0.0, 1.0)


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    weights = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def _photometric(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
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
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    if eval_crop is None:
        if (h, w) == (size, size):
            return x
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                             antialias=min(h, w) > size)
    short = max(size, round(size / eval_crop))
    nh, nw = (short, max(short, round(w * short / h))) if h <= w else (max(short, round(h * short / w)), short)
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=min(h, w) > short)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[..., top : top + size, left : left + size]


def torch_transform_batch(
    x: torch.Tensor,
    *,
    size: int,
    channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    augment: str = "none",
    train: bool = False,
    generator: torch.Generator | None = None,
    eval_crop: float | None = None,
) -> torch.Tensor:
    """uint8 (N, C, H, W) on any device -> normalized float32 (N, channels, size, size) on that device.

    Training applies ``augment``; randomness is drawn from ``generator`` on the generator's device (the
    on-device loader's lives on the GPU, so a batch needs no random numbers copied to it; a seed gives other
    crops on a GPU than on the CPU). Grayscale is repeated to 3 channels last (cheaper; the same result).
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
        x = _crop_resize(x, _crop_params(n, h, w, generator), modes, size)
        x = _random_flip(x, generator)
        x = _photometric(x, generator)
    else:
        x = _resize(x, size, eval_crop)
        if train and augment == "flip":
            x = _random_flip(x, generator)
    if channels == 3 and x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    m = torch.tensor(mean, device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
    return ((x - m) / s).contiguous()


def _transform_kwargs(cfg: DataConfig, train: bool) -> dict[str, Any]:
    return {
        "size": cfg.image_size,
        "channels": cfg.image_channels,
        "mean": cfg.norm_mean,
        "std": cfg.norm_std,
        "augment": cfg.augment,
        "train": train,
        "eval_crop": cfg.eval_crop,
    }


# ----------------------------------------------------------------------------------------------------
# PyTorch: DataLoader path
# ----------------------------------------------------------------------------------------------------


class EpochSampler:
    """Sampler yielding ``(index, augmentation_seed)`` pairs, reseeded per epoch.

    Epoch e's order and augmentation depend only on (seed, e), never on worker count or on what ran
    before, so a resumed run calls ``set_epoch(e)`` and sees the same batches. Without ``set_epoch`` the
    epoch counter advances by one per pass.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch``."""
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
        if self.split.images is not None:
            img = self.split.images[index]
        else:
            img = decode_image(self.split.paths[index])  # type: ignore[index]
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        return torch_transform_batch(x, generator=g, **self.transform)[0], int(self.split.labels[index])


def _worker_init(_: int) -> None:
    import torch

    torch.set_num_threads(1)  # per-sample work: one thread per worker avoids oversubscription


def torch_loaders(cfg: DataConfig) -> dict[str, torch.utils.data.DataLoader]:
    """PyTorch ``DataLoader`` for train / val / test: batches (float32 N x C x H x W normalized, int64).

    Train: shuffled by an :class:`EpochSampler` (``loaders["train"].sampler.set_epoch(e)`` to resume),
    augmented per ``cfg.augment``, ``drop_last``. Workers per ``cfg.num_workers`` (persistent when > 0),
    pinned memory when CUDA is present. Works for every dataset, folders included; for the small
    datasets on a GPU, :func:`device_loaders` is much faster.
    """
    import torch
    from torch.utils.data import DataLoader

    splits = load_splits(cfg)
    common: dict[str, Any] = {
        "num_workers": cfg.num_workers,
        "pin_memory": torch.cuda.is_available(),
        "persistent_workers": cfg.num_workers > 0,
        "worker_init_fn": _worker_init if cfg.num_workers > 0 else None,
    }
    loaders = {}
    for name, split in splits.items():
        train = name == "train"
        ds = _TorchSplitDataset(split, _transform_kwargs(cfg, train))
        loaders[name] = DataLoader(
            ds,  # type: ignore[arg-type]
            batch_size=cfg.batch_size if train else cfg.eval_batch,
            sampler=EpochSampler(len(split), cfg.seed, shuffle=True) if train else None,
            drop_last=train,
            generator=torch.Generator().manual_seed(cfg.seed),
            **common,
        )
    return loaders


# ----------------------------------------------------------------------------------------------------
# PyTorch: the whole dataset on the device
# ----------------------------------------------------------------------------------------------------


class DeviceTensorLoader:
    """A small dataset held as one uint8 tensor on a device and batched there.

    Resize, flips, random-resized crops (``augment="paper"``) and normalization run on the device in
    batches, so a GPU is never starved by a CPU loader; on CPU it is also the fastest path. Same interface
    as a ``DataLoader``: iterating yields ``(float32 N x C x H x W normalized, int64 N)``, ``len()`` is
    batches per epoch. Epoch e's order and augmentation depend only on (seed, e): ``set_epoch(e)`` before
    iterating makes a resumed run see the same batches (otherwise the epoch advances by one per pass).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        batch_size: int,
        size: int,
        channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: str = "none",
        train: bool = False,
        seed: int = 0,
        device: str | torch.device | None = None,
        drop_last: bool | None = None,
    ) -> None:
        import torch

        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, H, W, C), got {images.dtype} {images.shape}")
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(self.device)
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.shuffle = train
        self.drop_last = train if drop_last is None else drop_last
        self.transform = {"size": size, "channels": channels, "mean": tuple(mean), "std": tuple(std),
                          "augment": augment, "train": train}
        self.epoch = 0

    @classmethod
    def from_split(cls, cfg: DataConfig, split: Split, device: str | torch.device | None = None) -> DeviceTensorLoader:
        """The loader for one :class:`Split` of ``cfg`` (train: shuffled, augmented, drop_last)."""
        if split.images is None:
            raise ValueError(f"{cfg.dataset}: DeviceTensorLoader needs an in-memory dataset {ARRAY_DATASETS}")
        train = split.name == "train"
        return cls(split.images, split.labels, batch_size=cfg.batch_size if train else cfg.eval_batch,
                   size=cfg.image_size, channels=cfg.image_channels, mean=cfg.norm_mean, std=cfg.norm_std,
                   augment=cfg.augment, train=train, seed=cfg.seed, device=device)

    @property
    def dataset_size(self) -> int:
        return len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch`` (deterministic order and augmentation per epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        n, b = self.dataset_size, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        import torch

        epoch, self.epoch = self.epoch, self.epoch + 1
        # The generator lives on the device: order and augmentation are drawn there, no copy to it per batch.
        g = torch.Generator(device=self.device).manual_seed(_epoch_seed(self.seed, epoch))
        n = self.dataset_size
        order = (torch.randperm(n, generator=g, device=self.device) if self.shuffle
                 else torch.arange(n, device=self.device))
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.images.index_select(0, idx).permute(0, 3, 1, 2)
            yield (torch_transform_batch(x, generator=g, **self.transform), self.labels.index_select(0, idx))


def device_loaders(cfg: DataConfig, device: str | torch.device | None = None) -> dict[str, DeviceTensorLoader]:
    """:class:`DeviceTensorLoader` for train / val / test (device: cuda when present, else cpu)."""
    if cfg.dataset not in ARRAY_DATASETS:
        raise ValueError(f"device_loaders needs an in-memory dataset {ARRAY_DATASETS}; use torch_loaders")
    return {name: DeviceTensorLoader.from_split(cfg, split, device) for name, split in load_splits(cfg).items()}



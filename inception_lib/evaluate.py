"""Evaluation as the paper does it: top-1/top-5, multi-crop testing, ensembles (Section 7).

What the paper did at test time, and what this module offers for each step:

* **144 crops per image** (:func:`paper_144_crops`): shorter side resized to 256, 288, 320 and 352;
  the left, centre and right squares (top, centre, bottom for portrait images); in each square the 4 corner
  and the centre 224x224 crops plus the whole square resized to 224x224, and the mirror image of each:
  4 x 3 x 6 x 2 = 144. The cheaper 10-crop scheme (:func:`ten_crops`) is the one Table 3 compares it with.
* **Softmax probabilities are averaged** over the crops (:func:`multi_crop_predict`) and over the models
  of an ensemble (:func:`ensemble_probs`, :func:`evaluate_ensemble`); the paper found this better than
  max-pooling over crops or averaging logits.
* **Ranking by top-5 error** (:func:`topk_accuracy`; :class:`EvalResult` carries accuracies and errors).

Framework notes. Metrics are numpy code that accept numpy arrays or torch tensors. The crops are made
with plain torch ops (no torchvision), and torch is imported only inside the functions that need it, so
importing this module imports neither torch nor tensorflow. A "model" is anything callable on a float batch
that returns logits: a ``torch.nn.Module`` taking NCHW tensors (the default), or, with
``channels_last=True``, any callable taking an NHWC numpy array, e.g. a Keras model or ``keras_model.predict``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "PAPER_SCALES",
    "SCHEMES",
    "EvalResult",
    "confusion_matrix",
    "ensemble_probs",
    "eval_inputs",
    "evaluate",
    "evaluate_checkpoint",
    "evaluate_ensemble",
    "evaluate_model",
    "list_collate",
    "make_crops",
    "multi_crop_predict",
    "paper_144_crops",
    "per_class_accuracy",
    "plot_confusion_matrix",
    "predict_probs",
    "resize_shorter_side",
    "result_from_probs",
    "softmax",
    "ten_crops",
    "topk_accuracy",
    "topk_correct",
]

PAPER_SCALES: tuple[int, ...] = (256, 288, 320, 352)
"""Shorter-side lengths of the paper's 144-crop scheme (Section 7)."""

SCHEMES: tuple[str, ...] = ("1", "center", "10", "144")
"""Test-time crop schemes: ``"1"`` feeds the batch as given (already preprocessed); ``"center"`` resizes the
shorter side to ``resize`` and takes the centre ``crop`` (one crop from a raw-resolution image); ``"10"`` is
:func:`ten_crops`; ``"144"`` is :func:`paper_144_crops`."""


# --------------------------------------------------------------------------------------------------
# Metrics (numpy; torch tensors are accepted and converted)
# --------------------------------------------------------------------------------------------------


def _to_numpy(x: Any) -> np.ndarray:
    """Convert a numpy array, torch tensor, TF tensor or sequence to numpy without importing a framework."""
    if hasattr(x, "detach"):  # torch.Tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_scores_labels(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = _to_numpy(scores)
    y = _to_numpy(labels)
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D (N x num_classes), got shape {s.shape}")
    if y.ndim != 1 or y.shape[0] != s.shape[0]:
        raise ValueError(f"labels must be 1-D with {s.shape[0]} entries, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= s.shape[1]):
        raise ValueError(f"labels must lie in [0, {s.shape[1]}), got range [{y.min()}, {y.max()}]")
    return s, y.astype(np.int64)


def _rank_of_label(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """0-based rank of the true class in each row, ties broken towards the lower class index.

    Counting the classes that beat the true one avoids a full sort, and the tie rule makes the result the same
    as a stable descending sort: a constant output is *not* counted correct for every class.
    """
    true = scores[np.arange(scores.shape[0]), labels][:, None]
    idx = np.arange(scores.shape[1])[None, :]
    beats = (scores > true) | ((scores == true) & (idx < labels[:, None]))
    return beats.sum(axis=1)


def default_ks(num_classes: int) -> tuple[int, ...]:
    """The top-k accuracies to report: top-1 and top-5 (the paper's two), top-1 alone below 5 classes."""
    return (1, 5) if num_classes >= 5 else (1,)


def topk_correct(scores: Any, labels: Any, ks: Sequence[int] = (1, 5)) -> dict[int, int]:
    """Number of rows whose true label is among the ``k`` highest scores, for each ``k``.

    ``scores`` are logits or probabilities (N x num_classes): the ranking is the same for both. Ties are broken
    towards the lower class index. A ``k`` larger than the number of classes raises ``ValueError`` because it
    would report a meaningless 100 %.
    """
    s, y = _check_scores_labels(scores, labels)
    num_classes = s.shape[1]
    for k in ks:
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if int(k) > num_classes:
            raise ValueError(
                f"top-{k} is undefined with only {num_classes} classes; pass ks=(1,) or ks with k <= {num_classes}"
            )
    rank = _rank_of_label(s, y)
    return {int(k): int((rank < int(k)).sum()) for k in ks}


def topk_accuracy(scores: Any, labels: Any, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Top-k accuracy (fraction in [0, 1]) for each ``k``; the paper ranks by top-5 error = 1 - top-5 accuracy."""
    n = _to_numpy(labels).shape[0]
    if n == 0:
        raise ValueError("no samples: top-k accuracy of an empty set is undefined")
    return {k: c / n for k, c in topk_correct(scores, labels, ks).items()}


def confusion_matrix(preds: Any, labels: Any, num_classes: int) -> np.ndarray:
    """Counts ``cm[true, predicted]`` (rows: true class), int64, shape ``num_classes x num_classes``.

    ``preds`` are predicted class indices (N,); a 2-D score array (N x num_classes) is reduced with argmax first.
    """
    p = _to_numpy(preds)
    y = _to_numpy(labels).astype(np.int64)
    if p.ndim == 2:
        p = p.argmax(axis=1)
    p = p.astype(np.int64)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError(f"preds and labels must be 1-D of equal length, got {p.shape} and {y.shape}")
    for name, a in (("preds", p), ("labels", y)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}), got range [{a.min()}, {a.max()}]")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y, p), 1)
    return cm


def per_class_accuracy(cm: Any) -> np.ndarray:
    """Recall of each class, ``cm[i, i] / cm[i].sum()``; NaN for a class with no samples (not a fake 0)."""
    cm = _to_numpy(cm).astype(np.float64)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def plot_confusion_matrix(
    cm: Any,
    class_names: Sequence[str] | None = None,
    ax: Axes | None = None,
    *,
    normalize: bool = True,
    annotate: bool | None = None,
    cmap: str = "Blues",
    title: str | None = None,
) -> tuple[Figure, Axes]:
    """Draw a confusion matrix (rows: true class, columns: prediction) and return ``(figure, axes)``.

    ``normalize=True`` divides each row by its count, so the diagonal reads as per-class accuracy and
    classes of different sizes are comparable. Cells are annotated when there are at most 20 classes
    (``annotate`` overrides).
    """
    import matplotlib.pyplot as plt

    m = _to_numpy(cm).astype(np.float64)
    k = m.shape[0]
    if m.shape != (k, k):
        raise ValueError(f"cm must be square, got shape {m.shape}")
    names = [str(i) for i in range(k)] if class_names is None else [str(c) for c in class_names]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k}x{k} matrix")
    if normalize:
        rows = m.sum(axis=1, keepdims=True)
        m = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * k + 2), max(3.5, 0.45 * k + 1.5)))
    else:
        fig = ax.figure
    im = ax.imshow(m, cmap=cmap, vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title is not None:
        ax.set_title(title)
    if annotate if annotate is not None else k <= 20:
        threshold = m.max() / 2 if m.size else 0
        for i in range(k):
            for j in range(k):
                text = f"{m[i, j]:.2f}" if normalize else f"{int(m[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] > threshold else "black")
    return fig, ax


def softmax(logits: Any, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64 (the paper averages probabilities, not logits)."""
    z = _to_numpy(logits).astype(np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def ensemble_probs(probs: Sequence[Any]) -> np.ndarray:
    """Average the softmax probabilities of several classifiers (the paper's ensemble rule, Section 7)."""
    if len(probs) == 0:
        raise ValueError("ensemble_probs needs at least one probability array")
    arrays = [_to_numpy(p).astype(np.float64) for p in probs]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"all probability arrays must have the same shape, got {sorted(shapes)}")
    return np.mean(np.stack(arrays), axis=0)


# --------------------------------------------------------------------------------------------------
# Test-time crops (torch ops only, so they work in a process that imported tensorflow first)
# --------------------------------------------------------------------------------------------------


def _check_chw(img: torch.Tensor) -> None:
    if img.ndim != 3:
        raise ValueError(f"expected one image C x H x W, got shape {tuple(img.shape)}")


def _resize(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of C x H x W to ``size`` (H, W), as torchvision's ``resize`` does for tensors."""
    import torch

    if tuple(img.shape[-2:]) == tuple(size):
        return img
    native = img.dtype in (torch.float32, torch.float64) or (img.dtype == torch.uint8 and img.device.type == "cpu")
    x = img if native else img.to(torch.float32)
    out = torch.nn.functional.interpolate(
        x[None], size=list(size), mode="bilinear", align_corners=False, antialias=True
    )[0]
    if not native:
        if not img.is_floating_point():
            out = out.round_()
        out = out.to(img.dtype)
    return out


def resize_shorter_side(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the shorter side is ``size``, keeping the aspect ratio (long side truncated, as torchvision)."""
    _check_chw(img)
    h, w = int(img.shape[-2]), int(img.shape[-1])
    short, long = (h, w) if h <= w else (w, h)
    new_short, new_long = int(size), int(size * long / short)
    new_hw = (new_short, new_long) if h <= w else (new_long, new_short)
    return _resize(img, new_hw)


def _crop(img: torch.Tensor, top: int, left: int, h: int, w: int) -> torch.Tensor:
    return img[..., top : top + h, left : left + w]


def _five_crops(img: torch.Tensor, crop: int) -> list[torch.Tensor]:
    """Top-left, top-right, bottom-left, bottom-right, centre (torchvision's order and centre rounding)."""
    h, w = int(img.shape[-2]), int(img.shape[-1])
    if crop > h or crop > w:
        raise ValueError(f"crop {crop} is larger than the image {h}x{w}")
    top_c = round((h - crop) / 2.0)
    left_c = round((w - crop) / 2.0)
    return [
        _crop(img, 0, 0, crop, crop),
        _crop(img, 0, w - crop, crop, crop),
        _crop(img, h - crop, 0, crop, crop),
        _crop(img, h - crop, w - crop, crop, crop),
        _crop(img, top_c, left_c, crop, crop),
    ]


def ten_crops(img: torch.Tensor, crop: int = 224, resize: int = 256) -> torch.Tensor:
    """The 10-crop test of Table 3: 4 corners + centre of the image resized to shorter side ``resize``, and mirrors.

    Returns ``10 x C x crop x crop``. Order: top-left, top-right, bottom-left, bottom-right, centre, then the
    horizontal mirror of each of those five in the same order (``out[i + 5] == out[i].flip(-1)``).
    """
    import torch

    _check_chw(img)
    if crop > resize:
        raise ValueError(f"crop {crop} must not exceed resize {resize}")
    five = torch.stack(_five_crops(resize_shorter_side(img, resize), crop))
    return torch.cat([five, five.flip(-1)])


def paper_144_crops(
    img: torch.Tensor, scales: Sequence[int] = PAPER_SCALES, crop: int = 224
) -> torch.Tensor:
    """The paper's 144 crops of one image (Section 7): ``len(scales) x 3 x 6 x 2`` crops of ``crop x crop``.

    For each scale the shorter side is resized to the scale; the three ``scale x scale`` squares are taken at
    left, centre, right (top, centre, bottom for portrait images; a square image gives the same square three
    times, so every image yields the same number of crops). From each square come 6 crops: top-left,
    top-right, bottom-left, bottom-right, centre (all ``crop x crop``) and the whole square resized to
    ``crop x crop``; then the horizontal mirrors of those 6 in the same order.

    Order: crop ``((s * 3 + q) * 2 + m) * 6 + c`` is scale ``s``, square ``q`` (0 left/top, 1 centre,
    2 right/bottom), mirrored ``m`` (0 no, 1 yes), crop ``c`` (0 TL, 1 TR, 2 BL, 3 BR, 4 centre, 5 whole).
    """
    import torch

    _check_chw(img)
    out: list[torch.Tensor] = []
    for scale in scales:
        if scale < crop:
            raise ValueError(f"scale {scale} is smaller than the crop {crop}")
        r = resize_shorter_side(img, scale)
        h, w = int(r.shape[-2]), int(r.shape[-1])
        s = min(h, w)
        if w >= h:  # landscape or square: left, centre, right
            squares = [_crop(r, 0, off, s, s) for off in (0, round((w - s) / 2.0), w - s)]
        else:  # portrait: top, centre, bottom
            squares = [_crop(r, off, 0, s, s) for off in (0, round((h - s) / 2.0), h - s)]
        for sq in squares:
            six = torch.stack([*_five_crops(sq, crop), _resize(sq, (crop, crop))])
            out.extend([six, six.flip(-1)])
    return torch.cat(out)


def make_crops(
    img: torch.Tensor,
    scheme: str | int = "10",
    *,
    crop: int = 224,
    resize: int = 256,
    scales: Sequence[int] = PAPER_SCALES,
) -> torch.Tensor:
    """The crops of one C x H x W image under a scheme of :data:`SCHEMES`, as ``n_crops x C x h x w``."""
    scheme = _check_scheme(scheme)
    _check_chw(img)
    if scheme == "1":
        return img[None]
    if scheme == "center":
        return _five_crops(resize_shorter_side(img, resize), crop)[4][None]
    if scheme == "10":
        return ten_crops(img, crop=crop, resize=resize)
    return paper_144_crops(img, scales=scales, crop=crop)


def _check_scheme(scheme: str | int) -> str:
    s = str(scheme)
    if s not in SCHEMES:
        raise ValueError(f"unknown crop scheme {scheme!r}; choose one of {SCHEMES}")
    return s


# --------------------------------------------------------------------------------------------------
# Running a model over crops
# --------------------------------------------------------------------------------------------------


def _model_device(model: Any, device: Any) -> Any:
    import torch

    if device is not None:
        return torch.device(device)
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
        for b in model.buffers():
            return b.device
    return torch.device("cpu")


def _param_dtype(model: Any) -> Any:
    """The floating dtype of a torch model's first parameter (None for other callables)."""
    import torch

    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.dtype if p.is_floating_point() else None
    return None


def _forward_logits(model: Any, x: torch.Tensor, channels_last: bool, device: Any) -> np.ndarray:
    """Run the model on an NCHW batch and return logits as numpy.

    A torch model gets an NCHW tensor on ``device``; with ``channels_last`` the callable gets an NHWC float32
    numpy array (what Keras expects). A training-mode torchvision output (``.logits``) or a list of outputs
    (a Keras model with auxiliary heads) is reduced to the main logits.
    """
    if channels_last:
        out = model(x.permute(0, 2, 3, 1).contiguous().cpu().float().numpy())
    else:
        x = x.to(device)
        dtype = _param_dtype(model)
        if dtype is not None and x.is_floating_point() and x.dtype != dtype:  # e.g. a float64 model (fp64 runs)
            x = x.to(dtype)
        out = model(x)
    if hasattr(out, "logits"):
        out = out.logits
    elif isinstance(out, (list, tuple)):
        out = out[0]
    logits = _to_numpy(out)
    if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
        raise ValueError(f"model must return N x num_classes logits for N={x.shape[0]}, got {logits.shape}")
    return logits


def _as_image_list(images: Any, channels_last: bool) -> list[torch.Tensor]:
    """Images as a list of C x H x W torch tensors (a batch tensor, a list of images, NHWC when channels_last)."""
    import torch

    if isinstance(images, (list, tuple)):
        imgs = [torch.as_tensor(np.asarray(i) if not hasattr(i, "detach") else i) for i in images]
        if channels_last:
            imgs = [i.permute(2, 0, 1) for i in imgs]
        return imgs
    batch = images if hasattr(images, "detach") else torch.as_tensor(np.asarray(images))
    if batch.ndim != 4:
        raise ValueError(f"expected a batch N x C x H x W (N x H x W x C if channels_last), got {tuple(batch.shape)}")
    if channels_last:
        batch = batch.permute(0, 3, 1, 2)
    return list(batch.unbind(0))


def multi_crop_predict(
    model: Callable[[Any], Any],
    images: Any,
    scheme: str | int = "1",
    *,
    crop: int = 224,
    resize: int = 256,
    scales: Sequence[int] = PAPER_SCALES,
    channels_last: bool = False,
    chunk_size: int = 64,
    device: Any = None,
) -> np.ndarray:
    """Class probabilities ``N x num_classes`` (float64 numpy), softmax averaged over each image's crops.

    ``images`` is a batch (N x C x H x W tensor or array; N x H x W x C with ``channels_last``) or a list of
    single images, which may differ in size (raw resolution, needed for ``"center"``, ``"10"``, ``"144"``).
    Scheme ``"1"`` feeds the images as they are. The model runs in eval mode (restored afterwards) under
    ``torch.no_grad``, ``chunk_size`` crops at a time; a torch model stays where it is and the crops are moved
    to its device (or ``device``).
    """
    import torch

    scheme = _check_scheme(scheme)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dev = None if channels_last else _model_device(model, device)
    is_module = isinstance(model, torch.nn.Module)
    was_training = bool(model.training) if is_module else False
    if is_module:
        model.eval()

    def run(batch: torch.Tensor) -> np.ndarray:
        parts = [
            softmax(_forward_logits(model, batch[i : i + chunk_size], channels_last, dev))
            for i in range(0, batch.shape[0], chunk_size)
        ]
        return np.concatenate(parts)

    try:
        with torch.no_grad():
            imgs = _as_image_list(images, channels_last)
            if scheme == "1":
                sizes = {tuple(i.shape) for i in imgs}
                if len(sizes) > 1:
                    raise ValueError(f"scheme '1' needs same-size images, got sizes {sorted(sizes)}")
                return run(torch.stack(imgs)) if imgs else np.zeros((0, 0))
            probs = [
                run(make_crops(img, scheme, crop=crop, resize=resize, scales=scales)).mean(axis=0)
                for img in imgs
            ]
            return np.stack(probs) if probs else np.zeros((0, 0))
    finally:
        if is_module:
            model.train(was_training)


def list_collate(batch: Sequence[tuple[Any, Any]]) -> tuple[list[Any], np.ndarray]:
    """``collate_fn`` for a DataLoader of raw-resolution images: keeps images as a list (sizes may differ)."""
    images = [b[0] for b in batch]
    labels = np.asarray([int(_to_numpy(b[1])) for b in batch], dtype=np.int64)
    return images, labels


# --------------------------------------------------------------------------------------------------
# Whole-dataset evaluation
# --------------------------------------------------------------------------------------------------


def _nan_to_none(values: Iterable[float]) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values]


@dataclass
class EvalResult:
    """Accuracy of one model (or ensemble) on one dataset; errors are ``1 - accuracy`` as the paper reports."""

    n: int
    top1: float
    top5: float | None
    topk: dict[int, float]
    per_class_accuracy: np.ndarray
    confusion_matrix: np.ndarray
    crops: str = "1"
    num_models: int = 1
    members: list[EvalResult] | None = field(default=None, repr=False)

    @property
    def top1_error(self) -> float:
        return 1.0 - self.top1

    @property
    def top5_error(self) -> float | None:
        return None if self.top5 is None else 1.0 - self.top5

    @property
    def cost(self) -> int:
        """Forward passes per image, Table 3's "cost" column (models x crops)."""
        crops = {"1": 1, "center": 1, "10": 10, "144": 144}[self.crops]
        return self.num_models * crops

    def to_dict(self, include_confusion: bool = True) -> dict[str, Any]:
        """JSON-ready dict (NaN per-class accuracies become ``None``)."""
        d: dict[str, Any] = {
            "n": self.n,
            "top1": self.top1,
            "top5": self.top5,
            "top1_error": self.top1_error,
            "top5_error": self.top5_error,
            "topk": {str(k): v for k, v in self.topk.items()},
            "per_class_accuracy": _nan_to_none(self.per_class_accuracy.tolist()),
            "crops": self.crops,
            "num_models": self.num_models,
            "cost": self.cost,
        }
        if include_confusion:
            d["confusion_matrix"] = self.confusion_matrix.tolist()
        if self.members is not None:
            d["members"] = [m.to_dict(include_confusion=include_confusion) for m in self.members]
        return d


def result_from_probs(
    probs: Any,
    labels: Any,
    ks: Sequence[int] = (1, 5),
    num_classes: int | None = None,
    crops: str | int = "1",
    num_models: int = 1,
) -> EvalResult:
    """Build an :class:`EvalResult` from scores (probabilities or logits) and labels."""
    p = _to_numpy(probs)
    y = _to_numpy(labels).astype(np.int64)
    if num_classes is None:
        num_classes = int(p.shape[1])
    elif p.shape[1] != num_classes:
        raise ValueError(f"model gives {p.shape[1]} classes, expected num_classes={num_classes}")
    topk = topk_accuracy(p, y, ks)
    cm = confusion_matrix(p.argmax(axis=1), y, num_classes)
    return EvalResult(
        n=int(y.shape[0]),
        top1=float(np.trace(cm) / y.shape[0]),
        top5=topk.get(5),
        topk=topk,
        per_class_accuracy=per_class_accuracy(cm),
        confusion_matrix=cm,
        crops=_check_scheme(crops),
        num_models=num_models,
    )


def _predict_all(
    models: Sequence[Callable[[Any], Any]], loader: Iterable[Any], crops: str | int, **kw: Any
) -> tuple[list[np.ndarray], np.ndarray]:
    """One pass over the loader, every model on every batch (so a shuffling loader stays consistent)."""
    per_model: list[list[np.ndarray]] = [[] for _ in models]
    labels: list[np.ndarray] = []
    for batch in loader:
        images, y = batch[0], batch[1]
        for acc, m in zip(per_model, models):
            acc.append(multi_crop_predict(m, images, crops, **kw))
        labels.append(_to_numpy(y).astype(np.int64).reshape(-1))
    if not labels:
        raise ValueError("the loader yielded no batches")
    return [np.concatenate(a) for a in per_model], np.concatenate(labels)


def predict_probs(
    model: Callable[[Any], Any], loader: Iterable[Any], crops: str | int = "1", **options: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities ``N x num_classes`` and labels ``N`` for a whole loader of ``(images, labels)`` batches.

    ``options`` are :func:`multi_crop_predict`'s (``device``, ``channels_last``, ``chunk_size``, the crop geometry).
    """
    probs, labels = _predict_all([model], loader, crops, **options)
    return probs[0], labels


def evaluate(
    model: Callable[[Any], Any],
    loader: Iterable[Any],
    crops: str | int = "1",
    ks: Sequence[int] = (1, 5),
    device: Any = None,
    num_classes: int | None = None,
    **options: Any,
) -> EvalResult:
    """Top-k accuracies, per-class accuracy and confusion matrix of ``model`` over ``loader``.

    ``loader`` yields ``(images, labels)``. With ``crops="1"`` the images are already preprocessed to the
    model's input size and are fed as they are. With ``"center"``, ``"10"`` or ``"144"`` the loader must yield
    **raw-resolution** images (normalized, not resized or cropped): a batch tensor if all share a size, or a
    list of C x H x W tensors (use ``collate_fn=list_collate``). ``ks`` may not exceed the number of classes.
    ``options`` are :func:`multi_crop_predict`'s (``channels_last``, ``chunk_size``, ``crop``, ``resize``, ``scales``).
    """
    probs, labels = predict_probs(model, loader, crops, device=device, **options)
    return result_from_probs(probs, labels, ks, num_classes, crops)


def evaluate_ensemble(models: Sequence[Callable[[Any], Any]], loader: Iterable[Any], crops: str | int = "1",
                      ks: Sequence[int] = (1, 5), *, num_classes: int | None = None, **options: Any) -> EvalResult:
    """Evaluate the average of the models' (crop-averaged) softmax probabilities, as in the paper's Table 3.

    The result's ``members`` holds each model's own result on the same pass, so the gain of the ensemble over
    its members can be read off directly. Loader conventions are those of :func:`evaluate`.
    """
    if len(models) == 0:
        raise ValueError("evaluate_ensemble needs at least one model")
    per_model, labels = _predict_all(list(models), loader, crops, **options)
    result = result_from_probs(ensemble_probs(per_model), labels, ks, num_classes, crops, len(models))
    result.members = [result_from_probs(p, labels, ks, num_classes, crops) for p in per_model]
    return result


# --------------------------------------------------------------------------------------------------
# Saved runs of either trainer
# --------------------------------------------------------------------------------------------------


def evaluate_checkpoint(path: Any, split: str = "test", crops: str | int = "1", *, weights: str = "model",
                        device: str = "auto", batch_size: int | None = None, eval_subset: int | None = None,
                        data_root: str | None = None) -> EvalResult:
    """Top-1 / top-5 of a training checkpoint (``.pt`` or ``.keras``) with 1, 10 or 144 crops (Section 7).

    The data come from the checkpoint's own config (dataset, resolution, normalization). ``weights="ema"``
    evaluates the Polyak-averaged weights. A Keras run's one crop runs in Keras on its own ``tf.data``
    pipeline; its 10 and 144 crops run in PyTorch on the converted weights (:func:`inception_lib.convert.keras_to_torch`).
    """
    from inception_lib.config import TrainConfig

    _check_split(split)
    crops = _check_scheme(crops)
    data_options = {"batch_size": batch_size, "eval_subset": eval_subset, "data_root": data_root}
    if str(path).endswith(".keras"):
        from inception_lib import train_keras as TK

        model, meta = TK.load_checkpoint(path, weights=weights)
        cfg = TrainConfig.from_dict(meta["config"])
        if crops == "1":
            from inception_lib import data
            from inception_lib.runfiles import data_config

            dataset = data.tf_datasets(data_config(_eval_config(cfg, **data_options)))[split]
            logits, labels = TK.predict_logits(model, dataset)
            k = int(meta["architecture"]["num_classes"])
            return result_from_probs(logits, labels, default_ks(k), k)
        from inception_lib.convert import keras_to_torch

        return evaluate_model(keras_to_torch(model), cfg, split, crops, device=device, **data_options)
    from inception_lib import train as T

    model, state = T.load_checkpoint(path, weights=weights)
    return evaluate_model(model, TrainConfig.from_dict(state["config"]), split, crops, device=device, **data_options)


def evaluate_model(model: Any, cfg: Any, split: str = "test", crops: str | int = "1", *, device: str = "auto",
                   batch_size: int | None = None, eval_subset: int | None = None,
                   data_root: str | None = None) -> EvalResult:
    """Top-1 / top-5 of a PyTorch ``model`` on ``split`` of the data a ``TrainConfig`` describes."""
    from inception_lib.train import resolve_device

    _check_split(split)
    crops = _check_scheme(crops)
    dev = resolve_device(device)
    model.to(dev).eval()
    loader, kw = eval_inputs(cfg, split, crops, dev, batch_size=batch_size, eval_subset=eval_subset, data_root=data_root)
    k = int(model.num_classes)
    return evaluate(model, loader, crops, default_ks(k), device=dev, num_classes=k, **kw)


def eval_inputs(cfg: Any, split: str, crops: str, device: Any, *, batch_size: int | None = None,
                eval_subset: int | None = None, data_root: str | None = None) -> tuple[Any, dict[str, Any]]:
    """The batches of ``split`` for a crop scheme, and the crop geometry for :func:`evaluate`.

    ``"1"``: the evaluation transform's images. Otherwise the stored-resolution images (normalized) with the
    paper's ratios (resize 256 / crop 224; scales 256..352) scaled to the training resolution.
    """
    from inception_lib import data
    from inception_lib.runfiles import data_config
    from inception_lib.train import make_loaders

    cfg = _eval_config(cfg, batch_size, eval_subset, data_root)
    if crops == "1":
        return make_loaders(cfg, device)[split], {}
    dcfg = data_config(cfg)
    size = dcfg.image_size
    kw = {"crop": size, "resize": round(size * 256 / 224), "scales": tuple(round(s * size / 224) for s in PAPER_SCALES)}
    return _raw_batches(data.load_splits(dcfg)[split], dcfg), kw


def _eval_config(cfg: Any, batch_size: int | None, eval_subset: int | None, data_root: str | None) -> Any:
    import dataclasses

    return dataclasses.replace(cfg, eval_subset=eval_subset or cfg.eval_subset,
                               eval_batch_size=batch_size or cfg.eval_batch_size, data_root=data_root or cfg.data_root)


def _check_split(split: str) -> None:
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")


def _raw_batches(split: Any, dcfg: Any) -> Iterable[tuple[Any, Any]]:
    """Normalized images at their stored resolution (for 10 / 144 crops): a batch tensor, or a list for folders."""
    import torch

    from inception_lib import data

    mean = torch.tensor(dcfg.norm_mean).view(-1, 1, 1)
    std = torch.tensor(dcfg.norm_std).view(-1, 1, 1)

    def prep(img: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)
        if x.shape[0] == 1 and dcfg.image_channels == 3:
            x = x.expand(3, -1, -1)
        return (x - mean) / std

    for lo in range(0, len(split), dcfg.eval_batch):
        idx = range(lo, min(lo + dcfg.eval_batch, len(split)))
        y = torch.from_numpy(np.asarray(split.labels[lo:idx.stop], dtype=np.int64))
        if split.images is not None:
            yield torch.stack([prep(split.images[i]) for i in idx]), y
        else:
            yield [prep(data.decode_image(split.paths[i])) for i in idx], y

"""Trained weights that ship with the library, in the style of torchvision's weights enums.

Each entry is a ``weights/<name>.json`` file beside a ``.safetensors`` file (float16 tensors): the file name,
its sha256, and the metadata a user needs to trust it (dataset, classes, input transform, test accuracy of this
very file, parameter count, the run record it came from). Both files are written by
``python -m inception_lib export-weights`` from a finished run, never by hand.

>>> from inception_lib.pytorch import GoogLeNet
>>> model = GoogLeNet.from_pretrained("fashion_mnist")          # doctest: +SKIP
>>> x = pretrained.get("fashion_mnist").transforms()(uint8_nchw)   # doctest: +SKIP

A file whose sha256 differs from its entry, or whose architecture differs from the model it is loaded into,
is refused with a ValueError that says which.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

if TYPE_CHECKING:  # pragma: no cover
    import torch

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
ENTRY_SCHEMA = "inception_lib.weights/1"
FIRST_N = 2000
"""The entry also records the accuracy on the first FIRST_N test images: a check that fits a CI budget."""


@dataclass(frozen=True)
class Weights:
    """One shipped set of weights: ``file`` (in ``weights/``), its ``sha256`` and ``meta``."""

    name: str
    file: str
    sha256: str
    meta: dict[str, Any]
    directory: Path = WEIGHTS_DIR

    @property
    def path(self) -> Path:
        return self.directory / self.file

    @property
    def architecture(self) -> dict[str, Any]:
        return self.meta["architecture"]

    def transforms(self) -> Callable[[Any], Any]:
        """uint8 ``(N, C, H, W)`` images -> the normalized float batch these weights were trained on."""
        from inception_lib.data import torch_transform_batch

        t = self.meta["transforms"]
        return lambda x: torch_transform_batch(x, size=t["size"], channels=t["channels"], mean=t["mean"],
                                               std=t["std"])

    def verify(self) -> Path:
        """The file's path after checking its sha256 (ValueError on a mismatch, FileNotFoundError if absent)."""
        p = self.path
        if not p.is_file():
            raise FileNotFoundError(f"the weights file {p} of {self.name!r} is missing; reinstall inception_lib "
                                    "or re-export it with `python -m inception_lib export-weights`")
        digest = sha256_file(p)
        if digest != self.sha256:
            raise ValueError(f"{p} has sha256 {digest}, but the {self.name!r} entry says {self.sha256}: the file "
                             "is damaged or not these weights; reinstall inception_lib or re-export the weights")
        return p

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors as float32 (integers as they are), after :meth:`verify`."""
        from safetensors.torch import load_file

        tensors = load_file(str(self.verify()))
        return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}


def sha256_file(path: Union[str, os.PathLike[str]]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def available(directory: Union[str, os.PathLike[str]] = WEIGHTS_DIR) -> list[str]:
    """Names of the shipped weights."""
    return sorted(p.stem for p in Path(directory).glob("*.json"))


def get(name: str, directory: Union[str, os.PathLike[str]] = WEIGHTS_DIR) -> Weights:
    """The entry called ``name`` (ValueError listing the available ones otherwise)."""
    entry = Path(directory) / f"{name}.json"
    if not isinstance(name, str) or not entry.is_file():
        raise ValueError(f"no shipped weights called {name!r}; available: {available(directory) or 'none'}")
    d = json.loads(entry.read_text())
    if d.get("schema") != ENTRY_SCHEMA:
        raise ValueError(f"{entry} is not a weights entry of schema {ENTRY_SCHEMA}")
    return Weights(name=name, file=d["file"], sha256=d["sha256"], meta=d["meta"], directory=Path(directory))


def load_into(model: Any, weights: Union[str, Weights]) -> Any:
    """Load ``weights`` (a name or an entry) into a PyTorch GoogLeNet of the same architecture (else ValueError)."""
    from inception_lib.pytorch import architecture
    from inception_lib.runfiles import check_architecture

    w = get(weights) if isinstance(weights, str) else weights
    check_architecture(w.architecture, architecture(model), where=f"the weights {w.name!r}")
    model.load_state_dict(w.state_dict())
    return model


def build_torch(weights: Union[str, Weights]) -> Any:
    """A PyTorch GoogLeNet of the weights' architecture with the weights loaded, in eval mode."""
    from inception_lib.pytorch import GoogLeNet

    w = get(weights) if isinstance(weights, str) else weights
    a = w.architecture
    model = GoogLeNet(num_classes=a["num_classes"], aux_logits=a["aux_logits"], variant=a["variant"]["name"],
                      in_channels=a["in_channels"], image_size=tuple(a["image_size"]), init_weights=False)
    return load_into(model, w).eval()


# ----------------------------------------------------------------------------------------------------
# Export: a finished run -> weights/<name>.safetensors + weights/<name>.json
# ----------------------------------------------------------------------------------------------------


def export(run_dir: Union[str, os.PathLike[str]], name: str, *, record: Optional[str] = None,
           out_dir: Union[str, os.PathLike[str]] = WEIGHTS_DIR, weights: str = "auto",
           device: str = "auto", test_n: Optional[int] = None) -> Weights:
    """Write the weights of the run in ``run_dir`` (its ``last.pt``) as float16 safetensors with an entry.

    ``weights="auto"`` takes the Polyak (EMA) weights when their last validation accuracy is higher, else the
    trained ones. The entry's test accuracy is measured here, on the whole test split, with the float16 file's
    weights in a float32 model: the accuracy of exactly what ships. ``record`` names the run record in the
    repository (e.g. ``book/results/<run>.json``). ``test_n``: only the first N test images (tests).
    """
    import torch
    from safetensors.torch import save_file

    from inception_lib import evaluate as E
    from inception_lib import runfiles
    from inception_lib import train as T
    from inception_lib.data import CLASSES
    from inception_lib.pytorch import architecture

    run = Path(run_dir)
    history = json.loads((run / "history.json").read_text())
    if history.get("status") != "completed":
        raise ValueError(f"{run} is not a completed run (status {history.get('status')!r}); finish it first")
    last = history["epochs"][-1]
    if weights == "auto":
        ema_acc = last.get("val_acc_ema")
        weights = "ema" if ema_acc is not None and ema_acc > last["val_acc"] else "model"
    model, state = T.load_checkpoint(run / T.LAST, weights=weights)
    cfg = T.TrainConfig.from_dict(state["config"])
    half = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous().cpu()
            for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half.items()})
    res = E.evaluate_model(model, cfg, "test", device=device, eval_subset=test_n)
    first = E.evaluate_model(model, cfg, "test", device=device, eval_subset=min(FIRST_N, res.n))
    dcfg = runfiles.data_config(cfg)
    meta = {
        "dataset": cfg.dataset,
        "categories": list(CLASSES.get(cfg.dataset, ())),
        "architecture": architecture(model),
        "num_params": sum(p.numel() for p in model.parameters()),
        "transforms": {"size": dcfg.image_size, "channels": dcfg.image_channels, "mean": list(dcfg.norm_mean),
                       "std": list(dcfg.norm_std), "resize": "bilinear, antialiased when shrinking"},
        "dtype": "float16",
        "weights": weights,
        "metrics": {"test_top1": res.top1, "test_n": res.n, f"test_top1_first_{first.n}": first.top1,
                    "how": "this file's weights in a float32 model, the first test_n test images, 1 crop"},
        "run": {"record": record, "git_commit": history["versions"].get("git_commit"),
                "seed": cfg.seed, "epochs": len(history["epochs"]),
                "recorded_test_top1": (history.get("test") or {}).get(weights, {}).get("top1"),
                "recorded_precision": (history.get("precision") or {}).get("compute")},
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    file = f"{name}.safetensors"
    runfiles.atomic_file(out / file, lambda tmp: save_file(half, str(tmp), metadata={
        "name": name, "meta": json.dumps(meta, sort_keys=True)}))
    entry = {"schema": ENTRY_SCHEMA, "file": file, "sha256": sha256_file(out / file), "meta": meta}
    runfiles.atomic_text(out / f"{name}.json", json.dumps(entry, indent=2) + "\n")
    return get(name, out)

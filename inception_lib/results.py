"""Recorded runs (``book/results/*.json``) and the anchors they are compared with.

A recorded run is the ``history.json`` a trainer writes, copied into ``book/results/``: it states the
configuration, versions, hardware, seed and per-epoch wall time, so a number the book prints from it
carries its evidence. :func:`load_runs` refuses files that do not.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from inception_lib.config import EPOCH_KEYS, HISTORY_SCHEMA

# Published numbers the book compares against.
_ANCHOR_ROWS = (  # name, dataset, metric, value, where it is published
    ("fashion_mnist_benchmark_googlenet", "fashion_mnist", "test_acc", 0.937,
     "Fashion-MNIST README benchmark table, 'GoogleNet' entry (not run by Zalando)"),
    ("analytics_vidhya_keras_cifar10", "cifar10", "val_acc", 0.819,
     "the Analytics Vidhya Keras tutorial (Understanding Inception Network from Scratch): 224x224, 25 epochs, "
     "main-head val accuracy"),
    ("pytorch_summary_post_cifar10", "cifar10", "test_acc", 0.8099,
     "the post Inception-V1 (GoogLeNet): Summary and Implementation (PyTorch): 15 epochs, test accuracy"),
    ("uva_cifar10_googlenet", "cifar10", "test_acc", 0.897,
     "UvA DL tutorial 5, small CIFAR GoogleNet (260,650 parameters), 32x32"),
)
ANCHORS: dict[str, dict[str, object]] = {name: {"dataset": dataset, metric: value, "source": source}
                                         for name, dataset, metric, value, source in _ANCHOR_ROWS}

REQUIRED = ("schema", "framework", "config", "versions", "hardware", "seed", "epochs", "status")


class RunFileError(ValueError):
    """A results file that does not carry its evidence (hardware, versions, seed, wall time)."""


@dataclass
class Run:
    """One recorded training run."""

    path: Path
    data: dict

    @property
    def config(self) -> dict:
        return self.data["config"]

    @property
    def epochs(self) -> list[dict]:
        return self.data["epochs"]

    @property
    def wall_time_s(self) -> float:
        return float(self.epochs[-1]["wall_time_s"]) if self.epochs else 0.0

    @property
    def test_acc(self) -> Optional[float]:
        """Top-1 of the final weights on the test split (the trainers store it under ``test["model"]``)."""
        test = self.data.get("test") or {}
        model = test.get("model") or {}
        return model.get("top1")

    def time_to(self, val_acc: float, key: str = "val_acc") -> Optional[float]:
        """Wall time (s) at the end of the first epoch whose ``key`` reaches ``val_acc``; None if never."""
        for row in self.epochs:
            v = row.get(key)
            if v is not None and v >= val_acc:
                return float(row["wall_time_s"])
        return None


def validate(data: dict, path: Path | str = "<run>") -> None:
    """Raise :class:`RunFileError` unless ``data`` is a complete recorded run."""
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise RunFileError(f"{path}: missing {missing}; a recorded run must state config, versions, hardware, seed and epochs")
    if data["schema"] != HISTORY_SCHEMA:
        raise RunFileError(f"{path}: schema {data['schema']!r}, expected {HISTORY_SCHEMA!r}")
    if not data["hardware"] or not data["versions"]:
        raise RunFileError(f"{path}: empty hardware or versions")
    for i, row in enumerate(data["epochs"]):
        absent = [k for k in EPOCH_KEYS if k not in row]
        if absent:
            raise RunFileError(f"{path}: epoch row {i} lacks {absent}")


def load_runs(folder: Path | str) -> list[Run]:
    """Every ``*.json`` run file in ``folder`` (sorted by name), validated."""
    runs = []
    for p in sorted(Path(folder).glob("*.json")):
        data = json.loads(p.read_text())
        validate(data, p)
        runs.append(Run(p, data))
    return runs


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        return (math.nan, math.nan)
    return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)

"""Shared test helpers: a scale-relative closeness check, and the Fashion-MNIST requirement.

``assert_close`` compares two *different computations* (two frameworks, two kernels, DDP vs one process):
float32 results of convolutions differ across CPUs (AVX2 / AVX-512 / AMX) at ~1e-6 relative, and the absolute
error grows with the values' scale, so the bound is relative to the largest |expected| value. Where two results are
the same computation on one machine (a resumed run, a weight copy), the tests assert bit-exactness instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from inception_lib.data import FASHION_MNIST_FILES, SYSTEM_DIRS

FMNIST_DIR = SYSTEM_DIRS["fashion_mnist"]
FMNIST_MISSING = [s.filename for p in FASHION_MNIST_FILES.values() for s in p if not (FMNIST_DIR / s.filename).is_file()]

needs_fmnist = pytest.mark.usefixtures("fashion_mnist_files")
"""Marks a test that reads the Fashion-MNIST files: it FAILS when they are missing (the ``fashion_mnist_files``
fixture in conftest.py), never skips: `make setup` installs them, so a missing file is a broken setup."""


def require_fashion_mnist() -> None:
    """Fail the calling test (or fixture) with the fix when a Fashion-MNIST file is missing."""
    if FMNIST_MISSING:
        pytest.fail(f"Fashion-MNIST files missing from {FMNIST_DIR}: {', '.join(FMNIST_MISSING)}. The tests need them: "
                    "`make setup` installs them (sudo apt-get install dataset-fashion-mnist).", pytrace=False)


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch
        x = x.detach().cpu()
    elif hasattr(x, "numpy") and not isinstance(x, np.ndarray):  # tensorflow / keras
        x = x.numpy()
    return np.asarray(x, dtype=np.float64)


def rel_err(actual: Any, expected: Any) -> float:
    """max |actual - expected| / max |expected| (the denominator floored at the smallest positive float64)."""
    a, e = _as_array(actual), _as_array(expected)
    assert a.shape == e.shape, f"shapes differ: {a.shape} vs {e.shape}"
    scale = max(float(np.abs(e).max(initial=0.0)), np.finfo(np.float64).tiny)
    return float(np.abs(a - e).max(initial=0.0)) / scale


def assert_close(actual: Any, expected: Any, rtol: float, what: str = "values") -> float:
    """Assert max |actual - expected| <= rtol * max |expected|; returns the observed relative error."""
    err = rel_err(actual, expected)
    assert np.isfinite(err) and err <= rtol, (
        f"{what}: max |diff| / max |expected| = {err:.3g} > rtol {rtol:g} (max |expected| = "
        f"{float(np.abs(_as_array(expected)).max(initial=0.0)):.4g})")
    return err

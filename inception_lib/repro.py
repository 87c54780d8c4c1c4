"""Reproducibility switches in one place: seeds, thread counts, deterministic kernels.

Notebooks and the trainers call :func:`seed_everything` so that a cell's output is the same on every
run (strict nbval compares them). Frameworks are only touched if they are already imported, or asked
for, so this never imports tensorflow before torch.
"""

from __future__ import annotations

import functools
import os
import random
import sys

import numpy as np


def seed_everything(seed: int = 0, threads: int | None = 2, *, tensorflow: bool = False,
                    deterministic: bool = True) -> None:
    """Seed Python, NumPy, PyTorch (if imported) and TensorFlow/Keras (if imported or ``tensorflow``).

    ``threads`` fixes intra/inter-op thread counts (None leaves them); ``deterministic`` asks both
    frameworks for deterministic kernels (cuDNN without autotuning, TF op determinism).
    """
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)
        if threads is not None:
            torch.set_num_threads(threads)
        if deterministic:
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
    if tensorflow or "tensorflow" in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras
        import tensorflow as tf

        if threads is not None:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(threads)
            except RuntimeError:  # already initialised: the first setting stays
                pass
        keras.utils.set_random_seed(seed)
        if deterministic:
            tf.config.experimental.enable_op_determinism()


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on (those importable without side effects), and the code's commit.

    ``git_commit`` is the commit of the checkout inception_lib is imported from, with ``+dirty`` when its tracked
    files differ from that commit (a result from uncommitted code); absent when the library is not a git checkout.
    """
    import platform

    out = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("torch", "torchvision", "tensorflow", "keras"):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = str(getattr(mod, "__version__", "?"))
    commit = git_commit()
    if commit:
        out["git_commit"] = commit
    return out


@functools.lru_cache(maxsize=1)  # once per process: the code a process runs is the code it imported
def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the checkout this package lives in (+``dirty`` if changed), or None."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


# CPU features that change speed or float results (the vector width and the bf16 / AMX units).
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")


def cpu_info() -> dict[str, object]:
    """The CPU's model name and the ISA flags of :data:`CPU_FLAGS` it has (Linux ``/proc/cpuinfo``; else ``{}``)."""
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model is None:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        return {}
    out: dict[str, object] = {"cpu_model": model} if model else {}
    out["cpu_flags"] = [f for f in CPU_FLAGS if f in flags]
    return out


def hardware() -> dict[str, object]:
    """CPU / GPU description for result files: CPU model and ISA flags, cores, threads in use, GPU and driver."""
    import platform

    info: dict[str, object] = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                               "cpu_count": os.cpu_count(), **cpu_info()}
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()  # the kernels ATen dispatches to
    if torch is not None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
        info["cuda"] = torch.version.cuda
        try:
            import subprocess

            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001 - optional detail
            pass
    return info

"""What both trainers write and check, framework-free: atomic files, history, architecture and resume checks.

``inception_lib.train`` (PyTorch) and ``inception_lib.train_keras`` share these so their run folders
have one format; nothing here imports torch or tensorflow, so either trainer can use it in any order.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Optional, Union

from inception_lib import repro
from inception_lib.config import EPOCH_KEYS, HISTORY_SCHEMA, TrainConfig

PROGRESS_ENV = "INCEPTION_LIB_PROGRESS"
"""Set to ``0`` to turn every progress bar off (CI, nbval)."""
FSYNC_ENV = "INCEPTION_LIB_FSYNC"
"""Set to ``0`` to skip fsync on throwaway runs (tests): the write-then-rename still never leaves a torn file
when the process dies; fsync adds durability against a power cut or an OS crash."""

RESUMABLE_CHANGES: frozenset[str] = frozenset({"epochs", "out_dir", "device", "data_root", "num_workers", "threads"})
"""Config fields a resumed run may change: more epochs, another folder or machine. Anything else would make
the resumed run a different experiment, so it is refused. (With ``schedule="cosine"`` more epochs stretch
the remaining schedule.)"""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the epoch and step."""


def data_config(cfg: TrainConfig) -> Any:
    """The :class:`inception_lib.data.DataConfig` of a training config (both frameworks see the same data)."""
    from inception_lib import data

    ex = cfg.extra
    return data.DataConfig(
        dataset=cfg.dataset, root=cfg.data_root, resolution=cfg.resolution, channels=cfg.channels,
        val_size=cfg.val_size, subset=cfg.subset, eval_subset=ex.get("eval_subset"), augment=cfg.augment,
        seed=cfg.seed, split_seed=int(ex.get("split_seed", 0)), batch_size=cfg.batch_size,
        eval_batch_size=ex.get("eval_batch_size"), num_workers=cfg.num_workers, download=bool(ex.get("download", False)),
    )


# ----------------------------------------------------------------------------------------------------
# Atomic files
# ----------------------------------------------------------------------------------------------------


def fsync_enabled() -> bool:
    return os.environ.get(FSYNC_ENV, "1").strip() != "0"


def fsync_dir(folder: Path) -> None:
    if not fsync_enabled():
        return
    with contextlib.suppress(OSError):  # not every platform / filesystem can open a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_file(path: Path, fill: Callable[[Path], None]) -> None:
    """``fill(tmp)`` writes a temporary file beside ``path`` (same suffix), fsync, then rename it over ``path``.

    ``os.replace`` within one folder is atomic: readers see the old file or the new one, never half of one,
    and a failure leaves the old file as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        fill(tmp)
        if fsync_enabled():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Like :func:`atomic_file`, writing through ``write(binary file object)``."""

    def fill(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)

    atomic_file(path, fill)


def atomic_text(path: Path, text: str) -> None:
    atomic_file(path, lambda tmp: tmp.write_text(text))


# ----------------------------------------------------------------------------------------------------
# History and configuration files
# ----------------------------------------------------------------------------------------------------


def json_normal(obj: Any) -> Any:
    """Tuples to lists etc., so a stored dict compares equal to a fresh one."""
    return json.loads(json.dumps(obj))


def versions() -> dict[str, str]:
    return {k: str(v) for k, v in repro.versions().items()}  # torch's TorchVersion is not a plain str


def history_doc(framework: str, cfg: TrainConfig, rows: list[dict[str, Any]], status: str,
                test: Optional[dict[str, Any]], hardware: dict[str, Any]) -> dict[str, Any]:
    """The history.json document: the same schema for both frameworks."""
    return {"schema": HISTORY_SCHEMA, "framework": framework, "config": cfg.to_dict(), "versions": versions(),
            "hardware": hardware, "seed": cfg.seed, "epochs": rows, "status": status, "test": test}


def write_config(out: Path, cfg: TrainConfig) -> None:
    atomic_text(out / "config.json", json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")


def write_history(out: Path, doc: dict[str, Any]) -> None:
    """history.json and history.csv (one row per epoch, the columns of EPOCH_KEYS)."""
    atomic_text(out / "history.json", json.dumps(doc, indent=2) + "\n")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(EPOCH_KEYS), lineterminator="\n")
    w.writeheader()
    for row in doc["epochs"]:
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in EPOCH_KEYS})
    atomic_text(out / "history.csv", buf.getvalue())


# ----------------------------------------------------------------------------------------------------
# Checks on resume / load
# ----------------------------------------------------------------------------------------------------


def arch_summary(a: Mapping[str, Any]) -> str:
    v = a.get("variant")
    vname = v.get("name") if isinstance(v, Mapping) else v
    keys = ("num_classes", "in_channels", "aux_logits", "image_size")
    return f"variant={vname!r}, " + ", ".join(f"{k}={a.get(k)!r}" for k in keys)


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_architecture(stored: Mapping[str, Any], current: Mapping[str, Any], where: Union[str, Path] = "the checkpoint") -> None:
    """Refuse weights of another network: ValueError naming both architectures and every difference."""
    a, b = _flat(json_normal(dict(stored))), _flat(json_normal(dict(current)))
    diffs = [f"{k}: {a.get(k)!r} (checkpoint) vs {b.get(k)!r} (this model)"
             for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if diffs:
        raise ValueError(
            f"{where} holds a different architecture: checkpoint {arch_summary(stored)}; this model "
            f"{arch_summary(current)}. Differences: " + "; ".join(diffs))


def check_resume_config(stored: Mapping[str, Any], cfg: TrainConfig, where: Path) -> None:
    """Refuse to resume with a config that differs outside :data:`RESUMABLE_CHANGES`."""
    now = json_normal(cfg.to_dict())
    old = json_normal(dict(stored))
    keys = sorted((set(old) | set(now)) - RESUMABLE_CHANGES)
    diffs = [f"{k}: {old.get(k)!r} (checkpoint) vs {now.get(k)!r} (now)" for k in keys if old.get(k) != now.get(k)]
    if diffs:
        raise ValueError(
            f"cannot resume {where} with a different configuration: " + "; ".join(diffs)
            + f". Only {sorted(RESUMABLE_CHANGES)} may change on resume; start a new run (another out_dir) "
            "to change anything else.")

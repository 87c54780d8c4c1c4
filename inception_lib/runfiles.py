"""What both trainers write and check, framework-free: atomic files, history, architecture and resume checks.

``inception_lib.train`` (PyTorch) and ``inception_lib.train_keras`` share these so their run folders
have one format; nothing here imports torch or tensorflow, so either trainer can use it in any order.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import json
import os
import sys
import tempfile
import zipfile
import zlib
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
    """The :class:`inception_lib.data.DataConfig` of a training config (both frameworks see the same data): every
    data field of the same name, and ``data_root`` as ``root``."""
    import dataclasses

    from inception_lib import data

    names = {f.name for f in dataclasses.fields(data.DataConfig)} & {f.name for f in dataclasses.fields(cfg)}
    return data.DataConfig(root=cfg.data_root, **{name: getattr(cfg, name) for name in names})


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
                test: Optional[dict[str, Any]], hardware: dict[str, Any],
                precision: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The history.json document: the same schema (same keys, same order) for both frameworks.

    ``precision`` is what the trainer chose for ``cfg.precision`` on this device
    (:func:`inception_lib.config.resolve_precision`'s record).
    """
    return {"schema": HISTORY_SCHEMA, "framework": framework, "config": cfg.to_dict(), "versions": versions(),
            "hardware": hardware, "precision": precision, "seed": cfg.seed, "epochs": rows, "status": status,
            "test": test}


def write_config(out: Path, cfg: TrainConfig) -> None:
    atomic_text(out / "config.json", json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")


def write_run(out: Path, cfg: TrainConfig, doc: dict[str, Any]) -> None:
    """config.json and the history: what both trainers write when a run starts afresh and after every epoch (a
    resumed run writes nothing before its first new epoch is done, so a refused or diverged resume leaves the folder
    as it was)."""
    write_config(out, cfg)
    write_history(out, doc)


def previous_test(out: Path, epoch: int) -> Optional[dict[str, Any]]:
    """The test result already in ``out/history.json`` for ``epoch``: kept when a resumed run trains nothing more."""
    try:
        test = json.loads((out / "history.json").read_text()).get("test")
    except (OSError, ValueError):
        return None
    return test if isinstance(test, dict) and test.get("epoch") == epoch else None


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


def epoch_line(row: Mapping[str, Any], epochs: int) -> str:
    """The one summary line per epoch that both trainers print."""
    def f(v: Any, fmt: str = ".4f") -> str:
        return "-" if v is None else format(v, fmt)

    return (f"epoch {row['epoch']}/{epochs}  lr {row['lr']:.4g}  train loss {f(row['train_loss'])} "
            f"acc {f(row['train_acc'])}  val loss {f(row['val_loss'])} acc {f(row['val_acc'])} "
            f"ema {f(row['val_acc_ema'])}  {row['images_per_s']:.0f} img/s  {row['epoch_time_s']:.1f} s")


def progress_enabled(progress: Optional[bool], main: bool = True) -> bool:
    """Progress bars: on this process's rank 0 only, never with ``INCEPTION_LIB_PROGRESS=0``, by default on a terminal."""
    if not main or os.environ.get(PROGRESS_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return sys.stderr.isatty() if progress is None else bool(progress)


def diverged(what: str, ckpt: Path, last_epoch: int) -> NonFiniteLossError:
    """The error both trainers raise when a loss is NaN / inf: ``what`` happened, the last good checkpoint is kept."""
    kept = (f"the last good checkpoint {ckpt} (end of epoch {last_epoch}) was left untouched" if last_epoch > 0
            else "no checkpoint had been written yet")
    return NonFiniteLossError(f"{what}; {kept}. Lower the learning rate or add warmup (warmup_epochs), then start "
                              "again or resume from the checkpoint.")


def final_test(epoch: int, model: Mapping[str, Any], ema: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """``history["test"]``: the final weights (and the EMA) on the test split, evaluated once, after training."""
    return {"split": "test", "crops": "1", "epoch": epoch, "model": dict(model), "ema": None if ema is None else dict(ema)}


def final_test_line(test: Mapping[str, Any]) -> str:
    t = test["model"]
    top5 = f", top-5 {t['top5']:.4f}" if t.get("top5") is not None else ""
    return f"test ({t['n']} images, evaluated once): top-1 {t['top1']:.4f}{top5}"


def new_run_folder(out: Path, cfg: TrainConfig, doc: dict[str, Any], *checkpoints: str) -> None:
    """Make ``out`` for a run that starts afresh: an old run's checkpoints go (``overwrite``), so that none of
    them can pose as the new run's, and the new config and (empty) history are written."""
    out.mkdir(parents=True, exist_ok=True)
    for name in checkpoints:
        (out / name).unlink(missing_ok=True)
    write_run(out, cfg, doc)


def preflight(cfg: TrainConfig, framework: str, last: str, *, resume: bool, overwrite: bool) -> tuple[Any, Path, Path]:
    """The checks both trainers make before they touch anything: ``(data config, out_dir, last checkpoint)``.

    Refuses another framework's config, bad data options (ValueError), ``resume`` without a checkpoint
    (FileNotFoundError) and a new run over an old one without ``overwrite`` (FileExistsError).
    """
    if cfg.framework != framework:
        other = "inception_lib.train.train" if cfg.framework == "pytorch" else "inception_lib.train_keras.train"
        raise ValueError(f"cfg.framework is {cfg.framework!r}: use {other} for it (or set framework={framework!r})")
    dcfg = data_config(cfg)
    out = Path(cfg.out_dir)
    ckpt_path = out / last
    if resume and not ckpt_path.is_file():
        raise FileNotFoundError(f"resume=True but there is no checkpoint {ckpt_path}; train without resume first")
    if not resume and not overwrite and ckpt_path.exists():
        raise FileExistsError(f"{out} already holds a run ({ckpt_path}); pass resume=True to continue it, "
                              "overwrite=True to start again there, or choose another out_dir")
    return dcfg, out, ckpt_path


def check_resume_config(stored: Mapping[str, Any], cfg: TrainConfig, where: Path) -> None:
    """Refuse to resume with a config that differs outside :data:`RESUMABLE_CHANGES`."""
    now = json_normal(cfg.to_dict())
    old = json_normal(TrainConfig.from_dict(dict(stored)).to_dict())  # a config of an earlier version: its fields
    keys = sorted((set(old) | set(now)) - RESUMABLE_CHANGES)
    diffs = [f"{k}: {old.get(k)!r} (checkpoint) vs {now.get(k)!r} (now)" for k in keys if old.get(k) != now.get(k)]
    if diffs:
        raise ValueError(
            f"cannot resume {where} with a different configuration: " + "; ".join(diffs)
            + f". Only {sorted(RESUMABLE_CHANGES)} may change on resume; start a new run (another out_dir) "
            "to change anything else.")


# ----------------------------------------------------------------------------------------------------
# Damaged checkpoints, missing frameworks: errors that say what to do
# ----------------------------------------------------------------------------------------------------


class CorruptCheckpointError(ValueError):
    """A checkpoint file that cannot be read (truncated, overwritten, bytes changed). The message names the file,
    its size, what was expected and what to do; both trainers raise it before they change anything on disk."""


class MissingFrameworkError(ImportError):
    """A command needs PyTorch or TensorFlow/Keras and it cannot be imported; the message names the extra to install."""


FRAMEWORK_EXTRAS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "pytorch": ("PyTorch", "torch", ("torch",)),
    "keras": ("TensorFlow and Keras", "keras", ("tensorflow", "keras")),
}
"""framework -> (what it is called, the pyproject extra that installs it, the modules the trainer needs)."""


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a finder refusing the name; a module in sys.modules without __spec__
        return name in sys.modules


def require_framework(framework: str, needed_for: str, modules: Optional[tuple[str, ...]] = None) -> None:
    """Raise :class:`MissingFrameworkError` unless the framework's modules (or ``modules``) are installed.

    Looks the modules up without importing them, except for Keras: torch and torchvision are imported first
    when they are installed (tensorflow first aborts a later torchvision import); without them Keras runs alone.
    """
    what, extra, needed = FRAMEWORK_EXTRAS[framework]
    missing = [name for name in (modules or needed) if not _installed(name)]
    if missing:
        names = ", ".join(repr(n) for n in missing)
        raise MissingFrameworkError(f"{needed_for} needs {what} (no module named {names} here); install with: "
                                    f'pip install "inception_lib[{extra}]"', name=missing[0])
    if framework == "keras":
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        with contextlib.suppress(ImportError):
            for name in ("torch", "torchvision"):
                if _installed(name):
                    importlib.import_module(name)


CHECKPOINT_EXPECTED = {
    "pytorch": "a complete torch.save zip archive, as inception_lib's PyTorch trainer writes",
    "keras": "a complete .keras zip archive, as inception_lib's Keras trainer writes",
}
"""What a checkpoint of each trainer is, for the messages of :class:`CorruptCheckpointError`."""


def _damage_advice(path: Path) -> str:
    """What to do about a damaged ``path``, from its name (last / best, .pt / .keras) and its sibling."""
    last, best = path.with_name(f"last{path.suffix}"), path.with_name(f"best{path.suffix}")
    if path.name == best.name:
        return f"Evaluate {last} instead if it is intact, or train again with --overwrite to re-create {best.name}"
    if path.name != last.name:
        return "Use an intact copy, or train again with --overwrite to re-create it"
    with contextlib.suppress(OSError):
        if best.is_file() and os.path.samefile(best, path):
            return f"{best.name} is the same file (a hard link: the last epoch was the best), so start again with --overwrite"
    if path.suffix == ".pt":  # the PyTorch trainer's best.pt holds the weights only (no optimizer, no RNG states)
        return (f"{best.name}, if intact, can still be evaluated, but it cannot be resumed (weights only); to train, "
                "start again with --overwrite")
    return (f"To continue the run, resume from {best.name} (copy it over {last.name}; it is an earlier epoch) if it is "
            "intact, or start again with --overwrite")


def corrupt_checkpoint(path: Union[str, Path], reason: str, expected: str) -> CorruptCheckpointError:
    """The :class:`CorruptCheckpointError` for ``path``: file, size, ``reason``, ``expected`` and what to do."""
    path = Path(path)
    try:
        size = f"{path.stat().st_size:,} bytes"
    except OSError:
        size = "size unknown"
    return CorruptCheckpointError(f"checkpoint {path} ({size}) is damaged: {reason}; expected {expected}. "
                                  f"{_damage_advice(path)}.")


def check_zip_archive(path: Union[str, Path], expected: str) -> None:
    """Raise :class:`CorruptCheckpointError` unless ``path`` is a complete zip archive whose entries match their CRC-32.

    Both trainers' checkpoints are zip archives (``torch.save``, ``model.save``). ``torch.load`` does not check
    the CRCs, so without this a changed byte inside a tensor loads silently; reading the file once costs well
    under a second even for a full-size checkpoint.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4)
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.CRC == 0 and info.file_size:  # written without CRCs (torch.serialization.set_crc32_options)
                    continue
                with z.open(info) as member:
                    while member.read(16 << 20):
                        pass
    except zipfile.BadZipFile as err:
        if not head:
            reason = "the file is empty"
        elif head != b"PK\x03\x04":
            reason = "it is not a zip archive (overwritten, or not a checkpoint at all)"
        elif str(err) == "File is not a zip file":  # zipfile's words for "no end of central directory"
            reason = "it is truncated (it starts as a zip archive, but its end, the central directory, is missing)"
        elif "CRC" in str(err):
            reason = f"its contents changed after it was written ({err})"
        else:
            reason = f"it is truncated or its zip structure is broken ({err})"
        raise corrupt_checkpoint(path, reason, expected) from None
    except (EOFError, zlib.error, ValueError, NotImplementedError) as err:
        raise corrupt_checkpoint(path, f"an entry cannot be read ({type(err).__name__}: {err})", expected) from None

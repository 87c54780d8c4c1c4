"""Damaged checkpoints and a missing framework: one clear line on stderr, exit status 2, nothing changed on disk.

One real tiny run per framework (module scope, in this process); its folder is copied and the copy's ``last.*``
truncated to half its size or replaced by random bytes of the same size, then the CLI runs in subprocesses as a
user runs it (``evaluate`` on the file, ``train --resume`` on the folder). The error line must name the file, its
size and what to do, with no traceback, and every file in the folder must keep its bytes. A missing framework is
simulated with an import finder that refuses ``torch`` (resp. ``tensorflow`` and ``keras``) in the subprocess.
The rarer damage (bytes changed inside an intact-looking archive, a damaged best.*, a file of another kind) is
checked in-process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import require_fashion_mnist

from inception_lib import evaluate as E
from inception_lib import runfiles
from inception_lib import train as T
from inception_lib.__main__ import main
from inception_lib.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
ENV = {"INCEPTION_LIB_PROGRESS": "0", "INCEPTION_LIB_FSYNC": "0", "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}

# Runs the CLI with some top-level modules made unimportable (as if not installed): argv[1] = "torch,..." or "".
BLOCKED_CLI = """\
import runpy, sys
blocked = set(filter(None, sys.argv[1].split(",")))
class Uninstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Uninstalled())
sys.argv = ["inception_lib", *sys.argv[2:]]
runpy.run_module("inception_lib", run_name="__main__", alter_sys=True)
"""


def cli(*args: str, blocked: str = "", timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", BLOCKED_CLI, blocked, *args] if blocked else [sys.executable, "-m", "inception_lib", *args]
    return subprocess.run(cmd, cwd=ROOT, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=timeout)


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def damage(path: Path, how: str) -> int:
    """Replace ``path`` (a new file: a Keras best.* may be a hard link to it) by a damaged copy; returns its size."""
    raw = path.read_bytes()
    if how == "truncated":
        raw = raw[: len(raw) // 2]
    elif how == "garbage":
        raw = random.Random(0).randbytes(len(raw))
    elif how == "flipped":  # one changed byte in the middle of the largest entry (a tensor / the weights file)
        with zipfile.ZipFile(path) as z:
            big = max(z.infolist(), key=lambda i: i.file_size)
        name_len, extra_len = struct.unpack("<HH", raw[big.header_offset + 26: big.header_offset + 30])  # local header
        at = big.header_offset + 30 + name_len + extra_len + big.compress_size // 2
        raw = raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1:]
    else:
        raise ValueError(how)
    path.unlink()
    path.write_bytes(raw)
    return len(raw)


def assert_refused(proc: subprocess.CompletedProcess[str], damaged: Path, size: int, advice: str) -> None:
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr[-3000:]  # one line
    err = proc.stderr
    assert ": error: checkpoint " in err and str(damaged) in err and f"({size:,} bytes) is damaged" in err, err
    assert advice in err, err


DAMAGE = ("truncated", "garbage", "flipped")
ADVICE = {
    "pytorch": "best.pt, if intact, can still be evaluated, but it cannot be resumed (weights only); to train, start again "
               "with --overwrite",
    "keras": "To continue the run, resume from best.keras (copy it over last.keras; it is an earlier epoch) if it is "
             "intact, or start again with --overwrite",
}


def damaged_copies(run: Path, tmp: Path, last: str) -> dict[str, tuple[Path, int]]:
    """A copy of the run folder per kind of damage to its last.*: {how: (folder, size of the damaged file)}."""
    out = {}
    for how in DAMAGE:
        folder = tmp / how
        shutil.copytree(run, folder)
        out[how] = (folder, damage(folder / last, how))
    return out


# ------------------------------------------------------------------------------------------------
# The runs (one per framework) and their damaged copies
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_fashion_mnist()
    out = tmp_path_factory.mktemp("torch_run") / "run"
    cfg = TrainConfig(variant="torchvision", resolution=16, aux_weight=0.0, subset=16, val_size=16, batch_size=16,
                      epochs=1, max_steps_per_epoch=1, lr=0.01, augment="none", out_dir=str(out), threads=1,
                      device="cpu", eval_subset=16)
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(runfiles.FSYNC_ENV, "0")
        mp.setenv(runfiles.PROGRESS_ENV, "0")
        T.train(cfg, verbose=False)
    torch.set_num_threads(threads)
    assert {p.name for p in out.iterdir()} >= {"last.pt", "best.pt", "config.json", "history.json"}
    return out


@pytest.fixture(scope="module")
def keras_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_fashion_mnist()
    TK = pytest.importorskip("inception_lib.train_keras")
    out = tmp_path_factory.mktemp("keras_run") / "run"
    cfg = TrainConfig(framework="keras", variant="torchvision", resolution=32, aux_weight=0.0, subset=16, val_size=16,
                      batch_size=16, epochs=1, max_steps_per_epoch=1, lr=0.01, augment="none", out_dir=str(out),
                      threads=1, device="cpu", eval_subset=16, run_eagerly=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(runfiles.FSYNC_ENV, "0")
        mp.setenv(runfiles.PROGRESS_ENV, "0")
        TK.train(cfg, verbose=False)
    assert {p.name for p in out.iterdir()} >= {"last.keras", "best.keras", "config.json", "history.json"}
    return out


@pytest.fixture(scope="module")
def damaged(torch_run: Path, keras_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("damaged")
    return {"pytorch": damaged_copies(torch_run, tmp / "pytorch", "last.pt"),
            "keras": damaged_copies(keras_run, tmp / "keras", "last.keras")}


# ------------------------------------------------------------------------------------------------
# The CLI on a damaged last.*: evaluate and train --resume refuse with exit 2, every byte stays
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["truncated", "garbage"])
@pytest.mark.parametrize("framework", ["pytorch", "keras"])
def test_cli_refuses_a_damaged_last_checkpoint(damaged: dict[str, Any], framework: str, how: str) -> None:
    folder, size = damaged[framework][how]
    last = folder / ("last.keras" if framework == "keras" else "last.pt")
    before = digests(folder)
    assert_refused(cli("evaluate", str(last), "--threads", "1"), last, size, ADVICE[framework])
    assert_refused(cli("train", "--out", str(folder), "--resume", "--epochs", "2"), last, size, ADVICE[framework])
    assert digests(folder) == before


# ------------------------------------------------------------------------------------------------
# The trainers' own readers (the CLI checks first, before a framework loads; library calls rely on these)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", DAMAGE)
def test_pytorch_readers_and_resume_refuse_a_damaged_last_pt(damaged: dict[str, Any], how: str) -> None:
    folder, size = damaged["pytorch"][how]
    before = digests(folder)
    where = f"checkpoint {folder / 'last.pt'} ({size:,} bytes) is damaged: "
    # torch.load itself does not check the zip CRCs: without the check a changed byte loads wrong weights silently.
    with pytest.raises(runfiles.CorruptCheckpointError, match="contents changed after" if how == "flipped" else None) as e:
        E.evaluate_checkpoint(folder / "last.pt", "val", device="cpu")
    assert str(e.value).startswith(where) and ADVICE["pytorch"] in str(e.value)
    cfg = dataclasses.replace(TrainConfig.load(folder / "config.json"), out_dir=str(folder), epochs=2)
    threads = torch.get_num_threads()
    with pytest.raises(runfiles.CorruptCheckpointError, match=re.escape(where)):
        T.train(cfg, resume=True, verbose=False)
    torch.set_num_threads(threads)
    assert digests(folder) == before


@pytest.mark.parametrize("how", DAMAGE)
def test_keras_readers_and_resume_refuse_a_damaged_last_keras(damaged: dict[str, Any], how: str) -> None:
    TK = pytest.importorskip("inception_lib.train_keras")
    folder, size = damaged["keras"][how]
    last = folder / "last.keras"
    before = digests(folder)
    where = f"checkpoint {last} ({size:,} bytes) is damaged: "
    if how == "flipped":  # the metadata entry is intact, the weights are not: found when they are read
        assert TK.read_checkpoint_meta(last)["epoch"] == 1
        with pytest.raises(runfiles.CorruptCheckpointError, match="model.weights.h5 entry cannot be read") as e:
            TK.load_checkpoint(last)
    else:
        with pytest.raises(runfiles.CorruptCheckpointError) as e:
            TK.read_checkpoint_meta(last)
    assert str(e.value).startswith(where) and ADVICE["keras"] in str(e.value)
    cfg = dataclasses.replace(TrainConfig.load(folder / "config.json"), out_dir=str(folder), epochs=2)
    with pytest.raises(runfiles.CorruptCheckpointError, match=re.escape(where)):
        TK.train(cfg, resume=True, verbose=False)
    assert digests(folder) == before


# ------------------------------------------------------------------------------------------------
# A damaged best.*, a best.keras that is the damaged file itself, files of another kind
# ------------------------------------------------------------------------------------------------


def test_a_damaged_best_pt_points_to_last_pt(torch_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "run"
    shutil.copytree(torch_run, folder)
    size = damage(folder / "best.pt", "truncated")
    before = digests(folder)
    assert main(["evaluate", str(folder / "best.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"inception_lib evaluate: error: checkpoint {folder / 'best.pt'} ({size:,} bytes) is damaged: "
                          "it is truncated") and err.count("\n") == 1, err
    assert f"Evaluate {folder / 'last.pt'} instead if it is intact" in err
    assert digests(folder) == before


def test_a_best_keras_hard_linked_to_the_damaged_last_keras(keras_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    size = damage(shutil.copy(keras_run / "last.keras", folder / "last.keras"), "garbage")
    os.link(folder / "last.keras", folder / "best.keras")  # what the trainer leaves when the last epoch was the best
    with pytest.raises(runfiles.CorruptCheckpointError) as e:
        runfiles.check_zip_archive(folder / "last.keras", runfiles.CHECKPOINT_EXPECTED["keras"])
    assert str(e.value) == (
        f"checkpoint {folder / 'last.keras'} ({size:,} bytes) is damaged: it is not a zip archive (overwritten, or not "
        f"a checkpoint at all); expected {runfiles.CHECKPOINT_EXPECTED['keras']}. best.keras is the same file (a hard "
        "link: the last epoch was the best), so start again with --overwrite.")


def test_files_of_another_kind_are_not_called_damaged(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(2)}, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="not an inception_lib training checkpoint") as e:
        T.load_checkpoint(tmp_path / "last.pt")
    assert not isinstance(e.value, runfiles.CorruptCheckpointError) and "['weights']" in str(e.value)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(runfiles.CorruptCheckpointError, match=r"\(0 bytes\) is damaged: the file is empty"):
        T.load_checkpoint(tmp_path / "empty.pt")
    TK = pytest.importorskip("inception_lib.train_keras")
    with zipfile.ZipFile(tmp_path / "other.keras", "w") as z:
        z.writestr("model.weights.h5", b"")
    with pytest.raises(ValueError, match="not an inception_lib Keras training checkpoint: a Keras archive") as e:
        TK.read_checkpoint_meta(tmp_path / "other.keras")
    assert not isinstance(e.value, runfiles.CorruptCheckpointError)


# ------------------------------------------------------------------------------------------------
# A missing framework: the extra to install, before anything is written
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("blocked,args,extra", [
    ("torch", ["train", "--epochs", "1"], "torch"),
    ("torch", ["evaluate", "{pytorch}"], "torch"),
    ("torchvision", ["bench"], "torch"),
    ("tensorflow,keras", ["train", "--framework", "keras"], "keras"),
    ("tensorflow", ["evaluate", "{keras}"], "keras"),
], ids=["train", "evaluate", "bench", "train-keras", "evaluate-keras"])
def test_missing_framework_names_the_extra(torch_run: Path, keras_run: Path, tmp_path: Path, blocked: str,
                                           args: list[str], extra: str) -> None:
    out = tmp_path / "run"
    args = [a.format(pytorch=torch_run / "last.pt", keras=keras_run / "last.keras") for a in args]  # intact files
    if args[0] == "train":
        args = [*args, "--out", str(out)]
    proc = cli(*args, blocked=blocked, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f'pip install "inception_lib[{extra}]"' in proc.stderr and "error: " in proc.stderr, proc.stderr
    assert not out.exists()


def test_table1_needs_no_framework() -> None:
    proc = cli("table1", blocked="torch,torchvision,tensorflow,keras", timeout=120)
    assert proc.returncode == 0 and "inception_3a" in proc.stdout, proc.stderr


def test_require_framework_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    runfiles.require_framework("pytorch", "train")  # installed here: no error, nothing imported that was not
    monkeypatch.setitem(runfiles.FRAMEWORK_EXTRAS, "pytorch", ("PyTorch", "torch", ("torch", "no_such_module_x")))
    with pytest.raises(runfiles.MissingFrameworkError) as info:
        runfiles.require_framework("pytorch", "train --framework pytorch")
    assert info.value.name == "no_such_module_x" and isinstance(info.value, ImportError)
    assert str(info.value) == ("train --framework pytorch needs PyTorch (no module named 'no_such_module_x' here); "
                               'install with: pip install "inception_lib[torch]"')


def test_cli_turns_clear_errors_into_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise FileExistsError("runs/x already holds a run")

    monkeypatch.setattr(T, "train", refuse)
    assert main(["train", "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err == "inception_lib train: error: runs/x already holds a run\n"

"""The command line, end to end in subprocesses as a user runs it (train -> evaluate -> resume), plus --help for
every subcommand, Table 1 with its errata, and the refusals (in-process, where a subprocess adds nothing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import needs_fmnist

from inception_lib.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INCEPTION_LIB_PROGRESS": "0", "INCEPTION_LIB_FSYNC": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "inception_lib", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("sub", [[], ["train"], ["evaluate"], ["table1"], ["table3"], ["export-weights"], ["bench"]],
                         ids=lambda s: s[0] if s else "top")
def test_help_for_every_subcommand_exits_0(sub: list[str]) -> None:
    proc = cli(*sub, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


def test_help_and_table1_import_no_framework() -> None:
    code = ("import sys, contextlib, io\nfrom inception_lib.__main__ import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    main(['table1'])\n"
            "print(sorted(m for m in ('torch', 'tensorflow') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_table1_prints_exact_numbers_beside_the_printed_ones() -> None:
    proc = cli("table1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    conv1 = next(line for line in lines if line.startswith("conv1 "))
    assert "9,408" in conv1 and "2.7K!" in conv1 and "118,013,952" in conv1 and "34M!" in conv1
    total = next(line for line in lines if line.startswith("total "))
    assert "6,990,272" in total and "1,582,671,872" in total and "6797.7K" in total and "1502M" in total
    assert len([line for line in lines if line.startswith("inception_")]) == 9


@needs_fmnist
def test_train_evaluate_resume_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    common = ["--variant", "torchvision", "--resolution", "16", "--aux-weight", "0.3", "--subset", "32",
              "--val-size", "32", "--eval-subset", "16", "--batch-size", "16", "--max-steps", "2", "--lr", "0.01",
              "--threads", "1", "--device", "cpu", "--no-gpu-data"]  # the DataLoader path (the rest of the tests use the other)
    first = cli("train", *common, "--epochs", "2", "--out", str(out))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "epoch 2/2" in first.stdout and "status completed" in first.stdout
    hist2 = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in hist2["epochs"]] == [1, 2] and hist2["test"] is None  # no test unless asked

    ev = cli("evaluate", str(out / "last.pt"), "--split", "test", "--eval-subset", "16", "--threads", "1",
             "--json", str(tmp_path / "eval.json"))
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert "test split, 16 images" in ev.stdout and "top-1" in ev.stdout and "top-5" in ev.stdout
    assert json.loads((tmp_path / "eval.json").read_text())["n"] == 16

    again = cli("train", "--out", str(out), "--resume", "--epochs", "3", "--test")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "epoch 3/3" in again.stdout and "epoch 1/" not in again.stdout and "evaluated once" in again.stdout
    hist3 = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in hist3["epochs"]] == [1, 2, 3] and hist3["epochs"][:2] == hist2["epochs"]
    assert hist3["config"]["epochs"] == 3 and hist3["status"] == "completed"
    assert hist3["test"]["model"]["n"] == 16 and hist3["test"]["ema"] is not None
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"]) == (3, 6)


def test_bad_inputs_give_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--variant", "googlenet_v9"])
    assert exit_info.value.code == 2 and "invalid choice: 'googlenet_v9'" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing.pt")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["train", "--aux-weight", "0.3", "--no-aux-heads", "--out", str(tmp_path / "x")]) == 2
    assert "aux_heads=False" in capsys.readouterr().err
    assert main(["table3", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "t.json")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err and not (tmp_path / "t.json").exists()


def test_keras_framework_dispatches_to_train_keras(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import inspect

    from inception_lib import train as T
    from inception_lib import train_keras as TK

    trainers = {"pytorch": inspect.signature(T.train).parameters, "keras": inspect.signature(TK.train).parameters}
    seen: dict[str, Any] = {}

    def fake_train(cfg: Any, **opts: Any) -> dict[str, Any]:
        seen.update(cfg=cfg, **opts)
        return {"epochs": [], "status": "completed"}

    monkeypatch.setitem(sys.modules, "inception_lib.train_keras", types.SimpleNamespace(train=fake_train))
    assert main(["train", "--framework", "keras", "--variant", "paper", "--epochs", "4", "--quiet",
                 "--out", str(tmp_path / "k")]) == 0
    assert seen["cfg"].framework == "keras" and seen["cfg"].variant == "paper" and seen["cfg"].epochs == 4
    assert seen["resume"] is False
    # One trainer contract: the keywords the command passes are the ones both trainers take.
    passed = set(seen) - {"cfg"}
    for name, params in trainers.items():
        assert passed <= set(params), (name, passed - set(params))


def test_every_config_field_is_a_train_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The options are generated from TrainConfig: each field has one, typed, and a value given reaches the config."""
    import dataclasses

    from inception_lib.__main__ import _train_config, build_parser
    from inception_lib.config import TrainConfig

    argv = ["train", "--lr", "0.1", "--aux-weight", "0", "--no-ema", "--devices", "/cpu:0", "/cpu:1",
            "--eval-subset", "7", "--download", "--max-steps", "3", "--out", str(tmp_path / "r"), "--channels", "3",
            "--augment", "paper", "--precision", "bf16"]
    cfg = _train_config(build_parser().parse_args(argv))
    assert (cfg.lr, cfg.aux_weight, cfg.ema, cfg.devices, cfg.eval_subset, cfg.download, cfg.max_steps_per_epoch,
            cfg.out_dir, cfg.channels, cfg.augment, cfg.precision) == (
        0.1, 0.0, False, ["/cpu:0", "/cpu:1"], 7, True, 3, str(tmp_path / "r"), 3, "paper", "bf16")
    untouched = {f.name for f in dataclasses.fields(TrainConfig)} - {"lr", "aux_weight", "ema", "devices", "eval_subset",
                                                                      "download", "max_steps_per_epoch", "out_dir",
                                                                      "channels", "augment", "precision"}
    assert all(getattr(cfg, n) == getattr(TrainConfig(), n) for n in untouched)

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    help_text = capsys.readouterr().out
    flags = {"max_steps_per_epoch": "--max-steps", "out_dir": "--out"}
    missing = [n for n in {f.name for f in dataclasses.fields(TrainConfig)}
               if flags.get(n, "--" + n.replace("_", "-")) not in help_text]
    assert not missing, f"TrainConfig fields without a train option: {missing}"

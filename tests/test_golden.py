"""A golden short PyTorch run: refactoring the training half must not change what it computes.

``tests/golden/pytorch_short.json`` holds what one short run computed (per-epoch losses, accuracies, a checksum per
weight tensor, and the sha256 of every weight's bytes), recorded with ``python tests/test_golden.py --write``
before a refactor. The run is in float64 with deterministic kernels, so its numbers repeat across CPUs to about
1e-12 relative: the test compares them at 1e-9. Where the CPU model, the torch version and the kernels (the ISA
they dispatch to) are those of the record, the weights must also be bit-identical (the sha256).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from helpers import assert_close, needs_fmnist

from inception_lib import repro, runfiles
from inception_lib import train as T
from inception_lib.config import TrainConfig

GOLDEN = Path(__file__).with_name("golden") / "pytorch_short.json"


def golden_config(out_dir: Path) -> TrainConfig:
    return TrainConfig(variant="torchvision", resolution=32, subset=64, val_size=32, batch_size=16, epochs=2,
                       lr=0.02, ema_decay=0.9, augment="flip", precision="fp64", deterministic=True, threads=1,
                       device="cpu", eval_subset=32, out_dir=str(out_dir))


def golden_run(out_dir: Path) -> dict:
    """Train the golden configuration and return what it computed."""
    threads = torch.get_num_threads()
    try:
        history = T.train(golden_config(out_dir), progress=False, verbose=False)
    finally:
        torch.set_num_threads(threads)
    state = torch.load(out_dir / "last.pt", map_location="cpu", weights_only=True)["model"]
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].numpy().tobytes())
    keys = ("train_loss", "train_loss_main", "train_loss_aux1", "val_loss", "val_acc", "val_acc_ema")
    return {
        "epochs": [{k: row[k] for k in keys} for row in history["epochs"]],
        "checksums": {name: float(t.double().abs().sum()) for name, t in sorted(state.items())
                      if t.is_floating_point()},
        "sha256": digest.hexdigest(),
        "machine": machine(),
    }


def machine() -> dict:
    """What decides the bits: the CPU, torch, and the kernels it dispatches to (ATen's and oneDNN's / MKL's ISA)."""
    return {"cpu_model": repro.hardware().get("cpu_model"), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "isa_limits": {k: os.environ.get(k) for k in ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")}}


@needs_fmnist
def test_short_run_computes_what_it_computed_before(tmp_path, monkeypatch):
    monkeypatch.setenv(runfiles.FSYNC_ENV, "0")
    monkeypatch.setenv(runfiles.PROGRESS_ENV, "0")
    want = json.loads(GOLDEN.read_text())
    got = golden_run(tmp_path / "run")
    for g, w in zip(got["epochs"], want["epochs"], strict=True):
        for key, value in w.items():
            assert_close(np.asarray(g[key]), np.asarray(value), 1e-9, f"epoch {len(got['epochs'])} {key}")
    assert got["checksums"].keys() == want["checksums"].keys()
    names = list(want["checksums"])
    assert_close(np.array([got["checksums"][n] for n in names]), np.array([want["checksums"][n] for n in names]),
                 1e-9, "weight checksums")  # observed 0 on the recording CPU; ~1e-13 expected elsewhere
    if got["machine"] == want["machine"]:
        assert got["sha256"] == want["sha256"], "same CPU and torch as the record, but the weights are not bit-identical"


if __name__ == "__main__":  # python tests/test_golden.py --write: record the golden run (before a refactor)
    import tempfile

    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_golden.py --write")
    with tempfile.TemporaryDirectory() as tmp:
        result = golden_run(Path(tmp) / "run")
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}: sha256 {result['sha256'][:16]}...")

"""The Table-3 record: every model alone and their ensemble, per crop scheme, with the paper's cost column."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import require_fashion_mnist

from inception_lib import __main__ as cli
from inception_lib import evaluate as E
from inception_lib import table3
from inception_lib import train as T


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    require_fashion_mnist()
    paths = []
    for seed in (0, 1):
        out = tmp_path_factory.mktemp(f"s{seed}")
        cfg = T.TrainConfig(variant="bn", resolution=32, aux_weight=0.0, subset=64, val_size=32, batch_size=16,
                            epochs=1, lr=0.01, threads=1, seed=seed, ema=False, out_dir=str(out),
                            eval_subset=16)
        T.train(cfg, verbose=False)
        paths.append(out / T.LAST)
    return paths


def test_rows_are_each_model_and_the_ensemble_with_their_cost(two_runs: list[Path]) -> None:
    doc = table3.table3(two_runs, crops=("1", "10"), n=12, names=["a", "b"], device="cpu")
    rows = {(tuple(r["models"]), r["crops"]): r for r in doc["rows"]}
    assert set(rows) == {(m, c) for m in (("a",), ("b",), ("a", "b")) for c in ("1", "10")}
    assert rows[("a", "b"), "10"]["cost"] == 20 and rows[("a",), "1"]["cost"] == 1
    assert all(r["n"] == 12 for r in doc["rows"]) and doc["hardware"]["cpu_model"] is not None
    # the ensemble row is the averaged softmax of the members, recomputed here independently
    models = [T.load_checkpoint(p)[0].eval() for p in two_runs]
    cfg = T.TrainConfig.from_dict(T.load_checkpoint(two_runs[0])[1]["config"])
    probs = []
    for m in models:
        loader, kw = E.eval_inputs(cfg, "test", "10", torch.device("cpu"), eval_subset=12)
        p, labels = E.predict_probs(m, loader, "10", **kw)
        probs.append(p)
    top1 = float((np.mean(probs, axis=0).argmax(1) == labels).mean())
    assert rows[("a", "b"), "10"]["top1"] == pytest.approx(top1)
    assert rows[("b",), "10"]["top1"] == pytest.approx(float((probs[1].argmax(1) == labels).mean()))


def test_cli_writes_the_record_and_refuses_mixed_resolutions(two_runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "t3.json"
    assert cli.main(["table3", *map(str, two_runs), "--crops", "1", "--n", "8", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == table3.SCHEMA and len(doc["rows"]) == 3
    state = torch.load(two_runs[1], weights_only=False)
    state["config"]["resolution"] = 48  # the same weights fit a 48 px network (no aux heads)
    state["architecture"]["image_size"] = [48, 48]
    other = tmp_path / "other.pt"
    torch.save(state, other)
    with pytest.raises(ValueError, match="resolution"):
        table3.table3([two_runs[0], other], crops=("1",), n=4)

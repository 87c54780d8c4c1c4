"""Recorded-run files must carry their evidence; summaries are computed, not typed."""

import json
from pathlib import Path

import pytest

from inception_lib.config import EPOCH_KEYS, HISTORY_SCHEMA, TrainConfig
from inception_lib.results import ANCHORS, RunFileError, load_runs, mean_std


def _run(acc_by_epoch, **over):
    rows = []
    for i, acc in enumerate(acc_by_epoch):
        row = {k: None for k in EPOCH_KEYS}
        row.update(epoch=i + 1, val_acc=acc, wall_time_s=10.0 * (i + 1))
        rows.append(row)
    data = {"schema": HISTORY_SCHEMA, "framework": "pytorch", "config": TrainConfig().to_dict(),
            "versions": {"torch": "x"}, "hardware": {"gpu": "H100"}, "seed": 0, "epochs": rows,
            "status": "completed", "test": {"model": {"top1": acc_by_epoch[-1]}, "ema": None}}
    data.update(over)
    return data


def test_load_and_summarize(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(_run([0.90, 0.94, 0.95])))
    (tmp_path / "b.json").write_text(json.dumps(_run([0.91, 0.93])))
    runs = load_runs(tmp_path)
    assert [r.path.name for r in runs] == ["a.json", "b.json"]
    assert runs[0].time_to(0.937) == 20.0 and runs[1].time_to(0.937) is None
    assert runs[0].wall_time_s == 30.0 and runs[0].test_acc == 0.95
    m, s = mean_std([r.test_acc for r in runs])
    assert m == pytest.approx(0.94) and s == pytest.approx(0.014142, abs=1e-6)
    assert ANCHORS["fashion_mnist_benchmark_googlenet"]["test_acc"] == 0.937


@pytest.mark.parametrize("drop", ["hardware", "versions", "seed"])
def test_run_without_evidence_is_refused(tmp_path, drop):
    data = _run([0.9])
    del data[drop]
    (tmp_path / "x.json").write_text(json.dumps(data))
    with pytest.raises(RunFileError, match=drop):
        load_runs(tmp_path)


def test_epoch_rows_need_the_schema(tmp_path):
    data = _run([0.9])
    del data["epochs"][0]["wall_time_s"]
    (tmp_path / "x.json").write_text(json.dumps(data))
    with pytest.raises(RunFileError, match="wall_time_s"):
        load_runs(tmp_path)


def test_hardware_record_names_the_cpu_its_isa_and_threads():
    import torch

    from inception_lib import repro

    hw = repro.hardware()
    assert hw["torch_threads"] == torch.get_num_threads()
    assert hw["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    if Path("/proc/cpuinfo").is_file():  # Linux: the model name and the ISA flags that change speed or results
        assert isinstance(hw["cpu_model"], str) and hw["cpu_model"]
        assert set(hw["cpu_flags"]) <= set(repro.CPU_FLAGS)
        if hw["machine"] == "x86_64":
            assert "avx2" in hw["cpu_flags"] or hw["torch_cpu_capability"] == "DEFAULT"


def test_versions_record_the_code_commit():
    import subprocess

    from inception_lib import repro

    root = Path(repro.__file__).resolve().parents[1]
    if not (root / ".git").exists():  # an installed copy, not a checkout: nothing to record
        assert repro.git_commit() is None
        return
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    commit = repro.versions()["git_commit"]
    assert commit.split("+")[0] == head and commit in (head, head + "+dirty")

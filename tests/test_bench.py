"""The benchmark (inception_lib.bench) runs end to end on CPU, writes its JSON, refuses bad settings clearly;
and the CPU speed paths of inception_lib.pytorch give exactly PyTorch's values and gradients.

No speed ratio is asserted here (timings on a shared machine are noise); the ratios are read off real runs.
"""

import argparse
import json

import pytest
import torch
from helpers import assert_close
from torch import nn

from inception_lib import bench
from inception_lib.__main__ import main as cli_main
from inception_lib.pytorch import FastLocalResponseNorm, FastMaxPool2d

TINY = ["--device", "cpu", "--batch-size", "2", "--resolution", "32", "--steps", "1", "--repeats", "1",
        "--warmup", "0", "--threads", "1"]


def test_tiny_run_prints_the_table_and_the_ratio(capsys):
    assert bench.main([*TINY, "--variants", "torchvision", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    for text in ("img/s median", "[min, max]", "peak mem MiB", "ratios", "ours[torchvision] / torchvision", "like for like",
                 "peak memory: the smaller of two", "VmHWM", "forward + backward is about 3 forwards"):
        assert text in out, text
    row = next(line for line in out.splitlines() if line.startswith("ours[torchvision] / torchvision"))
    assert float(row.split()[3]) > 0  # the median ratio


def test_json_has_both_throughputs_the_ratios_hardware_and_versions(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert bench.main([*TINY, "--resolution", "80", "--variants", "torchvision,paper", "--json", str(path)]) == 0
    assert f"wrote {path}" in capsys.readouterr().out
    res = json.loads(path.read_text())
    by_name = {r["name"]: r for r in res["results"]}
    assert set(by_name) == {"torchvision", "ours[torchvision]", "ours[paper]"}
    for r in by_name.values():
        assert r["images_per_s"] > 0 and r["images_per_s_spread"]["min"] <= r["images_per_s"] <= r["images_per_s_spread"]["max"]
        assert r["macs_per_image"] > 0 and r["train_flops_per_image"] == 6 * r["macs_per_image"]
        assert r["peak_memory_mb"] is None or r["peak_memory_mb"] >= 0
    assert by_name["ours[torchvision]"]["macs_per_image"] == by_name["torchvision"]["macs_per_image"]
    assert res["ratio"] > 0 and [(q["of"], q["over"]) for q in res["ratios"]] == [
        ("ours[torchvision]", "torchvision"), ("ours[paper]", "torchvision")]
    assert res["hardware"]["cpu_count"] >= 1 and {"torch", "torchvision", "python"} <= set(res["versions"])
    assert res["config"]["batch_size"] == 2 and res["config"]["resolution"] == 80 and res["config"]["dtype"] == "fp32"
    assert res["device"] == "cpu" and "memory_metric" in res and "wall_time_s" in res


@pytest.mark.parametrize("args,message", [
    (["--batch-size", "0"], "must be a positive integer"),
    (["--steps", "two"], "must be a positive integer"),
    (["--variants", "inception_v3"], "unknown variant"),
    (["--dtype", "fp16"], "invalid choice"),
    (["--lr", "-1"], "must be a positive number"),
    (["--warmup", "-1"], "must be a non-negative integer"),
    (["--resolution", "32", "--variants", "paper"], "too small for the 'paper' variant with its aux heads (minimum 47)"),
    (["--resolution", "8", "--variants", "torchvision"], "too small"),
    (["--device", "tpu"], "unknown device"),
    (["--json", "/no/such/folder/out.json"], "does not exist"),
])
def test_bad_settings_fail_with_a_clear_message(args, message, capsys):
    assert bench.main([*TINY, *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_requested_without_cuda():
    with pytest.raises(bench.BenchError, match="CUDA is not available"):
        bench._resolve_device("cuda")


def test_the_cli_dispatches_to_the_benchmark(capsys):
    assert cli_main(["bench", "--help"]) == 0
    assert "--keras" in capsys.readouterr().out
    assert cli_main(["bench", "--batch-size", "0"]) == 2


def test_ratio_is_per_round_images_per_second():
    a = bench.Candidate("ours[torchvision]", "pytorch", "inception_lib", "torchvision", "", wall=[1.0, 2.0, 1.0])
    b = bench.Candidate("torchvision", "pytorch", "torchvision", "torchvision", "", wall=[2.0, 2.0, 4.0])
    q = bench._ratio(a, b)
    assert (q["of"], q["over"], q["all"]) == ("ours[torchvision]", "torchvision", [2.0, 1.0, 4.0])
    assert (q["median"], q["min"], q["max"]) == (2.0, 1.0, 4.0)


def test_rounds_rotate_the_order_after_a_warmup():
    calls = []
    cands = [bench.Candidate(n, "pytorch", "inception_lib", "bn", "", step=lambda n=n: calls.append(n)) for n in "abc"]
    cfg = argparse.Namespace(warmup=1, repeats=3, steps=2, batch_size=4)
    load = bench._time_interleaved(cands, cfg, sync=lambda: None, log=lambda s: None)
    assert "".join(calls) == "abc" + "aabbcc" + "bbccaa" + "ccaabb"  # warmup, then each model first once
    assert [len(c.wall) for c in cands] == [3, 3, 3] and len(load) == 2


def test_cpu_peak_memory_sees_a_step_that_touches_50_mib():
    step = bench.Candidate("x", "pytorch", "inception_lib", "bn", "", step=lambda: len(b"x" * (50 * 2**20)))
    mb = bench._peak_memory_mb(step, torch.device("cpu"), lambda: None)
    if mb is None:
        pytest.skip("needs Linux /proc/self/clear_refs")
    assert 45 < mb < 120, mb


# The speed paths of inception_lib.pytorch must give PyTorch's numbers exactly, ties included.
@pytest.mark.parametrize("shape,kernel,stride,padding", [
    ((2, 8, 12, 12), 3, 1, 1),  # inception branch pool
    ((2, 8, 13, 13), 3, 2, 0),  # trunk pool, ceil mode adds a partial window
    ((2, 8, 7, 7), 2, 2, 0),  # torchvision's pool4
    ((2, 8, 1, 1), 3, 1, 1),  # 1x1 map: the layout is ambiguous, the strides must still be NCHW's
])
def test_fast_max_pool_is_exact(shape, kernel, stride, padding):
    torch.manual_seed(0)
    x = torch.relu(torch.randn(shape))  # zeros after ReLU: many ties inside a window
    x[:, :, ::3] = 1.0
    fast, ref = FastMaxPool2d(kernel, stride, padding, ceil_mode=True), nn.MaxPool2d(kernel, stride, padding, ceil_mode=True)
    g = torch.randn_like(ref(x))
    outs = []
    for m in (fast, ref):
        xx = x.clone().requires_grad_()
        y = m(xx)
        y.backward(g)
        with torch.no_grad():
            outs.append((y, xx.grad, m(x)))
    (y1, g1, e1), (y2, g2, e2) = outs
    assert torch.equal(y1, y2) and torch.equal(g1, g2) and torch.equal(e1, e2)
    assert y1.stride() == y2.stride() and e1.stride() == e2.stride()
    # An honest name in print(model), the same arguments as the module it replaces
    assert repr(fast) == "Fast" + repr(ref) and isinstance(fast, nn.MaxPool2d)


def test_fast_lrn_is_exact():
    torch.manual_seed(0)
    x = torch.relu(torch.randn(2, 16, 9, 9)) * 20
    fast, ref = FastLocalResponseNorm(5, 1e-4, 0.75, 1.0), nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)
    g = torch.randn_like(x)
    outs = []
    for m in (fast, ref):
        xx = x.clone().requires_grad_()
        y = m(xx)
        y.backward(g)
        outs.append((y, xx.grad))
    assert torch.equal(outs[0][0], outs[1][0])  # the forward sums in avg_pool3d's order: exact by construction
    # The gradients come from two different autograd graphs (slice adds vs avg_pool3d's backward): relative to the
    # gradients' scale (~4), not elementwise with atol 1e-7 (below float32 resolution at that scale). 0 observed.
    assert_close(outs[0][1], outs[1][1], 1e-5, "LRN input gradient")
    assert repr(fast) == "Fast" + repr(ref)

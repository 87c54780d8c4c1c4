"""Training-step throughput and peak memory: inception_lib's GoogLeNet against torchvision's (and Keras).

One step = forward + backward + SGD step (momentum 0.9) on a fixed synthetic batch, auxiliary heads on,
loss = main + 0.3 * (aux1 + aux2), as in the paper. The models are timed INTERLEAVED in one process, after
warmup, for several rounds (round r runs every model once, starting from model r mod n, so each takes
every position in turn); the table reports the median and the spread, and the ratio ours / torchvision
per round (> 1 = ours faster). Each comparison is labelled: only inception_lib's ``"torchvision"`` variant has exactly
torchvision's structure; ``"bn"`` and ``"paper"`` have the true 5x5 branch (more multiply-adds), and
``"paper"`` LRN and conv biases instead of BatchNorm.

    python -m inception_lib.bench --device cpu --batch-size 32 --resolution 96 --repeats 5
    python -m inception_lib bench --device cuda --dtype bf16 --channels-last --json bench.json
    python -m inception_lib.bench --keras --variants torchvision            # + Keras train_on_batch

TensorFlow is imported only with ``--keras``, after torch and torchvision (the other order aborts).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import gc
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from inception_lib import arithmetic, repro, spec

__all__ = ["main", "build_parser", "run", "Candidate", "H100_BF16_DENSE_TFLOPS"]

H100_BF16_DENSE_TFLOPS = 989.0  # H100 SXM, dense bf16 tensor-core peak (NVIDIA datasheet; 1979 is with sparsity)
AUX_WEIGHT = 0.3  # the paper's weight of each auxiliary loss
REFERENCE = "torchvision"
_EXIT_ERROR = 2
FLOPS_NOTE = ("achieved FLOP/s = images/s x 3 x 2 x MACs/image: MACs of one inference forward pass (convolutions + fc, "
              "from inception_lib.arithmetic.count_macs; aux heads, BN, pools and elementwise ops not counted), "
              "x2 FLOPs per MAC, x3 because forward + backward is about 3 forwards")


class BenchError(ValueError):
    """A benchmark setting that cannot run (reported as one clear line, exit status 2)."""


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


def _nonnegative_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {s}")
    return v


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {s!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {s}")
    return v


def _variants(s: str) -> list[str]:
    names = [v.strip() for v in s.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one variant")
    unknown = [v for v in names if v not in spec.VARIANTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown variant(s) {unknown}; choose from {sorted(spec.VARIANTS)}")
    return list(dict.fromkeys(names))


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options (also reached as ``python -m inception_lib bench``)."""
    p = argparse.ArgumentParser(
        prog="python -m inception_lib bench",
        description="Training-step throughput (images/s) and peak memory of inception_lib's PyTorch GoogLeNet against "
                    "torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True), timed interleaved "
                    "in one process; optionally the Keras model too.",
        epilog="Ratios are ours / torchvision images per second, per round (> 1 = ours faster); the table gives their "
               "median and [min, max]. Synthetic data (a fixed random batch), so no data loading is timed.")
    a = p.add_argument
    a("--device", default="auto", help="auto (cuda if available) | cpu | cuda | cuda:N (default auto)")
    a("--batch-size", dest="batch_size", type=_positive_int, default=32, help="images per step (default 32)")
    a("--resolution", type=_positive_int, default=None, help="square input side (default 224 on CUDA, 96 on CPU)")
    a("--channels", type=_positive_int, default=3, help="input channels (default 3; torchvision's conv1 is rebuilt for others)")
    a("--num-classes", dest="num_classes", type=_positive_int, default=1000, help="classes (default 1000)")
    a("--steps", type=_positive_int, default=None, help="timed steps per model per repeat (default 20 on CUDA, 2 on CPU)")
    a("--warmup", type=_nonnegative_int, default=None, help="untimed steps per model first (default 5 on CUDA, 2 on CPU)")
    a("--repeats", type=_positive_int, default=5, help="interleaved rounds (default 5)")
    a("--variants", type=_variants, default=list(spec.VARIANTS),
      help=f"inception_lib variants to compare with torchvision, comma-separated (default {','.join(spec.VARIANTS)})")
    a("--dtype", choices=("fp32", "bf16"), default="fp32", help="fp32, or bf16 autocast (Keras: mixed_bfloat16) (default fp32)")
    a("--channels-last", dest="channels_last", action="store_true", help="channels-last models and batch (both libraries)")
    a("--compile", action="store_true", help="torch.compile every PyTorch model (Keras: jit_compile=True)")
    a("--keras", action="store_true", help="also time Keras train_on_batch for each variant (imports tensorflow)")
    a("--threads", type=_positive_int, default=None, help="CPU threads for torch (and TF) (default: torch's)")
    a("--lr", type=_positive_float, default=0.01, help="SGD learning rate (default 0.01; momentum 0.9)")
    a("--seed", type=int, default=0, help="random seed (default 0)")
    a("--peak-tflops", dest="peak_tflops", type=_positive_float, default=None,
      help=f"peak FLOP/s of the device in TFLOP/s for the fraction-of-peak column (default on CUDA: "
           f"{H100_BF16_DENSE_TFLOPS:g} = H100 SXM dense bf16; none on CPU)")
    a("--no-memory", dest="memory", action="store_false", help="skip the peak-memory measurement")
    a("--profile", action="store_true", help="also profile one set of steps per PyTorch model: top ops side by side")
    a("--json", dest="json_out", metavar="OUT", help="write the results (with hardware and versions) as JSON")
    return p


# ---------------------------------------------------------------------------------------------
# Models and steps
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Candidate:
    """One model under test: a name, what it is, and a callable running one training step."""

    name: str
    framework: str  # "pytorch" or "keras"
    library: str  # "torchvision" or "inception_lib"
    variant: str  # the inception_lib variant whose structure it has
    note: str
    step: Callable[[], None] = dataclasses.field(repr=False, default=lambda: None)
    sync: Callable[[], None] = dataclasses.field(repr=False, default=lambda: None)
    module: Any = dataclasses.field(repr=False, default=None)
    macs: int = 0
    batch: int = 1
    wall: list[float] = dataclasses.field(default_factory=list)
    cpu: list[float] = dataclasses.field(default_factory=list)
    peak_memory_mb: Optional[float] = None


_NOTES = {
    "torchvision": "same structure as torchvision (BN, 3x3 '5x5' branch, 2x2 pool4, adaptive aux pool): like for like",
    "bn": "BN, true 5x5 branch, 3x3/2 pool4, paper aux pool: more MACs than torchvision, not like for like",
    "paper": "LRN + conv bias (no BN), true 5x5 branch, 3x3/2 pool4: the paper's network, not like for like",
}


def _resolve_device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise BenchError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BenchError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BenchError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise BenchError(f"--device {name}: MPS is not available on this machine")
    elif dev.type != "cpu":
        raise BenchError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return dev


def _check_sizes(cfg: argparse.Namespace) -> None:
    for v in cfg.variants:
        need = arithmetic.min_input_size(v, aux_logits=True)
        if cfg.resolution < need:
            raise BenchError(
                f"--resolution {cfg.resolution} is too small for the {v!r} variant with its aux heads (minimum {need}); "
                f"use a larger --resolution or --variants torchvision (minimum "
                f"{arithmetic.min_input_size('torchvision', aux_logits=True)})")
    need = arithmetic.min_input_size("torchvision", aux_logits=True)
    if cfg.resolution < need:  # torchvision's own model has the torchvision variant's structure
        raise BenchError(f"--resolution {cfg.resolution} is too small for torchvision's GoogLeNet (minimum {need})")


def _torch_step(model: Any, cfg: argparse.Namespace, x: Any, y: Any) -> Callable[[], None]:
    import torch
    import torch.nn.functional as F

    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)
    amp = cfg.dtype == "bf16"
    dev_type = x.device.type

    def step() -> None:
        with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=amp):
            out = model(x)
            # ours: (logits, aux1, aux2); torchvision: (logits, aux2, aux1); the loss is symmetric in the heads
            loss = F.cross_entropy(out[0], y) + AUX_WEIGHT * (F.cross_entropy(out[1], y) + F.cross_entropy(out[2], y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _torch_candidates(cfg: argparse.Namespace, device: Any) -> tuple[list[Candidate], Any, Any]:
    import torch
    import torchvision

    from inception_lib.pytorch import GoogLeNet

    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(cfg.batch_size, cfg.channels, cfg.resolution, cfg.resolution, generator=gen)
    y = torch.randint(0, cfg.num_classes, (cfg.batch_size,), generator=gen)
    x, y = x.to(device), y.to(device)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    def prepare(model: Any) -> Any:
        model = model.to(device).train()
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return torch.compile(model) if cfg.compile else model

    out = []
    torch.manual_seed(cfg.seed)
    tv = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True, num_classes=cfg.num_classes)
    if cfg.channels != 3:  # torchvision hard-codes RGB; same conv, other input width
        tv.conv1.conv = torch.nn.Conv2d(cfg.channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    tv_model = prepare(tv)
    out.append(Candidate("torchvision", "pytorch", "torchvision", "torchvision",
                         "torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)",
                         _torch_step(tv_model, cfg, x, y), sync, tv_model,
                         arithmetic.count_macs("torchvision", cfg.num_classes, cfg.resolution, cfg.channels)))
    for v in cfg.variants:
        torch.manual_seed(cfg.seed)
        ours = prepare(GoogLeNet(cfg.num_classes, aux_logits=True, variant=v, in_channels=cfg.channels,
                                 image_size=cfg.resolution))
        out.append(Candidate(f"ours[{v}]", "pytorch", "inception_lib", v, _NOTES[v], _torch_step(ours, cfg, x, y), sync,
                             ours, arithmetic.count_macs(v, cfg.num_classes, cfg.resolution, cfg.channels)))
    return out, x, y


def _keras_candidates(cfg: argparse.Namespace, x: Any, y: Any) -> list[Candidate]:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from inception_lib.keras import GoogLeNet as KerasGoogLeNet

    threads = cfg.threads or _torch_threads()
    with contextlib.suppress(RuntimeError):  # already initialised: the first setting stays
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    keras.utils.set_random_seed(cfg.seed)
    if cfg.dtype == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    xk = tf.constant(x.detach().float().cpu().permute(0, 2, 3, 1).contiguous().numpy())  # Keras is channels_last
    yk = tf.constant(y.detach().cpu().numpy())
    on_gpu = bool(tf.config.list_logical_devices("GPU"))
    out = []
    for v in cfg.variants:
        model = KerasGoogLeNet(cfg.num_classes, aux_logits=True, variant=v,
                               input_shape=(cfg.resolution, cfg.resolution, cfg.channels))
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(optimizer=keras.optimizers.SGD(cfg.lr, momentum=0.9), loss=[loss, loss, loss],
                      loss_weights=[1.0, AUX_WEIGHT, AUX_WEIGHT], jit_compile=True if cfg.compile else "auto")

        def step(model: Any = model) -> None:
            model.train_on_batch(xk, (yk, yk, yk))

        out.append(Candidate(f"keras[{v}]", "keras", "inception_lib", v,
                             f"inception_lib.keras (NHWC), train_on_batch on TensorFlow ({'GPU' if on_gpu else 'CPU'})",
                             step, lambda: None, model,
                             arithmetic.count_macs(v, cfg.num_classes, cfg.resolution, cfg.channels)))
    return out


def _cpu_name() -> str:
    return str(repro.cpu_info().get("cpu_model") or repro.hardware().get("processor") or "cpu")


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------


def _malloc_trim() -> None:
    """Give memory glibc keeps after free() back to the OS, so the RSS before a step is honest."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _clear_refs_works() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        _status_kb("VmHWM")
        return True
    except OSError:
        return False


def _cpu_step_peak_mb(step: Callable[[], None]) -> tuple[Optional[float], str]:
    """Peak RSS increase during one step, and how it was measured."""
    gc.collect()
    _malloc_trim()
    if _clear_refs_works():  # Linux: reset the high-water mark, read VmHWM after the step
        before = _status_kb("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        step()
        return (_status_kb("VmHWM") - before) / 1024, (
            "CPU: peak RSS during one training step minus RSS before it (Linux VmHWM after resetting it via "
            "/proc/self/clear_refs; glibc malloc_trim first): activations, gradients and temporaries")
    try:
        import psutil
    except ImportError:
        return None, "CPU: unavailable (needs Linux /proc/self/clear_refs or psutil)"
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.001)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    step()
    done.set()
    t.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    return (peak[0] - before) / 2**20, ("CPU: peak RSS during one training step minus RSS before it "
                                         "(psutil, sampled every 1 ms: a lower bound)")


def _measure_memory(cands: list[Candidate], device: Any, rounds: int = 2) -> str:
    """Peak memory of one training step per model: the smallest of ``rounds`` interleaved measurements.

    Allocator caching and fragmentation only ever add resident memory, so the minimum is the best estimate.
    """
    import torch

    method = ""
    seen: dict[str, list[float]] = {c.name: [] for c in cands}
    for r in range(rounds):
        for c in cands if r % 2 == 0 else cands[::-1]:
            if c.framework == "pytorch" and device.type == "cuda":
                c.sync()
                gc.collect()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
                c.step()
                c.sync()
                mb: Optional[float] = torch.cuda.max_memory_allocated(device) / 2**20
                method = ("CUDA: torch.cuda.max_memory_allocated during one training step (weights, gradients, "
                          "optimizer state, activations)")
            else:
                mb, m = _cpu_step_peak_mb(c.step)
                if c.framework == "pytorch" or not method:
                    method = m
            if mb is not None:
                seen[c.name].append(mb)
    for c in cands:
        c.peak_memory_mb = min(seen[c.name]) if seen[c.name] else None
    method += f"; the smallest of {rounds} interleaved measurements"
    if any(c.framework == "keras" for c in cands):
        method += "; Keras measured on the host the same way"
    return method


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def _time_interleaved(cands: list[Candidate], steps: int, repeats: int, log: Callable[[str], None]) -> None:
    for r in range(repeats):
        order = cands[r % len(cands):] + cands[:r % len(cands)]  # rotate: every model takes every position in turn
        for c in order:
            c.sync()
            t0, p0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                c.step()
            c.sync()
            wall, cpu = time.perf_counter() - t0, time.process_time() - p0
            c.wall.append(wall)
            c.cpu.append(cpu)
        log(f"  round {r + 1}/{repeats}: " + ", ".join(f"{c.name} {c.batch * steps / c.wall[-1]:.1f} img/s" for c in cands))


def _spread(values: Sequence[float]) -> dict[str, Any]:
    vals = sorted(values)
    q = statistics.quantiles(vals, n=4, method="inclusive") if len(vals) > 1 else [vals[0]] * 3
    return {"median": statistics.median(vals), "min": vals[0], "max": vals[-1], "q1": q[0], "q3": q[2],
            "all": list(values)}


def _ratio(a: Candidate, b: Candidate, batch: int, steps: int) -> dict[str, Any]:
    per_round = [wb / wa for wa, wb in zip(a.wall, b.wall)]  # images/s of a over images/s of b, same round
    cpu_round = [cb / ca for ca, cb in zip(a.cpu, b.cpu)]
    s = _spread(per_round)
    ips_a = statistics.median(batch * steps / w for w in a.wall)
    ips_b = statistics.median(batch * steps / w for w in b.wall)
    return {"of": a.name, "over": b.name, "median": s["median"], "min": s["min"], "max": s["max"], "q1": s["q1"],
            "q3": s["q3"], "per_round": per_round, "ratio_of_medians": ips_a / ips_b,
            "cpu_time_median": statistics.median(cpu_round)}


# ---------------------------------------------------------------------------------------------
# Profile
# ---------------------------------------------------------------------------------------------


def profile_ops(cands: list[Candidate], steps: int, device: Any, top: int = 15) -> str:
    """Self time per op and step (torch.profiler) of each PyTorch model, side by side."""
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # keep the profiler's own log lines off stderr
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    tables: dict[str, dict[str, tuple[float, float]]] = {}
    for c in cands:
        if c.framework != "pytorch":
            continue
        c.sync()
        with profile(activities=acts) as prof:
            for _ in range(steps):
                c.step()
            c.sync()
        rows = {}
        for e in prof.key_averages():
            t = e.self_device_time_total if device.type == "cuda" else e.self_cpu_time_total
            rows[e.key] = (t / 1e3 / steps, e.count / steps)
        tables[c.name] = rows
    keys = sorted(set().union(*tables.values()), key=lambda k: -max(t.get(k, (0.0, 0))[0] for t in tables.values()))
    unit = "device" if device.type == "cuda" else "CPU"
    lines = [f"profile: self {unit} time per step (ms) and calls per step, top {top} ops"]
    lines.append(f"{'op':44s}" + "".join(f"{n:>22s}" for n in tables))
    for k in keys[:top]:
        lines.append(f"{k[:44]:44s}" + "".join(f"{t.get(k, (0.0, 0))[0]:13.1f} x{t.get(k, (0.0, 0))[1]:<6.0f}"
                                              for t in tables.values()))
    lines.append(f"{'total':44s}" + "".join(f"{sum(v[0] for v in t.values()):13.1f}        " for t in tables.values()))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _fmt_table(rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip()
                     for r in rows)


def report_text(result: dict[str, Any]) -> str:
    """The result as a table with the ratios, for a terminal."""
    cfg = result["config"]
    lines = [
        "GoogLeNet training step: forward + backward + SGD (momentum 0.9), aux heads on, loss = main + 0.3 x (aux1 + aux2)",
        (f"device {result['device_name']}, {cfg['threads']} thread(s); batch {cfg['batch_size']}, "
         f"{cfg['resolution']}x{cfg['resolution']}x{cfg['channels']}, {cfg['num_classes']} classes, {cfg['dtype']}"
         f"{' autocast' if cfg['dtype'] == 'bf16' else ''}, {'channels-last' if cfg['channels_last'] else 'NCHW'}, "
         f"{'torch.compile' if cfg['compile'] else 'eager'}; {cfg['repeats']} interleaved rounds x {cfg['steps']} steps "
         f"(+{cfg['warmup']} warmup) per model; synthetic batch"),
    ]
    loads = [la[0] for la in (result.get("load_average"), result.get("load_average_after")) if la]
    if loads and max(loads) > (os.cpu_count() or 1):
        lines.append(f"note: load average up to {max(loads):.1f} on {os.cpu_count()} CPUs while timing: other work shares "
                     "the machine, so absolute numbers are low and noisy; interleaving keeps the ratios fair")
    swing = max(r["images_per_s_spread"]["max"] / r["images_per_s_spread"]["min"] for r in result["results"])
    if swing > 1.5:
        lines.append(f"warning: a model's throughput varied {swing:.1f}x between rounds: the machine was not quiet, so "
                     "trust the per-round ratios' median over single numbers, or rerun with more --repeats")
    if loads and max(loads) > (os.cpu_count() or 1) and cfg["threads"] > 1 and not result["device"].startswith("cuda"):
        lines.append("note: OpenMP threads spin against the other work on a loaded machine; --threads 1 gives "
                     "steadier numbers")
    has_peak = any(r.get("fraction_of_peak") is not None for r in result["results"])
    cuda = result["device"].startswith("cuda")
    head = ["model", "img/s median", "[min, max]", "IQR", "img/CPU-s", "peak mem MiB", "TFLOP/s" if cuda else "GFLOP/s"]
    if has_peak:
        head.append("of peak")
    rows = [head]
    for r in result["results"]:
        s = r["images_per_s_spread"]
        mem = r["peak_memory_mb"]
        row = [r["name"], f"{r['images_per_s']:.2f}", f"[{s['min']:.2f}, {s['max']:.2f}]", f"{s['q3'] - s['q1']:.2f}",
               f"{r['images_per_cpu_s']:.2f}", "-" if mem is None else f"{mem:.0f}",
               f"{r['achieved_tflops']:.1f}" if cuda else f"{r['achieved_tflops'] * 1e3:.1f}"]
        if has_peak:
            row.append("-" if r.get("fraction_of_peak") is None else f"{100 * r['fraction_of_peak']:.2f}%")
        rows.append(row)
    lines += ["", _fmt_table(rows, set(range(1, len(head))))]
    lines.append("")
    lines.append("ratios (images/s of the first over the second, per round; > 1 = the first is faster):")
    rrows = [["ratio", "median", "[min, max]", "of medians", "CPU-time", "what is compared"]]
    notes = {r["name"]: r["note"] for r in result["results"]}
    for q in result["ratios"]:
        rrows.append([f"{q['of']} / {q['over']}", f"{q['median']:.3f}", f"[{q['min']:.3f}, {q['max']:.3f}]",
                      f"{q['ratio_of_medians']:.3f}", f"{q['cpu_time_median']:.3f}",
                      notes[q["of"]] if q["over"] == REFERENCE else "same variant, PyTorch over Keras"])
    lines.append(_fmt_table(rrows, {1, 2, 3, 4}))
    lines.append("")
    lines.append(f"peak memory: {result['memory_metric']}")
    lines.append(f"{head[6]}: {FLOPS_NOTE}")
    if has_peak:
        lines.append(f"of peak: achieved / {result['peak_tflops']:g} TFLOP/s ({result['peak_tflops_source']})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def run(cfg: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build the models, time them interleaved, measure memory; returns the result as a dict."""
    import torch
    import torchvision  # noqa: F401 - torch / torchvision before tensorflow, or the process aborts

    device = _resolve_device(cfg.device)
    cuda = device.type == "cuda"
    cfg.resolution = cfg.resolution or (224 if cuda else 96)
    cfg.steps = cfg.steps or (20 if cuda else 2)
    cfg.warmup = (5 if cuda else 2) if cfg.warmup is None else cfg.warmup
    _check_sizes(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg.threads = torch.get_num_threads()
    repro.seed_everything(cfg.seed, threads=None, deterministic=False)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    started = time.time()
    cands, x, y = _torch_candidates(cfg, device)
    if cfg.keras:
        cands += _keras_candidates(cfg, x, y)
    for c in cands:
        c.batch = cfg.batch_size
    log(f"warming up {len(cands)} models ({cfg.warmup} steps each)...")
    for c in cands:
        for _ in range(cfg.warmup):
            c.step()
        c.sync()
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    _time_interleaved(cands, cfg.steps, cfg.repeats, log)
    load1 = os.getloadavg() if hasattr(os, "getloadavg") else None
    memory_metric = _measure_memory(cands, device) if cfg.memory else "not measured (--no-memory)"

    peak = cfg.peak_tflops if cfg.peak_tflops is not None else (H100_BF16_DENSE_TFLOPS if cuda else None)
    peak_src = ("given with --peak-tflops" if cfg.peak_tflops is not None else
                "default: H100 SXM dense bf16 (NVIDIA datasheet); pass --peak-tflops for another GPU or for fp32/TF32"
                if cuda else None)
    results = []
    for c in cands:
        ips = [cfg.batch_size * cfg.steps / w for w in c.wall]
        med = statistics.median(ips)
        tflops = med * 3 * 2 * c.macs / 1e12
        results.append({
            "name": c.name, "framework": c.framework, "library": c.library, "variant": c.variant, "note": c.note,
            "images_per_s": med, "images_per_s_spread": _spread(ips),
            "images_per_cpu_s": statistics.median(cfg.batch_size * cfg.steps / t for t in c.cpu),
            "step_time_s_median": statistics.median(w / cfg.steps for w in c.wall),
            "peak_memory_mb": c.peak_memory_mb, "macs_per_image": c.macs, "train_flops_per_image": 6 * c.macs,
            "achieved_tflops": tflops,
            "fraction_of_peak": tflops / peak if (peak and c.framework == "pytorch" and (cuda or cfg.peak_tflops)) else None,
        })
    by_name = {c.name: c for c in cands}
    ratios = [_ratio(by_name[f"ours[{v}]"], by_name[REFERENCE], cfg.batch_size, cfg.steps) for v in cfg.variants]
    if cfg.keras:
        ratios += [_ratio(by_name[f"ours[{v}]"], by_name[f"keras[{v}]"], cfg.batch_size, cfg.steps) for v in cfg.variants]
    like = next((q for q in ratios if q["of"] == "ours[torchvision]" and q["over"] == REFERENCE), None)
    result = {
        "benchmark": "googlenet_train_step",
        "what": "forward + backward + SGD(momentum 0.9) step, aux heads on, loss = main + 0.3 * (aux1 + aux2), synthetic batch",
        "config": {k: v for k, v in vars(cfg).items() if k not in ("json_out", "func")},
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else f"CPU ({_cpu_name()})",
        "results": results,
        "ratios": ratios,
        "ratio": like["median"] if like else None,
        "ratio_definition": ("images/s of ours[torchvision] over torchvision's, median over interleaved rounds "
                             "(> 1 = ours faster)"),
        "memory_metric": memory_metric,
        "flops_note": FLOPS_NOTE,
        "peak_tflops": peak,
        "peak_tflops_source": peak_src,
        "load_average": load0,
        "load_average_after": load1,
        "hardware": {**repro.hardware(), "cpu_model": _cpu_name()},
        "versions": repro.versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_time_s": time.time() - started,
    }
    if cfg.profile:
        result["profile"] = profile_ops(cands, cfg.steps, device)
    return result


def main(argv: Optional[list[str]] = None) -> int:
    """Run the benchmark from the command line; returns the exit status (2 on a bad setting)."""
    parser = build_parser()
    try:
        cfg = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as e:  # --help (0) or a malformed option (2, message already printed)
        return int(e.code or 0) if not isinstance(e.code, str) else _EXIT_ERROR
    if cfg.json_out and not Path(cfg.json_out).parent.is_dir():
        print(f"{parser.prog}: error: --json {cfg.json_out}: folder {Path(cfg.json_out).parent} does not exist",
              file=sys.stderr)
        return _EXIT_ERROR
    try:
        result = run(cfg, log=lambda s: print(s, flush=True))
    except BenchError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return _EXIT_ERROR
    print()
    print(report_text(result))
    if cfg.profile:
        print()
        print(result["profile"])
    if cfg.json_out:
        Path(cfg.json_out).write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"\nwrote {cfg.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

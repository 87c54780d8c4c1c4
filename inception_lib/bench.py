"""Is inception_lib's GoogLeNet as fast to train as torchvision's? A benchmark whose answer stays fair on a busy machine:
the models train (forward + backward + SGD, aux heads on, a fixed synthetic batch) INTERLEAVED in one process, in rotating
order, so noise hits them alike, and the ratio ours / torchvision is taken within each round. TensorFlow: ``--keras`` only."""

import argparse
import contextlib
import ctypes
import dataclasses
import gc
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from inception_lib import arithmetic, repro, spec

__all__ = ["main", "build_parser", "run", "Candidate"]

AUX_WEIGHT = spec.AUX_HEADS[0].loss_weight  # the paper's 0.3 for each auxiliary loss
REFERENCE = "torchvision"
FLOPS_NOTE = ("images/s x 2 x 3 x MACs/image: MACs of one inference pass (convolutions + fc, from inception_lib.arithmetic."
              "count_macs; aux heads, BN, pools not counted), 2 FLOPs per MAC, forward + backward is about 3 forwards")
MEMORY_NOTE = ("the smaller of two measurements of one training step: PyTorch on CUDA, torch.cuda.max_memory_allocated (weights, "
               "gradients, optimizer state, activations); on the host, the peak RSS minus the RSS before (Linux VmHWM reset "
               "via /proc/self/clear_refs, glibc malloc_trim first: activations, gradients, temporaries; '-': unavailable)")
_NOTES = {"torchvision": "same structure as torchvision (BN, 3x3 '5x5' branch, 2x2 pool4, adaptive aux pool): like for like",
          "bn": "BN, true 5x5 branch, 3x3/2 pool4, paper aux pool: more MACs than torchvision, not like for like",
          "paper": "LRN + conv bias (no BN), true 5x5 branch, 3x3/2 pool4: the paper's network, not like for like"}


class BenchError(ValueError):
    """A benchmark setting that cannot run (reported as one clear line, exit status 2)."""


def _number(kind: Callable[[str], Any], allow_zero: bool = False) -> Callable[[str], Any]:
    """An argparse type: ``kind(s)`` (int or float) that must be > 0, or >= 0 with ``allow_zero``."""
    def parse(s: str) -> Any:
        with contextlib.suppress(ValueError):
            if (v := kind(s)) > 0 or (allow_zero and v == 0):
                return v
        kinds = f"{'non-negative' if allow_zero else 'positive'} {'integer' if kind is int else 'number'}"
        raise argparse.ArgumentTypeError(f"must be a {kinds}, got {s!r}")
    return parse


def _variants(s: str) -> list[str]:
    names = list(dict.fromkeys(v.strip() for v in s.split(",") if v.strip()))
    if not names or any(v not in spec.VARIANTS for v in names):
        raise argparse.ArgumentTypeError(f"unknown variant(s) in {s!r}; choose from {sorted(spec.VARIANTS)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options (also reached as ``python -m inception_lib bench``)."""
    p = argparse.ArgumentParser(prog="python -m inception_lib bench", description=(
        "Training-step throughput (images/s) and peak memory of inception_lib's PyTorch GoogLeNet against torchvision's "
        "googlenet(weights=None, aux_logits=True, init_weights=True), interleaved in one process; optionally Keras too."))
    a, pos = p.add_argument, _number(int)
    a("--device", default="auto", help="auto (cuda if available) | cpu | cuda | cuda:N (default auto)")
    a("--batch-size", dest="batch_size", type=pos, default=32, help="images per step (default 32)")
    a("--resolution", type=pos, help="square input side (default 224 on CUDA, 96 on CPU)")
    a("--channels", type=pos, default=3, help="input channels (default 3; torchvision's conv1 is rebuilt for others)")
    a("--num-classes", dest="num_classes", type=pos, default=1000, help="classes (default 1000)")
    a("--steps", type=pos, help="timed steps per model per round (default 20 on CUDA, 2 on CPU)")
    a("--warmup", type=_number(int, allow_zero=True), help="untimed steps per model first (default 5 on CUDA, 2 on CPU)")
    a("--repeats", type=pos, default=5, help="interleaved rounds (default 5)")
    a("--variants", type=_variants, default=list(spec.VARIANTS),
      help=f"inception_lib variants to compare with torchvision, comma-separated (default {','.join(spec.VARIANTS)})")
    a("--dtype", choices=("fp32", "bf16"), default="fp32", help="fp32, or bf16 autocast (Keras: mixed_bfloat16)")
    a("--channels-last", dest="channels_last", action="store_true", help="channels-last models and batch")
    a("--compile", action="store_true", help="torch.compile every PyTorch model (Keras: jit_compile=True)")
    a("--keras", action="store_true", help="also time Keras train_on_batch for each variant (imports tensorflow)")
    a("--threads", type=pos, help="CPU threads for torch (and TF) (default: torch's)")
    a("--lr", type=_number(float), default=0.01, help="SGD learning rate (default 0.01; momentum 0.9)")
    a("--seed", type=int, default=0, help="random seed (default 0)")
    a("--no-memory", dest="memory", action="store_false", help="skip the peak-memory measurement")
    a("--json", dest="json_out", metavar="OUT", help="write the results (with hardware and versions) as JSON")
    return p


@dataclasses.dataclass
class Candidate:
    """One model under test: what it is, a callable running one training step, and its wall time per round."""

    name: str
    framework: str  # "pytorch" or "keras"
    library: str  # "torchvision" or "inception_lib"
    variant: str  # the inception_lib variant whose structure it has
    note: str
    step: Callable[[], Any] = dataclasses.field(repr=False, default=lambda: None)
    wall: list[float] = dataclasses.field(default_factory=list)  # seconds per round
    peak_memory_mb: Optional[float] = None


def _resolve_device(name: str) -> Any:
    import torch

    name = ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name
    if name != "cpu" and not re.fullmatch(r"cuda(:\d+)?", name):
        raise BenchError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    if name != "cpu" and not torch.cuda.is_available():
        raise BenchError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    if (dev := torch.device(name)).type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise BenchError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev


def _torch_candidates(cfg: argparse.Namespace, device: Any) -> tuple[list[Candidate], Any, Any]:
    import torch
    import torch.nn.functional as F
    import torchvision

    from inception_lib.pytorch import GoogLeNet

    gen = torch.Generator().manual_seed(cfg.seed)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    x = torch.randn(cfg.batch_size, cfg.channels, cfg.resolution, cfg.resolution, generator=gen).to(device, memory_format=fmt)
    y = torch.randint(0, cfg.num_classes, (cfg.batch_size,), generator=gen).to(device)

    def candidate(name: str, library: str, variant: str, note: str, model: Any) -> Candidate:
        model = model.to(device, memory_format=fmt).train()
        model = torch.compile(model) if cfg.compile else model
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)

        def step() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.dtype == "bf16"):
                out = model(x)  # ours: (logits, aux1, aux2); torchvision: (logits, aux2, aux1); the loss is symmetric
                loss = F.cross_entropy(out[0], y) + AUX_WEIGHT * (F.cross_entropy(out[1], y) + F.cross_entropy(out[2], y))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return Candidate(name, "pytorch", library, variant, note, step)

    torch.manual_seed(cfg.seed)
    tv = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True, num_classes=cfg.num_classes)
    if cfg.channels != 3:  # torchvision hard-codes RGB; same conv, other input width
        tv.conv1.conv = torch.nn.Conv2d(cfg.channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    out = [candidate(REFERENCE, "torchvision", "torchvision",
                     "torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)", tv)]
    for v in cfg.variants:
        torch.manual_seed(cfg.seed)
        model = GoogLeNet(cfg.num_classes, aux_logits=True, variant=v, in_channels=cfg.channels, image_size=cfg.resolution)
        out.append(candidate(f"ours[{v}]", "inception_lib", v, _NOTES[v], model))
    return out, x, y


def _keras_candidates(cfg: argparse.Namespace, x: Any, y: Any) -> list[Candidate]:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    repro.seed_everything(cfg.seed, threads=cfg.threads, tensorflow=True, deterministic=False)  # starts TF, its threads too
    import keras
    import tensorflow as tf

    from inception_lib.keras import GoogLeNet

    if cfg.dtype == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    xk = tf.constant(x.detach().float().cpu().permute(0, 2, 3, 1).contiguous().numpy())  # Keras is channels_last
    yk = tf.constant(y.detach().cpu().numpy())
    where = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    out = []
    for v in cfg.variants:
        model = GoogLeNet(cfg.num_classes, aux_logits=True, variant=v, input_shape=(cfg.resolution, cfg.resolution, cfg.channels))
        model.compile(optimizer=keras.optimizers.SGD(cfg.lr, momentum=0.9), loss=[loss, loss, loss],
                      loss_weights=[1.0, AUX_WEIGHT, AUX_WEIGHT], jit_compile=True if cfg.compile else "auto")
        out.append(Candidate(f"keras[{v}]", "keras", "inception_lib", v, f"inception_lib.keras (NHWC), train_on_batch on "
                             f"TensorFlow ({where})", lambda model=model: model.train_on_batch(xk, (yk, yk, yk))))
    return out


def _peak_memory_mb(c: Candidate, device: Any, sync: Callable[[], Any]) -> Optional[float]:
    """MiB for one training step: max_memory_allocated for PyTorch on CUDA, else the peak RSS's rise (Linux); or None."""
    def kb(field: str) -> int:
        return next(int(ln.split()[1]) for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith(field))
    gc.collect()
    if device.type == "cuda" and c.framework == "pytorch":
        import torch

        sync()
        torch.cuda.reset_peak_memory_stats(device)
        c.step()
        sync()
        return torch.cuda.max_memory_allocated(device) / 2**20
    with contextlib.suppress(OSError, AttributeError):  # return freed memory glibc keeps, so RSS before is honest
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        before = kb("VmRSS:")
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    except OSError:
        return None
    c.step()
    return (kb("VmHWM:") - before) / 1024


def _time_interleaved(cands: list[Candidate], cfg: argparse.Namespace, sync: Callable[[], Any],
                      log: Callable[[str], Any]) -> list[float]:
    """Warm every model up, then time ``cfg.repeats`` rounds; returns the 1-minute load average before and after."""
    log(f"warming up {len(cands)} models ({cfg.warmup} steps each)...")
    for c in cands:
        for _ in range(cfg.warmup):
            c.step()
        sync()
    load = [os.getloadavg()[0]]
    for r in range(cfg.repeats):
        for c in cands[r % len(cands):] + cands[:r % len(cands)]:  # rotate: every model takes every position in turn
            sync()
            t0 = time.perf_counter()
            for _ in range(cfg.steps):
                c.step()
            sync()
            c.wall.append(time.perf_counter() - t0)
        speeds = (f"{c.name} {cfg.batch_size * cfg.steps / c.wall[-1]:.1f} img/s" for c in cands)
        log(f"  round {r + 1}/{cfg.repeats}: {', '.join(speeds)}")
    return [*load, os.getloadavg()[0]]


def _spread(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": list(values)}


def _ratio(a: Candidate, b: Candidate) -> dict[str, Any]:
    """Images/s of ``a`` over ``b`` in each round (both timed in the same round), and their median, min and max."""
    return {"of": a.name, "over": b.name, **_spread([wb / wa for wa, wb in zip(a.wall, b.wall)])}


def report_text(result: dict[str, Any]) -> str:
    """The result for a terminal: the setting, a table per model, the ratios, and how each number was measured."""
    cfg, cuda, res = result["config"], result["device"].startswith("cuda"), result["results"]
    lines = [f"GoogLeNet training step: {result['what']}",
             "device {}, {threads} thread(s); batch {batch_size}, {resolution}x{resolution}x{channels}, {num_classes} classes, "
             "{dtype}{}{}; {repeats} interleaved rounds x {steps} steps (+{warmup} warmup) per model".format(
                 result["device_name"], ", channels-last" * cfg["channels_last"], ", torch.compile" * cfg["compile"], **cfg)]
    load = max(result["load_average"])
    swing = max(r["images_per_s_spread"]["max"] / r["images_per_s_spread"]["min"] for r in res)
    if load > (os.cpu_count() or 1) or swing > 1.5:
        lines.append(f"note: load average {load:.1f} on {os.cpu_count()} CPUs, throughput varied up to {swing:.1f}x between "
                     "rounds: trust the per-round ratios' median over single numbers, or rerun with more --repeats"
                     + ("; --threads 1 gives steadier numbers" if cfg["threads"] > 1 and not cuda else ""))
    (unit, scale), w = ("TFLOP/s", 1) if cuda else ("GFLOP/s", 1e3), max(len(r["name"]) for r in res)
    lines += ["", f"{'model':{w}}  img/s median  {'[min, max]':>20}  peak mem MiB  {unit}"]
    for r in res:
        s, mem = r["images_per_s_spread"], "-" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f}"
        span = f"[{s['min']:.2f}, {s['max']:.2f}]"
        lines.append(f"{r['name']:{w}}  {s['median']:12.2f}  {span:>20}  {mem:>12}  {r['achieved_tflops'] * scale:7.1f}")
    notes, w = {r["name"]: r["note"] for r in res}, max(len(q["of"] + q["over"]) + 3 for q in result["ratios"])
    lines += ["", "ratios (images/s of the first over the second, per round; > 1 = the first is faster):",
              f"{'ratio':{w}}  median      [min, max]  what is compared"]
    for q in result["ratios"]:
        span, what = f"[{q['min']:.3f}, {q['max']:.3f}]", notes[q["of"]] if q["over"] == REFERENCE else "PyTorch over Keras"
        lines.append(f"{q['of'] + ' / ' + q['over']:{w}}  {q['median']:6.3f}  {span:>14}  {what}")
    return "\n".join([*lines, "", f"peak memory: {result['memory_metric']}", f"{unit}: {FLOPS_NOTE}"])


def run(cfg: argparse.Namespace, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Build the models, time them interleaved, measure memory; returns the result (what ``--json`` writes)."""
    import torch
    import torchvision  # noqa: F401 - torch / torchvision before tensorflow, or the process aborts

    device = _resolve_device(cfg.device)
    cuda = device.type == "cuda"
    cfg.resolution, cfg.steps = cfg.resolution or (224 if cuda else 96), cfg.steps or (20 if cuda else 2)
    cfg.warmup = (5 if cuda else 2) if cfg.warmup is None else cfg.warmup
    for v in dict.fromkeys([*cfg.variants, REFERENCE]):  # torchvision's own model has the "torchvision" structure
        if cfg.resolution < (need := arithmetic.min_input_size(v, aux_logits=True)):
            raise BenchError(f"--resolution {cfg.resolution} is too small for the {v!r} variant with its aux heads (minimum "
                             f"{need}); use a larger --resolution{'' if v == REFERENCE else ' or --variants torchvision'}")
    torch.set_num_threads(cfg.threads or torch.get_num_threads())
    cfg.threads = torch.get_num_threads()
    torch.backends.cudnn.benchmark = torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = cuda
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    started = time.time()
    cands, x, y = _torch_candidates(cfg, device)
    cands += _keras_candidates(cfg, x, y) if cfg.keras else []
    load_average = _time_interleaved(cands, cfg, sync, log)
    for c in cands if cfg.memory else []:  # the smaller of two: allocator caching and fragmentation only ever add memory
        measured = [_peak_memory_mb(c, device, sync) for _ in range(2)]
        c.peak_memory_mb = min((m for m in measured if m is not None), default=None)
    results = []
    for c in cands:  # name, framework, library, variant, note, peak_memory_mb; then the speeds and arithmetic
        ips = _spread([cfg.batch_size * cfg.steps / w for w in c.wall])
        macs = arithmetic.count_macs(c.variant, cfg.num_classes, cfg.resolution, cfg.channels)
        results.append({**{k: v for k, v in vars(c).items() if k not in ("step", "wall")}, "images_per_s": ips["median"],
                        "images_per_s_spread": ips, "macs_per_image": macs, "train_flops_per_image": 6 * macs,
                        "achieved_tflops": ips["median"] * 6 * macs / 1e12})
    by_name = {c.name: c for c in cands}
    pairs = [(v, REFERENCE) for v in cfg.variants] + [(v, f"keras[{v}]") for v in cfg.variants if cfg.keras]
    ratios = [_ratio(by_name[f"ours[{v}]"], by_name[other]) for v, other in pairs]
    return {"what": f"forward + backward + SGD (momentum 0.9), aux heads on, loss = main + {AUX_WEIGHT:g} x (aux1 + aux2), "
                    "synthetic batch",
            "config": {k: v for k, v in vars(cfg).items() if k != "json_out"}, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if cuda else f"CPU ({repro.cpu_info().get('cpu_model', '?')})",
            "results": results, "ratios": ratios,  # "ratio": ours[torchvision] / torchvision, median over the rounds
            "ratio": ratios[cfg.variants.index(REFERENCE)]["median"] if REFERENCE in cfg.variants else None,
            "memory_metric": MEMORY_NOTE if cfg.memory else "not measured (--no-memory)", "flops_note": FLOPS_NOTE,
            "load_average": load_average, "hardware": repro.hardware(), "versions": repro.versions(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)), "wall_time_s": time.time() - started}


def main(argv: Optional[list[str]] = None) -> int:
    """Run the benchmark from the command line; returns the exit status (2 on a bad setting)."""
    parser = build_parser()
    try:
        cfg = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as e:  # --help (0) or a malformed option (2, message already printed)
        return 2 if isinstance(e.code, str) else int(e.code or 0)
    try:
        if cfg.json_out and not Path(cfg.json_out).parent.is_dir():
            raise BenchError(f"--json {cfg.json_out}: folder {Path(cfg.json_out).parent} does not exist")
        result = run(cfg, log=lambda s: print(s, flush=True))
    except BenchError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    print(f"\n{report_text(result)}")
    if cfg.json_out:
        Path(cfg.json_out).write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"\nwrote {cfg.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

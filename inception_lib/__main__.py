"""Command line: ``python -m inception_lib {train,evaluate,table1,table3,export-weights,bench} ...``.

Examples::

    python -m inception_lib train --variant bn --resolution 96 --epochs 10 --out runs/bn96
    python -m inception_lib train --out runs/bn96 --resume --epochs 20         # continue, same config
    python -m inception_lib evaluate runs/bn96/best.pt --split test --crops 10
    python -m inception_lib table1
    python -m inception_lib table3 runs/s0/last.pt runs/s1/last.pt --n 500 --out table3.json
    python -m inception_lib export-weights runs/bn96 --name fashion_mnist --record book/results/bn96.json
    torchrun --standalone --nproc_per_node 8 -m inception_lib train ...         # data-parallel

Nothing heavy is imported until a command runs (``--help`` and ``table1`` import neither torch nor
tensorflow); ``--framework keras`` imports torch, when installed, before tensorflow (the other order aborts the
process). A refusal (a damaged or missing checkpoint, a framework not installed, a run folder in the way, another
architecture) is one line ``inception_lib CMD: error: ...`` on stderr and exit status 2, without a traceback;
a damaged checkpoint is found before any framework is imported, and nothing on disk changes.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from inception_lib import __version__, runfiles

_EXIT_ERROR = 2
_TRAIN_EPILOG = """\
Only the options given override the starting config: the defaults of TrainConfig, a --config JSON file, or
(with --resume) the run's own OUT/config.json, so `train --out DIR --resume --epochs 20` continues a run.
batch-size is the global batch under torchrun. Exit status 2 on a refused or failed run (message on stderr).
"""


def _positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


def _add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train GoogLeNet (PyTorch or Keras) and write a run folder",
                       description="Train GoogLeNet; writes config.json, history.json/csv and checkpoints to --out. "
                                   "One option per TrainConfig field.",
                       epilog=_TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                       argument_default=argparse.SUPPRESS)
    a = p.add_argument
    a("--config", dest="config_file", metavar="JSON", help="start from this TrainConfig JSON (e.g. a run's config.json)")
    add_config_options(p)
    a("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    a("--overwrite", action="store_true", help="start again in an --out that already holds a run (its files go)")
    a("--test", action="store_true", help="evaluate the final model on the test split once, at the end")
    a("--progress", action=argparse.BooleanOptionalAction, help="progress bars (default: when on a terminal)")
    a("--quiet", action="store_true", help="no per-epoch summary lines")
    p.set_defaults(func=_cmd_train)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`~inception_lib.config.TrainConfig` field, typed, with the field's help and default."""
    import typing

    from inception_lib.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        meta = dict(f.metadata)
        kind = hints[f.name]
        args = [t for t in typing.get_args(kind) if t is not type(None)]
        if typing.get_origin(kind) is typing.Union:  # Optional[X]
            kind = args[0]
        text, default = meta.pop("help"), getattr(defaults, f.name)
        if default is not None and "default" not in text:
            text += f" (default {default})"
        kw: dict[str, Any] = {"dest": f.name, "help": text}
        flags = meta.pop("flags", ("--" + f.name.replace("_", "-"),))
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is typing.Literal:
            kw["choices"] = typing.get_args(kind)
        elif typing.get_origin(kind) is list:
            kw["type"] = typing.get_args(kind)[0]
        else:
            kw["type"] = kind
        kw.update(meta)  # choices, nargs
        parser.add_argument(*flags, **kw)


_RUN_FLAGS = ("config_file", "resume", "overwrite", "test", "progress", "quiet")


def _train_config(args: argparse.Namespace) -> Any:
    from inception_lib.config import TrainConfig

    given = {k: v for k, v in vars(args).items() if k not in (*_RUN_FLAGS, "func", "command")}
    base = TrainConfig()
    if getattr(args, "config_file", None):
        base = TrainConfig.load(args.config_file)
    elif getattr(args, "resume", False):
        stored = Path(given.get("out_dir", base.out_dir)) / "config.json"
        if stored.is_file():
            base = TrainConfig.load(stored)
    return dataclasses.replace(base, **given)


def _check_checkpoint_file(path: Path, framework: str) -> None:
    """Refuse a missing or damaged checkpoint before the framework is imported (seconds sooner; the trainers'
    readers check it again): FileNotFoundError or :class:`inception_lib.runfiles.CorruptCheckpointError`."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    runfiles.check_zip_archive(path, runfiles.CHECKPOINT_EXPECTED[framework])


def _cmd_train(args: argparse.Namespace) -> int:
    try:
        cfg = _train_config(args)
    except (ValueError, TypeError, OSError) as err:
        return _fail("train", err)
    opts = {"resume": getattr(args, "resume", False), "overwrite": getattr(args, "overwrite", False),
            "test": getattr(args, "test", False), "progress": getattr(args, "progress", None),
            "verbose": not getattr(args, "quiet", False)}
    if opts["resume"]:
        last = Path(cfg.out_dir) / ("last.keras" if cfg.framework == "keras" else "last.pt")
        if last.is_file():  # (a missing one: the trainer says so)
            _check_checkpoint_file(last, cfg.framework)
    runfiles.require_framework(cfg.framework, f"train --framework {cfg.framework}")  # torch before tensorflow
    if cfg.framework == "keras":
        from inception_lib.train_keras import train
    else:
        from inception_lib.train import train
    history = train(cfg, **opts)  # a refusal: one of _CLEAR_ERRORS, handled by main
    if opts["verbose"] and isinstance(history, dict) and os.environ.get("RANK", "0") == "0":
        print(f"run folder {cfg.out_dir}: {len(history.get('epochs', []))} epochs, status {history.get('status')}")
    return 0


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="evaluate a checkpoint (1, 10 or 144 crops)",
                       description="Top-1 / top-5 of a training checkpoint on a split, with the paper's multi-crop "
                                   "testing. The data come from the checkpoint's own config.")
    a = p.add_argument
    a("checkpoint", help="a last.pt / best.pt written by `train`")
    a("--split", choices=("val", "test"), default="test",
      help="default test (use val for any model selection; test once, at the end)")
    a("--crops", choices=("1", "center", "10", "144"), default="1", help="crops per image (default 1)")
    a("--weights", choices=("model", "ema"), default="model", help="the trained weights or their EMA (Polyak)")
    a("--device", default="auto", help="auto | cpu | cuda | mps")
    a("--batch-size", dest="batch_size", type=_positive_int, help="images per batch")
    a("--eval-subset", dest="eval_subset", type=_positive_int, help="only the first N images of the split")
    a("--data-root", dest="data_root", help="dataset folder (default: the one in the config)")
    a("--threads", type=_positive_int, help="CPU threads")
    a("--json", dest="json_out", metavar="PATH", help="also write the full result (per-class, confusion) as JSON")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    keras_run = str(args.checkpoint).endswith(".keras")  # a run of the Keras trainer
    _check_checkpoint_file(Path(args.checkpoint), "keras" if keras_run else "pytorch")
    runfiles.require_framework("keras" if keras_run else "pytorch", f"evaluate {Path(args.checkpoint).name}")
    if keras_run:
        evaluate_checkpoint = importlib.import_module("inception_lib.train_keras").evaluate_checkpoint
    else:
        import torch

        from inception_lib import train as T

        if args.threads:
            torch.set_num_threads(args.threads)
        evaluate_checkpoint = T.evaluate_checkpoint
    res = evaluate_checkpoint(args.checkpoint, args.split, args.crops, weights=args.weights, device=args.device,
                              batch_size=args.batch_size, eval_subset=args.eval_subset, data_root=args.data_root)
    line = (f"{args.checkpoint}: {args.split} split, {res.n} images, {args.crops} crop(s), {args.weights} weights: "
            f"top-1 {res.top1:.4f} (error {res.top1_error:.4f})")
    if res.top5 is not None:
        line += f", top-5 {res.top5:.4f} (error {res.top5_error:.4f})"
    print(line)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(res.to_dict(), indent=2) + "\n")
    return 0


def _add_table3(sub: Any) -> None:
    p = sub.add_parser("table3", help="the paper's Table 3 on trained runs: models x crops -> cost, error",
                       description="Each checkpoint alone and their ensemble (averaged softmax), with 1, 10 and 144 "
                                   "crops (the paper's geometry scaled to the training resolution), on the first N "
                                   "images of a split; writes a JSON record with versions, hardware and wall times.")
    a = p.add_argument
    a("checkpoints", nargs="+", help="last.pt files of runs with the same dataset and resolution")
    a("--names", help="comma-separated names of the checkpoints (default: their run folders)")
    a("--crops", default="1,10,144", help="comma-separated schemes among 1, center, 10, 144 (default 1,10,144)")
    a("--split", choices=("val", "test"), default="test")
    a("--n", type=_positive_int, default=500, help="the first N images of the split (default 500)")
    a("--weights", choices=("model", "ema"), default="model", help="the trained weights or their EMA")
    a("--device", default="auto")
    a("--threads", type=_positive_int, help="CPU threads")
    a("--out", required=True, help="the JSON record to write")
    p.set_defaults(func=_cmd_table3)


def _cmd_table3(args: argparse.Namespace) -> int:
    for c in args.checkpoints:
        _check_checkpoint_file(Path(c), "pytorch")
    runfiles.require_framework("pytorch", "table3")
    import torch

    from inception_lib import table3

    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.names.split(",") if args.names else None

    def show(row: dict[str, Any]) -> None:
        print(f"{'+'.join(row['models'])}: {row['crops']} crop(s), cost {row['cost']}, top-1 error "
              f"{row['top1_error']:.4f} on {row['n']} images", flush=True)

    doc = table3.table3(args.checkpoints, crops=args.crops.split(","), split=args.split, n=args.n,
                        weights=args.weights, device=args.device, names=names, on_row=show)
    table3.write(doc, args.out)
    return 0


def _add_export(sub: Any) -> None:
    p = sub.add_parser("export-weights", help="ship a finished run's weights (float16 safetensors + entry)",
                       description="Write RUN/last.pt's weights (the EMA when better on validation) as "
                                   "OUT/NAME.safetensors with OUT/NAME.json: sha256, dataset, transforms, the "
                                   "file's own test accuracy (whole test split), the run record.")
    a = p.add_argument
    a("run", help="a completed run folder")
    a("--name", required=True, help="the weights' name (GoogLeNet.from_pretrained(NAME))")
    a("--record", help="the run record in the repository, e.g. book/results/RUN.json")
    a("--weights", choices=("auto", "model", "ema"), default="auto")
    a("--out", default=None, help="folder (default: the package's weights/ folder)")
    a("--threads", type=_positive_int, help="CPU threads")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    _check_checkpoint_file(Path(args.run) / "last.pt", "pytorch")
    runfiles.require_framework("pytorch", "export-weights", modules=("torch", "safetensors"))
    import torch

    from inception_lib import pretrained

    if args.threads:
        torch.set_num_threads(args.threads)
    kw = {"out_dir": args.out} if args.out else {}
    w = pretrained.export(args.run, args.name, record=args.record, weights=args.weights, **kw)
    m = w.meta
    print(f"{w.path}: {m['weights']} weights, {m['num_params']:,} parameters, test top-1 "
          f"{m['metrics']['test_top1']:.4f} ({m['metrics']['test_n']} images), sha256 {w.sha256}")
    return 0


def _add_table1(sub: Any) -> None:
    p = sub.add_parser("table1", help="print Table 1 recomputed, the paper's printed params/ops beside it",
                       description="Table 1 of the paper recomputed from inception_lib.spec (paper variant): exact "
                                   "weights and multiply-adds beside the printed columns; '!' marks a printed value "
                                   "more than 5% off the exact one (in K = 1000 or 1024 for params, M = 1e6 for ops).")
    p.add_argument("--image-size", dest="image_size", type=_positive_int, default=224, help="input side (default 224)")
    p.add_argument("--num-classes", dest="num_classes", type=_positive_int, default=1000, help="classes (default 1000)")
    p.set_defaults(func=_cmd_table1)


def _off(exact: float, printed: str, units: Sequence[float]) -> bool:
    if not printed:
        return False
    value = float(printed.rstrip("KM"))
    return all(abs(exact / u - value) > 0.05 * max(exact / u, 1e-12) for u in units)


def table1_text(image_size: int = 224, num_classes: int = 1000) -> str:
    """Table 1 as text: exact numbers from :mod:`inception_lib.arithmetic` beside the printed ones."""
    from inception_lib import arithmetic

    rows = arithmetic.table1(image_size, num_classes)
    totals = arithmetic.table1_totals(rows)
    head = ("name", "type", "patch", "output", "depth", "#1x1", "#3x3r", "#3x3", "#5x5r", "#5x5", "pool",
            "params (exact)", "printed", "ops (exact)", "printed")
    body = []
    for r in rows:
        f = [str(v) for v in r.filters] + [""] * (6 - len(r.filters))
        h, w, c = r.output_size
        p_flag = "!" if _off(r.weights, r.printed_params, (1000, 1024)) else ""
        o_flag = "!" if _off(r.macs, r.printed_ops, (1e6,)) else ""
        body.append((r.name, r.type, r.patch, f"{h}x{w}x{c}", str(r.depth or ""), *f,
                     f"{r.weights:,}" if r.weights else "", f"{r.printed_params}{p_flag}",
                     f"{r.macs:,}" if r.macs else "", f"{r.printed_ops}{o_flag}"))
    body.append(("total", "", "", "", str(int(totals["depth"])), "", "", "", "", "", "",
                 f"{int(totals['weights']):,}", f"{totals['printed_params_k']:g}K",
                 f"{int(totals['macs']):,}", f"{totals['printed_ops_m']:g}M"))
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    numeric = set(range(4, len(head)))

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))).rstrip()

    title = (f"Table 1 (Szegedy et al. 2014) recomputed: paper variant, {image_size}x{image_size}x3 input, "
             f"{num_classes} classes; params = weights (no biases), ops = multiply-adds")
    note = ("'!' = the printed value is more than 5% off the exact one (params read as K = 1000 or 1024, "
            "ops as M = 1e6); the totals' printed column is the sum of the printed cells")
    return "\n".join([title, fmt(head), *(fmt(r) for r in body), note])


def _cmd_table1(args: argparse.Namespace) -> int:
    print(table1_text(args.image_size, args.num_classes))
    return 0


_BENCH_HELP = "throughput benchmarks (inception_lib.bench; its own --help lists the options)"


def _run_bench(argv: Sequence[str]) -> int:
    from inception_lib import bench

    if not any(a in ("-h", "--help") for a in argv):
        runfiles.require_framework("pytorch", "bench", modules=("torch", "torchvision"))
        if "--keras" in argv:
            runfiles.require_framework("keras", "bench --keras")
    rc = bench.main(list(argv))
    return int(rc or 0)


_CLEAR_ERRORS = (runfiles.MissingFrameworkError, ValueError, FileNotFoundError, FileExistsError, FloatingPointError)
"""Refusals whose message says what is wrong and what to do (a damaged checkpoint, a missing framework, a run
folder in the way, a mismatched architecture, a diverged loss): one line on stderr, exit status 2. Anything
else is a bug and keeps its traceback."""


def _fail(command: str, err: BaseException) -> int:
    print(f"inception_lib {command}: error: {err}", file=sys.stderr)
    return _EXIT_ERROR


def build_parser() -> argparse.ArgumentParser:
    """The CLI's parser (``bench`` is dispatched before parsing so its own options pass through)."""
    parser = argparse.ArgumentParser(prog="python -m inception_lib",
                                     description="GoogLeNet / Inception v1 (Going Deeper with Convolutions): train, "
                                                 "evaluate, Table 1, benchmarks.")
    parser.add_argument("--version", action="version", version=f"inception_lib {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,evaluate,table1,table3,export-weights,bench}",
                                required=True)
    _add_train(sub)
    _add_evaluate(sub)
    _add_table1(sub)
    _add_table3(sub)
    _add_export(sub)
    sub.add_parser("bench", help=_BENCH_HELP, add_help=False)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else ""
    try:
        if command == "bench":
            return _run_bench(argv[1:])
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except _CLEAR_ERRORS as err:
        return _fail(command, err)


if __name__ == "__main__":
    sys.exit(main())

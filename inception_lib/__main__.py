"""Command line: ``python -m inception_lib {train,evaluate,table1,table3,export-weights,bench} ...``.

Examples::

    python -m inception_lib train --variant bn --resolution 96 --epochs 10 --out runs/bn96
    python -m inception_lib train --out runs/bn96 --resume --epochs 20         # continue, same config
    python -m inception_lib evaluate runs/bn96/best.pt --split test --crops 10
    python -m inception_lib table3 runs/s0/last.pt runs/s1/last.pt --n 500 --out table3.json
    python -m inception_lib export-weights runs/bn96 --name fashion_mnist --record book/results/bn96.json
    torchrun --standalone --nproc_per_node 8 -m inception_lib train ...         # data-parallel

Nothing heavy is imported until a command runs (``--help`` and ``table1`` import neither torch nor tensorflow;
torch always before tensorflow, as the other order aborts the process). A refusal (a damaged or missing checkpoint,
a framework not installed, a run folder in the way, another architecture) is one line
``inception_lib CMD: error: ...`` on stderr and exit status 2, found before anything on disk changes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from pathlib import Path
from typing import Any, Optional, Sequence

from inception_lib import __version__, runfiles

_CLEAR_ERRORS = (runfiles.MissingFrameworkError, ValueError, FileNotFoundError, FileExistsError, FloatingPointError)
"""Refusals whose message says what is wrong and what to do: one line on stderr, exit status 2. Anything else is a
bug and keeps its traceback."""
_RUN_FLAGS = ("config_file", "resume", "overwrite", "test", "progress", "quiet")


def _positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


_SHARED = {  # options several commands take, spelled once
    "--split": {"choices": ("val", "test"), "default": "test",
                "help": "default test (use val for any model selection; test once, at the end)"},
    "--weights": {"choices": ("model", "ema"), "default": "model", "help": "the trained weights or their EMA (Polyak)"},
    "--device": {"default": "auto", "help": "auto | cpu | cuda | mps"},
    "--threads": {"type": _positive_int, "help": "CPU threads"},
}


def _command(sub: Any, name: str, func: Any, help: str, description: str, *shared: str, **kw: Any) -> Any:
    p = sub.add_parser(name, help=help, description=description, **kw)
    for flag in shared:
        p.add_argument(flag, **_SHARED[flag])
    p.set_defaults(func=func)
    return p


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`~inception_lib.config.TrainConfig` field, typed, with the field's help and default."""
    from inception_lib.config import TrainConfig

    hints, defaults = typing.get_type_hints(TrainConfig), TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        meta, kind = dict(f.metadata), hints[f.name]
        if typing.get_origin(kind) is typing.Union:  # Optional[X]
            kind = next(t for t in typing.get_args(kind) if t is not type(None))
        text, default = meta.pop("help"), getattr(defaults, f.name)
        kw: dict[str, Any] = {"dest": f.name, "help": text if default is None or "default" in text
                              else f"{text} (default {default})"}
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is typing.Literal:
            kw["choices"] = typing.get_args(kind)
        else:
            kw["type"] = typing.get_args(kind)[0] if typing.get_origin(kind) is list else kind
        parser.add_argument(*meta.pop("flags", ("--" + f.name.replace("_", "-"),)), **kw, **meta)


def _check_checkpoint_file(path: Path, framework: str) -> None:
    """Refuse a missing or damaged checkpoint before the framework is imported (the trainers check it again)."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    runfiles.check_zip_archive(path, runfiles.CHECKPOINT_EXPECTED[framework])


def _set_threads(threads: Optional[int]) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _train_config(args: argparse.Namespace) -> Any:
    """The starting config (--config, else with --resume the run's own, else the defaults) and the options given."""
    from inception_lib.config import TrainConfig

    given = {k: v for k, v in vars(args).items() if k not in (*_RUN_FLAGS, "func", "command")}
    stored = Path(given.get("out_dir", TrainConfig.out_dir)) / "config.json"
    if getattr(args, "config_file", None):
        return dataclasses.replace(TrainConfig.load(args.config_file), **given)
    if getattr(args, "resume", False) and stored.is_file():
        return dataclasses.replace(TrainConfig.load(stored), **given)
    return TrainConfig(**given)


def _cmd_train(args: argparse.Namespace) -> int:
    opt = {k: getattr(args, k, None) for k in _RUN_FLAGS}
    try:
        cfg = _train_config(args)
    except (ValueError, TypeError, OSError) as err:
        return _fail("train", err)
    last = Path(cfg.out_dir) / ("last.keras" if cfg.framework == "keras" else "last.pt")
    if opt["resume"] and last.is_file():  # (a missing one: the trainer says so)
        _check_checkpoint_file(last, cfg.framework)
    runfiles.require_framework(cfg.framework, f"train --framework {cfg.framework}")  # torch before tensorflow
    if cfg.framework == "keras":
        from inception_lib.train_keras import train
    else:
        from inception_lib.train import train
    history = train(cfg, resume=bool(opt["resume"]), overwrite=bool(opt["overwrite"]), test=bool(opt["test"]),
                    progress=opt["progress"], verbose=not opt["quiet"])
    if not opt["quiet"] and isinstance(history, dict) and os.environ.get("RANK", "0") == "0":
        print(f"run folder {cfg.out_dir}: {len(history.get('epochs', []))} epochs, status {history.get('status')}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    framework = "keras" if str(args.checkpoint).endswith(".keras") else "pytorch"
    _check_checkpoint_file(Path(args.checkpoint), framework)
    runfiles.require_framework(framework, f"evaluate {Path(args.checkpoint).name}")  # torch before tensorflow
    if framework == "pytorch":
        _set_threads(args.threads)
    from inception_lib.evaluate import evaluate_checkpoint

    res = evaluate_checkpoint(args.checkpoint, args.split, args.crops, weights=args.weights, device=args.device,
                              batch_size=args.batch_size, eval_subset=args.eval_subset, data_root=args.data_root)
    top5 = "" if res.top5 is None else f", top-5 {res.top5:.4f} (error {res.top5_error:.4f})"
    print(f"{args.checkpoint}: {args.split} split, {res.n} images, {args.crops} crop(s), {args.weights} weights: "
          f"top-1 {res.top1:.4f} (error {res.top1_error:.4f}){top5}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(res.to_dict(), indent=2) + "\n")
    return 0


def _cmd_table3(args: argparse.Namespace) -> int:
    for c in args.checkpoints:
        _check_checkpoint_file(Path(c), "pytorch")
    runfiles.require_framework("pytorch", "table3")
    _set_threads(args.threads)
    from inception_lib import table3

    def show(row: dict[str, Any]) -> None:
        print(f"{'+'.join(row['models'])}: {row['crops']} crop(s), cost {row['cost']}, top-1 error "
              f"{row['top1_error']:.4f} on {row['n']} images", flush=True)

    doc = table3.table3(args.checkpoints, crops=args.crops.split(","), split=args.split, n=args.n, weights=args.weights,
                        device=args.device, names=args.names.split(",") if args.names else None, on_row=show)
    table3.write(doc, args.out)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    _check_checkpoint_file(Path(args.run) / "last.pt", "pytorch")
    runfiles.require_framework("pytorch", "export-weights", modules=("torch", "safetensors"))
    _set_threads(args.threads)
    from inception_lib import pretrained

    w = pretrained.export(args.run, args.name, record=args.record, weights=args.weights,
                          **({"out_dir": args.out} if args.out else {}))
    m = w.meta
    print(f"{w.path}: {m['weights']} weights, {m['num_params']:,} parameters, test top-1 "
          f"{m['metrics']['test_top1']:.4f} ({m['metrics']['test_n']} images), sha256 {w.sha256}")
    return 0


def _cmd_table1(args: argparse.Namespace) -> int:
    from inception_lib import arithmetic

    print(arithmetic.table1_text(args.image_size, args.num_classes))
    return 0


def _run_bench(argv: Sequence[str]) -> int:
    from inception_lib import bench

    if not any(a in ("-h", "--help") for a in argv):
        runfiles.require_framework("pytorch", "bench", modules=("torch", "torchvision"))
        if "--keras" in argv:
            runfiles.require_framework("keras", "bench --keras")
    return int(bench.main(list(argv)) or 0)


def _fail(command: str, err: BaseException) -> int:
    print(f"inception_lib {command}: error: {err}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    """The CLI's parser (``bench`` is dispatched before parsing so its own options pass through)."""
    parser = argparse.ArgumentParser(prog="python -m inception_lib", description="GoogLeNet / Inception v1 (Going "
                                     "Deeper with Convolutions): train, evaluate, Table 1, benchmarks.")
    parser.add_argument("--version", action="version", version=f"inception_lib {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,evaluate,table1,table3,export-weights,bench}",
                                required=True)

    p = _command(sub, "train", _cmd_train, "train GoogLeNet (PyTorch or Keras) and write a run folder",
                 "Train GoogLeNet; writes config.json, history.json/csv and checkpoints to --out. One option per "
                 "TrainConfig field.", formatter_class=argparse.RawDescriptionHelpFormatter,
                 argument_default=argparse.SUPPRESS, epilog="Only the options given override the starting config: "
                 "the defaults of TrainConfig, a --config JSON file,\nor (with --resume) the run's own OUT/config.json, "
                 "so `train --out DIR --resume --epochs 20` continues a run.\nbatch-size is the global batch under "
                 "torchrun. Exit status 2 on a refused or failed run (message on stderr).")
    p.add_argument("--config", dest="config_file", metavar="JSON", help="start from this TrainConfig JSON (e.g. a "
                   "run's config.json)")
    add_config_options(p)
    a = p.add_argument
    a("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    a("--overwrite", action="store_true", help="start again in an --out that already holds a run (its files go)")
    a("--test", action="store_true", help="evaluate the final model on the test split once, at the end")
    a("--progress", action=argparse.BooleanOptionalAction, help="progress bars (default: when on a terminal)")
    a("--quiet", action="store_true", help="no per-epoch summary lines")

    p = _command(sub, "evaluate", _cmd_evaluate, "evaluate a checkpoint (1, 10 or 144 crops)",
                 "Top-1 / top-5 of a training checkpoint on a split, with the paper's multi-crop testing. The data "
                 "come from the checkpoint's own config.", "--split", "--weights", "--device", "--threads")
    a = p.add_argument
    a("checkpoint", help="a last.pt / best.pt / last.keras / best.keras written by `train`")
    a("--crops", choices=("1", "center", "10", "144"), default="1", help="crops per image (default 1)")
    a("--batch-size", dest="batch_size", type=_positive_int, help="images per batch")
    a("--eval-subset", dest="eval_subset", type=_positive_int, help="only the first N images of the split")
    a("--data-root", dest="data_root", help="dataset folder (default: the one in the config)")
    a("--json", dest="json_out", metavar="PATH", help="also write the full result (per-class, confusion) as JSON")

    p = _command(sub, "table1", _cmd_table1, "print Table 1 recomputed, the paper's printed params/ops beside it",
                 "Table 1 of the paper recomputed from inception_lib.spec (paper variant): exact weights and "
                 "multiply-adds beside the printed columns; '!' marks a printed value more than 5% off the exact one "
                 "(in K = 1000 or 1024 for params, M = 1e6 for ops).")
    p.add_argument("--image-size", dest="image_size", type=_positive_int, default=224, help="input side (default 224)")
    p.add_argument("--num-classes", dest="num_classes", type=_positive_int, default=1000, help="classes (default 1000)")

    p = _command(sub, "table3", _cmd_table3, "the paper's Table 3 on trained runs: models x crops -> cost, error",
                 "Each checkpoint alone and their ensemble (averaged softmax), with 1, 10 and 144 crops (the paper's "
                 "geometry scaled to the training resolution), on the first N images of a split; writes a JSON record "
                 "with versions, hardware and wall times.", "--split", "--weights", "--device", "--threads")
    a = p.add_argument
    a("checkpoints", nargs="+", help="last.pt files of runs with the same dataset and resolution")
    a("--names", help="comma-separated names of the checkpoints (default: their run folders)")
    a("--crops", default="1,10,144", help="comma-separated schemes among 1, center, 10, 144 (default 1,10,144)")
    a("--n", type=_positive_int, default=500, help="the first N images of the split (default 500)")
    a("--out", required=True, help="the JSON record to write")

    p = _command(sub, "export-weights", _cmd_export, "ship a finished run's weights (float16 safetensors + entry)",
                 "Write RUN/last.pt's weights (the EMA when better on validation) as OUT/NAME.safetensors with "
                 "OUT/NAME.json: sha256, dataset, transforms, the file's own test accuracy (whole test split), the "
                 "run record.", "--threads")
    a = p.add_argument
    a("run", help="a completed run folder")
    a("--name", required=True, help="the weights' name (GoogLeNet.from_pretrained(NAME))")
    a("--record", help="the run record in the repository, e.g. book/results/RUN.json")
    a("--weights", choices=("auto", "model", "ema"), default="auto")
    a("--out", default=None, help="folder (default: the package's weights/ folder)")

    sub.add_parser("bench", help="throughput benchmarks (inception_lib.bench; its own --help lists the options)",
                   add_help=False)
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

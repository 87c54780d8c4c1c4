"""The paper's Table 3 on trained runs: models x crops -> cost (forward passes per image) and error.

Section 7 of Szegedy et al. (2014) tests with 1, 10 or 144 crops per image and averages the softmax of up to 7
models. :func:`table3` does the same on the first ``n`` images of a split, every model on the same images: each
model alone and the ensemble of all of them, for each crop scheme. The crops are the paper's geometry scaled to
the training resolution (:func:`inception_lib.evaluate.eval_inputs`). ``python -m inception_lib table3`` writes
the record (with versions, hardware and wall times) that chapter 5 reads.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional, Sequence, Union

SCHEMA = "inception_lib.table3/1"


def table3(checkpoints: Sequence[Union[str, Path]], *, crops: Sequence[str] = ("1", "10", "144"),
           split: str = "test", n: Optional[int] = 500, weights: str = "model", device: str = "auto",
           names: Optional[Sequence[str]] = None, on_row: Any = None) -> dict[str, Any]:
    """The Table-3 record of ``checkpoints`` (training runs' ``last.pt``): one row per (models, crops).

    All checkpoints must share dataset and resolution (the crops are cut once per scheme for all of them).
    ``n`` = the first N images of the split (None: all). ``on_row(row)`` is called as each row is done.
    """
    import torch

    from inception_lib import evaluate as E
    from inception_lib import repro
    from inception_lib import train as T

    if not checkpoints:
        raise ValueError("table3 needs at least one checkpoint")
    for c in crops:
        if c not in E.SCHEMES:
            raise ValueError(f"crops must be among {E.SCHEMES}, got {c!r}")
    loaded = [T.load_checkpoint(c, weights=weights) for c in checkpoints]
    cfgs = [T.TrainConfig.from_dict(state["config"]) for _, state in loaded]
    keys = {(c.dataset, c.resolution, c.channels) for c in cfgs}
    if len(keys) != 1:
        raise ValueError(f"the checkpoints differ in dataset / resolution / channels: {sorted(keys, key=str)}; "
                         "make one table per group")
    names = list(names) if names is not None else [Path(c).parent.name for c in checkpoints]
    if len(names) != len(checkpoints):
        raise ValueError(f"{len(names)} names for {len(checkpoints)} checkpoints")
    dev = T.resolve_device(device)
    models = [m.to(dev).eval() for m, _ in loaded]
    ks = E.default_ks(int(models[0].num_classes))
    rows: list[dict[str, Any]] = []
    for scheme in crops:
        t0 = time.perf_counter()
        loader, kw = E.eval_inputs(cfgs[0], split, scheme, dev, eval_subset=n)
        with torch.no_grad():
            ens = E.evaluate_ensemble(models, loader, scheme, ks, device=dev, **kw)
        wall = time.perf_counter() - t0
        groups = [([i], m) for i, m in enumerate(ens.members or [])]
        if len(models) > 1:
            groups.append((list(range(len(models))), ens))
        for members, res in groups:
            row = {"models": [names[i] for i in members], "num_models": len(members), "crops": scheme,
                   "cost": res.cost, "n": res.n, "top1": res.top1, "top1_error": res.top1_error,
                   "top5_error": res.top5_error, "wall_time_s_all_models": wall}
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return {"schema": SCHEMA, "split": split, "n": rows[0]["n"], "images": f"the first {rows[0]['n']} of the split",
            "weights": weights, "checkpoints": [{"name": nm, "seed": c.seed, "resolution": c.resolution,
                                                 "augment": c.augment, "aux_weight": c.aux_weight}
                                                for nm, c in zip(names, cfgs)],
            "rows": rows, "versions": repro.versions(), "hardware": repro.hardware()}


def write(doc: dict[str, Any], path: Union[str, Path]) -> None:
    from inception_lib.runfiles import atomic_text

    atomic_text(Path(path), json.dumps(doc, indent=2) + "\n")

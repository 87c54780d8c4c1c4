"""Re-execute chapters top to bottom in a fresh kernel and store their outputs (what nbval then compares).

Usage: python scripts/store_outputs.py [book/03_inception_module.ipynb ...]   (default: every chapter)

Each notebook runs in its own folder with the ``python3`` kernel of this environment, as nbval runs it; no timing
metadata is stored. Output written straight to the kernel's file descriptors (TensorFlow's C++ start-up lines) goes
to this script's terminal, not into the notebook: nbval does not see it either. Run it only from a clean checkout
of the code the outputs are to describe.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def store(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(nb, kernel_name="python3", timeout=3600, record_timing=False,
                   extra_arguments=["--IPKernelApp.capture_fd_output=False"],
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    tmp = path.with_suffix(".ipynb.tmp")
    nbformat.write(nb, tmp)
    tmp.replace(path)  # atomic: an interrupted run leaves the stored notebook as it was
    return time.perf_counter() - t0


def main(argv: list[str]) -> None:
    paths = [Path(a).resolve() for a in argv] or sorted((ROOT / "book").glob("[0-9]*.ipynb"))
    for path in paths:
        print(f"{path.name}: {store(path):.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

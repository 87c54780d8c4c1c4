"""Run the chapters as Colab would: the executor half of .ci/colab_rehearsal.sh (which sets up the venv, the
Fashion-MNIST mirror, the kernelspec and the environment, then calls this with the main .venv's python).

For each notebook: reset the rehearsal venv to its base packages (a fresh Colab runtime: no inception_lib), copy
the notebook into its own working folder, point its install cell's git+https://... address at --install-from,
give it an empty download cache, and execute it top to bottom with nbclient in the rehearsal kernel. Then, with
--compare, every code cell's text outputs are compared with the stored ones as strict nbval compares them (stdout,
stderr and every text MIME type incl. glue records; images not; the sanitize file applied; cells tagged
nbval-ignore-output / nbval-skip and the install cell left out). Prints the time of each chapter (and of its
install cell); on an error or a difference, the chapter, the cell and what differs. Exit 1 when any chapter failed.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

INSTALL_URL = re.compile(r"git\+https?://[^\s\"'@]+@[\w./\-]+")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


SKIP_MIME = {"image/png", "image/jpeg", "application/vnd.jupyter.widget-view+json"}  # as nbval without nbdime
IGNORE_TAGS = {"nbval-ignore-output", "nbval-skip"}


def read_sanitizer(path: Path):
    """nbval's sanitize file: pairs of "regex: ..." / "replace: ..." lines, applied in order."""
    pairs, regex = [], None
    for line in path.read_text().splitlines():
        if line.startswith("regex:"):
            regex = line[len("regex:"):].strip()
        elif line.startswith("replace:") and regex is not None:
            pairs.append((re.compile(regex), line[len("replace:"):].strip()))
            regex = None

    def sanitize(text: str) -> str:
        for pattern, replacement in pairs:
            text = pattern.sub(replacement, text)
        return text

    return sanitize


def comparable(outputs: list, sanitize) -> dict[str, list[str]]:
    """A cell's outputs keyed as nbval keys them: streams coalesced by name, display data by MIME type."""
    keyed: dict[str, list[str]] = {}
    streams: dict[str, str] = {}
    for out in outputs:
        if out.output_type == "stream":
            streams[out.name] = streams.get(out.name, "") + out.text
        elif out.output_type in ("display_data", "execute_result"):
            for mime, value in out.get("data", {}).items():
                if mime not in SKIP_MIME:
                    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
                    keyed.setdefault(mime, []).append(sanitize(text))
        elif out.output_type == "error":
            keyed.setdefault("error", []).append(f"{out.ename}: {out.evalue}")
    for name, text in streams.items():
        keyed.setdefault(name, []).append(sanitize(text))
    return keyed


def compare(stored: nbformat.NotebookNode, ran: nbformat.NotebookNode, skip: set[int], sanitize) -> list[str]:
    """What differs between the stored outputs and a fresh run's, cell by cell (empty: nothing)."""
    problems = []
    for index, (ref, new) in enumerate(zip(stored.cells, ran.cells)):
        if ref.cell_type != "code" or index in skip or IGNORE_TAGS & set(ref.metadata.get("tags", [])):
            continue
        want, got = comparable(ref.outputs, sanitize), comparable(new.outputs, sanitize)
        if want == got:
            continue
        for key in sorted(set(want) | set(got)):
            a, b = "\n".join(want.get(key, [])), "\n".join(got.get(key, []))
            if a != b:
                diff = list(difflib.unified_diff(a.splitlines(), b.splitlines(), "stored", "this run", lineterm="", n=1))
                problems.append(f"cell {index} ({key}):\n" + "\n".join(diff[:24]))
    return problems


def _pip(venv: Path, *args: str) -> str:
    return subprocess.run([str(venv / "bin" / "python"), "-m", "pip", *args], check=True, text=True,
                          capture_output=True).stdout


def _pkg(line: str) -> str:
    return re.split(r"==| @ ", line, maxsplit=1)[0].strip().lower().replace("_", "-")


def reset_venv(venv: Path, cwd: Path) -> None:
    """Back to the packages of colab-base.txt: remove what a chapter's install added, restore what it changed."""
    base = [ln for ln in (venv / "colab-base.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    now = [ln for ln in _pip(venv, "freeze", "--all").splitlines() if ln and not ln.startswith("#")]
    base_names = {_pkg(ln) for ln in base}
    added = sorted({_pkg(ln) for ln in now} - base_names)
    if added:
        _pip(venv, "uninstall", "-y", "-q", *added)
    changed = sorted(set(base) - set(now))
    if changed:
        _pip(venv, "install", "-q", "--no-deps", *changed)
    probe = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import importlib.util, sys; sys.exit(importlib.util.find_spec('inception_lib') is not None)"],
                           cwd=cwd)  # not from the checkout, where '' on sys.path finds its inception_lib/
    if probe.returncode != 0:
        raise SystemExit(f"{venv} still has inception_lib after the reset: the install cells would not run")


def prepare(src: Path, work: Path, install_from: str) -> tuple[nbformat.NotebookNode, int]:
    """The notebook with its install address rewritten; returns it and the index of the install cell."""
    nb = nbformat.read(src, as_version=4)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    if not code:
        raise SystemExit(f"{src.name}: no code cell")
    first = nb.cells[code[0]]
    if len(INSTALL_URL.findall(first.source)) != 1 or "find_spec" not in first.source:
        raise SystemExit(f"{src.name}: the first code cell is not the install cell (one git+https:// address "
                         f"behind a find_spec guard):\n{first.source}")
    first.source = INSTALL_URL.sub(lambda _: install_from, first.source)
    for cell in nb.cells:  # a rehearsal starts from nothing, like a reader's fresh copy
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    work.mkdir(parents=True, exist_ok=True)
    results = src.parent / "results"  # the recorded runs a chapter reads (book/results/), beside the notebook
    if results.is_dir() and not (work / "results").exists():
        shutil.copytree(results, work / "results")
    return nb, code[0]


def run_one(src: Path, args: argparse.Namespace) -> bool:
    work = args.work / src.stem
    nb, install_index = prepare(src, work, args.install_from)
    os.environ["INCEPTION_LIB_CACHE"] = str(work / "cache")  # empty: each chapter downloads what it needs
    started: dict[int, float] = {}
    took: dict[int, float] = {}
    current = {"index": None}

    def on_start(cell: nbformat.NotebookNode, cell_index: int) -> None:
        current["index"] = cell_index
        started[cell_index] = time.monotonic()

    def on_done(cell: nbformat.NotebookNode, cell_index: int, execute_reply: dict | None = None) -> None:
        took[cell_index] = time.monotonic() - started.get(cell_index, time.monotonic())

    # capture_fd_output off, as the kernel nbval starts: C-level lines (TensorFlow's start-up log) stay out of outputs
    client = NotebookClient(nb, kernel_name=args.kernel, timeout=args.timeout, startup_timeout=180,
                            allow_errors=False, resources={"metadata": {"path": str(work)}},
                            extra_arguments=["--IPKernelApp.capture_fd_output=False"],
                            on_cell_start=on_start, on_cell_executed=on_done)
    print(f"== {src.name}: running", flush=True)
    t0 = time.monotonic()
    ok = True
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
        ok = False
        index = current["index"]
        kind = "code cell" if index is None else f"cell {index} (execution count {nb.cells[index].execution_count})"
        print(f"FAILED {src.name}: {kind}: {getattr(err, 'ename', None) or type(err).__name__}", flush=True)
        print(ANSI.sub("", str(err)), flush=True)
    finally:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, args.keep / src.name)
    if ok and args.compare:
        problems = compare(nbformat.read(src, as_version=4), nb, {install_index}, read_sanitizer(args.compare))
        if problems:
            ok = False
            print(f"FAILED {src.name}: {len(problems)} output(s) differ from the stored ones:", flush=True)
            print("\n".join(problems), flush=True)
    total = time.monotonic() - t0
    slow = sorted(took.items(), key=lambda kv: -kv[1])[:3]
    print(f"== {src.name}: {'ok' if ok else 'FAILED'} in {total:.0f} s (install cell {took.get(install_index, 0):.0f} s; "
          f"slowest cells: {', '.join(f'{i}: {t:.0f} s' for i, t in slow)})", flush=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--venv", type=Path, required=True)
    parser.add_argument("--install-from", required=True)
    parser.add_argument("--kernel", required=True)
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument("--keep", type=Path, help="write the executed notebooks here")
    parser.add_argument("--compare", type=Path, metavar="SANITIZE_FILE",
                        help="compare every output with the stored one, as strict nbval does, with this sanitize file")
    parser.add_argument("chapters", nargs="*", help="file-name prefixes (default: every notebook)")
    args = parser.parse_args(argv)
    notebooks = sorted(args.notebooks.glob("*.ipynb"))
    if args.chapters:
        notebooks = [p for p in notebooks if any(p.name.startswith(c) for c in args.chapters)]
    if not notebooks:
        print(f"colab rehearsal: no notebook in {args.notebooks} matches {args.chapters or '*.ipynb'}")
        return 1
    results = {}
    for src in notebooks:
        t0 = time.monotonic()
        args.work.mkdir(parents=True, exist_ok=True)
        reset_venv(args.venv, args.work)
        print(f"== {src.name}: venv reset in {time.monotonic() - t0:.0f} s", flush=True)
        results[src.name] = run_one(src, args)
    failed = [name for name, ok in results.items() if not ok]
    if failed:
        print(f"colab rehearsal: FAILED {', '.join(failed)}")
    print(f"rehearsal: {len(results) - len(failed)} passed, {len(failed)} failed")  # the closing line CI reads
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

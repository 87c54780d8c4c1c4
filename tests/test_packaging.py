"""The front door: pyproject.toml and environment.yml pin the same versions; the README's commands exist;
the Colab extra is slim and covers what the chapters import."""

import ast
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]

# What Colab has preinstalled that the chapters rely on (never installed or pinned by the `colab` extra).
COLAB_OWN = {"torch", "torchvision", "tensorflow", "keras", "numpy", "matplotlib", "IPython", "ipykernel"}
# Import name -> distribution of the `colab` extra.
COLAB_PROVIDES = {"myst_nb": "myst-nb", "tqdm": "tqdm", "PIL": "pillow"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].lower()


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_environment_yml_mirrors_pyproject():
    project = _project()
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    by_name: dict[str, set[str]] = {}
    for r in reqs:
        by_name.setdefault(_name(r), set()).add(r)
    assert all(len(v) == 1 for v in by_name.values()), f"extras disagree on a requirement: {by_name}"
    pip_lines = [line.strip()[2:].strip() for line in (ROOT / "environment.yml").read_text().splitlines()
                 if line.strip().startswith("- ") and line.startswith("      ")]
    pip_lines = [p for p in pip_lines if p != "-e ."]
    assert len(pip_lines) == len(set(pip_lines)), "environment.yml lists a requirement twice"
    assert set(reqs) == set(pip_lines), "environment.yml and pyproject.toml disagree"
    pinned = {_name(r) for r in reqs if "==" in r}
    assert {"torch", "torchvision", "tensorflow-cpu", "keras", "jupyter-book", "nbval"} <= pinned


def _code_imports(src: str) -> set[str]:
    """Top-level modules imported by a notebook cell or a module (IPython magics and shell lines blanked)."""
    lines = [re.sub(r"^(\s*)[%!].*$", r"\1pass", line) for line in src.splitlines()]
    out = set()
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_colab_extra_is_slim_and_covers_the_chapters_imports():
    colab = _project()["optional-dependencies"]["colab"]
    names = {_name(r) for r in colab}
    own = {"torch", "torchvision", "tensorflow", "tensorflow-cpu", "keras", "numpy", "matplotlib", "ipykernel",
           "ipython", "jupyter-book"}
    assert not names & own, f"the colab extra must leave Colab's own packages alone, found {names & own}"
    assert names == set(COLAB_PROVIDES.values()), f"colab extra {sorted(names)} vs {sorted(COLAB_PROVIDES.values())}"
    imports: dict[str, set[str]] = {}
    sources = [(p.name, "\n".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"]
                                  if c["cell_type"] == "code")) for p in sorted((ROOT / "book").glob("*.ipynb"))]
    sources += [(p.name, p.read_text()) for p in sorted((ROOT / "inception_lib").glob("*.py"))]
    assert any(name.endswith(".ipynb") for name, _ in sources)
    for name, src in sources:
        for module in _code_imports(src):
            imports.setdefault(module, set()).add(name)
    core = {_name(r) for r in _project()["dependencies"]}  # installed with inception_lib itself (numpy, safetensors)
    allowed = set(sys.stdlib_module_names) | COLAB_OWN | set(COLAB_PROVIDES) | core | {"inception_lib"}
    missing = {m: sorted(f) for m, f in imports.items() if m not in allowed}
    assert not missing, f"imported by the chapters or the library but neither Colab's nor in the colab extra: {missing}"


def _prerequisites(makefile: str, target: str) -> list[str]:
    match = re.search(rf"^{re.escape(target)}:(.*)$", makefile, re.M)
    assert match, f"the Makefile has no `{target}` target"
    return match.group(1).split()


def _runs(ci: str, target: str) -> bool:
    """.ci/run runs `make <target>`, directly or through its step helper (`step <target>`)."""
    return re.search(rf"^\s*(make|step)\s+{re.escape(target)}(?=\s|$)", ci, re.M) is not None


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "pytest --nbval book/" in makefile.replace("-m pytest", "pytest")
    parts = _prerequisites(makefile, "test")
    steps = [p for p in parts if p != "setup"]
    for step in steps:  # make test = its steps, each of which sets everything up first
        assert "setup" in _prerequisites(makefile, step), f"`{step}` must depend on setup"
    assert steps or "setup" in parts
    # CI runs make test's steps; its second chapter pass (test-book-other-cpu) is the Colab rehearsal's comparison,
    # which runs every chapter as another CPU would and compares every output with the stored one.
    replaced = {"test-book-other-cpu"} if _runs(ci, "colab-rehearsal") else set()
    assert _runs(ci, "test") or (steps and all(_runs(ci, s) for s in steps if s not in replaced)), (
        "CI must run make test (or all its steps)")
    if replaced:
        rehearsal = (ROOT / ".ci" / "colab_rehearsal.sh").read_text()
        other_cpu = re.search(r"^OTHER_CPU := (.*(?:\\\n.*)*)", makefile, re.M).group(1)
        for setting in re.findall(r"\b[A-Z_]+=\S+", other_cpu):
            assert setting in rehearsal, f"the rehearsal must run as `make test-book-other-cpu` does ({setting})"
        assert '--compare "$ROOT/book/nbval_sanitize.cfg"' in rehearsal, "the rehearsal must compare the outputs"


def test_ci_runs_the_colab_rehearsal():
    ci = (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    rehearsal = ROOT / ".ci" / "colab_rehearsal.sh"
    assert rehearsal.is_file() and (ROOT / ".ci" / "colab_rehearsal.py").is_file()
    assert "bash .ci/colab_rehearsal.sh" in ci or (
        _runs(ci, "colab-rehearsal") and ".ci/colab_rehearsal.sh" in makefile), "CI must run .ci/colab_rehearsal.sh"
    assert ".venv-colab/" in (ROOT / ".gitignore").read_text().splitlines()


def test_colab_rehearsal_can_point_every_chapter_at_this_checkout(tmp_path):
    """What .ci/colab_rehearsal.py does to each notebook before running it (cheap: nothing is executed)."""
    pytest.importorskip("nbclient", reason="nbclient comes with jupyter-book: pip install -e '.[book]'")
    spec = importlib.util.spec_from_file_location("colab_rehearsal", ROOT / ".ci" / "colab_rehearsal.py")
    rehearsal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rehearsal)
    url = "git+file:///checkout@0123abcd"
    chapters = sorted((ROOT / "book").glob("*.ipynb"))
    assert chapters
    for src in chapters:
        nb, index = rehearsal.prepare(src, tmp_path / src.stem, url)
        install = nb.cells[index].source
        assert f'"inception_lib[colab] @ {url}"' in install, f"{src.name}: install cell after the rewrite:\n{install}"
        assert "git+https://" not in install
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_colab_rehearsal_compares_outputs_as_nbval(tmp_path):
    """The rehearsal's comparison finds a changed digit, ignores images and tagged cells (cheap: nothing runs)."""
    pytest.importorskip("nbclient", reason="nbclient comes with jupyter-book: pip install -e '.[book]'")
    import copy

    import nbformat

    spec = importlib.util.spec_from_file_location("colab_rehearsal", ROOT / ".ci" / "colab_rehearsal.py")
    rehearsal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rehearsal)
    sanitize = rehearsal.read_sanitizer(ROOT / "book" / "nbval_sanitize.cfg")
    assert sanitize("<object at 0x7f00deadbeef>") == "<object at 0xADDRESS>"
    stored = nbformat.read(ROOT / "book" / "04_gap_and_aux.ipynb", as_version=4)
    assert rehearsal.compare(stored, copy.deepcopy(stored), set(), sanitize) == []
    ran = copy.deepcopy(stored)
    index = next(i for i, c in enumerate(ran.cells) if c.cell_type == "code" and any(
        o.output_type == "stream" and any(ch.isdigit() for ch in o.text) for o in c.outputs))
    stream = next(o for o in ran.cells[index].outputs if o.output_type == "stream")
    stream.text = stream.text.replace(next(ch for ch in stream.text if ch.isdigit()), "X", 1)
    problems = rehearsal.compare(stored, ran, set(), sanitize)
    assert len(problems) == 1 and problems[0].startswith(f"cell {index} (stdout)")
    assert rehearsal.compare(stored, ran, {index}, sanitize) == []  # the install cell's index is left out like this
    ran.cells[index].metadata["tags"] = []
    stored.cells[index].metadata.setdefault("tags", []).append("nbval-ignore-output")
    assert rehearsal.compare(stored, ran, set(), sanitize) == []
    for out in (o for c in ran.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})):
        out.data["image/png"] = "AAAA"  # images are not compared (as nbval without --nbdime)
    assert rehearsal.compare(stored, copy.deepcopy(ran), {index}, sanitize) == []

"""The front door: pyproject.toml and environment.yml pin the same versions; the README's commands exist."""

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ]", req, maxsplit=1)[0].lower()


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    pip_lines = [line.strip()[2:].strip() for line in (ROOT / "environment.yml").read_text().splitlines()
                 if line.strip().startswith("- ") and line.startswith("      ")]
    pip_lines = [p for p in pip_lines if p != "-e ."]
    assert sorted(reqs) == sorted(pip_lines), "environment.yml and pyproject.toml disagree"
    pinned = {_name(r) for r in reqs if "==" in r}
    assert {"torch", "torchvision", "tensorflow-cpu", "keras", "jupyter-book", "nbval"} <= pinned


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: setup", makefile, re.M) and "pytest --nbval book/" in makefile.replace("-m pytest", "pytest")

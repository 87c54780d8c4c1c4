"""The book: every chapter in _toc.yml is stored executed, clean and Colab-ready; the HTML book builds and renders.

- the first code cell of each notebook installs inception_lib from exactly the repository and branch that
  _config.yml names (the same address the Colab launch buttons use);
- each notebook's outputs were stored by one fresh top-to-bottom run, with no errors, no stderr, no TensorFlow
  C++ log lines and no machine-specific paths (strict nbval re-creates these outputs: `make test`);
- `jupyter-book build -W` succeeds, and every page, opened in headless Chromium, has its title, its figures and
  (for notebooks) a Colab link to the notebook on the configured branch. Screenshots go to _build/screenshots/.

Chromium is required (CI installs it): `sudo apt-get install -y chromium`, or `make system`.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML comes with jupyter-book: pip install -e '.[book]'")
nbformat = pytest.importorskip("nbformat", reason="nbformat comes with jupyter-book: pip install -e '.[book]'")

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "_build" / "screenshots"  # git-ignored (_build/)


# ------------------------------------------------------------------------------------------------
# What _config.yml and _toc.yml say
# ------------------------------------------------------------------------------------------------


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def _toc_entries() -> list[str]:
    """Every document of the table of contents, in reading order, without suffix ("book/intro", ...)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    entries = [toc["root"]]

    def walk(items):
        for item in items or []:
            if "file" in item:
                entries.append(item["file"])
            for key in ("sections", "chapters"):
                walk(item.get(key))
            for part in item.get("parts", []):
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return [str(Path(e).with_suffix("")) if e.endswith((".md", ".ipynb")) else e for e in entries]


def _source(entry: str) -> Path | None:
    for suffix in (".ipynb", ".md"):
        if (ROOT / f"{entry}{suffix}").exists():
            return ROOT / f"{entry}{suffix}"
    return None


TOC = _toc_entries()
# The chapters are notebooks; the intro is Markdown. A chapter listed but missing is a notebook to be written.
CHAPTERS = [e for e in TOC if e != TOC[0]]


def _notebook(entry: str):
    path = ROOT / f"{entry}.ipynb"
    if not path.exists():
        pytest.fail(f"{entry}.ipynb is listed in _toc.yml but does not exist")
    return nbformat.read(path, as_version=4)


def _install_spec() -> str:
    repo = _config()["repository"]
    return f"git+{repo['url'].rstrip('/')}@{repo['branch']}"


def _colab_link(entry: str) -> str:
    cfg = _config()
    repo = cfg["repository"]
    org_repo = "/".join(repo["url"].rstrip("/").split("/")[-2:])
    book = str(repo.get("path_to_book", "") or "").strip("/")
    path = f"{book}/{entry}.ipynb" if book else f"{entry}.ipynb"
    colab = cfg["launch_buttons"]["colab_url"].rstrip("/")
    return f"{colab}/github/{org_repo}/blob/{repo['branch']}/{path}"


def test_config_holds_the_decisions_the_book_relies_on():
    cfg = _config()
    assert cfg["repository"]["url"] == "https://github.com/going-deeper-book/going-deeper"
    assert cfg["repository"]["branch"] == "main"
    assert cfg["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert cfg["execute"]["execute_notebooks"] == "off", "outputs are stored and checked by nbval, never re-run"
    assert cfg["only_build_toc_files"] is True
    assert "sphinx_design" in cfg["sphinx"]["extra_extensions"]
    assert _colab_link("book/01_motivation") == (
        "https://colab.research.google.com/github/going-deeper-book/going-deeper/blob/main/book/01_motivation.ipynb"
    ), "the Colab link must point at the notebook on main (path_to_book '' - '.' would insert '/./')"
    assert TOC[0] == "book/intro" and _source("book/intro") is not None
    assert len(set(TOC)) == len(TOC), "a document appears twice in _toc.yml"


# ------------------------------------------------------------------------------------------------
# The notebooks as stored
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", CHAPTERS)
def test_first_code_cell_installs_from_the_configured_repository(entry):
    nb = _notebook(entry)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{entry} has no code cells"
    first = code[0]
    src = first.source
    expected = _install_spec()
    installs = re.findall(r"git\+https?://[^\s\"'@]+@[\w./\-]+", src)
    assert installs == [expected], (
        f"{entry}: the first code cell must install inception_lib from {expected} (repository.url and "
        f"repository.branch in _config.yml), found {installs or 'no git+ install'}"
    )
    assert 'find_spec("inception_lib") is None' in src, (
        f"{entry}: install only when inception_lib is not importable (importlib.util.find_spec guard), "
        "so a local run prints nothing and installs nothing"
    )
    extras = re.findall(r"inception_lib\[([^\]]*)\]", src)
    assert extras == ["colab"], (
        f"{entry}: install the slim `colab` extra only (found extras {extras}): not the pinned torch/keras extras "
        "(Colab's own torch and TensorFlow must stay), not `book` (jupyter-book is not needed to run a chapter)"
    )
    assert not first.outputs, f"{entry}: the install cell must store no output (it prints nothing locally)"


TF_LOG_PATTERNS = [
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] ",  # TensorFlow's own C++ log format
    r"^[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\]",  # absl log format (I0000 00:00:1795438584.5  22578 file.cc:227])
    r"All log messages before absl::InitializeLog",
    r"oneDNN custom operations are on",
    r"This TensorFlow binary is optimized",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"TF-TRT Warning",
]
PATH_PATTERNS = [
    r"/tmp/",
    r"/var/folders/",
    r"site-packages",
    r"\.venv/",
    r"/home/\w+",
    r"/root/",
    re.escape(str(ROOT)),
]


def _texts(output) -> list[str]:
    if output.output_type == "stream":
        return [output.text]
    if output.output_type in ("display_data", "execute_result"):
        return [v if isinstance(v, str) else "".join(v) for k, v in output.get("data", {}).items()
                if k.startswith("text/") or k.startswith("application/papermill.record/text")]
    if output.output_type == "error":
        return ["\n".join(output.get("traceback", []))]
    return []


@pytest.mark.parametrize("entry", CHAPTERS)
def test_notebook_outputs_are_stored_from_one_clean_run(entry):
    nb = _notebook(entry)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{entry}: nbval starts the kernel named here"
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    counts = [c.execution_count for c in code]
    assert None not in counts, f"{entry}: {counts.count(None)} code cell(s) never executed; store outputs of a full run"
    assert counts == list(range(1, len(code) + 1)), (
        f"{entry}: execution counts {counts} are not 1..{len(code)}: store the outputs of one fresh top-to-bottom run"
    )
    problems = []
    for i, cell in enumerate(code):
        for out in cell.outputs:
            if out.output_type == "error":
                problems.append(f"code cell {i}: stored error {out.ename}: {out.evalue}")
            if out.output_type == "stream" and out.name == "stderr":
                problems.append(f"code cell {i}: stderr output {out.text[:200]!r}")
            for text in _texts(out):
                for pat in TF_LOG_PATTERNS:
                    if re.search(pat, text, re.M):
                        problems.append(f"code cell {i}: TensorFlow C++ log line ({pat}): {text[:200]!r}")
                for pat in PATH_PATTERNS:
                    m = re.search(pat, text)
                    if m:
                        problems.append(f"code cell {i}: machine-specific path {m.group(0)!r} in an output")
    assert not problems, f"{entry}:\n" + "\n".join(problems)


# ------------------------------------------------------------------------------------------------
# The built HTML book, rendered by Chromium
# ------------------------------------------------------------------------------------------------


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        exe = shutil.which(name)
        if exe:
            return exe
    pytest.fail("Chromium is needed to check the rendered book and is not installed: "
                "run `sudo apt-get install -y chromium` (Debian/Ubuntu) or `make system`")


def _chromium_run(args: list[str], profile: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    cmd = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-extensions", "--hide-scrollbars", "--mute-audio",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # offline and deterministic: external assets fail at once
        f"--user-data-dir={profile}", *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _jupyter_book() -> list[str]:
    exe = Path(sys.executable).with_name("jupyter-book")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("jupyter-book")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def html_dir(tmp_path_factory) -> Path:
    """Build the book once (execute off, warnings are errors) into a temporary folder."""
    out = tmp_path_factory.mktemp("book")
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    proc = subprocess.run([*_jupyter_book(), "build", str(ROOT), "-W", "--path-output", str(out)],
                          capture_output=True, text=True, timeout=900, env=env)
    if proc.returncode != 0:
        log = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
        lines = [ln for ln in log.splitlines()
                 if re.search(r"WARNING|ERROR|SphinxWarning|treated as error", ln) and "Config(" not in ln]
        pytest.fail("jupyter-book build -W failed:\n" + "\n".join(lines[-30:] or log.splitlines()[-40:]))
    return out / "_build" / "html"


def _heading(entry: str) -> str:
    """The page title: the first level-1 heading of the notebook or Markdown file."""
    src = _source(entry)
    if src is None:
        pytest.fail(f"{entry} is listed in _toc.yml but neither {entry}.ipynb nor {entry}.md exists")
    if src.suffix == ".ipynb":
        text = "\n".join(c.source for c in nbformat.read(src, as_version=4).cells if c.cell_type == "markdown")
    else:
        text = src.read_text()
    m = re.search(r"^# (.+)$", text, re.M)
    assert m, f"{src.name} has no level-1 heading"
    return re.sub(r"[*`]", "", m.group(1)).strip()


def _image_outputs(entry: str) -> int:
    src = _source(entry)
    if src is None or src.suffix != ".ipynb":
        return 0
    nb = nbformat.read(src, as_version=4)
    return sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs
               if o.output_type in ("display_data", "execute_result")
               and any(k.startswith("image/") for k in o.get("data", {})))


@pytest.mark.parametrize("entry", TOC)
def test_page_renders_with_title_figures_and_colab_link(entry, html_dir, tmp_path):
    page = html_dir / f"{entry}.html"
    assert page.exists(), f"the build produced no {page.relative_to(html_dir)}"
    proc = _chromium_run(["--virtual-time-budget=5000", "--dump-dom", page.as_uri()], tmp_path / "profile")
    dom = proc.stdout
    assert proc.returncode == 0 and "<html" in dom, f"Chromium could not render {page.name}: {proc.stderr[-1000:]}"

    title = html.unescape(re.search(r"<title>(.*?)</title>", dom, re.S).group(1))
    heading = _heading(entry)
    assert heading in title, f"{entry}: page title {title!r} does not contain the heading {heading!r}"

    # Figures: every image a cell stored is on the page, and the image files were written.
    images = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*_images/[^\"]+)\"", dom)
    expected = _image_outputs(entry)
    assert len(images) >= expected, f"{entry}: {expected} figure(s) stored in the notebook, {len(images)} on the page"
    for src in images:
        f = (page.parent / src).resolve()
        assert f.exists() and f.stat().st_size > 1000, f"{entry}: image {src} missing or empty"

    # Nothing unrendered: MyST roles left as text would show up literally.
    text = re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S)
    text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    for raw in ("{glue:", "{numref}", "{ref}", "{cite}", "{doc}"):
        assert raw not in text, f"{entry}: unrendered MyST role {raw!r} on the page"

    if _source(entry).suffix == ".ipynb":
        link = _colab_link(entry)
        assert f'href="{link}"' in dom, f"{entry}: no Colab launch link to {link}"

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / f"{Path(entry).name}.png"
    proc = _chromium_run(["--virtual-time-budget=5000", "--window-size=1280,3200", f"--screenshot={shot}",
                          page.as_uri()], tmp_path / "profile-shot")
    assert shot.exists() and shot.stat().st_size > 10_000, f"no screenshot of {entry}: {proc.stderr[-1000:]}"

"""The book: every chapter in _toc.yml is stored executed, clean and Colab-ready; the HTML book builds and renders.

- the first code cell of each notebook installs inception_lib from exactly the repository and branch that
  _config.yml names (the same address the Colab launch buttons use);
- each notebook's outputs were stored by one fresh top-to-bottom run, with no errors, no stderr, no TensorFlow
  C++ log lines and no machine-specific paths (strict nbval re-creates these outputs: `make test`);
- `jupyter-book build -W` succeeds, and every page, opened in headless Chromium, has its title, its figures and
  (for notebooks) a Colab link to the notebook on the configured branch. Screenshots go to _build/screenshots/.
- laid out at a 1280-px-wide window, offline, every page's tables fit their column, its math is typeset by the
  book's own MathJax (scripts/fetch_mathjax.py; no CDN), every figure has a caption, and the chapters in CODE_TABS
  show their code in a PyTorch and a Keras tab.

Chromium is required (CI installs it): `sudo apt-get install -y chromium`, or `make system`.
"""

from __future__ import annotations

import html
import json
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
    """Build the book once (execute off, warnings are errors) into a temporary folder.

    First MathJax is fetched as `make book` fetches it (scripts/fetch_mathjax.py: once, checked against its pinned
    sha512; the book serves it from _static/mathjax/ instead of a CDN)."""
    fetch = subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_mathjax.py")],
                           capture_output=True, text=True, timeout=300)
    if fetch.returncode != 0:
        pytest.fail("scripts/fetch_mathjax.py failed, the book would have no MathJax:\n"
                    + (fetch.stdout + fetch.stderr)[-2000:])
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


# ------------------------------------------------------------------------------------------------
# Each page laid out at a laptop's width: tables fit, math is typeset (offline), figures have captions,
# and the chapters that show code show it in both frameworks
# ------------------------------------------------------------------------------------------------

WINDOW = (1280, 2000)  # --window-size; the width is what matters (the text column is what is left of it)

# Chapter -> tab label -> the panel of that tab shows one of these strings. One sphinx-design tab-set of the
# chapter must hold all of the labels (```{tab-set}``` with ```{tab-item} PyTorch``` ...), each panel visible
# when its tab is chosen.
CODE_TABS: dict[str, dict[str, tuple[str, ...]]] = {
    "book/03_inception_module": {
        "PyTorch": ("class InceptionModule",),
        "Keras": ("def inception_module", "InceptionModule"),
    },
}

# Injected first into a copy of the page's <head>: it records resources that fail to load, waits for the window's
# load event and MathJax's first typesetting (MathJax.startup.promise) and the fonts, measures, and writes the
# result as JSON into <pre id="probe">, which `chromium --dump-dom` then prints.
_PROBE_JS = r"""
(() => {
  const failed = [], errors = [];
  addEventListener("error", (e) => {
    const t = e.target;
    if (t && t !== window && (t.src || t.href)) failed.push(t.getAttribute("src") || t.getAttribute("href"));
    else if (e.message) errors.push(e.message);
  }, true);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const text = (el) => (el ? el.innerText || el.textContent || "" : "").replace(/\s+/g, " ").trim();
  const visible = (el) => el.checkVisibility();
  let headings = [];
  const sectionOf = (el) => {
    let last = "";
    for (const h of headings) {
      if (h.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING) last = text(h).replace(/\s*#$/, "");
    }
    return last;
  };
  const contentBox = (el) => {
    const cs = getComputedStyle(el), r = el.getBoundingClientRect();
    const pl = parseFloat(cs.paddingLeft) || 0, pr = parseFloat(cs.paddingRight) || 0;
    const left = r.left + el.clientLeft + pl, width = el.clientWidth - pl - pr;
    return {left, width, right: left + width};
  };
  const describe = (el) => el.tagName.toLowerCase() + [...el.classList].map((c) => "." + c).join("");

  function tables() {
    const column = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
    const col = contentBox(column);
    return [...document.querySelectorAll("table")].map((t, index) => {
      const r = t.getBoundingClientRect(), width = Math.max(r.width, t.scrollWidth);
      const parent = contentBox(t.parentElement);
      const row = t.querySelector("thead tr") || t.querySelector("tr");
      return {
        index, shown: visible(t), caption: text(t.caption), section: sectionOf(t),
        header: row ? [...row.children].slice(0, 4).map(text) : [],
        width: Math.round(width), parent: describe(t.parentElement), parentWidth: Math.round(parent.width),
        overParent: width - parent.width, overColumn: r.left + width - col.right,
        columnWidth: Math.round(col.width),
      };
    });
  }

  function math() {
    const elements = [...document.querySelectorAll(".math")];
    const raw = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const parent = n.parentElement;
      if (!parent || parent.closest("pre, code, script, style, textarea, mjx-container")) continue;
      const m = /\\\(|\\\[|\$\$|\$\\[A-Za-z]/.exec(n.data);
      if (m && visible(parent)) raw.push(n.data.slice(Math.max(0, m.index - 40), m.index + 60).replace(/\s+/g, " "));
    }
    return {
      elements: elements.length,
      containers: document.querySelectorAll("mjx-container").length,
      untypeset: elements.filter((e) => !e.querySelector("mjx-container")).map((e) => text(e).slice(0, 80)),
      errors: [...document.querySelectorAll("mjx-merror")].map((e) => e.getAttribute("data-mjx-error") || text(e)),
      raw,
    };
  }

  function figures() {
    return [...document.querySelectorAll("img")]
      .filter((img) => /(^|\/)_images\//.test(img.getAttribute("src") || ""))
      .map((img) => {
        const figure = img.closest("figure"), caption = figure && figure.querySelector("figcaption");
        return {
          src: img.getAttribute("src").split("/").pop(), alt: img.getAttribute("alt") || "", section: sectionOf(img),
          figure: !!figure, caption: caption && visible(caption) ? text(caption) : "",
        };
      });
  }

  function tabs() {  // last: choosing tabs changes what is shown
    return [...document.querySelectorAll(".sd-tab-set")].map((set) =>
      [...set.querySelectorAll(":scope > label.sd-tab-label")].map((label) => {
        label.click();
        const panel = label.nextElementSibling;
        const shown = !!panel && panel.classList.contains("sd-tab-content") && visible(panel);
        return {label: text(label), shown, text: shown ? panel.innerText : ""};
      }));
  }

  addEventListener("load", async () => {
    const out = {width: innerWidth, failed, errors};
    try {
      const mj = window.MathJax;
      out.mathjax = !!(mj && mj.startup && mj.startup.promise);
      if (out.mathjax) {
        out.mathjaxVersion = mj.version;
        out.mathjaxState = await Promise.race([
          mj.startup.promise.then(() => "done", (e) => "failed: " + String((e && e.message) || e)),
          sleep(15000).then(() => "not finished after 15 s"),
        ]);
      }
      await document.fonts.ready;
      out.fontErrors = [...document.fonts].filter((f) => f.status === "error").map((f) => f.family);
      headings = [...document.querySelectorAll("article h1, article h2, article h3")];
      Object.assign(out, {tables: tables(), math: math(), figures: figures(), tabs: tabs()});
    } catch (e) {
      out.error = String((e && e.stack) || e);
    }
    const pre = document.createElement("pre");
    pre.id = "probe";
    pre.hidden = true;
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  });
})();
"""


@pytest.fixture(scope="module")
def page_layout(html_dir, tmp_path_factory):
    """entry -> what _PROBE_JS measured on that page at WINDOW (one Chromium run per page, cached)."""
    cache: dict[str, dict] = {}

    def measure(entry: str) -> dict:
        if entry in cache:
            return cache[entry]
        page = html_dir / f"{entry}.html"
        assert page.exists(), f"the build produced no {page.relative_to(html_dir)}"
        source = page.read_text()
        probed, n = re.subn(r"<head\b[^>]*>", lambda m: f"{m.group(0)}\n<script>{_PROBE_JS}</script>", source, count=1)
        assert n == 1, f"{entry}: no <head> in {page.name}"
        copy = page.with_name(f"{page.stem}.probe.html")  # next to the page: the same relative links
        copy.write_text(probed)
        try:
            proc = _chromium_run([f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=30000",
                                  "--dump-dom", copy.as_uri()], tmp_path_factory.mktemp("profile"))
        finally:
            copy.unlink()
        m = re.search(r'<pre id="probe"[^>]*>(.*?)</pre>', proc.stdout, re.S)
        assert m, f"{entry}: the page's measurements never came (Chromium rc {proc.returncode}): {proc.stderr[-1500:]}"
        result = json.loads(html.unescape(m.group(1)))
        assert "error" not in result, f"{entry}: measuring the page failed: {result['error']}"
        cache[entry] = result
        return result

    return measure


def _table_name(t: dict) -> str:
    header = " | ".join(h[:24] for h in t["header"]) or "no header"
    caption = f"{t['caption'][:60]!r}, " if t["caption"] else ""
    section = f" in section {t['section'][:60]!r}" if t["section"] else ""
    return f"table {t['index'] + 1} ({caption}header: {header} ...){section}"


@pytest.mark.parametrize("entry", TOC)
def test_rendered_tables_fit_their_column(entry, page_layout):
    """No table is wider than the box it sits in (nor runs past the text column) at a 1280-px-wide window:
    the theme would give it a horizontal scroll bar, hiding columns."""
    layout = page_layout(entry)
    too_wide = [t for t in layout["tables"] if t["shown"] and max(t["overParent"], t["overColumn"]) > 1]
    assert not too_wide, f"{entry}, window {layout['width']} px wide:\n" + "\n".join(
        f"  {_table_name(t)} is {max(t['overParent'], t['overColumn']):.0f} px wider than its container "
        f"({t['width']} px in a {t['parentWidth']}-px {t['parent']}; text column {t['columnWidth']} px)"
        for t in too_wide)


@pytest.mark.parametrize("entry", TOC)
def test_rendered_math_is_typeset_by_the_books_own_mathjax(entry, html_dir, page_layout):
    """MathJax comes from the book (_static/mathjax/, scripts/fetch_mathjax.py), never from a CDN, and typesets every
    formula of the page with Chromium offline: no raw \\( \\[ $$ left in the visible text, no TeX errors."""
    page = html_dir / f"{entry}.html"
    source = page.read_text()
    scripts = re.findall(r"<script\b[^>]*\bsrc=\"([^\"]+)\"", source)
    remote = [s for s in scripts if "://" in s and "mathjax" in s.lower()]
    assert not remote and "cdn.jsdelivr.net" not in source, f"{entry}: MathJax loaded from the internet: {remote}"
    local = [s for s in scripts if "mathjax" in s.lower()]
    for src in local:
        f = (page.parent / src.split("?")[0]).resolve()
        assert f.is_file(), f"{entry}: the page loads {src}, which the build does not contain (scripts/fetch_mathjax.py)"

    layout = page_layout(entry)
    math = layout["math"]
    problems = []
    if math["elements"]:
        if not local:
            problems.append(f"{math['elements']} formula(s) but no MathJax <script> on the page")
        elif not layout["mathjax"]:
            problems.append(f"MathJax did not start ({', '.join(local)}); resources that failed to load: "
                            f"{layout['failed'] or 'none'}; script errors: {layout['errors'] or 'none'}")
        elif layout["mathjaxState"] != "done":
            problems.append(f"MathJax's typesetting {layout['mathjaxState']}")
        if math["untypeset"]:
            problems.append(f"{len(math['untypeset'])} of {math['elements']} formula(s) not typeset, e.g. "
                            + "; ".join(repr(t) for t in math["untypeset"][:3]))
        if not math["containers"]:
            problems.append("no MathJax output (mjx-container) on the page")
    mathjax_files = [f for f in layout["failed"] if "mathjax" in f.lower()]
    mathjax_fonts = [f for f in layout["fontErrors"] if f.upper().startswith("MJX")]
    if mathjax_files or mathjax_fonts:
        problems.append(f"MathJax files that failed to load: {mathjax_files + mathjax_fonts}")
    if math["errors"]:
        problems.append("TeX errors: " + "; ".join(repr(e) for e in math["errors"][:5]))
    if math["raw"]:
        problems.append("raw TeX in the visible text: " + "; ".join(repr(t) for t in math["raw"][:5]))
    assert not problems, f"{entry}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("entry", TOC)
def test_rendered_figures_have_captions(entry, page_layout):
    """Every figure image (an <img> from _images/) is inside a <figure> with a visible, non-empty <figcaption>."""
    layout = page_layout(entry)
    bare = [f for f in layout["figures"] if not f["caption"]]
    assert not bare, f"{entry}: {len(bare)} of {len(layout['figures'])} figure(s) without a caption:\n" + "\n".join(
        f"  {f['src']}{' (alt ' + repr(f['alt'][:60]) + ')' if f['alt'] else ''}"
        f"{' in section ' + repr(f['section'][:60]) if f['section'] else ''}: "
        + ("a <figure> with no (visible, non-empty) <figcaption>" if f["figure"] else "not inside a <figure>")
        for f in bare)


@pytest.mark.parametrize("entry", sorted(CODE_TABS))
def test_rendered_chapter_shows_its_code_in_both_frameworks(entry, page_layout):
    """The chapter's code, in a sphinx-design tab-set with one tab per framework (CODE_TABS says what each shows)."""
    want = CODE_TABS[entry]
    tab_sets = page_layout(entry)["tabs"]
    found = [{t["label"]: t for t in tabs} for tabs in tab_sets]
    candidates = [labels for labels in found if set(want) <= set(labels)]
    assert candidates, (
        f"{entry}: no tab-set with the tabs {list(want)}; the page has {len(tab_sets)} tab-set(s)"
        + (": " + "; ".join(" / ".join(labels) or "(no labels)" for labels in found) if found else ""))
    reports = []
    for labels in candidates:
        missing = []
        for label, expected in want.items():
            tab = labels[label]
            if not tab["shown"]:
                missing.append(f"the {label} panel is not shown when its tab is chosen")
            elif not any(e in tab["text"] for e in expected):
                missing.append(f"the {label} panel shows none of {list(expected)} "
                               f"(it begins {tab['text'].strip()[:80]!r})")
        if not missing:
            return
        reports.append(" / ".join(labels) + ": " + "; ".join(missing))
    pytest.fail(f"{entry}: no tab-set shows {dict(want)}:\n  " + "\n  ".join(reports))

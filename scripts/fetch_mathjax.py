"""Fetch MathJax 3 once, so that the HTML book typesets its math without the internet.

Sphinx loads MathJax from a CDN by default: opened offline (or behind a firewall), every equation of the book stays
raw TeX. This script downloads the pinned MathJax release from the npm registry, checks it against the registry's
sha512 integrity string, and copies the part the book uses (the ``tex-chtml`` component, its web fonts, the TeX
extensions it may autoload and the licence) into ``_vendor/_static/mathjax/`` (git-ignored). ``_config.yml`` has
Sphinx copy that folder into the built book (``_build/html/_static/mathjax/``) and point ``mathjax_path`` at it.

Why not ``_static/mathjax/``: Jupyter Book 1 adds every ``*.js`` file found under ``_static/`` to every page as a
``<script>``, which would load MathJax's extension files on their own, before MathJax itself.

MathJax is (c) The MathJax Consortium, Apache License 2.0; its LICENSE file is copied along with it.

Usage: python scripts/fetch_mathjax.py [--tarball mathjax-3.2.2.tgz] [--check]
Run by ``make book`` and by the test that builds the book. Nothing is downloaded when the copied files are already
there and match the manifest written next to them (which records the release, its integrity and each file's sha256).
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import io
import json
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSION = "3.2.2"
URL = f"https://registry.npmjs.org/mathjax/-/mathjax-{VERSION}.tgz"
# dist.integrity of https://registry.npmjs.org/mathjax/3.2.2 (Subresource Integrity format: sha512, base64).
INTEGRITY = "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
DEST = ROOT / "_vendor" / "_static" / "mathjax"  # html_extra_path "_vendor" -> _build/html/_static/mathjax/
MANIFEST = "manifest.json"
ENTRY = "es5/tex-chtml.js"  # _config.yml: mathjax_path: mathjax/es5/tex-chtml.js (relative to _static/)

# Paths inside the package (below its top folder "package/") that are copied.
SELECTED = [
    "LICENSE",
    ENTRY,
    "es5/output/chtml/fonts/woff-v2/*.woff",
    "es5/input/tex/extensions/*.js",  # loaded on demand by \require or autoload (\boldsymbol, \cancel, ...)
]
LEFT_OUT = ["es5/input/tex/extensions/all-packages.js"]  # 215 kB, for the *-full components only


def _selected(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in SELECTED) and name not in LEFT_OUT


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def up_to_date(dest: Path = DEST) -> bool:
    """True when dest holds this release's files, each with the sha256 its manifest recorded."""
    try:
        manifest = json.loads((dest / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    files = manifest.get("files", {})
    if manifest.get("integrity") != INTEGRITY or ENTRY not in files:
        return False
    return all((dest / rel).is_file() and _sha256(dest / rel) == digest for rel, digest in files.items())


def verified_tarball(data: bytes, source: str) -> bytes:
    """The tarball's bytes, if their sha512 is the pinned integrity; otherwise stop with an error."""
    algo, _, expected = INTEGRITY.partition("-")
    actual = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if actual != expected:
        sys.exit(f"fetch_mathjax: {source} does not have the expected {algo} integrity: refusing to use it.\n"
                 f"  expected {INTEGRITY}\n  got      {algo}-{actual}")
    return data


def download(url: str = URL) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            return response.read()
    except OSError as e:
        sys.exit(f"fetch_mathjax: could not download {url}: {e}\n"
                 "  Without the internet, pass a copy of that file: python scripts/fetch_mathjax.py --tarball FILE")


def install(data: bytes, dest: Path = DEST) -> dict[str, str]:
    """Extract the selected files into a new folder next to dest, then swap it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = dest.parent.parent  # outside the folder the build copies
    tmp = Path(tempfile.mkdtemp(prefix=".mathjax-new-", dir=work))
    try:
        files: dict[str, str] = {}
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                top, _, rel = member.name.partition("/")
                if top != "package" or not member.isfile() or not _selected(rel):
                    continue
                if rel.startswith("/") or ".." in rel.split("/"):
                    sys.exit(f"fetch_mathjax: unexpected path in the tarball: {member.name}")
                content = tar.extractfile(member).read()
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
                files[rel] = hashlib.sha256(content).hexdigest()
        if ENTRY not in files or "LICENSE" not in files:
            sys.exit(f"fetch_mathjax: the tarball has no package/{ENTRY} or package/LICENSE")
        manifest = {"package": "mathjax", "version": VERSION, "url": URL, "integrity": INTEGRITY,
                    "licence": "Apache-2.0 (LICENSE)", "files": dict(sorted(files.items()))}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        tmp.chmod(0o755)
        old = Path(tempfile.mkdtemp(prefix=".mathjax-old-", dir=work))
        try:
            if dest.exists():
                dest.rename(old / "mathjax")
            tmp.rename(dest)  # dest is the old complete folder or the new complete one, never a partial one
        except OSError:
            if (old / "mathjax").exists() and not dest.exists():
                (old / "mathjax").rename(dest)
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
        return files
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tarball", type=Path, help=f"use this local copy of {URL.rsplit('/', 1)[-1]}")
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when the files are missing or stale")
    args = parser.parse_args(argv)
    shown = DEST.relative_to(ROOT)
    if up_to_date():
        print(f"MathJax {VERSION} in {shown}: up to date")
        return 0
    if args.check:
        print(f"MathJax {VERSION} in {shown}: missing or stale (run python scripts/fetch_mathjax.py)")
        return 1
    if args.tarball:
        if not args.tarball.is_file():
            sys.exit(f"fetch_mathjax: no file {args.tarball}")
        data = verified_tarball(args.tarball.read_bytes(), str(args.tarball))
    else:
        print(f"downloading {URL}")
        data = verified_tarball(download(), URL)
    files = install(data)
    size = sum((DEST / rel).stat().st_size for rel in files)
    print(f"MathJax {VERSION}: {len(files)} files, {size / 1e6:.1f} MB copied into {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

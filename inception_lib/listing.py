"""The library's own source, shown in the book: the code a reader sees is the code the tests run."""

from __future__ import annotations

import inspect
import textwrap
from typing import Any, Optional


def listing(obj: Any, start: Optional[str] = None, stop: Optional[str] = None) -> str:
    """The source of ``obj`` (a class, function or module) as a fenced Python block of Markdown.

    ``start`` and ``stop`` cut out a region: from the first line that begins (after indentation) with
    ``start`` to the first later line that begins with ``stop`` (included), dedented. A marker that is not
    found is an error, so a renamed line cannot silently show something else.
    """
    lines = inspect.getsource(obj).splitlines()
    if start is not None:
        first = _find(lines, start, 0, obj)
        last = _find(lines, stop, first + 1, obj) if stop is not None else len(lines) - 1
        lines = lines[first:last + 1]
    code = textwrap.dedent("\n".join(lines)).rstrip()
    return f"```python\n{code}\n```"


def _find(lines: list[str], marker: str, begin: int, obj: Any) -> int:
    for i in range(begin, len(lines)):
        if lines[i].lstrip().startswith(marker):
            return i
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj)))
    raise ValueError(f"no line of {name} starts with {marker!r} (after line {begin}): was the code renamed?")

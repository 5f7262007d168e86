"""Copy generated tables into the Markdown pages that quote them, so a quoted table is the artefact's own text.

A block ``<!-- begin PATH -->`` ... ``<!-- end -->`` in README.md or docs/*.md gets the table rows of PATH (a
table written by ``reprokit figures``; its caption is left out). ``--check`` changes nothing and exits 1 when a
block differs from its file (tests/test_docs.py runs it).

    .venv/bin/python scripts/embed_tables.py [--check]
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- begin (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- end -->)", re.S)


def table_rows(path: Path) -> str:
    """The Markdown table of a generated file: its lines from the first that starts with '|'."""
    lines = path.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    return "\n".join(line for line in lines[first:] if line.startswith("|")) + "\n"


def embedded(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + table_rows(ROOT / m.group("path")) + m.group(4), text)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def main(argv: list[str]) -> int:
    stale = []
    for page in pages():
        text = page.read_text()
        new = embedded(text)
        if new != text:
            stale.append(page.relative_to(ROOT))
            if "--check" not in argv:
                page.write_text(new)
    if stale:
        print(("out of date: " if "--check" in argv else "updated: ") + ", ".join(map(str, stale)))
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Build the tinyllm book: every chapter as an HTML page, with the full setting's recorded outputs.

    python book/build.py              # -> build/book/html/index.html (open it in a browser)
    python book/execute.py            # first, or after editing a chapter's code: record the outputs

The pages are made from the *current* chapters (``notebooks/NN_topic.ipynb``, paired with
``chapters/NN_topic.md``) and the outputs recorded by ``book/execute.py`` in
``book/outputs/NN_topic.ipynb``. Each code cell takes the recorded outputs of the cell with the same
source; a code cell whose source has no recorded twin (edited since the recording) stops the build,
naming the chapter, the cell and the command that records it again. Nothing is executed here, and
Sphinx runs with warnings as errors (``-W``), so a broken link or a bad equation fails the build.
Everything the pages load is local (``book/conf.py``): the book opens offline from the file.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
BOOK = REPO / "book"
HTML = REPO / "build" / "book" / "html"  # the pages; the assembled Sphinx source goes beside them


def with_recorded_outputs(chapter: nbformat.NotebookNode, recorded: nbformat.NotebookNode,
                          name: str) -> tuple[nbformat.NotebookNode, list[str]]:
    """``chapter`` with each code cell's outputs taken from the cell of ``recorded`` with the same
    source; returns it and the problems found (cells with no recorded twin)."""
    outputs = {}
    for cell in recorded.cells:
        if cell.cell_type == "code":
            outputs.setdefault(cell.source.strip(), cell.get("outputs", []))
    problems = []
    for number, cell in enumerate(chapter.cells, start=1):
        if cell.cell_type != "code":
            continue
        source = cell.source.strip()
        if source not in outputs:
            first = source.splitlines()[0] if source else "(empty)"
            problems.append(f"{name}, cell {number} ({first[:60]!r}) changed since its outputs "
                            f"were recorded: run `python book/execute.py {name[:2]}`")
            cell.outputs = []
            continue
        cell.outputs = outputs[source]
        cell.execution_count = None
    return chapter, problems


def assemble(source: Path) -> list[str]:
    """Write the Sphinx source tree in the folder ``source``; returns the problems found."""
    if source.exists():
        shutil.rmtree(source)
    (source / "chapters").mkdir(parents=True)
    shutil.copy(BOOK / "index.md", source / "index.md")
    shutil.copytree(REPO / "benchmarks", source / "benchmarks",  # figures linked as ../benchmarks/
                    ignore=lambda folder, names: [n for n in names if not n.endswith(".png")])
    problems = []
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        record = BOOK / "outputs" / path.name
        if not record.exists():
            problems.append(f"{path.name} has no recorded outputs: run "
                            f"`python book/execute.py {path.name[:2]}`")
            continue
        chapter, found = with_recorded_outputs(nbformat.read(path, as_version=4),
                                               nbformat.read(record, as_version=4), path.name)
        problems += found
        nbformat.write(chapter, source / "chapters" / path.name)
    return problems


def build(html: Path = HTML, strict: bool = True) -> int:
    """Assemble the source beside ``html`` and run Sphinx into ``html`` (warnings as errors, unless
    not ``strict``); 0 on success."""
    from sphinx.cmd.build import build_main

    source = html.parent / "source"
    problems = assemble(source)
    for problem in problems:
        print(f"book: {problem}", file=sys.stderr)
    if problems and strict:
        return 1
    args = ["-b", "html", "-c", str(BOOK), "-q", str(source), str(html)]
    return build_main((["-W", "--keep-going"] if strict else []) + args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the HTML book from the chapters and their "
                                                 "recorded full-setting outputs.")
    parser.add_argument("--draft", action="store_true",
                        help="build even with stale or missing outputs and warnings (not for CI)")
    args = parser.parse_args(argv)
    status = build(HTML, strict=not args.draft)
    if status == 0:
        print(f"book: open {HTML / 'index.html'}")
    return status


if __name__ == "__main__":
    sys.exit(main())

"""Record the book's outputs: run chapters' notebooks in the full setting and keep what they print.

    python book/execute.py            # every chapter (about an hour on two cores)
    python book/execute.py 11 12      # only these chapters

The test run executes every notebook in the fast setting (``TINYLLM_FAST=1``): small data, few
steps, untrained models. The book shows the full setting instead, so this script runs each
notebook top to bottom *without* ``TINYLLM_FAST`` and saves the executed notebook, outputs and
figures included, as ``book/outputs/NN_topic.ipynb``. ``book/build.py`` then pairs each code cell
of the current chapter with its recorded output by the cell's source: a cell edited since it was
recorded has no output, and the build names it and this command.

The notebooks run in ``build/book-run/`` (their runs/ folders and downloads land there), one
after another, each in a fresh kernel.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
OUTPUTS = REPO / "book" / "outputs"  # the recorded full-setting notebooks, committed
WORK = REPO / "build" / "book-run"  # where the notebooks run (ignored by git)


def chapter_notebooks(chapters: list[str]) -> list[Path]:
    """notebooks/NN_topic.ipynb for each chapter number given (none: every chapter)."""
    every = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not chapters:
        return every
    chosen = [p for p in every if p.name[:2] in {f"{int(c):02d}" for c in chapters}]
    missing = {f"{int(c):02d}" for c in chapters} - {p.name[:2] for p in chosen}
    if missing:
        raise SystemExit(f"no notebook for chapter(s) {sorted(missing)}; "
                         f"there are {', '.join(p.name[:2] for p in every)}")
    return chosen


def execute(notebook_path: Path) -> Path:
    """Run one notebook in the full setting; write book/outputs/<name> atomically; return it."""
    notebook = nbformat.read(notebook_path, as_version=4)
    env_before = os.environ.pop("TINYLLM_FAST", None)  # the full setting
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend: plt.show() records a PNG
    WORK.mkdir(parents=True, exist_ok=True)
    try:
        client = NotebookClient(notebook, timeout=None, kernel_name="python3",
                                resources={"metadata": {"path": str(WORK)}})
        client.execute()  # raises CellExecutionError, naming the cell, if a cell fails
    finally:
        if env_before is not None:
            os.environ["TINYLLM_FAST"] = env_before
    notebook.metadata["tinyllm_recorded"] = {
        "setting": "full",
        "date": time.strftime("%Y-%m-%d"),
    }
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    target = OUTPUTS / notebook_path.name
    partial = target.with_suffix(".ipynb.partial")
    nbformat.write(notebook, partial)
    partial.replace(target)  # a failed run never leaves half a file behind
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run chapters' notebooks in the full setting and "
                                                 "record their outputs for the book.")
    parser.add_argument("chapters", nargs="*", help="chapter numbers, e.g. 11 12 (default: all)")
    args = parser.parse_args(argv)
    for path in chapter_notebooks(args.chapters):
        start = time.perf_counter()
        print(f"{path.name}: running in the full setting ...", flush=True)
        target = execute(path)
        print(f"{path.name}: {time.perf_counter() - start:.0f} s -> "
              f"{target.relative_to(REPO)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

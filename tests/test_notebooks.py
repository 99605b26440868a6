"""Every chapter is paired with its notebook, and every notebook runs top to bottom (in FAST
mode)."""

import os
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.md"))


def _chapter_param(path: Path):
    marker = getattr(pytest.mark, f"ch{path.name[:2]}")
    return pytest.param(path, id=path.stem, marks=[marker, pytest.mark.notebook])


def _sources(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def test_every_chapter_has_a_notebook_and_back():
    notebooks = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    chapters = {p.stem for p in CHAPTERS}
    assert chapters, "no chapters found"
    assert chapters == notebooks, f"unpaired: {sorted(chapters ^ notebooks)}"


@pytest.mark.parametrize("chapter", [_chapter_param(p) for p in CHAPTERS])
def test_chapter_and_notebook_in_sync(chapter: Path):
    """The notebook holds exactly the chapter's cells (re-pair with `jupytext --sync
    chapters/NN_x.md`)."""
    from_markdown = jupytext.read(chapter)
    notebook = nbformat.read(ROOT / "notebooks" / f"{chapter.stem}.ipynb", as_version=4)
    assert _sources(from_markdown) == _sources(notebook), (
        f"{chapter.name} and its notebook differ; run: jupytext --sync {chapter.relative_to(ROOT)}"
    )


@pytest.mark.parametrize("chapter", [_chapter_param(p) for p in CHAPTERS])
def test_notebook_executes(chapter: Path, tmp_path):
    """Run the notebook top to bottom with TINYLLM_FAST=1 (its small setting); any error fails the
    test."""
    notebook = nbformat.read(ROOT / "notebooks" / f"{chapter.stem}.ipynb", as_version=4)
    os.environ["TINYLLM_FAST"] = "1"
    os.environ["MPLBACKEND"] = "Agg"
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    errors = [
        o
        for cell in notebook.cells
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors

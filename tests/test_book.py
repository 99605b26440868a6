"""The HTML book (issue 14, part 6): built from the chapters with their recorded full-setting
outputs, warnings as errors, then read in headless Chromium: math typeset, figures loaded, links
resolved, nothing fetched from outside the machine. The checker itself is tested on a page broken
on purpose."""

import importlib.util
import os
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _load(name):
    spec = importlib.util.spec_from_file_location(f"book_{name}", REPO / "book" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


build = _load("build")
check = _load("check")


def _need_browser():
    """Skip without Debian's Chromium, unless the run requires it (CI sets
    TINYLLM_REQUIRE_BROWSER=1 and installs it): then its absence fails."""
    if check.CHROMIUM.exists():
        return
    if os.environ.get("TINYLLM_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{check.CHROMIUM} is missing but TINYLLM_REQUIRE_BROWSER=1")
    pytest.skip(f"{check.CHROMIUM} not installed (apt-get install chromium)")


def test_every_chapter_has_recorded_full_setting_outputs():
    for path in CHAPTERS:
        record = REPO / "book" / "outputs" / path.name
        assert record.exists(), f"run `python book/execute.py {path.name[:2]}`"
        recorded = nbformat.read(record, as_version=4)
        assert recorded.metadata["tinyllm_recorded"]["setting"] == "full"
        outputs = [o for cell in recorded.cells if cell.cell_type == "code"
                   for o in cell.get("outputs", [])]
        assert outputs, f"{record.name} recorded no output"
        assert not [o for o in outputs if o.output_type == "error"], record.name


def test_every_code_cell_of_the_current_chapters_has_its_recorded_output():
    """A chapter edited after its recording fails here, naming the command that records it."""
    for path in CHAPTERS:
        recorded = nbformat.read(REPO / "book" / "outputs" / path.name, as_version=4)
        _, problems = build.with_recorded_outputs(nbformat.read(path, as_version=4), recorded,
                                                  path.name)
        assert not problems, "\n".join(problems)


def test_an_edited_cell_is_named_with_the_command_that_records_it_again():
    chapter = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 99 · A chapter"),
        nbformat.v4.new_code_cell("print(1)"),
        nbformat.v4.new_code_cell("print(2)  # edited"),
    ])
    recorded = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("print(1)", outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="1\n")]),
        nbformat.v4.new_code_cell("print(2)", outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="2\n")]),
    ])
    merged, problems = build.with_recorded_outputs(chapter, recorded, "99_chapter.ipynb")
    assert merged.cells[1].outputs[0].text == "1\n"  # matched by source
    assert merged.cells[2].outputs == []
    assert problems == ["99_chapter.ipynb, cell 3 ('print(2)  # edited') changed since its "
                        "outputs were recorded: run `python book/execute.py 99`"]


def test_the_checker_reports_a_page_broken_on_purpose(tmp_path):
    _need_browser()
    (tmp_path / "chapters").mkdir()
    (tmp_path / "index.html").write_text(
        '<html><body><main><p>Text with $$x^2$$ left raw.</p>'
        '<div class="math notranslate">\\[y\\]</div>'
        '<img src="missing.png"><a href="chapters/nowhere.html">gone</a>'
        '<a href="index.html#no-such-id">anchor</a>'
        '<script src="http://example.com/tracker.js"></script></main></body></html>')
    reports, problems = check.check_book(tmp_path)
    assert list(reports) == ["index.html"]
    assert any("formula not typeset" in p for p in problems)
    assert any("raw math delimiters" in p for p in problems)
    assert any("image did not load" in p and "missing.png" in p for p in problems)
    assert any("broken link" in p and "nowhere.html" in p for p in problems)
    assert any("missing anchor" in p and "no-such-id" in p for p in problems)
    assert "a request left the machine: http://example.com/tracker.js" in problems


@pytest.mark.slow
def test_the_book_builds_with_warnings_as_errors_and_reads_well_in_chromium(tmp_path):
    _need_browser()
    html = tmp_path / "html"
    assert build.build(html, strict=True) == 0
    reports, problems = check.check_book(html)
    assert not problems, "\n".join(problems)
    assert set(reports) == {"index.html"} | {f"chapters/{p.stem}.html" for p in CHAPTERS}
    for path in CHAPTERS:
        page = reports[f"chapters/{path.stem}.html"]
        assert page["typeset"] > 0, f"{path.stem}: no formula"
    images = {name: len(r["images"]) for name, r in reports.items()}
    assert images["chapters/11_gpt.html"] >= 7  # schematics, loss curve, three attention figures
    assert sum(images.values()) >= 55  # 59 when recorded: plots and schematics

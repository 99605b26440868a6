"""Which test checks which labelled equation: parse the chapters and the tests, write the table.

    python benchmarks/equation_table.py           # rewrites tests/equations.md
    python benchmarks/equation_table.py --check   # exit 1, listing the gaps, if any equation is
                                                  # untested or a test cites a missing one

The rules, which tests/test_equations.py enforces:

- **A labelled equation** is a display equation in ``chapters/NN_*.md`` carrying ``\\tag{N.M}``
  (N: the chapter's two-digit number without its leading zero). Its section is the last heading
  ``#``/``##``/``###`` above it. A tag whose chapter is not N, or a tag used twice, is an error.
- **A citation** is the word ``eq``/``eqs``/``equation``/``equations`` (any case, the period
  optional; a line break may follow it), then a list of numbers ``N.M`` joined by ``,``,
  ``and``, ``&``, ``/`` or a range mark (``-``, ``–``, ``—``, ``to``). A range ``15.6–15.8``
  counts each number in it and must stay inside one chapter and go upwards. A bare ``(6.3)`` is
  not a citation: say "eq.". ``5.2.1`` is not a number ``N.M`` (a version, a section).
- **A test cites an equation** when a citation lies on a line of the test function, from its first
  decorator to its last line: its docstring, a comment, a string. Test functions are the
  ``test_*`` functions of ``tests/test_*.py`` at module level and in ``Test*`` classes. Citations
  elsewhere in a test file (the module docstring, helpers, fixtures) do not make an equation
  tested, but they must still name equations that exist (a typo guard).

Standard library only: it runs without tinyllm installed.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "tests" / "equations.md"

TAG = re.compile(r"\\tag\{([^}]*)\}")
HEADING = re.compile(r"^(#{1,3})\s+(.+?)\s*$")
NUMBER = r"\d+\.\d+(?![.\d]*\d)"
JOIN = r"\s*(?:,|and\b|&|/|-|–|—|to\b)\s*"
CITATION = re.compile(
    rf"\b(?:eqs?|equations?)\b\.?\s*\(?({NUMBER}(?:{JOIN}{NUMBER})*)", re.IGNORECASE
)
PIECE = re.compile(r"(\d+\.\d+)|(-|–|—|\bto\b)")


@dataclass(frozen=True)
class Equation:
    number: str  # "6.3"
    chapter: str  # "06_attention.md"
    section: str  # "6.2 Scaled dot-product attention"
    line: int  # of the \tag in the chapter


@dataclass(frozen=True)
class Citation:
    number: str
    file: str  # "test_06_attention.py"
    line: int
    test: str | None  # "test_softmax_rows" or "TestX.test_y"; None outside a test function


@dataclass
class Report:
    equations: dict[str, Equation]
    citations: list[Citation]
    errors: list[str] = field(default_factory=list)

    def tests_of(self, number: str) -> list[str]:
        """``file::test`` for each test function citing ``number``, sorted, once each."""
        found = {f"{c.file}::{c.test}" for c in self.citations if c.number == number and c.test}
        return sorted(found)

    def problems(self) -> list[str]:
        """Parse errors, untested equations, citations of equations that do not exist."""
        untested = [
            f"eq. {n} ({e.chapter}:{e.line}, §{e.section}) is cited by no test function"
            for n, e in self.equations.items()
            if not self.tests_of(n)
        ]
        missing = [
            f"{c.file}:{c.line} cites eq. {c.number}, which no chapter labels"
            for c in self.citations
            if c.number not in self.equations
        ]
        return self.errors + untested + missing


def sort_key(number: str) -> tuple[int, int]:
    chapter, index = number.split(".")
    return int(chapter), int(index)


def parse_chapter(path: Path, errors: list[str]) -> list[Equation]:
    """The ``\\tag{N.M}`` equations of one chapter, each with the heading above it."""
    chapter = int(path.name[:2])
    section, fence, found = path.stem, False, []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        heading = HEADING.match(line)
        if heading and not fence:
            section = heading.group(2)
        for tag in TAG.findall(line):
            if not re.fullmatch(r"\d+\.\d+", tag) or int(tag.split(".")[0]) != chapter:
                errors.append(f"{path.name}:{line_number}: \\tag{{{tag}}} is not {chapter}.M")
                continue
            found.append(Equation(tag, path.name, section, line_number))
    return found


def expand(text: str, where: str, errors: list[str]) -> list[str]:
    """``"15.6–15.8, 15.10"`` -> ["15.6", "15.7", "15.8", "15.10"]; a bad range is an error."""
    numbers: list[str] = []
    pending_range = False
    for match in PIECE.finditer(text):
        if match.group(2):
            pending_range = True
            continue
        number = match.group(1)
        if pending_range and numbers:
            (c0, i0), (c1, i1) = sort_key(numbers[-1]), sort_key(number)
            if c0 != c1 or i1 <= i0:
                errors.append(f"{where}: the range {numbers[-1]}-{number} is not N.a-N.b, a < b")
            else:
                numbers.extend(f"{c0}.{i}" for i in range(i0 + 1, i1 + 1))
        else:
            numbers.append(number)
        pending_range = False
    return numbers


def test_functions(tree: ast.Module) -> list[tuple[str, int, int]]:
    """(name, first line, last line) of every test function; methods as ``Class.test``."""
    spans = []

    def add(node: ast.AST, prefix: str = "") -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name.startswith("test"):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                spans.append((prefix + node.name, first, node.end_lineno))

    for node in tree.body:
        add(node)
        if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for member in node.body:
                add(member, node.name + ".")
    return spans


def parse_tests(path: Path, errors: list[str]) -> list[Citation]:
    """Every citation in one test file, with the test function it lies in (or None)."""
    text = path.read_text(encoding="utf-8")
    spans = test_functions(ast.parse(text))
    found = []
    for match in CITATION.finditer(text):  # over the whole text: "eq.\n    5.9" is one citation
        line_number = text.count("\n", 0, match.start()) + 1
        owner = next((name for name, a, b in spans if a <= line_number <= b), None)
        for number in expand(match.group(1), f"{path.name}:{line_number}", errors):
            found.append(Citation(number, path.name, line_number, owner))
    return found


def collect(root: Path = ROOT) -> Report:
    """Parse every chapter and every test file under ``root``."""
    errors: list[str] = []
    equations: dict[str, Equation] = {}
    for path in sorted((root / "chapters").glob("[0-9][0-9]_*.md")):
        for equation in parse_chapter(path, errors):
            if equation.number in equations:
                first = equations[equation.number]
                errors.append(f"eq. {equation.number} is tagged twice: {first.chapter}:"
                              f"{first.line} and {equation.chapter}:{equation.line}")
            equations[equation.number] = equation
    equations = {n: equations[n] for n in sorted(equations, key=sort_key)}
    citations = []
    for path in sorted((root / "tests").glob("test_*.py")):
        citations.extend(parse_tests(path, errors))
    return Report(equations, citations, errors)


def render(report: Report) -> str:
    """tests/equations.md: one row per labelled equation, in chapter order."""
    tested = sum(bool(report.tests_of(n)) for n in report.equations)
    lines = [
        "# Equations and their tests",
        "",
        "Generated by `python benchmarks/equation_table.py` from the `\\tag{N.M}` equations of the "
        "chapters",
        "and the citations (`eq. N.M`, `eqs. N.a–N.b`) inside the test functions of `tests/`; do "
        "not edit by",
        "hand. `tests/test_equations.py` fails when an equation has no test, when a test cites an "
        "equation",
        "that does not exist, or when this page is stale.",
        "",
        f"{tested} of {len(report.equations)} labelled equations are cited by a test.",
        "",
        "| eq. | chapter, section | tests |",
        "|---|---|---|",
    ]
    for number, equation in report.equations.items():
        tests = report.tests_of(number)
        cell = "<br>".join(f"`{t}`" for t in tests) if tests else "**none**"
        section = equation.section.replace("|", "\\|")
        link = f"[{equation.chapter}](../chapters/{equation.chapter})"  # from tests/equations.md
        lines.append(f"| {number} | {link} §{section} | {cell} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="list the gaps; write nothing")
    args = parser.parse_args(argv)
    report = collect()
    problems = report.problems()
    if args.check:
        print("\n".join(problems) or "every labelled equation is cited by a test")
        return 1 if problems else 0
    TABLE.write_text(render(report), encoding="utf-8")
    tested = sum(bool(report.tests_of(n)) for n in report.equations)
    print(f"wrote {TABLE.relative_to(ROOT)}: {tested}/{len(report.equations)} equations tested, "
          f"{len(problems)} problems")
    return 0


if __name__ == "__main__":
    sys.exit(main())

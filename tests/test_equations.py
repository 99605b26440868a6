"""Every labelled equation of the chapters is cited by a test function, every citation names an
equation that exists, and tests/equations.md (equation -> section -> tests) is current.

The parsing rules are those of benchmarks/equation_table.py (its docstring states them); the first
tests here pin the parser itself on small inputs, so that a parser that finds nothing cannot pass.
"""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def table_module():
    spec = importlib.util.spec_from_file_location(
        "equation_table", ROOT / "benchmarks" / "equation_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


TABLE = table_module()


def write_project(root: Path, chapter: str, tests: str) -> None:
    (root / "chapters").mkdir()
    (root / "tests").mkdir()
    (root / "chapters" / "06_attention.md").write_text(chapter)
    (root / "tests" / "test_06_x.py").write_text(tests)


CHAPTER = """# Chapter
## 6.1 First
$$a = b \\tag{6.1}$$
```python
# 6.9 not a heading: inside a code fence
```
## 6.2 Second
$$
c = d
\\tag{6.2}
$$
$$e = f \\tag{6.3}$$
$$g = h \\tag{6.4}$$
"""

# The fixtures spell the citation words with a placeholder, so that this file itself cites nothing.
TESTS = '''"""Module docstring: @s. 6.1-6.4 here do not count."""


def helper():
    return 1  # @. 6.4 in a helper does not count either


def test_one():
    """The softmax rows (@s. 6.1–6.2)."""
    assert helper() == 1


class TestTwo:
    def test_three(self):
        assert True  # @ 6.3, and a typo: @uation 6.7


def test_range_bad():
    pass  # @s. 6.3-6.2
'''.replace("@", "eq")


def test_the_parser_on_a_small_project(tmp_path):
    write_project(tmp_path, CHAPTER, TESTS)
    report = TABLE.collect(tmp_path)
    assert list(report.equations) == ["6.1", "6.2", "6.3", "6.4"]
    assert report.equations["6.2"].section == "6.2 Second"
    assert report.equations["6.1"].section == "6.1 First"  # the fenced comment is no heading
    assert report.tests_of("6.1") == ["test_06_x.py::test_one"]
    assert report.tests_of("6.2") == ["test_06_x.py::test_one"]  # an en-dash range
    assert report.tests_of("6.3") == [
        "test_06_x.py::TestTwo.test_three", "test_06_x.py::test_range_bad"]
    assert report.tests_of("6.4") == []  # only the module docstring and a helper cite it
    problems = report.problems()
    assert any("range 6.3-6.2" in p for p in problems), problems
    assert any("eq. 6.4" in p and "no test function" in p for p in problems), problems
    assert any("test_06_x.py:15 cites eq. 6.7" in p for p in problems), problems
    assert len(problems) == 3, problems


def test_citation_forms():
    errors: list[str] = []
    found = [
        TABLE.expand(m.group(1), "x", errors)
        for m in TABLE.CITATION.finditer(
            "@. 3.1; %s 15.6–15.8, 15.10; @uations 8.14 and 8.15; (@. 9.8); @.\n    4.2; "
            "version 1.2; (6.3); @. 5.2.1".replace("@", "eq").replace("%", "Eq")
        )
    ]
    assert found == [["3.1"], ["15.6", "15.7", "15.8", "15.10"], ["8.14", "8.15"], ["9.8"],
                     ["4.2"]]  # the last across a line break
    assert not errors


def test_a_wrong_or_repeated_tag_is_an_error(tmp_path):
    write_project(tmp_path, "$$x \\tag{7.1}$$\n$$y \\tag{6.1}$$\n$$z \\tag{6.1}$$\n", "")
    problems = TABLE.collect(tmp_path).problems()
    assert any("\\tag{7.1} is not 6.M" in p for p in problems), problems
    assert any("eq. 6.1 is tagged twice" in p for p in problems), problems


def test_every_labelled_equation_is_tested():
    """Fails listing each \\tag{N.M} no test function cites, and each citation of a missing
    equation: cite the equation (eq. N.M) in the test that checks it, or write that test."""
    report = TABLE.collect()
    assert len(report.equations) > 150  # the chapters were found and parsed
    problems = report.problems()
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


def test_the_equation_table_is_current():
    """tests/equations.md is what the script writes now (regenerate: python
    benchmarks/equation_table.py)."""
    expected = TABLE.render(TABLE.collect())
    assert TABLE.TABLE.read_text(encoding="utf-8") == expected, (
        "tests/equations.md is stale; run: python benchmarks/equation_table.py"
    )

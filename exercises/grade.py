"""Grade the exercises: run a chapter's real tests with library functions replaced by yours.

    python exercises/grade.py 03               # your code, exercises/03_softmax_cross_entropy.py
    python exercises/grade.py 03 --solutions   # the reference solutions (exercises/solutions/)
    python exercises/grade.py all              # every chapter that has exercises
    python exercises/grade.py 03 -- -x --tb=long   # anything after -- goes to pytest

Each exercise file ends with a table ``EXERCISES`` of rows
``(number, "module:Owner.attribute", your_function, (test ids, ...))``. For each listed test the
grader puts your function where the library looks it up, runs the test, and puts the library's
own function back:

* a method (``"tinyllm.ops:Mul.backward"``) is set on its class, so every caller sees it;
* a module function (``"tinyllm.optim.schedules:warmup_cosine"``) is set in its module *and* in
  every tinyllm or test module that copied it with ``from module import name``, because such an
  import binds the original function under a second name.

The test ids are the chapter's ordinary tests in ``tests/`` (the ones CI runs against the library),
so a passing exercise passes exactly what the library passes.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

HERE = Path(__file__).resolve().parent  # exercises/
REPO = HERE.parent
TESTS = REPO / "tests"


@dataclass(frozen=True)
class Exercise:
    number: str  # "03.2": chapter 03, exercise 2
    replaces: str  # "tinyllm.nn.softmax:Softmax.backward": module, then the attribute path
    function: Callable  # the student's function (or the reference solution)
    tests: tuple[str, ...]  # pytest node ids under tests/ that check this function


def exercise_files(chapter: str) -> list[Path]:
    """exercises/NN_topic.py for chapter ``NN`` ("all": every chapter), in chapter order."""
    pattern = "[0-9][0-9]_*.py" if chapter == "all" else f"{int(chapter):02d}_*.py"
    files = sorted(HERE.glob(pattern))
    if not files:
        have = ", ".join(p.name[:2] for p in sorted(HERE.glob("[0-9][0-9]_*.py")))
        raise SystemExit(f"no exercises for chapter {chapter!r}; chapters with exercises: {have}")
    return files


def load_file(path: Path):
    """Import a Python file by its path (names such as 03_softmax.py are not valid identifiers)."""
    name = "exercise_" + path.stem + ("_solution" if path.parent.name == "solutions" else "")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_exercises(path: Path, solutions: bool = False) -> list[Exercise]:
    """The rows of ``path``'s table; with ``solutions`` each function is the one of the same name
    in exercises/solutions/<same file name>."""
    table = load_file(path).EXERCISES
    answers = load_file(HERE / "solutions" / path.name) if solutions else None
    exercises = []
    for number, replaces, function, tests in table:
        if answers is not None:
            function = vars(answers)[function.__name__]
        exercises.append(Exercise(number, replaces, function, tuple(tests)))
    return exercises


def resolve(replaces: str) -> tuple[object, str, object]:
    """"pkg.module:Owner.attr" -> (the object holding attr, "attr", the library's attr)."""
    module_name, _, path = replaces.partition(":")
    owner = importlib.import_module(module_name)
    *outer, name = path.split(".")
    for part in outer:
        owner = getattr(owner, part)
    if name not in vars(owner):
        raise AttributeError(f"{replaces}: {name!r} is not defined in {owner!r} itself; name the "
                             "module or class that defines it")
    return owner, name, vars(owner)[name]


def _aliases(original) -> list[tuple[object, str]]:
    """(module, name) for every loaded tinyllm or test module that binds ``original``."""
    found = []
    for module in list(sys.modules.values()):
        if not isinstance(module, types.ModuleType):  # some packages put other objects there
            continue
        file = getattr(module, "__file__", None) or ""
        ours = module.__name__.startswith("tinyllm") or Path(file).parent == TESTS
        if ours:
            found += [(module, k) for k, v in list(vars(module).items()) if v is original]
    return found


def replace(exercise: Exercise) -> list[tuple[object, str, object]]:
    """Put ``exercise.function`` where the library looks it up; returns what to restore."""
    owner, name, original = resolve(exercise.replaces)
    places = [(owner, name)] if isinstance(owner, type) else _aliases(original)
    for place, key in places:
        setattr(place, key, exercise.function)
    return [(place, key, original) for place, key in places]


def restore(saved: list[tuple[object, str, object]]) -> None:
    for place, key, original in saved:
        setattr(place, key, original)


class Grader:
    """A pytest plugin: runs only the listed tests, each with its exercise's function in place,
    and prints one line per exercise: how many of its tests passed."""

    def __init__(self, exercises: list[Exercise]):
        self.exercises = exercises
        self.by_test = {}
        for exercise in exercises:
            for test in exercise.tests:
                if test in self.by_test:
                    raise ValueError(f"test {test} is listed by exercises "
                                     f"{self.by_test[test].number} and {exercise.number}: "
                                     "give each test to one exercise")
                self.by_test[test] = exercise
        self.failed: set[str] = set()
        self.passed: set[str] = set()

    def pytest_collection_modifyitems(self, config, items):
        items[:] = [item for item in items if item.nodeid in self.by_test]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        saved = replace(self.by_test[item.nodeid])
        try:
            yield
        finally:
            restore(saved)

    def pytest_runtest_logreport(self, report):
        if report.failed:
            self.failed.add(report.nodeid)
        elif report.when == "call" and report.passed:
            self.passed.add(report.nodeid)

    def pytest_terminal_summary(self, terminalreporter):
        write = terminalreporter.write_line
        write("")
        for exercise in self.exercises:
            ok = sum(t in self.passed and t not in self.failed for t in exercise.tests)
            verdict = "PASS" if ok == len(exercise.tests) else "FAIL"
            write(f"exercise {exercise.number} {exercise.replaces} {verdict} "
                  f"{ok}/{len(exercise.tests)} tests passed")


def grade(chapter: str, solutions: bool = False, pytest_args: tuple[str, ...] = ()) -> int:
    """Run the graded tests of ``chapter`` ("NN" or "all"); pytest's exit code (0: all passed)."""
    exercises = [e for path in exercise_files(chapter) for e in load_exercises(path, solutions)]
    grader = Grader(exercises)
    os.chdir(REPO)  # the test ids are relative to the repository root
    args = ["-q", "--tb=short", "-p", "no:cacheprovider", *pytest_args, *grader.by_test]
    return int(pytest.main(args, plugins=[grader]))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    split = argv.index("--") if "--" in argv else len(argv)  # after --: pytest's own options
    argv, pytest_args = argv[:split], argv[split + 1:]
    parser = argparse.ArgumentParser(description="Grade the exercises of a chapter against its "
                                                 "real tests.",
                                     epilog="Options for pytest go after --, e.g. `03 -- -x`.")
    parser.add_argument("chapter", help='chapter number, e.g. 03, or "all"')
    parser.add_argument("--solutions", action="store_true",
                        help="grade the reference solutions instead of your exercise file")
    args = parser.parse_args(argv)
    if args.chapter != "all" and not args.chapter.isdigit():
        parser.error(f'chapter must be a number such as 03, or "all", got {args.chapter!r}')
    return grade(args.chapter, args.solutions, tuple(pytest_args))


if __name__ == "__main__":
    sys.exit(main())

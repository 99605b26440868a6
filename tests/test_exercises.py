"""The exercises (issue 14): every exercise's target exists and matches its stub's signature,
every listed test id exists, and (slow, in subprocesses) the listed real tests pass with the
reference solutions and fail with the stubs."""

import ast
import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GRADE_PY = REPO / "exercises" / "grade.py"
_spec = importlib.util.spec_from_file_location("exercise_grader", GRADE_PY)
grade = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = grade  # dataclasses look their module up there
_spec.loader.exec_module(grade)

FILES = grade.exercise_files("all")
ALL = [e for path in FILES for e in grade.load_exercises(path)]
SOLVED = [e for path in FILES for e in grade.load_exercises(path, solutions=True)]
LINE = re.compile(r"^exercise (\S+) (\S+) (PASS|FAIL) (\d+)/(\d+) tests passed$", re.M)


def test_every_chapter_has_three_to_six_exercises():
    chapters = {e.number.split(".")[0] for e in ALL}
    assert chapters == {p.name[:2] for p in (REPO / "chapters").glob("[0-9][0-9]_*.md")}
    for chapter in chapters:
        count = sum(e.number.startswith(chapter + ".") for e in ALL)
        assert 3 <= count <= 6, f"chapter {chapter} has {count} exercises"
    for path in FILES:  # the file's chapter is the exercises' chapter
        assert all(e.number[:2] == path.name[:2] for e in grade.load_exercises(path))


@pytest.mark.parametrize("exercise", ALL, ids=lambda e: e.number)
def test_target_exists_and_the_stub_has_its_signature(exercise):
    _, _, original = grade.resolve(exercise.replaces)
    assert callable(original)
    assert list(inspect.signature(exercise.function).parameters) == list(
        inspect.signature(original).parameters
    ), f"exercise {exercise.number}: the stub's parameters differ from {exercise.replaces}"
    source = inspect.getsource(exercise.function)
    assert f'raise NotImplementedError("exercise {exercise.number}' in source
    target = exercise.replaces.split(":")[1]  # "Softmax.forward": named in the stub's docstring
    assert exercise.function.__doc__ and target in exercise.function.__doc__


@pytest.mark.parametrize("exercise", ALL, ids=lambda e: e.number)
def test_every_listed_test_exists(exercise):
    assert exercise.tests, f"exercise {exercise.number} lists no tests"
    for test_id in exercise.tests:
        file, _, name = test_id.partition("::")
        path = REPO / file
        assert path.parent == REPO / "tests" and path.exists(), test_id
        defined = {node.name for node in ast.parse(path.read_text()).body
                   if isinstance(node, ast.FunctionDef)}
        assert name.split("[")[0] in defined, f"{test_id}: no such test function"


def test_each_test_grades_one_exercise_and_solutions_match_stubs():
    ids = [t for e in ALL for t in e.tests]
    assert len(ids) == len(set(ids))
    for stub, solution in zip(ALL, SOLVED):
        assert solution.function is not stub.function
        assert (inspect.signature(solution.function).parameters.keys()
                == inspect.signature(stub.function).parameters.keys())


def test_replace_puts_the_function_everywhere_and_restore_undoes_it():
    autograd = importlib.import_module("tinyllm.autograd")  # tinyllm.autograd is also a name
    tensor = importlib.import_module("tinyllm.tensor")

    exercise = next(e for e in ALL if e.replaces == "tinyllm.autograd:unbroadcast")
    original = autograd.unbroadcast
    saved = grade.replace(exercise)
    try:
        assert autograd.unbroadcast is exercise.function
        assert tensor.unbroadcast is exercise.function  # the `from ... import` copy too
    finally:
        grade.restore(saved)
    assert autograd.unbroadcast is original and tensor.unbroadcast is original


def run_grader(*args):
    result = subprocess.run([sys.executable, str(GRADE_PY), "all", *args], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    lines = {m[0]: (m[2], int(m[3]), int(m[4])) for m in LINE.findall(result.stdout)}
    assert set(lines) == {e.number for e in ALL}, result.stdout[-3000:] + result.stderr[-2000:]
    return result, lines


@pytest.mark.slow
def test_every_exercise_passes_its_tests_with_the_solutions():
    result, lines = run_grader("--solutions")
    failing = {n: v for n, v in lines.items() if v[0] != "PASS"}
    assert result.returncode == 0 and not failing, result.stdout[-4000:]


@pytest.mark.slow
def test_every_exercise_fails_all_its_tests_with_the_stubs():
    result, lines = run_grader()
    passing = {n: v for n, v in lines.items() if v[1] != 0}
    assert result.returncode == 1 and not passing, f"stubs passed tests: {passing}"


def test_tinyllm_exercise_runs_the_grader_and_exits_with_its_status():
    command = [sys.executable, "-c", "import sys; from tinyllm.cli import main; sys.exit(main())",
               "exercise", "02"]
    solved = subprocess.run(command + ["--solutions", "--", "--tb=line"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert solved.returncode == 0, solved.stdout[-2000:] + solved.stderr[-2000:]
    assert {m[0] for m in LINE.findall(solved.stdout)} == {"02.1", "02.2", "02.3"}
    stubs = subprocess.run(command + ["--", "-x"], cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert stubs.returncode == 1 and "stopping after 1 failures" in stubs.stdout  # -x: to pytest
    wrong = subprocess.run(command[:-1] + ["2x"], cwd=REPO, capture_output=True, text=True)
    assert wrong.returncode == 2 and "chapter must be a number" in wrong.stderr

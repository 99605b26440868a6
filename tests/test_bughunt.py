"""`tinyllm bughunt` (issue 14): apply, list and reset on a copy of the package, the refusals, and
the CI check that every bug is caught by the tests it names.

Nothing here changes the real source: every test copies tinyllm/ into tmp_path and passes that
folder as ``root``; the catching tests run in a subprocess that imports the copy
(``PYTHONPATH`` = the copy's parent, which is also the working folder).
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tinyllm import bughunt
from tinyllm.bughunt_bugs import BUG_LIST
from tinyllm.cli import main

REPO = Path(__file__).resolve().parent.parent
LIBRARY = REPO / "tinyllm"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def package(tmp_path) -> Path:
    """A copy of the tinyllm package folder, without caches or a bug hunt record."""
    root = tmp_path / "tinyllm"
    shutil.copytree(LIBRARY, root, ignore=shutil.ignore_patterns("__pycache__", ".bughunt.json"))
    return root


def run_tests(copy_parent: Path, node_ids, timeout: int = 120) -> subprocess.CompletedProcess:
    """pytest on the repository's tests, importing tinyllm from ``copy_parent``."""
    env = dict(os.environ, PYTHONPATH=str(copy_parent), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-x", "-n", "0",
         "--rootdir", str(REPO), *[str(REPO / node) for node in node_ids]],
        cwd=copy_parent, env=env, capture_output=True, text=True, timeout=timeout)


def test_bug_list_is_well_formed():
    numbers = [bug.number for bug in BUG_LIST]
    assert numbers == list(range(1, len(BUG_LIST) + 1)) and len(BUG_LIST) >= 12
    for bug in BUG_LIST:
        assert bug.old != bug.new and bug.tests and bug.hint
        for node in bug.tests:
            test_file, _, name = node.partition("::")
            assert f"def {name}(" in (REPO / test_file).read_text(), node


@pytest.mark.parametrize("bug", BUG_LIST, ids=lambda bug: f"bug{bug.number}")
def test_every_old_text_occurs_exactly_once_in_the_real_source(bug):
    """A refactor that moves the code a bug replaces must move the bug too."""
    assert (LIBRARY / bug.file).read_text(encoding="utf-8").count(bug.old) == 1


def test_apply_list_reset_round_trip(package):
    bug = BUG_LIST[3]
    path = package / bug.file
    before, mode = digest(path), path.stat().st_mode
    assert "[applied]" not in bughunt.list_bugs(package)
    message = bughunt.apply_bug(bug.number, package)
    assert f"bug {bug.number} applied" in message and f"-m ch{bug.chapter:02d}" in message
    text = path.read_text(encoding="utf-8")
    assert bug.old not in text and text.count(bug.new) == 1
    assert digest(path) != before and path.stat().st_mode == mode
    listed = [line for line in bughunt.list_bugs(package).splitlines() if "[applied]" in line]
    assert len(listed) == 1 and listed[0].split()[0] == str(bug.number)
    assert bughunt.applied_state(package)["sha256_original"] == before
    assert "back as it was" in bughunt.reset(package)
    assert digest(path) == before and not (package / bughunt.STATE_NAME).exists()
    assert "no bug is applied" in bughunt.reset(package)


@pytest.mark.parametrize("bug", BUG_LIST, ids=lambda bug: f"bug{bug.number}")
def test_each_bug_applies_and_resets_byte_for_byte(package, bug):
    before = {p: digest(p) for p in package.rglob("*.py")}
    bughunt.apply_bug(bug.number, package)
    changed = [p for p in before if digest(p) != before[p]]
    assert changed == [package / bug.file]
    bughunt.reset(package)
    assert {p: digest(p) for p in package.rglob("*.py")} == before


def test_apply_refuses_a_second_bug_and_an_unknown_number(package):
    bughunt.apply_bug(1, package)
    with pytest.raises(bughunt.BughuntError, match="bug 1 is applied; `tinyllm bughunt reset`"):
        bughunt.apply_bug(2, package)
    with pytest.raises(bughunt.BughuntError, match="there is no bug 99; the bugs are 1 to"):
        bughunt.apply_bug(99, package)


def test_apply_refuses_a_file_the_student_edited(package):
    bug = BUG_LIST[0]
    path = package / bug.file
    path.write_text(path.read_text(encoding="utf-8").replace(bug.old, ""), encoding="utf-8")
    with pytest.raises(bughunt.BughuntError, match=r"0 times, not once.*git checkout"):
        bughunt.apply_bug(bug.number, package)
    assert not (package / bughunt.STATE_NAME).exists()


def test_reset_refuses_a_file_changed_since_apply(package):
    bug = BUG_LIST[1]
    path = package / bug.file
    bughunt.apply_bug(bug.number, package)
    edited = path.read_text(encoding="utf-8") + "# the student's fix attempt\n"
    path.write_text(edited, encoding="utf-8")
    with pytest.raises(bughunt.BughuntError, match=r"changed since bug 2 was applied.*checkout"):
        bughunt.reset(package)
    assert path.read_text(encoding="utf-8") == edited  # nothing of the student's work is lost


def test_apply_refuses_an_installed_or_read_only_package(package, tmp_path, monkeypatch):
    bug = BUG_LIST[0]
    installed = tmp_path / "lib" / "site-packages" / "tinyllm"
    shutil.copytree(package, installed)
    with pytest.raises(bughunt.BughuntError, match="installed package, not a source copy"):
        bughunt.apply_bug(bug.number, installed)
    (package / bug.file).chmod(0o444)
    if os.geteuid() == 0:  # root may write to read-only files: ask os.access as a user would
        monkeypatch.setattr(bughunt.os, "access", lambda path, mode: False)
    with pytest.raises(bughunt.BughuntError, match=r"cannot write .*pip install -e \."):
        bughunt.apply_bug(bug.number, package)
    assert not (package / bughunt.STATE_NAME).exists()


def test_corrupt_record_is_a_clear_error(package):
    (package / bughunt.STATE_NAME).write_text("{not json", encoding="utf-8")
    with pytest.raises(bughunt.BughuntError, match="not a bug hunt record.*git checkout"):
        bughunt.list_bugs(package)


def test_answer_names_the_tests_and_the_command():
    text = bughunt.answer(4)
    assert "tinyllm/nn/attention.py" in text and "python -m pytest -x tests/test_06" in text
    assert "python -m pytest -m ch06 -x" in text


def test_command_line(capsys):
    assert main(["bughunt", "list"]) == 0
    out = capsys.readouterr().out
    assert all(bug.title in out for bug in BUG_LIST)
    assert main(["bughunt", "answer", "3"]) == 0
    assert "test_cross_entropy_gradcheck" in capsys.readouterr().out
    assert main(["bughunt", "answer", "0"]) == 2
    assert "there is no bug 0" in capsys.readouterr().err


def test_subprocess_imports_the_copy(package):
    """The check below is only real if the tests run against the copy, not the working tree."""
    probe = package.parent / "test_probe.py"
    probe.write_text("import tinyllm\n\ndef test_where():\n    print('FILE', tinyllm.__file__)\n")
    env = dict(os.environ, PYTHONPATH=str(package.parent))
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-s",
                             "-n", "0", str(probe)], cwd=package.parent, env=env,
                            capture_output=True, text=True, timeout=120)
    assert f"FILE {package / '__init__.py'}" in result.stdout, result.stdout + result.stderr
    clean = run_tests(package.parent, BUG_LIST[0].tests)  # unbugged copy: the test passes
    assert clean.returncode == 0, clean.stdout[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("bug", BUG_LIST, ids=lambda bug: f"bug{bug.number}")
def test_each_bug_is_caught_by_its_tests(package, bug):
    """The issue's CI check: with the bug applied, its catching tests fail (and not because the
    test could not be found or collected: pytest's exit code 1 means tests ran and failed)."""
    bughunt.apply_bug(bug.number, package)
    result = run_tests(package.parent, bug.tests)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    assert " failed" in result.stdout.splitlines()[-1]

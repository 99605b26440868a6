"""``tinyllm bughunt``: put one realistic bug into your copy of the library, predict which tests
fail, run them, then take the bug out again (issue 14; the bugs are in ``bughunt_bugs.py``).

    tinyllm bughunt list          # number, chapter, title, and which one is applied
    tinyllm bughunt apply 4       # bug 4 goes into the source; predict, then run the tests
    tinyllm bughunt answer 4      # the tests that catch it, and the command to run them
    tinyllm bughunt reset         # the source is back, byte for byte

A bug is a replacement of one exact piece of source text (``Bug.old``, found exactly once) by a
wrong one (``Bug.new``); no diff tool, no code is run. ``apply`` records the bug, the offset of the
replacement and the SHA-256 of the file before and after in ``.bughunt.json`` next to the package's
``__init__.py``; ``reset`` puts ``old`` back at that offset only if the file is still exactly as
``apply`` left it, and checks that the result has the original SHA-256. Every function takes the
package folder ``root`` so that the tests work on a copy of the package.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

from tinyllm.bughunt_bugs import BUG_LIST, Bug
from tinyllm.runs import write_bytes

PACKAGE_ROOT = Path(__file__).resolve().parent  # the tinyllm folder this module was loaded from
STATE_NAME = ".bughunt.json"  # the applied bug, in the package folder (listed in .gitignore)


class BughuntError(ValueError):
    """A bug hunt command that cannot run as asked; the message says why and what to do."""


def add_parser(commands) -> None:
    """``tinyllm bughunt``'s arguments (cli.py calls this)."""
    p = commands.add_parser("bughunt", help="put a known bug into the library and find the tests "
                                            "that catch it",
                            description="Bug hunts: `apply N` puts bug N into this source copy of "
                                        "tinyllm; predict which tests fail, run them, check with "
                                        "`answer N`, and `reset` to remove the bug.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="the bugs, and which one is applied")
    for name, text in (("apply", "put bug N into the source"),
                       ("answer", "the tests that catch bug N")):
        actions.add_parser(name, help=text).add_argument("number", type=int, help="bug number")
    actions.add_parser("reset", help="remove the applied bug: the source is back as it was")
    p.set_defaults(handler=run_command)


def run_command(args) -> None:
    """``tinyllm bughunt ACTION``: print what :func:`list_bugs`, :func:`apply_bug`,
    :func:`answer` or :func:`reset` return."""
    if args.action == "list":
        print(list_bugs())
    elif args.action == "apply":
        print(apply_bug(args.number))
    elif args.action == "answer":
        print(answer(args.number))
    else:
        print(reset())


def find_bug(number: int) -> Bug:
    """The bug with this number, or an error that lists the valid numbers."""
    for bug in BUG_LIST:
        if bug.number == number:
            return bug
    raise BughuntError(f"there is no bug {number}; the bugs are 1 to {len(BUG_LIST)} "
                       "(see `tinyllm bughunt list`)")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def applied_state(root: Path = PACKAGE_ROOT) -> dict | None:
    """What ``apply`` recorded (bug number, file, offset, both SHA-256), or None."""
    path = Path(root) / STATE_NAME
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        find_bug(state["number"])
        return state
    except (ValueError, KeyError, TypeError) as error:
        raise BughuntError(f"{path} is not a bug hunt record ({error}); restore the source with "
                           "`git checkout tinyllm` and delete that file") from None


def list_bugs(root: Path = PACKAGE_ROOT) -> str:
    """One line per bug: number, chapter, title, and ``[applied]`` for the applied one."""
    state = applied_state(root)
    applied = state["number"] if state else None
    lines = [f"{'bug':>3}  {'ch':>2}  title"]
    for bug in BUG_LIST:
        mark = "  [applied]" if bug.number == applied else ""
        lines.append(f"{bug.number:>3}  {bug.chapter:02d}  {bug.title}{mark}")
    lines.append("`tinyllm bughunt apply N` puts bug N into the source; "
                 "`tinyllm bughunt reset` takes it out.")
    return "\n".join(lines)


def _check_writable(root: Path, path: Path) -> None:
    """Refuse an installed (non-source) package: a bug belongs in the student's own copy."""
    if "site-packages" in root.parts or "dist-packages" in root.parts:
        raise BughuntError(f"tinyllm at {root} is an installed package, not a source copy: bug "
                           "hunts change the source, so run them in a clone of the repository "
                           "installed with `pip install -e .`")
    if not (os.access(root, os.W_OK) and os.access(path, os.W_OK)):
        raise BughuntError(f"cannot write {path}: bug hunts change the source, so they need a "
                           "source copy you may write to (a clone installed with "
                           "`pip install -e .`)")


def _write_source(path: Path, data: bytes) -> None:
    """Replace the file atomically, keep its mode, and drop its cached bytecode (a .pyc stamps the
    source's mtime and size, which a same-size edit within one second would not change)."""
    mode = path.stat().st_mode & 0o777
    write_bytes(path, data)
    os.chmod(path, mode)
    cached = Path(importlib.util.cache_from_source(str(path)))
    if cached.exists():
        cached.unlink()


def apply_bug(number: int, root: Path = PACKAGE_ROOT) -> str:
    """Put bug ``number`` into the package at ``root``; refuse if a bug is already applied or the
    file does not hold ``Bug.old`` exactly once. Returns what to do next."""
    bug, root = find_bug(number), Path(root)
    state = applied_state(root)
    if state is not None:
        raise BughuntError(f"bug {state['number']} is applied; `tinyllm bughunt reset` first "
                           "(one bug at a time, so that every failing test has one cause)")
    path = root / bug.file
    if not path.exists():
        raise BughuntError(f"{path} does not exist: bug {number} needs tinyllm's source; "
                           "restore it with `git checkout tinyllm`")
    _check_writable(root, path)
    original = path.read_bytes()
    text = original.decode("utf-8")
    found = text.count(bug.old)
    if found != 1:
        raise BughuntError(f"{path} holds the text bug {number} replaces {found} times, not once: "
                           "the file was edited; restore it with "
                           f"`git checkout tinyllm/{bug.file}` and apply again")
    offset = text.index(bug.old)
    buggy = (text[:offset] + bug.new + text[offset + len(bug.old):]).encode("utf-8")
    state = {"number": number, "file": bug.file, "offset": offset,
             "sha256_original": sha256(original), "sha256_buggy": sha256(buggy)}
    write_bytes(root / STATE_NAME, (json.dumps(state, indent=1) + "\n").encode("utf-8"))
    _write_source(path, buggy)
    return (f"bug {number} applied (chapter {bug.chapter:02d}): {bug.title}\n"
            f"hint: {bug.hint}\n"
            f"Predict which tests fail, then run them: python -m pytest -m ch{bug.chapter:02d}\n"
            f"`tinyllm bughunt answer {number}` names the tests that catch it; "
            "`tinyllm bughunt reset` removes it.")


def reset(root: Path = PACKAGE_ROOT) -> str:
    """Take the applied bug out; refuse if its file changed since ``apply``."""
    root = Path(root)
    state = applied_state(root)
    if state is None:
        return "no bug is applied; the source is as it was"
    bug = find_bug(state["number"])
    path = root / state["file"]
    restore = f"`git checkout tinyllm/{state['file']}`, then delete {root / STATE_NAME}"
    current = path.read_bytes() if path.exists() else b""
    if sha256(current) != state["sha256_buggy"]:
        raise BughuntError(f"{path} changed since bug {bug.number} was applied, so reset cannot "
                           f"tell what to undo; restore it with {restore}")
    text, offset = current.decode("utf-8"), state["offset"]
    restored = (text[:offset] + bug.old + text[offset + len(bug.new):]).encode("utf-8")
    if sha256(restored) != state["sha256_original"]:  # the bug list changed since apply
        raise BughuntError(f"undoing bug {bug.number} does not give back the original {path}; "
                           f"restore it with {restore}")
    _write_source(path, restored)
    (root / STATE_NAME).unlink()
    return f"bug {bug.number} removed: {path} is back as it was (SHA-256 checked)"


def answer(number: int) -> str:
    """The file of bug ``number``, the tests that catch it and the commands that run them."""
    bug = find_bug(number)
    tests = "\n".join(f"  {test}" for test in bug.tests)
    return (f"bug {number} (chapter {bug.chapter:02d}): {bug.title}\n"
            f"where: tinyllm/{bug.file}\n"
            f"caught by:\n{tests}\n"
            f"run them: python -m pytest -x {' '.join(bug.tests)}\n"
            f"the whole chapter: python -m pytest -m ch{bug.chapter:02d} -x")

"""``tinyllm exercise NN``: grade your answers to chapter NN's exercises (issue 14).

    tinyllm exercise 06               # your exercises/06_attention.py against chapter 06's tests
    tinyllm exercise 06 --solutions   # the reference solutions (exercises/solutions/)
    tinyllm exercise all -- -x        # every chapter; after --, options for pytest

The exercises and their grader live in the repository, next to the package
(``exercises/grade.py``; see ``exercises/README.md``), so this command works in the clone that
``pip install -e .`` installed from. It loads the grader by its path and hands it the arguments.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

GRADER = Path(__file__).resolve().parent.parent / "exercises" / "grade.py"


def add_parser(commands) -> None:
    """``tinyllm exercise``'s arguments (cli.py calls this): all of them go to the grader, which
    reads ``CHAPTER [--solutions] [-- PYTEST OPTIONS]``."""
    p = commands.add_parser("exercise", help="grade your exercises of a chapter with its tests",
                            usage="tinyllm exercise CHAPTER [--solutions] [-- PYTEST OPTIONS]",
                            description="Run chapter CHAPTER's real tests (e.g. 06, or all) with "
                                        "the functions of exercises/NN_topic.py in place of the "
                                        "library's; --solutions grades the reference solutions.")
    p.add_argument("grader_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(handler=run_command)


def run_command(args) -> None:
    """Grade, then exit with the grader's status (0: every listed test passed)."""
    if not GRADER.exists():
        raise FileNotFoundError(f"{GRADER} not found: the exercises come with the repository; "
                                "clone it and install from the clone with `pip install -e .`")
    spec = importlib.util.spec_from_file_location("exercise_grader", GRADER)
    grader = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = grader  # its dataclass looks its module up there
    spec.loader.exec_module(grader)
    raise SystemExit(grader.main(args.grader_args))

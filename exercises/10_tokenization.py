"""Chapter 10 exercises: a character tokenizer, training BPE, encoding with its merges. Grade them
with

    python exercises/grade.py 10

Each function replaces one piece of tinyllm while the chapter's real tests run (see
exercises/README.md). Token ids are Python ints; bytes are ids 0..255, merge r makes id 256 + r.
"""

from __future__ import annotations


def char_encode(self, text):
    """Replaces ``tinyllm.tokenizers.CharTokenizer.encode``   (eq. 10.1)

    The id of each character of ``text``: ``self._ids`` maps a character to its id. A character
    not in the vocabulary raises ``tinyllm.tokenizers.TokenizerError`` whose message starts with
    ``self.unknown_characters(text)`` (it names each unknown character and its position).
    """
    raise NotImplementedError("exercise 10.1: look every character up, or name the unknown ones")


def learn_merges(words, freqs, num_merges):
    """Replaces ``tinyllm.bpe.learn_merges``: train byte-pair encoding   (sections 10.4, 10.5)

    ``words`` are ``bytes`` (iterate one to get its byte ids), ``freqs[w]`` how often word w
    occurs. Repeat up to ``num_merges`` times: count every adjacent pair of ids inside each word,
    weighted by the word's frequency; stop if there is no pair; take the most frequent pair, ties
    to the smallest pair (compare the tuples); replace its occurrences in every word, left to right
    and without overlap ("aaa" with (a, a) becomes (Z, a)), by the new id 256 + (merges so far).
    Return the list of merged pairs. Recounting every step is fine here (the library updates the
    counts incrementally, eq. 10.7).
    """
    raise NotImplementedError("exercise 10.2: count pairs, merge the best, repeat")


def apply_merges(ids, ranks):
    """Replaces ``tinyllm.bpe.apply_merges``: encode one word by merge rank (§10.8, eq. 10.9)

    ``ranks`` maps a pair to its merge number r (the merge made id 256 + r). Repeatedly find the
    pair of the word with the lowest rank, replace all its occurrences left to right (without
    overlap) by 256 + rank, until no pair of the word has a rank. Returns the new list of ids.
    """
    raise NotImplementedError("exercise 10.3: merge the lowest-ranked pair until none is left")


# number, the library attribute it replaces, your function, the tests that grade it
EXERCISES = (
    ("10.1", "tinyllm.tokenizers:CharTokenizer.encode", char_encode,
     ("tests/test_10_tokenizers.py::test_char_round_trip",
      "tests/test_10_tokenizers.py::test_char_unknown_character_is_named_with_its_position")),
    ("10.2", "tinyllm.bpe:learn_merges", learn_merges,
     ("tests/test_10_tokenizers.py::test_first_merges_worked_by_hand",
      "tests/test_10_tokenizers.py::test_ties_go_to_the_smallest_pair",
      "tests/test_10_bpe_scaling.py::test_word_frequencies_weight_the_counts")),
    ("10.3", "tinyllm.bpe:apply_merges", apply_merges,
     ("tests/test_10_bpe_scaling.py::test_self_pairs_merge_left_to_right",
      "tests/test_10_tokenizers.py::test_encoding_by_rank_replays_every_merge_in_order")),
)

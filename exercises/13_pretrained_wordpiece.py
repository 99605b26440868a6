"""Chapter 13 exercises: BERT's tokenizer (clean-up, words, greedy WordPiece), learning a WordPiece
vocabulary, sentence embeddings and search. Grade them with

    python exercises/grade.py 13

Each function replaces one piece of tinyllm while the chapter's real tests run (see
exercises/README.md); none of the graded tests needs the MiniLM weights. The tokenizer tests
compare with Hugging Face's ``tokenizers`` (the oracle) character for character.
"""

from __future__ import annotations


def normalize(text, lowercase=True):
    """Replaces ``tinyllm.wordpiece.normalize``: BERT's text clean-up (section 13.1, steps 1-2)

    First, character by character (``unicodedata.category(c)`` gives the category):
      - tab, newline, carriage return, and every other whitespace character (``c.isspace()``)
        whose category does not start with "C" become a plain space " ";
      - NUL "\\x00", the replacement character "\\ufffd" and every other character of a category
        starting with "C" (control, format: "\\x0b", "\\u200b", "\\x85", ...) are deleted;
      - a CJK ideograph (code point inside one of the ranges ``tinyllm.wordpiece._CJK_RANGES``)
        becomes " c ", a word of its own;
      - everything else stays.
    Then, only if ``lowercase``: decompose with ``unicodedata.normalize("NFD", text)``, drop every
    combining mark (category "Mn") and lowercase each remaining character on its own
    (``c.lower()``, so that "Σ" is always "σ"). normalize("Héllo\\tWörld\\x00!") == "hello world!".
    """
    raise NotImplementedError("exercise 13.1: clean each character, then NFD, drop Mn, lower")


def pre_tokenize(text):
    """Replaces ``tinyllm.wordpiece.pre_tokenize``: text -> words (section 13.1, step 3)

    Split on whitespace (``text.split()``), then cut every chunk at its punctuation characters:
    each punctuation character is a word of its own, and the runs between them are words (empty
    runs are dropped). Punctuation is every character of ``string.punctuation`` (all of ASCII's
    printable symbols, $ + < = > ^ ` | ~ included) or of a Unicode category starting with "P".
    pre_tokenize("don't stop!") == ["don", "'", "t", "stop", "!"].
    """
    raise NotImplementedError("exercise 13.2: split at whitespace, then around punctuation")


def wordpiece(self, word):
    """Replaces ``tinyllm.wordpiece.WordPieceTokenizer._wordpiece``: one word -> ids (eq. 13.1)

    Greedy longest-match-first: from ``start = 0``, take the longest piece of the vocabulary
    that starts at ``start``: ``word[start:end]`` for the first piece, ``"##" + word[start:end]``
    for every later one (try ``end`` from ``len(word)`` down to ``start + 1``); append its id
    (``self.ids`` maps a token to its id) and continue at ``end``. If no piece starts at some
    position, or the word has more than 100 characters
    (``tinyllm.wordpiece.MAX_WORD_CHARS``), or it is empty, the WHOLE word is the one id
    ``self.ids["[UNK]"]``. Returns a list of ints. (You may keep the results in the dict
    ``self._cache``, word -> ids: a text repeats its words.)
    """
    raise NotImplementedError("exercise 13.3: the longest piece first, [UNK] if stuck")


def learn_wordpiece(words, freqs, num_tokens):
    """Replaces ``tinyllm.wordpiece_merges.learn_wordpiece``: learn a vocabulary (eqs. 13.2, 13.3)

    ``words`` (str) occur ``freqs[i]`` times each. Split every word into its initial units
    ("king" -> ["k", "##i", "##n", "##g"]: ``tinyllm.wordpiece_merges.initial_units``); the
    vocabulary starts as the sorted set of all those units. Then, while it has fewer than
    ``num_tokens`` entries:
      - count c(u) of every unit and c(a b) of every adjacent pair, over all words, each
        occurrence weighted by its word's frequency; stop if there is no pair;
      - merge the pair of highest score(a, b) = c(a b) / (c(a) c(b)) (eq. 13.3), ties to the
        smallest pair (a, b) of strings: ``min(pairs, key=lambda p: (-score(p), p))``;
      - the new unit is ``merged_unit(a, b)`` (a + b without b's "##": "k" + "##i" = "ki");
        replace every occurrence of (a, b) in every word, left to right without overlap
        ("##a ##a ##a" -> "##aa ##a"), and append the unit to the vocabulary unless it is
        already there (another pair can make the same string: the merge still happens).
    Returns the vocabulary, a list of str. Recounting everything after each merge is fine; the
    library keeps the counts up to date with a heap instead.
    """
    raise NotImplementedError("exercise 13.4: count units and pairs, merge the best score")


def mean_pool(h, attention_mask):
    """Replaces ``tinyllm.pretrained.mean_pool``: the mean over the real tokens (eq. 13.4)

    u_b = sum_t m_bt h_bt / max(sum_t m_bt, 1e-9)
    ``h`` is a Tensor (B, T, C); ``attention_mask`` (B, T) is an array of bools or 0/1 (True at
    real tokens): make it a float array of ``h.dtype`` with a trailing axis, (B, T, 1)
    (``tinyllm.backend.to_numpy`` brings a device array to the host). Returns a Tensor (B, C)
    built from Tensor operations, so that the gradient reaches ``h``; padding must not count.
    """
    raise NotImplementedError("exercise 13.5: mask, sum over T, divide by the real count")


def nearest(query, embeddings, top):
    """Replaces ``tinyllm.search.nearest``: cosine-similarity search (eq. 13.5)

    For unit vectors the cosine is the dot product: s = E q, E (N, C), q (C,) -> s (N,).
    Return (rows, scores): the indices of the ``min(top, N)`` largest s_i, best first, ties to
    the smaller row, as an int array (k,), and s at those rows (k,). N = 0 gives two empty
    arrays. ``top < 1`` is a ValueError "--top must be a positive integer, got <top>".
    ``np.argpartition`` finds the k largest in linear time; then sort only those.
    """
    raise NotImplementedError("exercise 13.6: s = E q, then the top k rows in order")


# number, the library attribute it replaces, your function, the tests that grade it
EXERCISES = (
    ("13.1", "tinyllm.wordpiece:normalize", normalize,
     ("tests/test_13_wordpiece.py::test_ids_and_decoding_equal_the_oracle_on_tricky_strings"
      "[True-corpus]",
      "tests/test_13_wordpiece.py::test_ids_and_decoding_equal_the_oracle_on_tricky_strings"
      "[False-corpus]",
      "tests/test_13_wordpiece.py::test_hypothesis_text_and_pairs_equal_the_oracle")),
    ("13.2", "tinyllm.wordpiece:pre_tokenize", pre_tokenize,
     ("tests/test_13_wordpiece.py::test_ids_and_decoding_equal_the_oracle_on_tricky_strings"
      "[True-hand]",
      "tests/test_13_wordpiece.py::test_ids_and_decoding_equal_the_oracle_on_tricky_strings"
      "[False-hand]")),
    ("13.3", "tinyllm.wordpiece:WordPieceTokenizer._wordpiece", wordpiece,
     ("tests/test_13_wordpiece.py::test_greedy_longest_match_first_by_hand",
      "tests/test_13_wordpiece.py::test_the_whole_validation_play_equals_the_oracle",
      "tests/test_13_wordpiece.py::test_truncation_longest_first_equals_the_oracle[40]")),
    ("13.4", "tinyllm.wordpiece_merges:learn_wordpiece", learn_wordpiece,
     ("tests/test_13_wordpiece.py::test_the_likelihood_score_by_hand",
      "tests/test_13_wordpiece.py::test_the_heap_trainer_equals_the_literal_algorithm",
      "tests/test_13_chapter.py::"
      "test_the_first_merge_has_the_highest_pointwise_mutual_information")),
    ("13.5", "tinyllm.pretrained:mean_pool", mean_pool,
     ("tests/test_13_pretrained.py::test_pooling_closed_form",
      "tests/test_13_pretrained.py::test_pooling_gradcheck",
      "tests/test_13_pretrained.py::test_sentence_embeddings_ignore_padding_and_keep_the_order")),
    ("13.6", "tinyllm.search:nearest", nearest,
     ("tests/test_13_search.py::test_the_nearest_planted_vector_wins",
      "tests/test_13_search.py::test_ties_go_to_the_earlier_row_and_top_is_capped")),
)

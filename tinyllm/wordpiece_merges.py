"""Chapter 13: learning a WordPiece vocabulary, the likelihood-score merge rule, with a heap.

WordPiece (Schuster & Nakajima 2012, "Japanese and Korean voice search"; the form BERT uses, as
the Hugging Face course describes it) starts from single characters, a word's first character
as itself and every later one with the continuation prefix: "king" = k ##i ##n ##g. Then it
repeatedly merges the adjacent pair (a, b) of highest score

    score(a, b) = count(a b) / (count(a) count(b))                                   (eq. 13.3)

where counts are occurrences in the corpus (each unique word weighted by its frequency). This
is the pair whose merge raises the likelihood of a unigram model of the units the most (eq.
13.2): unlike BPE's raw count, it prefers a pair whose parts rarely appear apart. The merged unit
is ``a + b`` without b's prefix ("##i" + "##n" = "##in", "k" + "##in" = "kin").

As in ``tinyllm.bpe``, each unique word is a linked list of symbols and ``where[pair]`` lists
the positions where a pair starts, so a merge visits only its own occurrences (eq. 10.7). The
score of a pair changes when the count of either unit changes, so after merging (a, b) every
live pair containing a or b is pushed again with its new score; a heap with lazy deletion (an
entry is used only if its score is still the pair's current score) keeps the best at hand.
``tests/test_13_wordpiece.py`` checks it against the literal algorithm (rescore every pair
after every merge). Pure Python, the standard library only.
"""

from __future__ import annotations

import heapq
from array import array
from collections import defaultdict
from typing import Sequence

from tinyllm.bpe import merge_occurrences

CONTINUATION = "##"  # the prefix of a unit that continues a word


def initial_units(word: str) -> list[str]:
    """"king" -> ["k", "##i", "##n", "##g"]: the first character, then continuations."""
    return [c if i == 0 else CONTINUATION + c for i, c in enumerate(word)]


def merged_unit(a: str, b: str) -> str:
    """The unit made by merging a and b: b loses its continuation prefix ("k" + "##i" = "ki")."""
    return a + b[len(CONTINUATION):]


def learn_wordpiece(words: Sequence[str], freqs: Sequence[int], num_tokens: int) -> list[str]:
    """The units of ``words`` (each seen ``freqs[w]`` times): first the alphabet (every initial
    unit, sorted), then merged units in the order they are learned, until there are
    ``num_tokens`` or no pair is left.

    Each step merges the pair of highest score (eq. 13.3); ties go to the smallest (a, b) as
    strings. Within a word, occurrences merge left to right ("##a ##a ##a" -> "##aa ##a"). A
    merge whose unit already exists (from another pair) merges but adds no new token.
    """
    alphabet = sorted({unit for word in words for unit in initial_units(word)})
    tokens = list(alphabet)
    ids = {unit: i for i, unit in enumerate(tokens)}  # unit -> symbol id (== its index in tokens)
    symbol = array("q")  # position -> symbol id; -1 once merged into its left neighbour
    weight = array("q")  # position -> frequency of the word it belongs to
    ends = []  # position -> is the last of its word
    for word, freq in zip(words, freqs):
        symbol.extend(ids[unit] for unit in initial_units(word))
        weight.extend([freq] * len(word))
        ends.extend([False] * (len(word) - 1) + [True] if word else [])
    size = len(symbol)
    prev = array("q", [-1 if i == 0 or ends[i - 1] else i - 1 for i in range(size)])
    after = array("q", [-1 if ends[i] else i + 1 for i in range(size)])
    unit_count: dict[int, int] = defaultdict(int)  # symbol -> occurrences in the corpus
    pair_count: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], array] = defaultdict(lambda: array("q"))  # some stale
    pairs_of: dict[int, set] = defaultdict(set)  # symbol -> the pairs it is part of (some dead)
    for i in range(size):
        unit_count[symbol[i]] += weight[i]
        if after[i] >= 0:
            pair = (symbol[i], symbol[after[i]])
            pair_count[pair] += weight[i]
            where[pair].append(i)
            pairs_of[pair[0]].add(pair)
            pairs_of[pair[1]].add(pair)

    def entry(pair):  # the heap orders by highest score, then by the smallest pair of strings
        a, b = pair
        return (-pair_count[pair] / (unit_count[a] * unit_count[b]), tokens[a], tokens[b], pair)

    heap = [entry(pair) for pair in pair_count]
    heapq.heapify(heap)
    while len(tokens) < num_tokens and heap:
        item = heapq.heappop(heap)
        pair = item[-1]
        if pair_count.get(pair, 0) <= 0 or entry(pair) != item:
            continue  # stale entry: the pair is gone, or its score has changed since
        a, b = pair
        unit = merged_unit(tokens[a], tokens[b])
        if unit not in ids:
            ids[unit] = len(tokens)
            tokens.append(unit)
        z = ids[unit]
        # x a b y -> x z y, as in BPE (eq. 10.7); then the unit counts the score divides by
        changed, merged = merge_occurrences(pair, z, symbol, weight, prev, after, pair_count,
                                            where)
        unit_count[a] -= merged
        unit_count[b] -= merged
        unit_count[z] += merged
        for p in changed:  # the new pairs (x, z), (z, y) join their units' lists
            pairs_of[p[0]].add(p)
            pairs_of[p[1]].add(p)
        changed.add(pair)
        changed |= pairs_of[a] | pairs_of[b] | pairs_of[z]  # their units' counts changed
        for p in changed:
            if pair_count.get(p, 0) > 0:
                heapq.heappush(heap, entry(p))
            else:
                pair_count.pop(p, None)
                where.pop(p, None)
        for s in (a, b, z):
            pairs_of[s] = {p for p in pairs_of[s] if p in pair_count}
    return tokens

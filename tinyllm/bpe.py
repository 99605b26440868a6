"""Chapter 10: the two BPE algorithms, in time linear in the text (up to a log from the heap).

- :func:`learn_merges` (training, eq. 10.4 and 10.7): repeatedly merge the most frequent adjacent
  pair of ids. Each unique pre-tokenized word is a linked list of symbols, and ``where[pair]``
  lists the *positions* where the pair starts, so a merge visits only its own occurrences and
  updates the counts of the pairs beside each one (eq. 10.7). A heap with lazy deletion keeps the
  best pair at hand. Every merge removes one symbol per occurrence, so all merges together do
  O(N log P) work for N symbols and P distinct pairs, however long a single word is (a text
  without spaces is one word).
- :func:`apply_merges` (encoding, eq. 10.9): merge the pair of lowest rank first, with a heap of
  ``(rank, position)`` over the word's linked list; O(n log n) for a word of n bytes.

Both give exactly what the literal algorithms give (recount everything, merge left to right):
``tests/test_10_bpe_scaling.py`` checks it. Pure Python, the standard library only.
"""

from __future__ import annotations

import heapq
from array import array
from collections import defaultdict
from typing import Sequence

Pair = tuple[int, int]


def learn_merges(words: Sequence[bytes], freqs: Sequence[int], num_merges: int) -> list[Pair]:
    """Up to ``num_merges`` merges for ``words`` (each seen ``freqs[w]`` times); new ids from 256.

    Each step merges the most frequent pair; ties go to the smallest pair (left id first). Within
    a word, occurrences are merged left to right, so "aaa" with (a, a) becomes (Z, a).
    """
    # All symbols of all words end to end; positions are linked (-1 ends a word).
    symbol = array("q")  # position -> token id; -1 once merged into its left neighbour
    weight = array("q")  # position -> frequency of the word it belongs to
    for word, freq in zip(words, freqs):
        symbol.extend(word)
        weight.extend([freq] * len(word))
    size = len(symbol)
    prev, after = array("q", range(-1, size - 1)), array("q", range(1, size + 1))
    counts: dict[Pair, int] = defaultdict(int)  # pair -> occurrences in the text
    where: dict[Pair, array] = defaultdict(lambda: array("q"))  # pair -> positions (some stale)
    start = 0
    for word in words:
        end = start + len(word)
        if word:
            prev[start], after[end - 1] = -1, -1
        for i in range(start, end - 1):
            pair = (word[i - start], word[i - start + 1])
            counts[pair] += weight[i]
            where[pair].append(i)
        start = end
    # The smallest entry is the most frequent pair; among equal counts, the smallest pair.
    heap = [(-count, pair) for pair, count in counts.items()]
    heapq.heapify(heap)

    merges: list[Pair] = []
    while len(merges) < num_merges and heap:
        negative_count, pair = heapq.heappop(heap)
        if counts.get(pair, 0) != -negative_count:
            continue  # stale entry: the count has changed since it was pushed
        new_id = 256 + len(merges)
        merges.append(pair)
        changed, _ = merge_occurrences(pair, new_id, symbol, weight, prev, after, counts, where)
        del counts[pair]  # every occurrence is gone: A B can never form again
        changed.discard(pair)
        for p in changed:
            if counts[p] > 0:
                heapq.heappush(heap, (-counts[p], p))
            else:
                del counts[p]
    return merges


def merge_occurrences(pair: Pair, new_id: int, symbol: array, weight: array, prev: array,
                      after: array, counts: dict, where: dict) -> tuple[set[Pair], int]:
    """Merge every live occurrence of ``pair`` = (A, B) into ``new_id`` = Z, left to right, in
    the linked lists (``symbol``, ``prev``, ``after``), updating ``counts`` and ``where`` of the
    pairs beside each one (eq. 10.7). Returns the pairs whose counts changed and the total
    weight merged (how often Z now occurs). Shared by BPE and WordPiece training."""
    a, b = pair
    changed: set[Pair] = set()
    merged = 0
    for i in sorted(set(where.pop(pair))):  # left to right
        j = after[i]
        if symbol[i] != a or j < 0 or symbol[j] != b:
            continue  # stale position: merged away, or now part of another pair
        # eq. 10.7: x A B y -> x Z y removes (x, A), (A, B), (B, y), adds (x, Z), (Z, y)
        w, left, right = weight[i], prev[i], after[j]
        if left >= 0:
            x = symbol[left]
            counts[(x, a)] -= w
            counts[(x, new_id)] += w
            where[(x, new_id)].append(left)
            changed.update(((x, a), (x, new_id)))
        if right >= 0:
            y = symbol[right]
            counts[(b, y)] -= w
            counts[(new_id, y)] += w
            where[(new_id, y)].append(i)
            changed.update(((b, y), (new_id, y)))
            prev[right] = i
        counts[pair] -= w
        merged += w
        symbol[i], symbol[j], after[i] = new_id, -1, right
    return changed, merged


def apply_merges(ids: list[int], ranks: dict[Pair, int]) -> list[int]:
    """Encode one word: merge the pair of lowest rank first (merge r makes id 256 + r), until no
    pair of the word has a rank. Equal pairs go left to right, as one merge over the word does.

    The same linked list and ``where`` index as :func:`learn_merges`; the heap holds each pair
    once, by rank (a pair made by merge r holds id 256 + r, so its rank is above r: ranks rise).
    """
    symbol = list(ids)  # position -> token id; -1 once merged into its left neighbour
    size = len(symbol)
    prev, after = list(range(-1, size - 1)), list(range(1, size + 1))
    if size:
        after[-1] = -1
    where: dict[Pair, list[int]] = defaultdict(list)  # pair -> positions (some stale)
    for i, pair in enumerate(zip(symbol, symbol[1:])):
        if pair in ranks:
            where[pair].append(i)
    heap = [(ranks[pair], pair) for pair in where]
    heapq.heapify(heap)
    while heap:
        rank, pair = heapq.heappop(heap)
        a, b = pair
        new_id = 256 + rank
        for i in sorted(set(where.pop(pair))):  # left to right
            j = after[i]
            if symbol[i] != a or j < 0 or symbol[j] != b:
                continue  # stale position: merged away, or now part of another pair
            left, right = prev[i], after[j]
            symbol[i], symbol[j], after[i] = new_id, -1, right
            made = []  # the pairs this merge creates, with their positions
            if left >= 0:
                made.append(((symbol[left], new_id), left))
            if right >= 0:
                prev[right] = i
                made.append(((new_id, symbol[right]), i))
            for new_pair, position in made:
                if new_pair in ranks:
                    if new_pair not in where:
                        heapq.heappush(heap, (ranks[new_pair], new_pair))
                    where[new_pair].append(position)
    return [t for t in symbol if t >= 0]

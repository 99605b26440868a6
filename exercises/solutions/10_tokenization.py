"""Reference solutions of exercises/10_tokenization.py. Try the exercises first."""

from __future__ import annotations

from collections import Counter

from tinyllm.tokenizers import TokenizerError


def char_encode(self, text):
    """One id per character (eq. 10.1)."""
    unknown = [c for c in text if c not in self._ids]
    if unknown:
        raise TokenizerError(f"{self.unknown_characters(text)}. Build the tokenizer from text "
                             "that contains them.")
    return [self._ids[c] for c in text]


def _merge(ids, pair, new_id):
    """Every occurrence of ``pair`` in ``ids`` replaced by ``new_id``, left to right."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def learn_merges(words, freqs, num_merges):
    """Recount, merge the most frequent pair (ties: the smallest), repeat."""
    words = [list(word) for word in words]
    merges = []
    while len(merges) < num_merges:
        counts = Counter()
        for ids, freq in zip(words, freqs):
            for pair in zip(ids, ids[1:]):
                counts[pair] += freq
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        words = [_merge(ids, best, 256 + len(merges)) for ids in words]
        merges.append(best)
    return merges


def apply_merges(ids, ranks):
    """Merge the lowest-ranked pair present until none has a rank (eq. 10.9)."""
    ids = list(ids)
    while len(ids) > 1:
        ranked = [ranks[pair] for pair in zip(ids, ids[1:]) if pair in ranks]
        if not ranked:
            break
        rank = min(ranked)
        pair = next(p for p in zip(ids, ids[1:]) if ranks.get(p) == rank)
        ids = _merge(ids, pair, 256 + rank)
    return ids

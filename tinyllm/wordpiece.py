"""Chapter 13: WordPiece, BERT's tokenizer, from scratch (Wu et al. 2016; Devlin et al. 2019).

Text becomes ids in three steps, exactly as Hugging Face's BertTokenizerFast does them (the
``tokenizers`` package is the oracle of tests/test_13_wordpiece.py):

1. normalise (BERT's BasicTokenizer): remove NUL, U+FFFD and control characters (category C*,
   except tab, newline and carriage return), turn every whitespace character into a space, put
   spaces around CJK ideographs; with ``lowercase``, strip accents (NFD, then drop the
   non-spacing marks, category Mn) and lowercase each character;
2. pre-tokenise: split on whitespace, then make each punctuation character (category P*, or
   ASCII punctuation such as $ + < = > ^ ` | ~) a word of its own;
3. WordPiece each word, greedy longest-match-first: the longest prefix in the vocabulary, then
   the longest "##"-continuation of the rest, and so on; a word with no such split, or longer
   than 100 characters, is the single token [UNK]                                  (eq. 13.1)

then ``[CLS] A [SEP]`` (or ``[CLS] A [SEP] B [SEP]``, segment ids 0 for A, 1 for B). Special
tokens written in the text ("[MASK]") are matched before normalisation and never split.

    tok = WordPieceTokenizer.from_vocab("vocab.txt")         # one token per line; id = line
    tok.encode("Hello, world!")          # [101, 7592, 1010, 2088, 999, 102] with BERT's vocab
    batch = tok.encode_batch(["a", "b c"])    # {"ids", "segment_ids", "attention_mask"} (B, T)
"""

from __future__ import annotations

import functools
import os
import re
import string
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from tinyllm.wordpiece_merges import CONTINUATION, learn_wordpiece

WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_WORD_CHARS = 100  # a longer word is [UNK] (BERT's max_input_chars_per_word)
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
_ASCII_PUNCTUATION = frozenset(string.punctuation)  # !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~
_CLEANUPS = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
             (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"),
             (" 're", "'re"))  # the decoder's clean-up of tokenisation spaces, per token


class WordPieceError(ValueError):
    """A vocabulary a WordPiece tokenizer cannot use, or ids or settings it cannot handle."""


@functools.lru_cache(maxsize=None)
def _clean_char(c: str) -> str:
    """Step 1a for one character: "" (removed), " " (whitespace) or " c " (CJK) or c."""
    if c in "\t\n\r" or (c.isspace() and not unicodedata.category(c).startswith("C")):
        return " "
    if c in "\x00\ufffd" or unicodedata.category(c).startswith("C"):
        return ""  # NUL, the replacement character, control and format characters
    if any(lo <= ord(c) <= hi for lo, hi in _CJK_RANGES):
        return f" {c} "
    return c


@functools.lru_cache(maxsize=None)
def _fold_char(c: str) -> str:
    """Step 1b for one character after NFD: non-spacing marks go, the rest is lowercased (one
    character at a time, as the oracle does: "Σ" is always "σ", never the final "ς")."""
    return "" if unicodedata.category(c) == "Mn" else c.lower()


@functools.lru_cache(maxsize=None)
def _is_punctuation(c: str) -> bool:
    return c in _ASCII_PUNCTUATION or unicodedata.category(c).startswith("P")


def normalize(text: str, lowercase: bool = True) -> str:
    """Step 1: BERT's text clean-up, CJK spacing, and (with ``lowercase``) accent stripping and
    lowercasing: normalize("Héllo\\tWörld\\x00!") == "hello world!"."""
    text = "".join(map(_clean_char, text))
    if lowercase:
        text = "".join(map(_fold_char, unicodedata.normalize("NFD", text)))
    return text


def pre_tokenize(text: str) -> list[str]:
    """Step 2: whitespace split, then every punctuation character on its own:
    pre_tokenize("don't stop!") == ["don", "'", "t", "stop", "!"]."""
    words = []
    for chunk in text.split():
        if not any(map(_is_punctuation, chunk)):
            words.append(chunk)
            continue
        start = 0
        for i, c in enumerate(chunk):
            if _is_punctuation(c):
                words.extend([chunk[start:i], c] if i > start else [c])
                start = i + 1
        if start < len(chunk):
            words.append(chunk[start:])
    return words


def _truncated_lengths(n1: int, n2: int, budget: int) -> tuple[int, int]:
    """Longest-first truncation of a pair to ``budget`` tokens, as the oracle does it: the
    shorter keeps its length if the longer can take the rest; else both get half (the first
    sequence the smaller half, unless it was the longer one)."""
    swap = n1 > n2
    short, long = (n2, n1) if swap else (n1, n2)
    long = long if short > budget else max(short, budget - short)
    if short + long > budget:
        short, long = budget // 2, budget // 2 + budget % 2
    return (long, short) if swap else (short, long)


class WordPieceTokenizer:
    """WordPiece over a vocabulary list (id = position). ``lowercase`` also strips accents (the
    uncased BERT models); ``special_tokens`` maps the specials the vocabulary holds to ids."""

    def __init__(self, vocab: Sequence[str], lowercase: bool = True) -> None:
        self.vocab = list(vocab)  # id -> token
        if not all(isinstance(t, str) for t in self.vocab):
            raise WordPieceError("a WordPiece vocabulary is a list of token strings")
        self.ids = {token: i for i, token in enumerate(self.vocab)}  # a repeat: the last id
        if "[UNK]" not in self.ids:
            raise WordPieceError("the vocabulary has no [UNK] token; add a line '[UNK]' to it "
                                 "(BERT's vocab.txt has it at id 100)")
        self.lowercase = bool(lowercase)
        self.special_tokens = {s: self.ids[s] for s in WORDPIECE_SPECIALS if s in self.ids}
        present = sorted(self.special_tokens, key=len, reverse=True)  # longest first
        self._special_split = re.compile("(" + "|".join(map(re.escape, present)) + ")")
        self._cache: dict[str, list[int]] = {}  # word -> ids

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @classmethod
    def from_vocab(cls, path: str | os.PathLike, lowercase: bool = True) -> WordPieceTokenizer:
        """Read a ``vocab.txt`` (Hugging Face layout: one token per line, id = line number,
        trailing whitespace ignored)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"WordPiece vocabulary not found: {path.resolve()}")
        try:
            lines = path.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError as error:
            raise WordPieceError(f"{path} is not UTF-8 text ({error}); a vocab.txt holds one "
                                 "token per line") from None
        if lines and lines[-1] == "":
            lines.pop()  # the newline that ends the last line
        return cls([line.rstrip() for line in lines], lowercase)

    @classmethod
    def train(cls, text: str, vocab_size: int, lowercase: bool = True,
              special_tokens: Sequence[str] = WORDPIECE_SPECIALS) -> WordPieceTokenizer:
        """Learn a vocabulary of at most ``vocab_size`` tokens from ``text``: the special tokens,
        the alphabet, then units merged by the likelihood score (eq. 13.3,
        :func:`tinyllm.wordpiece_merges.learn_wordpiece`), on the words of steps 1-2."""
        if "[UNK]" not in special_tokens:
            raise WordPieceError("special_tokens must include [UNK], the token of unknown words")
        words = Counter(pre_tokenize(normalize(text, lowercase)))
        words = Counter({w: n for w, n in words.items() if len(w) <= MAX_WORD_CHARS})
        units = learn_wordpiece(list(words), list(words.values()),
                                vocab_size - len(special_tokens))
        return cls(list(special_tokens) + [u for u in units if u not in special_tokens],
                   lowercase)

    # ------------------------------------------------------------------------ text -> ids
    def _wordpiece(self, word: str) -> list[int]:
        """Step 3 (eq. 13.1): greedy longest-match-first; [UNK] for the whole word if stuck."""
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        ids, start = [], 0
        while start < len(word) <= MAX_WORD_CHARS:
            for end in range(len(word), start, -1):  # the longest piece first
                piece = word[start:end] if start == 0 else CONTINUATION + word[start:end]
                if piece in self.ids:
                    ids.append(self.ids[piece])
                    start = end
                    break
            else:
                break  # no piece of the vocabulary starts here
        if start < len(word) or not word:
            ids = [self.ids["[UNK]"]]
        self._cache[word] = ids
        return ids

    def tokenize(self, text: str) -> list[str]:
        """Steps 1-3 on ``text``: the tokens, without [CLS] and [SEP]:
        tokenize("Unaffable") == ["una", "##ff", "##able"] with BERT's vocabulary."""
        return [self.vocab[i] for i in self._text_ids(text)]

    def _text_ids(self, text: str) -> list[int]:
        """Steps 1-3 on ``text``: the ids of :meth:`tokenize`."""
        ids: list[int] = []
        for position, chunk in enumerate(self._special_split.split(text)):
            if position % 2 == 1:  # a special token written in the text
                ids.append(self.special_tokens[chunk])
                continue
            for word in pre_tokenize(normalize(chunk, self.lowercase)):
                ids.extend(self._wordpiece(word))
        return ids

    def _special(self, name: str) -> int:
        if name not in self.special_tokens:
            raise WordPieceError(f"the vocabulary has no {name} token; add it, or pass "
                                 "add_special_tokens=False")
        return self.special_tokens[name]

    def encode_with_segments(self, text: str, text_pair: str | None = None,
                             add_special_tokens: bool = True,
                             max_length: int | None = None) -> tuple[list[int], list[int]]:
        """(ids, segment ids) of ``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]``; segment 0 for
        [CLS] A [SEP], 1 for B [SEP]. ``max_length`` (specials included) truncates longest-first
        (a single text keeps its first tokens)."""
        a = self._text_ids(text)
        b = None if text_pair is None else self._text_ids(text_pair)
        if max_length is not None:
            extra = (3 if b is not None else 2) if add_special_tokens else 0
            budget = max_length - extra
            if budget < 0:
                raise WordPieceError(f"max_length={max_length} leaves no room for the {extra} "
                                     "special tokens; use at least that many")
            if b is None:
                a = a[:budget]
            else:
                n1, n2 = _truncated_lengths(len(a), len(b), budget)
                a, b = a[:n1], b[:n2]
        if add_special_tokens:
            cls_id, sep_id = self._special("[CLS]"), self._special("[SEP]")
            a = [cls_id] + a + [sep_id]
            b = None if b is None else b + [sep_id]
        segments = [0] * len(a) + ([] if b is None else [1] * len(b))
        return a + ([] if b is None else b), segments

    def encode(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True,
               max_length: int | None = None) -> list[int]:
        """Text (or a pair of texts) -> ids, ``[CLS] ... [SEP]`` unless
        ``add_special_tokens=False``; see :meth:`encode_with_segments`."""
        return self.encode_with_segments(text, text_pair, add_special_tokens, max_length)[0]

    def encode_batch(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None,
                     add_special_tokens: bool = True,
                     max_length: int | None = None) -> dict[str, np.ndarray]:
        """A padded batch: "ids" and "segment_ids" (B, T) int64, [PAD] (and segment 0) after the
        end of each row, and "attention_mask" (B, T) bool, True at real tokens; T is the longest
        row. ``model.encode(**batch)`` takes it as it is."""
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise WordPieceError(f"text_pairs has {len(text_pairs)} entries for {len(texts)} "
                                 "texts; give one pair per text")
        pairs = [None] * len(texts) if text_pairs is None else list(text_pairs)
        rows = [self.encode_with_segments(t, p, add_special_tokens, max_length)
                for t, p in zip(texts, pairs)]
        lengths = np.array([len(ids) for ids, _ in rows], dtype=np.int64)  # (B,)
        T = int(lengths.max()) if len(rows) else 0
        mask = np.arange(T)[None, :] < lengths[:, None]  # (B, T)
        ids = np.full((len(rows), T), self._special("[PAD]") if (~mask).any() else 0, np.int64)
        segment_ids = np.zeros((len(rows), T), dtype=np.int64)  # (B, T)
        ids[mask] = np.concatenate([r[0] for r in rows] + [[]]).astype(np.int64)
        segment_ids[mask] = np.concatenate([r[1] for r in rows] + [[]]).astype(np.int64)
        return {"ids": ids, "segment_ids": segment_ids, "attention_mask": mask}

    # ------------------------------------------------------------------------ ids -> text
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Ids -> text: pieces joined by spaces, a "##" piece glued to the one before, the
        spaces before . ? ! , removed (the oracle's clean-up). Lowercasing and accent stripping
        cannot be undone: decode(encode("Héllo")) == "hello"."""
        tokens = []
        for position, i in enumerate(ids):
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise WordPieceError(f"token id {i} at position {position} is outside the "
                                     f"vocabulary [0, {self.vocab_size})")
            if not (skip_special_tokens and self.vocab[i] in self.special_tokens):
                tokens.append(self.vocab[i])
        pieces = []
        for position, token in enumerate(tokens):
            if position > 0:
                has_prefix = token.startswith(CONTINUATION)
                token = token[len(CONTINUATION):] if has_prefix else " " + token
            for dirty, clean in _CLEANUPS:
                token = token.replace(dirty, clean)
            pieces.append(token)
        return "".join(pieces)

    # ------------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        """The tokenizer as JSON-ready data (checkpoints embed it; ``tokenizer_from_dict``)."""
        return {"type": "wordpiece", "vocab": list(self.vocab), "lowercase": self.lowercase}

    @classmethod
    def from_dict(cls, obj: dict, source: str = "tokenizer data") -> WordPieceTokenizer:
        vocab, lowercase = obj.get("vocab"), obj.get("lowercase")
        if not isinstance(vocab, list) or not isinstance(lowercase, bool):
            raise WordPieceError(f"{source}: expected 'vocab' as a list of token strings and "
                                 "'lowercase' as true or false")
        return cls(vocab, lowercase)

    def save(self, path: str | os.PathLike) -> None:
        """Write ``vocab.txt`` (one token per line), the file :meth:`from_vocab` reads."""
        bad = [t for t in self.vocab if "\n" in t or "\r" in t or t != t.rstrip()]
        if bad:
            raise WordPieceError(f"tokens {bad[:3]} cannot be written one per line; keep the "
                                 "tokenizer with to_dict() instead")
        Path(path).write_text("".join(t + "\n" for t in self.vocab), encoding="utf-8")

"""Chapter 10: tokenization, from characters to byte-level BPE.

A language model reads integers. A tokenizer turns text into a list of ids and back, and for every
string it accepts, ``decode(encode(s)) == s``.

- :class:`CharTokenizer` gives each character of a fixed alphabet one id.
- :class:`BPETokenizer` is GPT-2's byte-level byte-pair encoding, trained from scratch: start from
  the 256 byte values, then repeatedly replace the most frequent adjacent pair of tokens with a new
  token. Because every string is a sequence of UTF-8 bytes, nothing is ever out of vocabulary.

    tok = BPETokenizer.train(text, vocab_size=256 + 2000 + 1,   # bytes + merges + specials
                             special_tokens=["<|endoftext|>"])
    ids = tok.encode("To be, or not to be")     # list[int]
    tok.decode(ids)                             # 'To be, or not to be'

Pure Python and the standard library; no NumPy needed, no autograd.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from tinyllm.bpe import Pair, apply_merges, learn_merges
from tinyllm.wordpiece import WordPieceError, WordPieceTokenizer  # noqa: F401 (chapter 13)

# GPT-2's pre-tokenization with the standard `re` module: an English contraction, a run of letters,
# a run of digits, or a run of other symbols, each keeping one leading space; then whitespace (a run
# of spaces before a word leaves its last space to that word). Merges never cross these pieces, so
# " the" is learned once instead of once per neighbouring word. Every character matches one branch
# ([^\W\d_] is "letters"; [^\s\w] and _ are "symbols"), so "".join(pieces) == text.
PRETOKENIZE = re.compile(r"'(?:s|t|re|ve|m|ll|d)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+")

class TokenizerError(ValueError):
    """Text or ids a tokenizer cannot handle, or a tokenizer file it cannot read."""


def _merge(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids``, left to right, by ``new_id`` (one merge,
    literally: the chapter's reference; ``tinyllm.bpe`` does the same on linked lists)."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _read_json(path: str | os.PathLike, kind: str | None = None) -> dict:
    """Load a tokenizer file written by ``save``; check it holds a ``kind`` ("char"/"bpe") one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path.resolve()}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TokenizerError(f"{path} is not a valid tokenizer file ({err}); write one with "
                             "tokenizer.save(path)") from None
    found = obj.get("type") if isinstance(obj, dict) else type(obj).__name__
    if found not in ("char", "bpe") or kind not in (None, found):
        raise TokenizerError(f"{path} does not hold a {kind or 'char or bpe'} tokenizer (its type "
                             f"is {found!r}); load_tokenizer(path) picks the right class")
    return obj


def _check_ids(ids: Iterable[int], vocab_size: int) -> list[int]:
    ids = [int(i) for i in ids]
    for position, i in enumerate(ids):
        if not 0 <= i < vocab_size:
            raise TokenizerError(f"token id {i} at position {position} is outside the "
                                 f"vocabulary [0, {vocab_size})")
    return ids


# ----------------------------------------------------------------------------- characters

class CharTokenizer:
    """One id per character: ``id = position of the character in the sorted alphabet``."""

    def __init__(self, chars: Sequence[str]) -> None:
        chars = list(chars)
        single = all(isinstance(c, str) and len(c) == 1 for c in chars)
        if not single or len(set(chars)) != len(chars):
            raise TokenizerError("chars must be distinct single characters")
        self.chars = chars
        self._ids = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The alphabet is ``sorted(set(text))``: the same text always gives the same ids."""
        if not text:
            raise TokenizerError("cannot build a character vocabulary from empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._ids[c] for c in text]
        except KeyError:
            raise TokenizerError(f"{self.unknown_characters(text)}. Build the tokenizer from text "
                                 "that contains them, or use BPETokenizer, which has no unknown "
                                 "characters.") from None

    def unknown_characters(self, text: str) -> str:
        """"2 character(s) not in the vocabulary: 'z' at position 3, 'Q' at position 4" ("" if
        every character of ``text`` has an id)."""
        unknown = [(i, c) for i, c in enumerate(text) if c not in self._ids]
        if not unknown:
            return ""
        shown = ", ".join(f"{c!r} at position {i}" for i, c in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        return f"{len(unknown)} character(s) not in the vocabulary: {shown}{more}"

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in _check_ids(ids, self.vocab_size))

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The UTF-8 bytes of ``decode(ids)``, as :meth:`BPETokenizer.decode_bytes` gives them."""
        return self.decode(ids).encode("utf-8")

    def to_dict(self) -> dict:
        """The tokenizer as JSON-ready data (what ``save`` writes; checkpoints embed it)."""
        return {"type": "char", "chars": "".join(self.chars)}

    @classmethod
    def from_dict(cls, obj: dict, source: str = "tokenizer data") -> CharTokenizer:
        chars = obj.get("chars")
        if not isinstance(chars, str):
            raise TokenizerError(f"{source}: 'chars' must be a string of the alphabet")
        return cls(chars)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict()), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharTokenizer:
        return cls.from_dict(_read_json(path, "char"), str(path))


# ----------------------------------------------------------------------------- byte-level BPE

class BPETokenizer:
    """Byte-level BPE. Ids: 0-255 are bytes, ``256 + r`` is merge number ``r`` (``merges[r]``,
    the pair of ids it joins), then one id per special token, in the order given.

    Special tokens (``[PAD] [CLS] [SEP] [MASK] <|endoftext|>``...) are never split: ``encode`` turns
    each occurrence of one in the text into its single id (pass ``allowed_special=False`` to encode
    it as plain text instead), and training ignores them.
    """

    def __init__(self, merges: Sequence[Pair] = (), special_tokens: Sequence[str] = ()) -> None:
        self.merges = [tuple(pair) for pair in merges]
        self.vocab = [bytes([b]) for b in range(256)]    # id -> the bytes it stands for
        for rank, pair in enumerate(self.merges):
            if len(pair) != 2 or not all(isinstance(i, int) and 0 <= i < 256 + rank for i in pair):
                raise TokenizerError(f"merge {rank} must join two existing ids < {256 + rank}, "
                                     f"got {pair}")
            self.vocab.append(self.vocab[pair[0]] + self.vocab[pair[1]])
        self._ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        if any(not isinstance(s, str) or not s for s in special_tokens) or \
                len(set(special_tokens)) != len(special_tokens):
            raise TokenizerError(f"special tokens must be distinct non-empty strings, "
                                 f"got {list(special_tokens)}")
        self.special_tokens = {s: len(self.vocab) + i for i, s in enumerate(special_tokens)}
        self.vocab += [s.encode("utf-8") for s in special_tokens]
        # Longest first, so a special token wins over a shorter one that is its prefix.
        alternatives = sorted(special_tokens, key=len, reverse=True)
        self._special_split = (re.compile("(" + "|".join(map(re.escape, alternatives)) + ")")
                               if alternatives else None)
        self._cache: dict[str, list[int]] = {}           # word -> ids, filled by encode

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def _split_special(self, text: str) -> list[str]:
        """[text, special, text, special, ..., text]: odd positions hold special tokens."""
        return self._special_split.split(text) if self._special_split else [text]

    @classmethod
    def train(cls, text: str, vocab_size: int, special_tokens: Sequence[str] = ()) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``.

        Each step merges the most frequent adjacent pair; ties go to the smallest pair of ids,
        compared left id first (so among bytes, the earlier in byte order). Training stops early
        if no pair is left. Counting runs over unique pre-tokenized words weighted by frequency;
        :func:`tinyllm.bpe.learn_merges` visits only the occurrences of each merged pair, so the
        time grows linearly with the text, even for a text without spaces (one huge word).
        """
        num_merges = vocab_size - 256 - len(special_tokens)
        if num_merges < 0:
            raise TokenizerError(f"vocab_size={vocab_size} is smaller than 256 bytes + "
                                 f"{len(special_tokens)} special tokens")
        specials = cls((), special_tokens)
        word_counts: Counter[str] = Counter()
        for chunk in specials._split_special(text)[::2]:   # text between special tokens
            word_counts.update(PRETOKENIZE.findall(chunk))
        words = [word.encode("utf-8") for word in word_counts]     # unique words as bytes
        merges = learn_merges(words, list(word_counts.values()), num_merges)
        return cls(merges, special_tokens)

    def _encode_word(self, word: str) -> list[int]:
        """Apply the merges to one pre-tokenized word, lowest rank first (as in training)."""
        ids = self._cache.get(word)
        if ids is None:
            ids = apply_merges(list(word.encode("utf-8")), self._ranks)   # O(n log n)
            self._cache[word] = ids
        return ids

    def encode(self, text: str, allowed_special: bool = True) -> list[int]:
        """Text -> ids. Special-token strings become their single ids unless
        ``allowed_special=False``, which encodes them as ordinary text."""
        chunks = self._split_special(text) if allowed_special else [text]
        ids: list[int] = []
        for position, chunk in enumerate(chunks):
            if position % 2 == 1:
                ids.append(self.special_tokens[chunk])
                continue
            for word in PRETOKENIZE.findall(chunk):
                ids.extend(self._encode_word(word))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text. Bytes that do not form valid UTF-8 (a cut-off sequence) decode to U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Ids -> the bytes they stand for. One token may end inside a character: to print tokens
        one by one, feed these to ``codecs.getincrementaldecoder("utf-8")(errors="replace")``."""
        return b"".join(self.vocab[i] for i in _check_ids(ids, self.vocab_size))

    def to_dict(self) -> dict:
        """The tokenizer as JSON-ready data (what ``save`` writes; checkpoints embed it)."""
        return {"type": "bpe", "pattern": PRETOKENIZE.pattern,
                "merges": [list(pair) for pair in self.merges],
                "special_tokens": list(self.special_tokens)}

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict()), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        return cls.from_dict(_read_json(path, "bpe"), str(path))

    @classmethod
    def from_dict(cls, obj: dict, path: str = "tokenizer data") -> BPETokenizer:
        if obj.get("pattern") != PRETOKENIZE.pattern:
            raise TokenizerError(f"{path} was trained with another pre-tokenization pattern "
                                 f"({obj.get('pattern')!r}); retrain it with this version")
        merges, specials = obj.get("merges"), obj.get("special_tokens")
        if not isinstance(merges, list) or not all(isinstance(p, list) for p in merges) \
                or not isinstance(specials, list):
            raise TokenizerError(f"{path}: expected 'merges' as a list of [id, id] pairs and "
                                 "'special_tokens' as a list of strings")
        return cls(merges, specials)


def load_tokenizer(path: str | os.PathLike) -> CharTokenizer | BPETokenizer:
    """Load a tokenizer file written by ``save``, whichever kind it is."""
    kind = _read_json(path)["type"]
    return BPETokenizer.load(path) if kind == "bpe" else CharTokenizer.load(path)


def tokenizer_from_dict(obj: dict) -> CharTokenizer | BPETokenizer | WordPieceTokenizer:
    """Rebuild a tokenizer from its ``to_dict()`` data, whichever kind it is."""
    kind = obj.get("type") if isinstance(obj, dict) else None
    if kind == "char":
        return CharTokenizer.from_dict(obj)
    if kind == "bpe":
        return BPETokenizer.from_dict(obj)
    if kind == "wordpiece":
        return WordPieceTokenizer.from_dict(obj)
    raise TokenizerError(f"tokenizer data of unknown type {kind!r}; expected 'char', 'bpe' or "
                         "'wordpiece'")

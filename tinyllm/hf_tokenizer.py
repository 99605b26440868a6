"""tinyllm's tokenizers as Hugging Face tokenizer files (chapters 10 and 13; ``tinyllm export``).

A tokenizer leaves tinyllm as plain JSON and text files that Hugging Face's ``tokenizers`` and
``transformers.AutoTokenizer`` read (``tokenizer.json`` is the format of the ``tokenizers`` Rust
library; tinyllm writes it as data and never imports that library):

- :class:`CharTokenizer`: a word-level model whose "words" are single characters: a pre-tokenizer
  that cuts the text into characters, the vocabulary {character: id}, and a decoder that glues the
  tokens back without spaces;
- :class:`BPETokenizer`: byte-level BPE as GPT-2 ships it, ``vocab.json`` + ``merges.txt`` (for
  ``GPT2Tokenizer``), and the same model in ``tokenizer.json`` with tinyllm's own pre-tokenization
  pattern (for ``PreTrainedTokenizerFast``, which AutoTokenizer picks);
- :class:`WordPieceTokenizer`: BERT's ``vocab.txt`` (one token per line, id = line), read by
  ``BertTokenizer``.

Byte-level BPE names its 256 base tokens by characters, not bytes, so that vocab.json holds text.
GPT-2's rule (Radford et al. 2019, its released encoder): the 188 printable bytes, '!'..'~',
'¡'..'¬' and '®'..'ÿ', stand for the character of the same code point; the other 68 (the controls,
space, DEL, the no-break space and the soft hyphen) stand for chr(256 + n), n counting them in byte
order (so the space, the 33rd, is chr(288) = 'Ġ'). A token's name is the characters of its bytes.
"""

from __future__ import annotations

import json

from tinyllm.tokenizers import BPETokenizer, CharTokenizer, TokenizerError
from tinyllm.wordpiece import WordPieceTokenizer

PRINTABLE_BYTES = ((ord("!"), ord("~")), (ord("¡"), ord("¬")), (ord("®"), ord("ÿ")))  # inclusive
# tinyllm's PRETOKENIZE in the regex dialect of the ``tokenizers`` library (Oniguruma), class by
# class as Python's re defines them: \d is category Nd; the letters [^\W\d_] are L, Nl and No
# (str.isalnum() minus the decimal digits); \s is Unicode's White_Space plus \x1c-\x1f, which
# Python also counts as space. tests/test_hf_export.py compares the two on every code point.
HF_SPACE = r"\s\x{1c}-\x{1f}"
HF_PRETOKENIZE = (r"'(?:s|t|re|ve|m|ll|d)| ?[\p{L}\p{Nl}\p{No}]+| ?\p{Nd}+"
                  rf"| ?[^{HF_SPACE}\p{{L}}\p{{N}}]+|[{HF_SPACE}]+(?![^{HF_SPACE}])|[{HF_SPACE}]+")
HF_ONE_CHARACTER = r"[\s\S]"  # the character tokenizer's pre-tokenizer: every code point alone
BERT_SPECIALS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]",
                 "sep_token": "[SEP]", "mask_token": "[MASK]"}  # tokenizer_config.json keys
BERT_INPUTS = ["input_ids", "token_type_ids", "attention_mask"]  # what BERT's forward takes
GPT_SPECIALS = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> character table (module docstring): printable bytes stand for themselves,
    the n-th other byte for chr(256 + n)."""
    printable = {b for low, high in PRINTABLE_BYTES for b in range(low, high + 1)}
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _added_tokens(specials: dict[str, int]) -> list[dict]:
    """tokenizer.json's added tokens: matched whole in the raw text, never split (as tinyllm)."""
    return [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True} for s, i in specials.items()]


def _bert_template(specials: dict[str, int]) -> dict | None:
    """[CLS] A [SEP] (and [CLS] A [SEP] B [SEP], segment 1 for B): BERT's input, as tinyllm
    builds it (chapter 12); None when the vocabulary lacks [CLS] or [SEP]."""
    if "[CLS]" not in specials or "[SEP]" not in specials:
        return None

    def piece(kind: str, name: str, segment: int) -> dict:
        return {kind: {"id": name, "type_id": segment}}

    cls, sep = piece("SpecialToken", "[CLS]", 0), piece("SpecialToken", "[SEP]", 0)
    return {"type": "TemplateProcessing",
            "single": [cls, piece("Sequence", "A", 0), sep],
            "pair": [cls, piece("Sequence", "A", 0), sep, piece("Sequence", "B", 1),
                     piece("SpecialToken", "[SEP]", 1)],
            "special_tokens": {s: {"id": s, "ids": [specials[s]], "tokens": [s]}
                               for s in ("[CLS]", "[SEP]")}}


def _tokenizer_json(model: dict, pre_tokenizer: dict, decoder: dict, specials: dict[str, int],
                    bert: bool) -> str:
    return json.dumps({"version": "1.0", "truncation": None, "padding": None,
                       "added_tokens": _added_tokens(specials), "normalizer": None,
                       "pre_tokenizer": pre_tokenizer,
                       "post_processor": _bert_template(specials) if bert else None,
                       "decoder": decoder, "model": model}, ensure_ascii=False, indent=1)


def char_tokenizer_json(tokenizer: CharTokenizer) -> str:
    """A :class:`CharTokenizer` as tokenizer.json: split into characters, look each up, fuse.

    There is no unknown token: a character outside the alphabet is an error in transformers, as
    it is in tinyllm (the id would not exist).
    """
    split = {"type": "Split", "pattern": {"Regex": HF_ONE_CHARACTER}, "behavior": "Isolated",
             "invert": False}
    model = {"type": "WordLevel", "vocab": {c: i for i, c in enumerate(tokenizer.chars)},
             "unk_token": "<unk>"}  # never in the vocabulary: an unknown character is an error
    return _tokenizer_json(model, split, {"type": "Fuse"}, {}, bert=False)


def bpe_vocab(tokenizer: BPETokenizer) -> dict[str, int]:
    """vocab.json: each token's name (the characters of its bytes, module docstring) -> its id;
    special tokens by their own text. Refuses a vocabulary where two ids stand for the same bytes
    (possible when two merge orders reach the same string), which vocab.json cannot express."""
    table = bytes_to_unicode()
    vocab: dict[str, int] = {}
    specials = set(tokenizer.special_tokens.values())
    for i, piece in enumerate(tokenizer.vocab):
        name = piece.decode("utf-8") if i in specials else "".join(table[b] for b in piece)
        if name in vocab:
            raise TokenizerError(f"tokens {vocab[name]} and {i} both stand for {piece!r}; a "
                                 "Hugging Face vocab.json maps each string to one id, so this "
                                 "BPE vocabulary cannot be exported: retrain the tokenizer")
        vocab[name] = i
    return vocab


def bpe_merges(tokenizer: BPETokenizer) -> list[str]:
    """merges.txt's lines, rank order: 'left right', each named as in :func:`bpe_vocab` (a name
    holds no space: byte 32 is 'Ġ')."""
    table = bytes_to_unicode()

    def name(i: int) -> str:
        return "".join(table[b] for b in tokenizer.vocab[i])

    return [f"{name(a)} {name(b)}" for a, b in tokenizer.merges]


def bpe_tokenizer_json(tokenizer: BPETokenizer, bert: bool = False) -> str:
    """A :class:`BPETokenizer` as tokenizer.json: tinyllm's pre-tokenization (HF_PRETOKENIZE),
    bytes -> characters, the merges applied lowest rank first (``ignore_merges`` off, as tinyllm
    never looks a whole word up), and the byte-level decoder back to UTF-8."""
    split = {"type": "Split", "pattern": {"Regex": HF_PRETOKENIZE}, "behavior": "Isolated",
             "invert": False}
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                  "use_regex": False}
    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
             "ignore_merges": False, "vocab": bpe_vocab(tokenizer),
             "merges": bpe_merges(tokenizer)}
    pre_tokenizer = {"type": "Sequence", "pretokenizers": [split, byte_level]}
    return _tokenizer_json(model, pre_tokenizer, byte_level, tokenizer.special_tokens, bert)


def _config(tokenizer_class: str, context_length: int, specials: dict[str, str],
            present: set[str], **extra) -> str:
    named = {key: token for key, token in specials.items() if token in present}
    return json.dumps({"tokenizer_class": tokenizer_class, "model_max_length": context_length,
                       "clean_up_tokenization_spaces": False, **named, **extra}, indent=1)


def tokenizer_files(tokenizer, context_length: int, kind: str) -> dict[str, str]:
    """File name -> text of the Hugging Face tokenizer files for ``tokenizer`` of a ``kind``
    ("gpt" or "bert") model whose inputs are at most ``context_length`` tokens."""
    specials = BERT_SPECIALS if kind == "bert" else GPT_SPECIALS
    inputs = {"model_input_names": BERT_INPUTS} if kind == "bert" else {}
    if isinstance(tokenizer, WordPieceTokenizer):
        present = set(tokenizer.special_tokens)
        return {"vocab.txt": "".join(token + "\n" for token in tokenizer.vocab),
                "tokenizer_config.json": _config("BertTokenizer", context_length, specials,
                                                 present, do_lower_case=tokenizer.lowercase)}
    if isinstance(tokenizer, CharTokenizer):
        return {"tokenizer.json": char_tokenizer_json(tokenizer),
                "tokenizer_config.json": _config("PreTrainedTokenizerFast", context_length,
                                                 specials, set(), **inputs)}
    if isinstance(tokenizer, BPETokenizer):
        present = set(tokenizer.special_tokens)
        vocab = bpe_vocab(tokenizer)
        merges = "#version: 0.2\n" + "".join(line + "\n" for line in bpe_merges(tokenizer))
        return {"tokenizer.json": bpe_tokenizer_json(tokenizer, bert=kind == "bert"),
                "vocab.json": json.dumps(vocab, ensure_ascii=False),
                "merges.txt": merges,
                "tokenizer_config.json": _config("PreTrainedTokenizerFast", context_length,
                                                 specials, present, **inputs)}
    raise TokenizerError(f"cannot export a {type(tokenizer).__name__}; tinyllm exports "
                         "CharTokenizer, BPETokenizer and WordPieceTokenizer")


"""Translating with a trained encoder-decoder, two baselines, and scoring a split (chapter 15).

The task is First Folio -> modern spelling (``tinyllm.parallel_corpus``). Four systems:

- the **identity** baseline copies the Folio text unchanged; three words in four are already
  spelt as in the modern edition, so it scores high;
- the **word-substitution** baseline replaces every Folio word by the modern word it was aligned
  to most often in the training pairs (eq. 15.16: argmax_m count(f -> m), alignment by
  ``difflib`` on the corpus's spelling-blind keys), and keeps a word it never saw;
- the **model**, with greedy or beam search (``tinyllm.decoding``). A source longer than the
  model's context is cut at spaces into pieces that fit (after a punctuation mark where it can),
  each piece translated, the pieces joined with a space;
- the **table + word model** (:class:`TableAndWordModel`): the table for the words the training
  pairs showed, a word-level seq2seq (``--preset folio-words``) for the words they did not.

    model, tokenizer = load_translator("runs/folio-modern")
    translate_texts(model, tokenizer, ["Heere Master: What cheere?"], beam_width=4)
    evaluate_split("test", "runs/folio-modern")   # BLEU, chrF, CER and wall time of each system

``tinyllm translate`` is :func:`run_command` (``--text``, ``--file`` or ``--evaluate SPLIT``).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np

from tinyllm.decoding import beam_search, greedy_search
from tinyllm.folio_alignment import aligned_word_counts, most_frequent_partners, word_cores
from tinyllm.metrics import character_error_rate, corpus_bleu, corpus_chrf
from tinyllm.models.seq2seq import Seq2Seq, pad_sequences
from tinyllm.parallel_corpus import PARALLEL_SPLITS, load_parallel_corpus
from tinyllm.runtime import limit_blas_threads

_CUT_AFTER = ",;:.!?"  # a long source is cut after one of these where it can


# ----------------------------------------------------------------------------- baselines

def identity(sources: list[str]) -> list[str]:
    """The identity baseline: the Folio text as it stands."""
    return list(sources)


class WordSubstitution:
    """The word-substitution baseline: Folio word -> its most frequent modern word (eq. 15.16)."""

    def __init__(self, table: dict[str, str], seen: frozenset[str] = frozenset()):
        self.table = table  # Folio word -> modern word, only where they differ
        self.seen = seen  # every Folio word of the training pairs, changed or not

    @classmethod
    def learn(cls, pairs, min_count: int = 1) -> WordSubstitution:
        """Keep f -> m when m is f's most frequent partner in the aligned word pairs
        (``folio_alignment.aligned_word_counts``), seen at least ``min_count`` times. The default
        was chosen on the validation plays: BLEU 68.21 with 1, 66.91 with 2 (chapter 15)."""
        best = most_frequent_partners(aligned_word_counts(pairs))
        return cls({f: m for f, (m, count) in best.items() if count >= min_count and f != m},
                   frozenset(best))

    def __call__(self, sources: list[str]) -> list[str]:
        return [" ".join(p + self.table.get(core, core) + s for p, core, s in word_cores(text))
                for text in sources]


def _parts(word: str) -> list[str]:
    """A hyphenated word's parts ("Ayre-drawne-Dagger" -> "Ayre", "drawne", "Dagger"), else the
    word itself."""
    parts = word.split("-")
    return parts if all(parts) else [word]


class TableAndWordModel:
    """The table for the words the training pairs showed, a word-level model for the others.

    The table's blind spot is a word no training play has: it keeps "vndaunted" or "trecherie"
    as they stand. Such a word goes to ``spell`` (a list of Folio words -> their modern spelling:
    the word-level seq2seq, preset ``folio-words``) instead, as a lookup of seen words and a
    character model for the unseen ones divide the work in historical text normalisation
    (Robertson and Goldwater 2018; Bollmann 2019). A hyphenated word is taken apart first, so
    that each part the table knows keeps the table's spelling. The first letter keeps the
    source's case (``folio_alignment.word_pairs``); an empty answer keeps the Folio word.
    """

    def __init__(self, substitution: WordSubstitution, spell):
        self.substitution, self.spell = substitution, spell

    def __call__(self, sources: list[str]) -> list[str]:
        table, seen = self.substitution.table, self.substitution.seen
        words = {core for text in sources for _, core, _ in word_cores(text)} - seen - {""}
        unseen = sorted({part for word in words for part in _parts(word)} - seen)
        spelt = dict(zip(unseen, self.spell(unseen))) if unseen else {}

        def modern(word: str) -> str:
            if word in seen or not word:
                return table.get(word, word)
            return "-".join(table.get(part, part) if part in seen else spelt[part] or part
                            for part in _parts(word))

        return [" ".join(p + modern(core) + s for p, core, s in word_cores(text))
                for text in sources]


@functools.lru_cache(maxsize=1)
def folio_substitution() -> WordSubstitution:
    """The word-substitution table of the Folio corpus's training pairs (learned once, ~5 s)."""
    return WordSubstitution.learn(load_parallel_corpus("train"))


# ----------------------------------------------------------------------------- the model

def load_translator(checkpoint: str | Path, device: str = "cpu"):
    """(model, tokenizer) of a seq2seq checkpoint written by ``tinyllm train --model seq2seq``."""
    model, tokenizer, _ = _load_seq2seq(checkpoint, device)
    return model, tokenizer


def _load_seq2seq(checkpoint: str | Path, device: str):
    from tinyllm.checkpoint import load_checkpoint

    model, tokenizer, info = load_checkpoint(checkpoint)
    if not isinstance(model, Seq2Seq):
        raise ValueError(f"{checkpoint} holds a {type(model).__name__}; `tinyllm translate` "
                         "needs a seq2seq checkpoint (tinyllm train --model seq2seq)")
    model.to(device)
    return model, tokenizer, info["settings"].get("preset")


def load_system(checkpoint: str | Path, beam_width: int = 1, alpha: float = 0.6,
                device: str = "cpu"):
    """(name, sources -> outputs) of a checkpoint: a sentence model translates each source; a
    word-level model (``objectives.translation.WORD_LEVEL_PRESETS``) is
    :class:`TableAndWordModel` with the training pairs' table."""
    from tinyllm.objectives.translation import WORD_LEVEL_PRESETS

    model, tokenizer, preset = _load_seq2seq(checkpoint, device)
    search = "greedy" if beam_width == 1 else f"beam {beam_width}"

    def translate(texts: list[str]) -> list[str]:
        return translate_texts(model, tokenizer, texts, beam_width, alpha)

    if preset in WORD_LEVEL_PRESETS:
        return f"table + word model, {search}", TableAndWordModel(folio_substitution(), translate)
    return f"model, {search}", translate


def split_source(text: str, max_chars: int) -> list[str]:
    """Cut ``text`` at spaces into pieces of at most ``max_chars`` characters, each ending after
    a punctuation mark where the piece can; a single longer word is cut where it must."""
    pieces, text = [], " ".join(text.split())
    while len(text) > max_chars:
        window = text[:max_chars + 1]
        spaces = [i for i, c in enumerate(window) if c == " " and i > 0]
        marks = [i for i in spaces if window[i - 1] in _CUT_AFTER and i >= max_chars // 3]
        cut = (marks or spaces or [max_chars])[-1]
        pieces.append(text[:cut])
        text = text[cut:].lstrip()
    return pieces + ([text] if text else [])


def translate_texts(model: Seq2Seq, tokenizer, sources: list[str], beam_width: int = 1,
                    alpha: float = 0.6, batch_size: int = 128) -> list[str]:
    """Translate every source: greedy search for ``beam_width`` 1, else beam search with the
    length penalty ``alpha`` (eq. 15.4). Pieces are decoded ``batch_size`` sources at a time, in
    order of length (so a batch stops when its longest piece is done)."""
    c = model.config
    pieces, owner = [], []
    for index, text in enumerate(sources):
        parts = split_source(text, c.context_length - 8) or [""]
        pieces.extend(parts)
        owner.extend([index] * len(parts))
    ids = [tokenizer.encode(piece) or [c.eos_id] for piece in pieces]  # EOS: an empty source
    order = np.argsort([len(i) for i in ids], kind="stable")
    outputs = [""] * len(pieces)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        src = pad_sequences([ids[i] for i in chunk], c.pad_id)  # (B, S)
        max_len = min(c.context_length, int(src.shape[1] * 1.25) + 8)
        if beam_width == 1:
            decoded = greedy_search(model, src, max_len)
        else:
            decoded = beam_search(model, src, beam_width, max_len, alpha)
        for row, i in enumerate(chunk):
            out = decoded.ids[row, :decoded.lengths[row]]
            outputs[i] = tokenizer.decode([int(t) for t in out if t > c.eos_id])
    joined = [[] for _ in sources]
    for i, text in zip(owner, outputs):
        joined[i].append(text)
    return [" ".join(part for part in parts if part) for parts in joined]


# ----------------------------------------------------------------------------- scoring

def score(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Corpus BLEU and chrF (sacreBLEU's defaults, in percent) and CER (in percent)."""
    return {"bleu": corpus_bleu(hypotheses, [references]).score,
            "chrf": corpus_chrf(hypotheses, [references]).score,
            "cer": 100 * character_error_rate(hypotheses, references)}


def evaluate_split(split: str = "test", checkpoint: str | Path | None = None,
                   beam_widths=(1, 4), alpha: float = 0.6, limit: int | None = None,
                   device: str = "cpu") -> dict:
    """Score the identity and word-substitution baselines and (with ``checkpoint``) the model
    with each beam width (1: greedy) on ``split``'s pairs (the first ``limit``): per system
    BLEU, chrF, CER, wall seconds (the substitution table's learning, ``learn_s``, apart: 0 once
    cached); and the outputs, for examples. ``limit``: every k-th pair,
    k = len // limit, so that a subset still samples all the split's plays."""
    if split not in PARALLEL_SPLITS:
        raise ValueError(f"unknown split {split!r}; the splits are {list(PARALLEL_SPLITS)}")
    pairs = load_parallel_corpus(split)
    pairs = pairs[::max(1, len(pairs) // limit)][:limit] if limit else pairs
    sources, references = [p.folio for p in pairs], [p.modern for p in pairs]
    systems = {"identity": identity}
    started = time.perf_counter()
    systems["word substitution"] = folio_substitution()
    learn_s = time.perf_counter() - started
    for width in beam_widths if checkpoint is not None else ():
        name, system = load_system(checkpoint, width, alpha, device)
        systems[name] = system
    results, outputs = {}, {"source": sources, "reference": references}
    for name, system in systems.items():
        started = time.perf_counter()
        outputs[name] = system(sources)
        wall = time.perf_counter() - started
        results[name] = {**score(outputs[name], references), "wall_s": round(wall, 2)}
    results["word substitution"]["learn_s"] = round(learn_s, 2)
    return {"split": split, "pairs": len(pairs), "results": results, "outputs": outputs}


# ----------------------------------------------------------------------------- the command

def add_parser(commands) -> None:
    """``tinyllm translate``'s arguments (cli.py calls this)."""
    p = commands.add_parser("translate", help="First Folio -> modern spelling with a seq2seq",
                            description="Translate --text, each line of --file, or score a "
                                        "split of the parallel corpus (--evaluate).")
    p.add_argument("--checkpoint", required=True, help="seq2seq checkpoint file, or its folder")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help='Folio text, e.g. "Heere Master: What cheere?"')
    source.add_argument("--file", help="a UTF-8 file: one source per line")
    source.add_argument("--evaluate", choices=PARALLEL_SPLITS,
                        help="score the baselines and the model (greedy and --beam) on a split")
    p.add_argument("--beam", type=int, default=4, help="beam width (default 4; 1: greedy)")
    p.add_argument("--length-penalty", type=float, default=0.6,
                   help="alpha of Wu et al.'s length penalty (default 0.6; 0: none)")
    p.add_argument("--limit", type=int, help="--evaluate: only N pairs (every k-th)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, help="BLAS threads (default: all cores)")
    p.set_defaults(handler=run_command)


def run_command(args) -> None:
    """``tinyllm translate``: every argument is checked before the checkpoint is read."""
    if args.threads is not None:  # capped at the cores, as `tinyllm train --threads`
        limit_blas_threads(args.threads)
    if args.beam < 1:
        raise ValueError(f"--beam must be a positive integer, got {args.beam}")
    if not args.length_penalty >= 0 or args.length_penalty == float("inf"):
        raise ValueError(f"--length-penalty must be a finite number >= 0, got "
                         f"{args.length_penalty}")
    if args.limit is not None and (args.evaluate is None or args.limit < 1):
        raise ValueError("--limit takes a positive number of pairs, and only with --evaluate")
    if args.text is not None and not args.text.strip():
        raise ValueError('--text is empty: give some Folio text, e.g. --text "Heere Master"')
    if args.file is not None:
        path = Path(args.file)
        if not path.is_file():
            raise FileNotFoundError(f"--file not found (or not a file): {path}")
        lines = path.read_text(encoding="utf-8").splitlines()
    if args.evaluate is not None:
        widths = (1, args.beam) if args.beam > 1 else (1,)
        report = evaluate_split(args.evaluate, args.checkpoint, widths, args.length_penalty,
                                args.limit, args.device)
        print(f"{report['split']}: {report['pairs']} pairs")
        for name, row in report["results"].items():
            print(f"  {name:<18} BLEU {row['bleu']:6.2f}  chrF {row['chrf']:6.2f}  "
                  f"CER {row['cer']:6.2f}%  {row['wall_s']:8.2f} s")
        return
    _, system = load_system(args.checkpoint, args.beam, args.length_penalty, args.device)
    for line in system([args.text] if args.text is not None else lines):
        print(line)

"""``tinyllm search``: the passages of a corpus nearest in meaning to a query (chapter 13).

Every passage (a speech of the plays, or a paragraph of a text file) becomes a unit vector e_i
(MiniLM's sentence embedding, eq. 13.4: mean pooling and L2 norm); so does the query, q. For unit
vectors the cosine similarity is the dot product, and the ranking is one matrix-vector product:

    s_i = cos(q, e_i) = q . e_i / (|q| |e_i|) = q . e_i,      top-k = the k largest s_i   (13.5)

Embedding a corpus is the slow part (the 7 plays: minutes on one core), so it is done once and
kept next to the data as a safetensors file of float32 vectors (N, C), with the SHA-256 of the
passages' text and of the model's files in its metadata: a changed corpus or model re-embeds.

    passages = corpus_passages("shakespeare")               # 9,000-odd speeches, with speakers
    E = cached_embeddings(cache, [p.text for p in passages], model, tokenizer, model_sha)
    rows, scores = nearest(sentence_embeddings(model, tokenizer, ["a storm at sea"])[0], E, 5)
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from tinyllm.backend import check_device
from tinyllm.checkpoint import CheckpointError
from tinyllm.checkpoint.safetensors import load_safetensors, save_safetensors
from tinyllm.corpus import (
    CORPORA,
    POEMS,
    TEXTS_DIR,
    _extract_play,
    corpus_path,
    load_corpus,
    load_text,
    sdist_path,
)
from tinyllm.pretrained import AbsentHeadsWarning, fetch_minilm, load_bert, sentence_embeddings
from tinyllm.runtime import limit_blas_threads
from tinyllm.wordpiece import WordPieceTokenizer

CACHE_FORMAT = "tinyllm-search-embeddings/1"  # the metadata that marks a file as this cache
_SPEAKER = re.compile(r"[A-Z0-9][A-Z0-9'&. -]*:")  # "HAMLET:" on a line of its own
MINUTES_7_PLAYS = 5  # measured: 5 min 17 s for the 7 plays, --threads 1, a shared 2-core machine


class SearchError(ValueError):
    """A search that cannot run as asked (a cache file that is not ours, bad settings)."""


@dataclass(frozen=True)
class Passage:
    """One unit of search: its text, and who says it in which play when that is known."""

    text: str
    speaker: str | None = None
    play: str | None = None


# ----------------------------------------------------------------------------- passages

def passages_from_text(text: str, play: str | None = None) -> list[Passage]:
    """Paragraphs (separated by blank lines) of ``text``; a first line "NAME:" is the speaker,
    as in the corpus layout ("HAMLET:\\nTo be, or not to be..."). Empty paragraphs are skipped."""
    passages = []
    for block in re.split(r"\n[ \t]*\n", text):
        lines = [line.strip() for line in block.split("\n") if line.strip()]
        speaker = None
        if len(lines) > 1 and _SPEAKER.fullmatch(lines[0]):
            speaker, lines = lines[0][:-1], lines[1:]
        if lines:
            passages.append(Passage(" ".join(lines), speaker, play))
    return passages


def play_title(file_stem: str) -> str:
    """'romeo_and_juliet' -> 'Romeo and Juliet' (the sdist's file name, read as a title)."""
    small = {"and", "of", "the", "in", "or"}
    words = file_stem.split("_")
    return " ".join(w if i and w in small else w.capitalize() for i, w in enumerate(words))


def corpus_passages(name: str, cache_dir=None) -> list[Passage]:
    """The speeches of a bundled corpus (train and validation text together), each with its play.

    The corpus is prepared and checked by ``load_corpus``; the plays are then read one by one
    from the sdist to know where each begins. If their text is not the corpus's (it always is,
    unless the extraction changed), the speeches are returned without play names.
    """
    train_text, val_text = load_corpus(name, cache_dir)
    whole = train_text + val_text
    with tarfile.open(sdist_path(cache_dir), "r:gz") as tar:
        members = {m.name[len(TEXTS_DIR):-len("_gut.txt")]: m for m in tar.getmembers()
                   if m.name.startswith(TEXTS_DIR) and m.name.endswith("_gut.txt")}
        plays = CORPORA[name] or sorted(play for play in members if play not in POEMS)
        texts = [_extract_play(tar.extractfile(members[p]).read().decode("utf-8")) for p in plays]
    if "".join(texts) != whole:
        return passages_from_text(whole)
    return [passage for play, text in zip(plays, texts)
            for passage in passages_from_text(text, play_title(play))]


def file_passages(path) -> list[Passage]:
    """The paragraphs of a UTF-8 text file (read with the checks of ``load_text``)."""
    train_text, val_text = load_text(path)
    return passages_from_text(train_text + val_text)


# ----------------------------------------------------------------------------- the cache

def texts_sha256(texts: Sequence[str]) -> str:
    """SHA-256 of a list of texts, each preceded by its byte length (so no two lists collide)."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


def model_sha256(folder) -> str:
    """SHA-256 over what decides the embeddings: config.json, vocab.txt and the weight files."""
    folder = Path(folder)
    files = [folder / "config.json", folder / "vocab.txt"] + sorted(folder.glob("*.safetensors"))
    digest = hashlib.sha256()
    for path in files:
        part = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                part.update(block)
        digest.update(f"{path.name} {part.hexdigest()}\n".encode())
    return digest.hexdigest()


def embed_passages(model, tokenizer, texts: Sequence[str], batch_size: int = 32,
                   progress: bool = False) -> np.ndarray:
    """Unit vectors (N, C) of ``texts`` (eq. 13.4), computed longest first: a batch then holds
    texts of similar length and pads little. The rows come back in the order of ``texts``."""
    order = np.argsort([-len(t) for t in texts], kind="stable")  # (N,)
    vectors = np.zeros((len(texts), model.config.d_model), dtype=np.float32)  # (N, C)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(texts), unit="passage", dynamic_ncols=True, file=sys.stderr)
    for start in range(0, len(texts), batch_size):
        rows = order[start:start + batch_size]
        vectors[rows] = sentence_embeddings(model, tokenizer, [texts[i] for i in rows],
                                            batch_size=batch_size)  # (b, C)
        if bar is not None:
            bar.update(len(rows))
    if bar is not None:
        bar.close()
    return vectors


def cached_embeddings(cache: Path, texts: Sequence[str], model, tokenizer, model_sha: str,
                      batch_size: int = 32, progress: bool = False, log=None) -> np.ndarray:
    """The embeddings of ``texts`` from ``cache`` if it holds them for these texts and this
    model; else computed (:func:`embed_passages`) and written there atomically, replacing an
    out-of-date cache. A file at ``cache`` that this module did not write is never replaced."""
    cache, wanted = Path(cache), {"format": CACHE_FORMAT, "texts_sha256": texts_sha256(texts),
                                  "model_sha256": model_sha, "count": str(len(texts))}
    if cache.exists():
        try:
            arrays, metadata = load_safetensors(cache)
        except CheckpointError:
            arrays, metadata = {}, {}
        if metadata.get("format") != CACHE_FORMAT:
            raise SearchError(f"{cache} exists but is not an embedding cache of tinyllm search; "
                              "it is left alone. Move it away, or search another file.")
        if metadata == wanted and "embeddings" in arrays:
            return arrays["embeddings"]
        if log is not None:
            log(f"{cache} is for other text or another model: embedding again")
    vectors = embed_passages(model, tokenizer, texts, batch_size, progress)
    try:
        save_safetensors(cache, {"embeddings": vectors}, metadata=wanted)
    except OSError as error:  # a read-only data folder: search anyway, without keeping them
        if log is not None:
            log(f"could not write the cache {cache} ({error}); the embeddings are not kept")
    return vectors


# ----------------------------------------------------------------------------- searching

def nearest(query: np.ndarray, embeddings: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the ``top`` largest cosine similarities s = E q (eq. 13.5) of unit vectors
    E (N, C) and q (C,), best first (ties: the earlier row); and those similarities."""
    if top < 1:
        raise ValueError(f"--top must be a positive integer, got {top}")
    scores = embeddings @ query  # (N, C) @ (C,) -> (N,)
    k = min(top, len(scores))
    if k == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=scores.dtype)
    rows = np.argpartition(-scores, k - 1)[:k]  # (k,), in no order
    rows = rows[np.lexsort((rows, -scores[rows]))]  # best first, then by row
    return rows, scores[rows]


def shorten(text: str, width: int = 240) -> str:
    """``text`` on one line, cut at a word boundary to at most ``width`` characters (+ ' ...')."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    return text[:width].rsplit(" ", 1)[0] + " ..."


# ----------------------------------------------------------------------------- the command

def add_parser(commands) -> None:
    """``tinyllm search``'s arguments (cli.py calls this)."""
    p = commands.add_parser(
        "search", help="find the passages nearest in meaning to a query (MiniLM embeddings)",
        description="Rank the speeches of the corpus (or the paragraphs of --data) by cosine "
                    "similarity of their MiniLM sentence embeddings to --query. The first run "
                    "embeds every passage and keeps the vectors next to the data: for the 7 "
                    f"plays that takes about {MINUTES_7_PLAYS} minutes on one busy core (a "
                    "progress bar shows it; all 37 plays take five times as long); later "
                    "searches take seconds.")
    p.add_argument("--query", required=True, help='what to look for, e.g. "a storm at sea"')
    p.add_argument("--top", type=int, default=5, help="passages shown (default 5)")
    p.add_argument("--corpus", choices=("shakespeare", "shakespeare-all"),
                   help="bundled corpus: 7 plays (default) or all 37 plays")
    p.add_argument("--data", help="search the paragraphs of this UTF-8 text file instead")
    p.add_argument("--passages", type=int,
                   help="only the first N passages (quick trials; cached separately)")
    p.add_argument("--model", help="a Hugging Face BERT folder (default: all-MiniLM-L6-v2, "
                                   "fetched into data/ on first use, about 90 MB)")
    p.add_argument("--batch-size", type=int, default=32, help="passages per forward pass")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, help="BLAS threads (1 is fastest on a busy machine)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_command)


def _log(message: str) -> None:
    print(f"tinyllm search: {message}", file=sys.stderr)


def _load_model(folder: Path | None):
    """(model, tokenizer, model SHA-256) of ``folder``, or of MiniLM when None."""
    folder = fetch_minilm() if folder is None else Path(folder)
    with warnings.catch_warnings():  # the pretraining heads are not needed for embeddings
        warnings.simplefilter("ignore", AbsentHeadsWarning)
        model = load_bert(folder)
    lowercase = True
    settings = folder / "tokenizer_config.json"
    if settings.is_file():
        lowercase = bool(json.loads(settings.read_text(encoding="utf-8")).get("do_lower_case",
                                                                               True))
    tokenizer = WordPieceTokenizer.from_vocab(folder / "vocab.txt", lowercase=lowercase)
    return model, tokenizer, model_sha256(folder)


def run_command(args) -> None:
    """``tinyllm search``: the --top passages nearest to --query (chapter 13, eq. 13.5)."""
    if not args.query.strip():
        raise ValueError('--query is empty: give a few words, e.g. --query "a storm at sea"')
    for name in ("top", "passages", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, "
                             f"got {value}")
    if args.data and args.corpus:
        raise ValueError("give --corpus or --data, not both")
    device = check_device(args.device)
    if args.threads is not None:
        used = limit_blas_threads(args.threads)
        if used < args.threads:
            _log(f"warning: --threads {args.threads} is more than the {used} core(s) this "
                 f"process may use; using {used}")
    suffix = f"-first{args.passages}" if args.passages else ""
    if args.data:
        source = Path(args.data)
        passages = file_passages(source)
        cache = source.with_name(f"{source.name}.search-embeddings{suffix}.safetensors")
    else:
        source = args.corpus or "shakespeare"
        passages = corpus_passages(source)
        cache = corpus_path(source) / f"search-embeddings{suffix}.safetensors"
    passages = passages[:args.passages] if args.passages else passages
    if not passages:
        raise ValueError(f"{source} has no passage to search (paragraphs are separated by "
                         "blank lines)")
    model, tokenizer, model_sha = _load_model(args.model)
    model.to(device)
    texts = [p.text for p in passages]
    if not cache.exists():
        _log(f"embedding {len(texts):,} passages once; they are kept in {cache}")
    vectors = cached_embeddings(cache, texts, model, tokenizer, model_sha, args.batch_size,
                                progress=not args.no_progress, log=_log)
    query = sentence_embeddings(model, tokenizer, [args.query])[0]  # (C,)
    rows, scores = nearest(query, vectors, args.top)
    print(f"{len(passages):,} passages of {source}; nearest to {args.query!r}:")
    for rank, (row, score) in enumerate(zip(rows, scores), start=1):
        passage = passages[int(row)]
        where = " · ".join(x for x in (passage.play, passage.speaker) if x) or f"#{row + 1}"
        print(f"{rank:2d}. {score:.3f}  {where}\n    {shorten(passage.text)}")

"""Greedy and beam search for the encoder-decoder (chapter 15, "Decoding").

Both encode each source once, then grow the output one position at a time from [BOS]. Tokens are
scored by log p(y_t | y_<t, x) from the decoder's logits, summing to log P(Y | X) (eq. 15.5);
PAD and BOS can never be produced.

- Greedy search takes the arg-max at every position and stops a row at EOS (or at ``max_len``).
- Beam search (Graves 2012; Sutskever et al. 2014) keeps the K = ``beam_width`` best prefixes of
  every source. Each step extends all of them by every token, (B, K, V) candidates, and keeps the
  2K best per source. A candidate that ends in EOS is finished and set aside if it ranks among
  the K best (as in fairseq and Hugging Face; so a beam of 1 with alpha = 0 is greedy search),
  with the score of Wu et al. (2016, eq. 14)

      s(Y) = log P(Y | X) / lp(Y),      lp(Y) = (5 + |Y|)^alpha / (5 + 1)^alpha        (eq. 15.4)

  (|Y| counts the EOS); the K best of the candidates without EOS stay alive. A prefix that reaches
  ``max_len`` without EOS is finished as it stands. Log-probabilities only fall as a prefix grows
  and lp only rises, so an alive prefix with log-probability s can reach at most s / lp(max_len)
  (alpha >= 0): a source is done when its best finished score is at least that for every alive
  prefix, so stopping there never changes the answer.
  Everything is whole-array NumPy over the (B, K, V) candidates; the loop is over positions.

With ``use_cache`` (the default) the decoder's self-attention keys and values are cached
(:class:`~tinyllm.nn.KVCache`) and the cross-attention keys and values are computed once per source
(:class:`~tinyllm.models.seq2seq.DecoderCache`), reordered with the beams whenever the search
selects its hypotheses; each step then runs only the newest position. The tokens are the same
as without the cache, which recomputes the whole prefix every step.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tinyllm.backend import to_numpy
from tinyllm.models.seq2seq import Seq2Seq, take_rows
from tinyllm.tensor import Tensor, no_grad


class Decoded(NamedTuple):
    """The output of a search for B sources: ``ids[b, :lengths[b]]`` is the hypothesis for source
    b (ending in EOS unless it reached ``max_len``), padded with PAD after it."""

    ids: np.ndarray  # (B, T) int64
    lengths: np.ndarray  # (B,) tokens in each hypothesis, EOS included
    scores: np.ndarray  # (B,) greedy: log P(Y | X); beam: log P(Y | X) / lp(Y)


def length_penalty(length, alpha: float):
    """lp(Y) = ((5 + |Y|) / 6)^alpha (Wu et al. 2016, eq. 14; our eq. 15.4); 1 for alpha = 0."""
    return ((5.0 + np.asarray(length, dtype=np.float64)) / 6.0) ** alpha


def encode(model: Seq2Seq, src, src_mask=None) -> tuple[Tensor, np.ndarray]:
    """The memory (B, S, C) of the sources (B, S) and their padding mask (B, S), computed once."""
    src = src.data if isinstance(src, Tensor) else src
    src = src if hasattr(src, "dtype") else np.asarray(src)  # host or device ids, as given
    mask = model.source_mask(src, src_mask)  # (B, S)
    return model.encode(src, mask), mask


class _NextToken:
    """log p(next token | prefix, source) for N prefixes at a time, with or without the cache.

    ``log_probs(tokens)`` takes the prefixes (N, t) (BOS first) and returns (N, V) float64;
    ``reorder(index)`` keeps prefix ``index[n]``'s state as row n (the beams that survive)."""

    def __init__(self, model: Seq2Seq, memory: Tensor, memory_mask, max_len: int,
                 use_cache: bool):
        self.model, self.memory, self.memory_mask = model, memory, memory_mask
        self.cache = model.start_cache(memory, memory_mask, max_len) if use_cache else None
        c = model.config
        self.forbidden = np.array([c.pad_id, c.bos_id])  # never generated

    def log_probs(self, tokens: np.ndarray) -> np.ndarray:
        if self.cache is not None:  # only the newest position: (N, 1) -> (N, 1, V)
            logits = self.model.decode_step(tokens[:, -1:], self.cache)
        else:  # the whole prefix again: (N, t) -> (N, t, V)
            logits = self.model.decode(tokens, self.memory, self.memory_mask)
        z = to_numpy(logits.data[:, -1, :]).astype(np.float64)  # (N, V)
        z[:, self.forbidden] = -np.inf
        z -= z.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))  # (N, V) log-softmax

    def reorder(self, index: np.ndarray) -> None:
        if self.cache is not None:
            self.cache.reorder(index)
        else:
            self.memory = Tensor(take_rows(self.memory.data, index))  # (N, S, C)
            self.memory_mask = take_rows(self.memory_mask, index)  # (N, S)


def _check_search(model: Seq2Seq, max_len: int) -> None:
    limit = model.config.context_length
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) \
            or not 1 <= max_len <= limit:
        raise ValueError(f"max_len must be an integer in 1..context_length = {limit} (the decoder "
                         f"reads at most that many positions), got {max_len!r}")


def greedy_search(model: Seq2Seq, src, max_len: int, src_mask=None,
                  use_cache: bool = True) -> Decoded:
    """The arg-max token at every position, for every source (B, S) at once (see the module
    docstring); a row that has produced EOS gets PAD from then on and its score stops growing."""
    _check_search(model, max_len)
    c, was_training = model.config, model.training
    model.eval()
    try:
        with no_grad():
            memory, mask = encode(model, src, src_mask)
            step = _NextToken(model, memory, mask, max_len, use_cache)
            B = memory.shape[0]
            tokens = np.full((B, 1), c.bos_id, dtype=np.int64)  # (B, 1) the prefixes
            scores, lengths = np.zeros(B), np.zeros(B, dtype=np.int64)
            finished = np.zeros(B, dtype=bool)
            for t in range(max_len):
                log_probs = step.log_probs(tokens)  # (B, V)
                best = log_probs.argmax(axis=-1)  # (B,)
                scores += np.where(finished, 0.0, log_probs[np.arange(B), best])
                best = np.where(finished, c.pad_id, best)  # (B,)
                lengths = np.where(finished, lengths, t + 1)
                finished |= best == c.eos_id
                tokens = np.concatenate([tokens, best[:, None]], axis=1)  # (B, t + 2)
                if finished.all():
                    break
    finally:
        model.train(was_training)
    return Decoded(tokens[:, 1:], lengths, scores)


def beam_search(model: Seq2Seq, src, beam_width: int = 4, max_len: int = 64,
                alpha: float = 0.6, src_mask=None, use_cache: bool = True) -> Decoded:
    """The best hypothesis by s(Y) = log P(Y | X) / lp(Y) (eq. 15.4) that a beam of ``beam_width``
    finds, for every source (B, S) at once; ``alpha`` = 0 ranks by log P alone (Wu et al. found
    0.6-0.7 best). See the module docstring for the search and its stopping rule."""
    _check_search(model, max_len)
    if isinstance(beam_width, bool) or not isinstance(beam_width, (int, np.integer)) \
            or beam_width < 1:
        raise ValueError(f"beam_width must be a positive integer, got {beam_width!r}")
    if not alpha >= 0:  # also refuses NaN
        raise ValueError(f"alpha must be >= 0 (0: no length penalty), got {alpha!r}")
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            memory, mask = encode(model, src, src_mask)
            K = beam_width
            rows = np.repeat(np.arange(memory.shape[0]), K)  # (B K,) each source K times
            memory, mask = Tensor(take_rows(memory.data, rows)), take_rows(mask, rows)
            step = _NextToken(model, memory, mask, max_len, use_cache)
            return _beam_loop(step, len(rows) // K, K, max_len, alpha, model.config)
    finally:
        model.train(was_training)


def _beam_loop(step: _NextToken, B: int, K: int, max_len: int, alpha: float, c) -> Decoded:
    """The positions loop of beam search on B sources with K beams each (rows b K .. b K + K - 1
    of ``step`` belong to source b)."""
    tokens = np.full((B * K, 1), c.bos_id, dtype=np.int64)  # (B K, t + 1) alive prefixes
    alive = np.full((B, K), -np.inf)  # (B, K) log P of each alive prefix; at first one prefix,
    alive[:, 0] = 0.0  # [BOS], so that the K beams do not start as K copies of it
    done_scores = np.full((B, K), -np.inf)  # (B, K) the K best finished s(Y), best first
    done_ids = np.full((B, K, max_len), c.pad_id, dtype=np.int64)  # (B, K, max_len)
    done_lengths = np.zeros((B, K), dtype=np.int64)
    done = np.zeros(B, dtype=bool)  # (B,) sources whose best cannot be beaten any more
    for t in range(max_len):
        log_probs = step.log_probs(tokens)  # (B K, V)
        V = log_probs.shape[-1]
        candidates = (alive[:, :, None] + log_probs.reshape(B, K, V)).reshape(B, K * V)
        M = min(2 * K, K * V)  # 2K: at most K end in EOS, so K others are left to stay alive
        top = np.argsort(-candidates, axis=1, kind="stable")[:, :M]  # (B, M) best first; ties:
        top_scores = np.take_along_axis(candidates, top, axis=1)  # the lower index, as argmax
        beam, token = top // V, top % V  # (B, M) which prefix, which next token
        final = (token == c.eos_id) | (t + 1 == max_len)  # (B, M) finished candidates; they
        counted = final & (np.arange(M) < K) & ~done[:, None]  # count among the K best only
        prefixes = tokens.reshape(B, K, t + 1)[:, :, 1:]  # (B, K, t) without BOS
        chosen = np.take_along_axis(prefixes, beam[:, :, None], axis=1)  # (B, M, t)
        # 1. the finished candidates join the K best finished hypotheses of their source
        finished = np.where(counted, top_scores / length_penalty(t + 1, alpha), -np.inf)  # s(Y)
        new_ids = np.full((B, M, max_len), c.pad_id, dtype=np.int64)
        new_ids[:, :, :t] = chosen
        new_ids[:, :, t] = token
        pool = np.concatenate([done_scores, finished], axis=1)  # (B, K + M)
        keep = np.argsort(-pool, axis=1, kind="stable")[:, :K]  # (B, K) the old ones win ties
        done_scores = np.take_along_axis(pool, keep, axis=1)
        done_ids = np.take_along_axis(np.concatenate([done_ids, new_ids], axis=1),
                                      keep[:, :, None], axis=1)  # (B, K, max_len)
        pool_lengths = np.concatenate([done_lengths, np.full((B, M), t + 1)], axis=1)
        done_lengths = np.take_along_axis(pool_lengths, keep, axis=1)  # (B, K)
        # 2. the K best unfinished candidates stay alive; every cache follows its prefix
        open_scores = np.where(final, -np.inf, top_scores)  # (B, M)
        survivors = np.argsort(-open_scores, axis=1, kind="stable")[:, :K]  # (B, K)
        alive = np.take_along_axis(open_scores, survivors, axis=1)  # (B, K)
        parents = np.take_along_axis(beam, survivors, axis=1)  # (B, K)
        index = (np.arange(B)[:, None] * K + parents).reshape(-1)  # (B K,) rows of the last step
        next_tokens = np.take_along_axis(token, survivors, axis=1).reshape(-1, 1)  # (B K, 1)
        tokens = np.concatenate([tokens[index], next_tokens], axis=1)  # (B K, t + 2)
        # 3. a source is done when no alive prefix can reach its best finished score
        reachable = alive.max(axis=1) / length_penalty(max_len, alpha)  # (B,)
        done |= done_scores[:, 0] >= reachable
        alive[done] = -np.inf
        if done.all() or t + 1 == max_len:
            break
        step.reorder(index)
    return Decoded(done_ids[:, 0, :done_lengths[:, 0].max()], done_lengths[:, 0],
                   done_scores[:, 0])

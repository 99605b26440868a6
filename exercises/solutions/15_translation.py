"""Reference solutions of exercises/15_translation.py. Try the exercises first."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from tinyllm.decoding import Decoded, _check_search, _NextToken, encode, length_penalty
from tinyllm.metrics.bleu import LOG_OF_ZERO, MAX_NGRAM_ORDER, preprocess
from tinyllm.metrics.sequences import check_corpus
from tinyllm.tensor import no_grad


def greedy_search(model, src, max_len, src_mask=None, use_cache=True):
    """The arg-max token at every position; a row stops growing at its EOS (eq. 15.5)."""
    _check_search(model, max_len)
    c, was_training = model.config, model.training
    model.eval()
    try:
        with no_grad():
            memory, mask = encode(model, src, src_mask)  # (B, S, C), (B, S)
            step = _NextToken(model, memory, mask, max_len, use_cache)
            B = memory.shape[0]
            tokens = np.full((B, 1), c.bos_id, dtype=np.int64)  # (B, 1) the prefixes
            scores, lengths = np.zeros(B), np.zeros(B, dtype=np.int64)
            finished = np.zeros(B, dtype=bool)
            for t in range(max_len):
                log_probs = step.log_probs(tokens)  # (B, V)
                best = log_probs.argmax(axis=-1)  # (B,)
                scores += np.where(finished, 0.0, log_probs[np.arange(B), best])  # eq. 15.5
                best = np.where(finished, c.pad_id, best)  # a finished row only pads
                lengths = np.where(finished, lengths, t + 1)
                finished |= best == c.eos_id
                tokens = np.concatenate([tokens, best[:, None]], axis=1)  # (B, t + 2)
                if finished.all():
                    break
    finally:
        model.train(was_training)
    return Decoded(tokens[:, 1:], lengths, scores)


def _take(values, index):
    """values[b, index[b, j]] for every b, j (the rows of ``index`` pick within each source)."""
    return np.take_along_axis(values, index, axis=1)


def beam_loop(step, B, K, max_len, alpha, c):
    """K alive prefixes and the K best finished hypotheses per source, s(Y) = log P / lp(Y)
    (eq. 15.4); stop once no alive prefix can beat the best finished one."""
    tokens = np.full((B * K, 1), c.bos_id, dtype=np.int64)  # (B K, 1) alive prefixes
    alive = np.full((B, K), -np.inf)  # (B, K) their log P; at first only [BOS] itself
    alive[:, 0] = 0.0
    best_scores = np.full((B, K), -np.inf)  # (B, K) finished s(Y), best first
    best_ids = np.full((B, K, max_len), c.pad_id, dtype=np.int64)  # (B, K, max_len)
    best_lengths = np.zeros((B, K), dtype=np.int64)  # (B, K)
    done = np.zeros(B, dtype=bool)  # (B,)
    for t in range(max_len):
        log_probs = step.log_probs(tokens)  # (B K, V)
        V = log_probs.shape[-1]
        # 1. every prefix extended by every token; the M best per source, best first
        candidates = (alive[:, :, None] + log_probs.reshape(B, K, V)).reshape(B, K * V)
        M = min(2 * K, K * V)
        top = np.argsort(-candidates, axis=1, kind="stable")[:, :M]  # (B, M)
        top_scores = _take(candidates, top)  # (B, M)
        parent, token = top // V, top % V  # (B, M) which prefix, which next token
        # 2. finished candidates among the K best join the finished hypotheses
        final = (token == c.eos_id) | (t + 1 == max_len)  # (B, M)
        joins = final & (np.arange(M) < K) & ~done[:, None]  # (B, M)
        new_ids = np.full((B, M, max_len), c.pad_id, dtype=np.int64)  # (B, M, max_len)
        prefixes = tokens[:, 1:].reshape(B, K, t)  # (B, K, t) without BOS
        new_ids[:, :, :t] = np.take_along_axis(prefixes, parent[:, :, None], axis=1)
        new_ids[:, :, t] = token
        new_scores = np.where(joins, top_scores / length_penalty(t + 1, alpha), -np.inf)
        pool = np.concatenate([best_scores, new_scores], axis=1)  # (B, K + M), old ones first
        keep = np.argsort(-pool, axis=1, kind="stable")[:, :K]  # (B, K)
        best_scores = _take(pool, keep)
        best_ids = np.take_along_axis(np.concatenate([best_ids, new_ids], axis=1),
                                      keep[:, :, None], axis=1)  # (B, K, max_len)
        best_lengths = _take(np.concatenate([best_lengths, np.full((B, M), t + 1)], axis=1),
                             keep)  # (B, K)
        # 3. the K best unfinished candidates stay alive
        open_scores = np.where(final, -np.inf, top_scores)  # (B, M)
        survivors = np.argsort(-open_scores, axis=1, kind="stable")[:, :K]  # (B, K)
        alive = _take(open_scores, survivors)  # (B, K)
        rows = (np.arange(B)[:, None] * K + _take(parent, survivors)).reshape(-1)  # (B K,)
        next_tokens = _take(token, survivors).reshape(-1, 1)  # (B K, 1)
        tokens = np.concatenate([tokens[rows], next_tokens], axis=1)  # (B K, t + 2)
        # 4. done: no alive prefix can reach the best finished score any more
        done |= best_scores[:, 0] >= alive.max(axis=1) / length_penalty(max_len, alpha)
        alive[done] = -np.inf
        if done.all() or t + 1 == max_len:
            break
        step.reorder(rows)
    T = best_lengths[:, 0].max()
    return Decoded(best_ids[:, 0, :T], best_lengths[:, 0], best_scores[:, 0])


def _ngrams(tokens, n):
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu_statistics(hypotheses, references, *, lowercase=False, tokenize="13a"):
    """[c, r, clipped matches 1..4, totals 1..4] per sentence (eq. 15.6)."""
    hypotheses, streams = check_corpus(hypotheses, references)
    stats = np.zeros((len(hypotheses), 2 + 2 * MAX_NGRAM_ORDER), dtype=np.int64)  # (N, 10)
    for i, hypothesis in enumerate(hypotheses):
        hyp = preprocess(hypothesis, lowercase, tokenize)
        refs = [preprocess(stream[i], lowercase, tokenize) for stream in streams
                if stream[i] is not None]
        c = len(hyp)
        r = min((len(ref) for ref in refs), key=lambda length: (abs(length - c), length))
        stats[i, :2] = c, r
        for n in range(1, MAX_NGRAM_ORDER + 1):
            most = Counter()  # each n-gram's largest count in any one reference
            for ref in refs:
                most |= _ngrams(ref, n)
            stats[i, 1 + n] = sum((_ngrams(hyp, n) & most).values())  # clipped matches
            stats[i, 1 + MAX_NGRAM_ORDER + n] = max(c - n + 1, 0)
    return stats


def bleu_from_statistics(stats, *, smooth="exp", effective_order=False):
    """BP exp(mean log p_n), p_n clipped precisions in percent, smoothed (eqs. 15.6-15.8)."""
    if smooth not in ("exp", "none"):
        raise ValueError(f"smooth={smooth!r} is not known: use 'exp' or 'none'")
    stats = np.atleast_2d(stats)
    R = len(stats)
    scores, precisions, bps = np.zeros(R), np.zeros((R, MAX_NGRAM_ORDER)), np.zeros(R)
    for row, (c, r, *counts) in enumerate(stats.tolist()):
        matches, totals = counts[:MAX_NGRAM_ORDER], counts[MAX_NGRAM_ORDER:]
        bps[row] = 1.0 if c >= r else (math.exp(1 - r / c) if c > 0 else 0.0)  # eq. 15.7
        if sum(matches) == 0:
            continue  # no match at all: BLEU 0, precisions 0
        existing, misses = 0, 0
        for n in range(MAX_NGRAM_ORDER):
            if totals[n] == 0:
                break  # this order and the higher ones do not exist
            existing += 1
            if matches[n] > 0:
                precisions[row, n] = 100.0 * matches[n] / totals[n]  # eq. 15.6
            elif smooth == "exp":
                misses += 1
                precisions[row, n] = 100.0 / (2.0 ** misses * totals[n])  # eq. 15.8
        order = max(existing if effective_order else MAX_NGRAM_ORDER, 1)
        log_sum = 0.0
        for n in range(order):  # log 0 as sacreBLEU takes it
            p = precisions[row, n]
            log_sum += math.log(p) if p > 0 else LOG_OF_ZERO
        scores[row] = bps[row] * math.exp(log_sum / order)  # eq. 15.7
    return scores, precisions, bps


def chrf_from_statistics(stats, beta=2):
    """F_beta of the mean character precision and recall over the effective orders
    (eqs. 15.9, 15.10)."""
    stats = np.atleast_2d(stats).astype(np.float64)
    hyp, ref, match = stats[:, 0::3], stats[:, 1::3], stats[:, 2::3]  # (R, orders) each
    scores = np.zeros(len(stats))  # (R,)
    for row in range(len(stats)):
        chr_p, chr_r, orders = 0.0, 0.0, 0
        for h, r, m in zip(hyp[row], ref[row], match[row]):
            if h > 0 and r > 0:  # an effective order
                chr_p, chr_r, orders = chr_p + m / h, chr_r + m / r, orders + 1  # eq. 15.9
        if orders == 0:
            continue
        chr_p, chr_r = chr_p / orders, chr_r / orders
        if chr_p + chr_r > 0:
            scores[row] = (1 + beta ** 2) * chr_p * chr_r / (beta ** 2 * chr_p + chr_r)
    return 100 * scores  # eq. 15.10


def levenshtein_next_row(above, i, match):
    """Row i of D from row i - 1 (eq. 15.13), for B tables at once; the left neighbour's
    term unrolls into a running minimum: D[i][j] = j + min_{k <= j} (t_k - k)."""
    j = np.arange(above.shape[1])  # (W + 1,)
    t = np.empty_like(above)  # (B, W + 1)
    t[:, 0] = i  # D[i][0]: i deletions
    t[:, 1:] = np.minimum(above[:, 1:] + 1, above[:, :-1] + ~match)  # from above, diagonal
    return np.minimum.accumulate(t - j, axis=1) + j  # (B, W + 1)

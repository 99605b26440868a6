"""Chapter 15 exercises: greedy and beam search, BLEU's statistics and score, chrF, and a row of
the edit-distance table. Grade them with

    python exercises/grade.py 15

Each function replaces one piece of tinyllm while the chapter's real tests run (see
exercises/README.md). The searches run on tiny random float64 models and are checked against
brute force; the metrics are checked by hand and against sacreBLEU.

For the searches, ``tinyllm.decoding`` has the helpers: ``_check_search(model, max_len)``
(ValueError for a bad max_len), ``encode(model, src, src_mask)`` -> (memory, mask), and
``_NextToken(model, memory, mask, max_len, use_cache)``, whose ``log_probs(tokens)`` takes the
prefixes (N, t) (BOS first) and returns log p(next token) (N, V) as float64 NumPy, PAD and BOS
at -inf, and whose ``reorder(index)`` makes row n continue the prefix ``index[n]`` of the last
call. The result is ``tinyllm.decoding.Decoded(ids, lengths, scores)``. ``model.config`` has
``pad_id``, ``bos_id``, ``eos_id``.
"""

from __future__ import annotations


def greedy_search(model, src, max_len, src_mask=None, use_cache=True):
    """Replaces ``tinyllm.decoding.greedy_search``: the arg-max at every step (eq. 15.5)

    Check max_len; put the model in eval mode (and back to its mode after, even on error); run
    under ``tinyllm.tensor.no_grad()``. Encode the sources (B, S) once, start every prefix at
    [BOS] (B, 1) int64 and, for t = 0 .. max_len - 1: log p = ``step.log_probs(tokens)`` (B, V),
    best = its arg-max (B,); a row not yet finished adds log p[best] to its score (eq. 15.5:
    log P(Y | X) = sum_t log p(y_t | y_<t, X)) and gets length t + 1; a finished row appends
    PAD instead and keeps its score and length; a row is finished once it has appended EOS.
    Stop when every row is finished. Return ``Decoded(tokens without the BOS column (B, T),
    lengths (B,) int64, scores (B,) float64)``.
    """
    raise NotImplementedError("exercise 15.1: arg-max, add its log-probability, stop at EOS")


def beam_loop(step, B, K, max_len, alpha, c):
    """Replaces ``tinyllm.decoding._beam_loop``: beam search's loop over positions (eq. 15.4)

    ``step`` is a ``_NextToken`` over B K prefixes: rows b K .. b K + K - 1 belong to source b;
    ``c`` is the model's config. Keep per source the K alive prefixes with their log P (at first
    only [BOS] with 0, the K - 1 others at -inf, so the beams do not start as copies) and the K
    best finished hypotheses with s(Y) = log P(Y | X) / lp(|Y|) (``length_penalty(n, alpha)`` =
    ((5 + n) / 6)^alpha, eq. 15.4; |Y| counts the EOS). At each position t = 0 .. max_len - 1:
      1. candidates: log P of every prefix + log p of every next token, (B, K V); take the
         M = min(2K, K V) best per source, best first (``np.argsort(-x, kind="stable")``: ties
         to the lower index k V + v); prefix k = index // V, token v = index % V;
      2. a candidate is final if its token is EOS or t + 1 == max_len; a final candidate joins
         its source's finished hypotheses only if it is among the first K of the M and the
         source is not done; keep the K best finished (the older ones first on ties);
      3. the K best non-final candidates (final ones count as -inf) become the alive prefixes:
         tokens of the surviving rows (index b K + k) plus their new token;
      4. a source is done when its best finished s(Y) >= max alive log P / lp(max_len) (no
         alive prefix can beat it); its alive scores become -inf. Stop when all are done or
         t + 1 == max_len, else ``step.reorder(index)`` with the surviving rows (B K,).
    Return ``Decoded(ids (B, T), lengths (B,), scores (B,))`` of each source's best finished
    hypothesis, ids padded with PAD to T = the longest of those lengths.
    """
    raise NotImplementedError("exercise 15.2: extend, rank, set the finished aside, keep K")


def bleu_statistics(hypotheses, references, *, lowercase=False, tokenize="13a"):
    """Replaces ``tinyllm.metrics.bleu.bleu_statistics``: BLEU's counts per sentence (eq. 15.6)

    ``references`` are streams: ``references[k][i]`` is the k-th reference of sentence i, or
    None (``tinyllm.metrics.sequences.check_corpus`` checks them and returns (hypotheses,
    streams)). Tokens: ``tinyllm.metrics.bleu.preprocess(text, lowercase, tokenize)``.
    Returns an int64 array (N, 10), one row per sentence i:
        [c_i, r_i, m_1, m_2, m_3, m_4, t_1, t_2, t_3, t_4]
    c_i: hypothesis tokens; r_i: the length of the reference closest to c_i (ties to the
    shorter); m_n: clipped matches, sum over the hypothesis n-grams g of
    min(c_y(g), max over the references of c_r(g)); t_n = max(c_i - n + 1, 0).
    """
    raise NotImplementedError("exercise 15.3: count n-grams, clip by the references, lengths")


def bleu_from_statistics(stats, *, smooth="exp", effective_order=False):
    """Replaces ``tinyllm.metrics.bleu.bleu_from_statistics``: BLEU of each row (eqs. 15.6-15.8)

    ``stats`` (R, 10) as ``bleu_statistics`` makes them (or one row (10,): use
    ``np.atleast_2d``); c, r, m_n, t_n as there. Per row:
        BP = 1 if c >= r, exp(1 - r / c) if 0 < c < r, 0 if c = 0               (eq. 15.7)
        order n "exists" while t_n > 0 (all lower orders too);
        p_n = 100 m_n / t_n if m_n > 0 (in percent)                             (eq. 15.6)
            = 100 / (2^k t_n) if m_n = 0 and smooth == "exp", k = 1 for the first existing
              order without a match, 2 for the second, ...                      (eq. 15.8)
            = 0 if m_n = 0 and smooth == "none", and 0 for an order that does not exist;
        n_ord = the number of existing orders if ``effective_order`` else 4 (at least 1);
        BLEU = BP exp(sum_{n <= n_ord} log(p_n) / n_ord), adding the logs in the order n = 1..4
               and taking log(0) as ``tinyllm.metrics.bleu.LOG_OF_ZERO``        (eq. 15.7)
    A row without any match (all m_n = 0) has BLEU 0 and precisions 0. ``smooth`` other than
    "exp" or "none" is a ValueError. Returns (scores (R,), precisions (R, 4), BP (R,)).
    """
    raise NotImplementedError("exercise 15.4: BP, the (smoothed) precisions, the geometric mean")


def chrf_from_statistics(stats, beta=2):
    """Replaces ``tinyllm.metrics.chrf.chrf_from_statistics``: chrF of each row (eqs. 15.9, 15.10)

    ``stats`` (R, 3 orders) (or one row: ``np.atleast_2d``) holds for each order n the columns
    h_n, r_n, m_n (hypothesis n-grams, reference n-grams, clipped matches): h = stats[:, 0::3],
    r = stats[:, 1::3], m = stats[:, 2::3]. An order is effective where h_n > 0 and r_n > 0;
    there chrP_n = m_n / h_n, chrR_n = m_n / r_n (eq. 15.9). chrP, chrR = the sums over the
    effective orders (added in the order n = 1, 2, ...) divided by their number (0 if none).
        chrF = 100 (1 + beta^2) chrP chrR / (beta^2 chrP + chrR), 0 if chrP + chrR = 0  (15.10)
    Returns the scores (R,) float64, in percent.
    """
    raise NotImplementedError("exercise 15.5: precision and recall per order, then F_beta")


def levenshtein_next_row(above, i, match):
    """Replaces ``tinyllm.metrics.alignment.levenshtein_next_row``: one row of eq. 15.13

    B tables at once: ``above`` (B, W + 1) int64 is row i - 1 of each table D, ``match``
    (B, W) bool is [r_i == y_j] for j = 1..W (column j - 1). Return row i (B, W + 1):
        D[i][0] = i,
        D[i][j] = min(D[i-1][j] + 1, D[i][j-1] + 1, D[i-1][j-1] + [r_i != y_j])   (eq. 15.13)
    A loop over j is fine. Whole-array: with t_0 = i and t_j = min(D[i-1][j] + 1,
    D[i-1][j-1] + [r_i != y_j]), D[i][j] = j + min over k <= j of (t_k - k)
    (``np.minimum.accumulate``).
    """
    raise NotImplementedError("exercise 15.6: delete, insert or substitute, the cheapest")


# number, the library attribute it replaces, your function, the tests that grade it
EXERCISES = (
    ("15.1", "tinyllm.decoding:greedy_search", greedy_search,
     ("tests/test_15_decoding.py::test_greedy_cached_equals_uncached_token_for_token",
      "tests/test_15_decoding.py::test_a_batch_equals_its_sources_one_by_one[greedy]",
      "tests/test_15_decoding.py::test_the_exhaustive_optimum_is_not_always_the_greedy_output",
      "tests/test_15_decoding.py::test_outputs_end_at_eos_or_max_len_and_are_padded_after")),
    ("15.2", "tinyllm.decoding:_beam_loop", beam_loop,
     ("tests/test_15_decoding.py::test_beam_width_one_is_greedy[0]",
      "tests/test_15_decoding.py::test_beam_width_one_is_greedy[1]",
      "tests/test_15_decoding.py::test_a_wide_beam_finds_the_best_length_penalised_output[0-0.0]",
      "tests/test_15_decoding.py::test_a_wide_beam_finds_the_best_length_penalised_output[1-0.6]",
      "tests/test_15_decoding.py::test_a_wide_beam_finds_the_best_length_penalised_output[2-2.0]",
      "tests/test_15_decoding.py::test_a_batch_equals_its_sources_one_by_one[beam]",
      "tests/test_15_chapter.py::"
      "test_eq_15_5_a_beams_score_is_its_teacher_forced_log_probability_over_lp[0]")),
    ("15.3", "tinyllm.metrics.bleu:bleu_statistics", bleu_statistics,
     ("tests/test_15_metrics.py::test_sentence_bleu_by_hand",
      "tests/test_15_metrics.py::test_brevity_penalty_by_hand",
      "tests/test_15_metrics.py::test_bleu_equals_sacrebleu")),
    ("15.4", "tinyllm.metrics.bleu:bleu_from_statistics", bleu_from_statistics,
     ("tests/test_15_chapter.py::test_eqs_15_6_to_15_8_the_worked_bleu_example",
      "tests/test_15_chapter.py::test_bleu_is_brittle_as_the_chapter_says",
      "tests/test_15_metrics.py::test_bleu_extremes",
      "tests/test_15_metrics.py::test_bleu_equals_sacrebleu_on_shakespeare")),
    ("15.5", "tinyllm.metrics.chrf:chrf_from_statistics", chrf_from_statistics,
     ("tests/test_15_chapter.py::test_eqs_15_9_15_10_the_worked_chrf_example",
      "tests/test_15_metrics.py::test_chrf_by_hand",
      "tests/test_15_metrics.py::test_chrf_equals_sacrebleu")),
    ("15.6", "tinyllm.metrics.alignment:levenshtein_next_row", levenshtein_next_row,
     ("tests/test_15_metrics.py::test_levenshtein_classic_pairs[kitten-sitting-3]",
      "tests/test_15_metrics.py::test_levenshtein_classic_pairs[intention-execution-5]",
      "tests/test_15_metrics.py::test_edit_distances_match_the_double_loop",
      "tests/test_15_chapter.py::test_eqs_15_13_15_15_the_worked_edit_distance_example",
      "tests/test_15_metrics.py::test_error_rates_by_hand")),
)

"""Chapter 18 exercises: add-k and Kneser-Ney smoothing, the LSTM cell, the streams of truncated
BPTT, GloVe's co-occurrences and its objective. Grade them with

    python exercises/grade.py 18

Each function replaces one piece of tinyllm (``ngram.py``, ``nn/recurrent.py``,
``objectives/streams.py``, ``glove.py``) while the chapter's real tests run (see
exercises/README.md). Shapes: B batch, T context length, C_in input width, C_h state width,
V vocabulary; an n-gram model scores M queries (history, token) at once, arrays (M,).
"""

from __future__ import annotations


def add_k_level(self, k, history, gram, lower):
    """Replaces ``tinyllm.ngram.AddK._level``: add-k smoothing at level k (eq. 18.3)

    ``history`` (M,) the row of each query's (k-1)-token history h in level k - 1 and ``gram``
    (M,) the row of the k-gram h w in level k, both -1 where never seen; ``lower`` (M,) is the
    level below (unused by add-k). ``self.counts.counts[k]`` holds c(h w) per gram row,
    ``self.totals[k]`` c(h .) per history row; ``_take(values, rows)`` from ``tinyllm.ngram``
    reads values[rows] with 0 for a row of -1. Return (M,)
        p_k(w | h) = (c(h w) + k') / (c(h .) + k' V),     k' = ``self.k``, V = ``self.vocab_size``
    (k' = 0 is the maximum-likelihood estimate, eq. 18.1: 0/0 = nan after an unseen history).
    """
    raise NotImplementedError("exercise 18.1: k more of every count, k V more in the total")


def kneser_ney_level(self, k, history, gram, lower):
    """Replaces ``tinyllm.ngram.KneserNey._level``: interpolated modified Kneser-Ney (eq. 18.5)

    As in 18.1, ``history`` and ``gram`` are rows (M,) (-1: unseen) and ``lower`` (M,) is
    p_{k-1}(w | h') for the same queries. Per level k the model holds ``self.used[k]`` a(g) per
    gram (counts at the top order, continuation counts N1+(. g) below: eq. 18.4),
    ``self.totals[k]`` a(h .) per history, ``self.n_by_count[k]`` (3, histories): N1(h .),
    N2(h .), N3+(h .), and ``self.discounts[k]`` = (D1, D2, D3+) (eq. 18.6), D(0) = 0.
        gamma(h) a(h .) = D1 N1(h .) + D2 N2(h .) + D3+ N3+(h .)
        p_k(w | h) = [max(a(hw) - D(a(hw)), 0) + gamma(h) a(h .) p_{k-1}(w | h')] / a(h .)
    with D(a) = D3+ for every a >= 3, and p_k = p_{k-1} where a(h .) = 0 (a history never seen).
    Use ``_take`` from ``tinyllm.ngram`` to read per-row values (0 for a row of -1).
    """
    raise NotImplementedError("exercise 18.2: discounted counts plus gamma(h) times p_{k-1}")


def lstm_cell_forward(self, x, state):
    """Replaces ``tinyllm.nn.recurrent.LSTMCell.forward``: one LSTM step (eq. 18.11)

    ``x`` Tensor (B, C_in), ``state`` = (h, c), Tensors (B, C_h); ``self.weight``
    (C_in + C_h, 4 C_h), ``self.bias`` (4 C_h,), the gates in the order i, f, g, o. Check the
    shapes first with ``_check_step(x, state, self.input_size, self.hidden_size, "LSTMCell")``.
        [z_i, z_f, z_g, z_o] = [x, h] W + b       (``concatenate`` and ``split`` from
                                                   ``tinyllm.creation``; 4 x (B, C_h))
        c' = sigmoid(z_f) * c + sigmoid(z_i) * tanh(z_g),    h' = sigmoid(z_o) * tanh(c')
    Build it from Tensor ops (``.sigmoid()``, ``.tanh()``) so autograd derives BPTT. Return
    (h', c').
    """
    raise NotImplementedError("exercise 18.3: one product for the four gates, then c and h")


def make_streams(ids, batch_size, context_length):
    """Replaces ``tinyllm.objectives.streams.make_streams``: the streams of eq. 18.13

    ``ids`` (N,) token ids (anything else 1-D is a ValueError), B = ``batch_size``,
    T = ``context_length``. Each stream has n = floor((N - 1) / B) tokens rounded down to a
    multiple of T; if n < T, raise a ValueError that says "{N} tokens make no batch of B={B}
    streams of T={T} tokens". Return the int64 array (B, n + 1) whose row b is
    ids[b n : (b + 1) n + 1]: n tokens and the next one, the target of its last position (so
    row b overlaps row b + 1 by one token).
    """
    raise NotImplementedError("exercise 18.4: B contiguous rows of n + 1 tokens, n = whole batches")


def cooccurrence(ids, vocab_size, window=10, symmetric=True):
    """Replaces ``tinyllm.glove.cooccurrence``: the sparse co-occurrence matrix X (eq. 18.14)

    ``ids`` (N,) word ids, -1 for a word outside the vocabulary (it pairs with nothing but keeps
    its place). For every distance 1 <= d <= ``window``, the pair (word i at t, word k at t + d)
    adds 1/d to X_ik and, if ``symmetric``, the same pair adds 1/d to X_ki (the context before).
    A window < 1 or an id >= ``vocab_size`` is a ValueError. Return (rows, cols, values) of the
    non-zero entries, sorted by (row, col), each entry once: work with the codes
    i * V + k of all pairs at once (``np.unique(..., return_inverse=True)`` and
    ``np.bincount(..., weights=...)``), one pass per distance, no loop over positions.
    """
    raise NotImplementedError("exercise 18.5: 1/d for each pair d apart, summed per (i, k)")


def glove_objective(self, rows, cols, values, x_max=100.0, alpha=0.75):
    """Replaces ``tinyllm.glove.GloVe.objective``: weighted least squares (eqs. 18.16-18.18)

    ``rows`` i, ``cols`` k (N,) ids and ``values`` X_ik > 0 (N,). ``self(rows, cols)`` gives the
    Tensor w_i . w~_k + b_i + b~_k (N,). Return the Tensor (a scalar)
        J = sum_n f(X_n) (w_i . w~_k + b_i + b~_k - ln X_n)^2                       (18.17)
        f(x) = (x / x_max)^alpha if x < x_max, else 1                               (18.18)
    (``weighting(values, x_max, alpha)`` from ``tinyllm.glove`` is f) with ln X and f as arrays
    in the model's dtype (``self.word.weight.dtype``), so autograd gives eq. 18.17's gradient.
    """
    raise NotImplementedError("exercise 18.6: f(X) times the squared residual, summed")


# number, the library attribute it replaces, your function, the tests that grade it
EXERCISES = (
    ("18.1", "tinyllm.ngram:AddK._level", add_k_level,
     ("tests/test_18_ngram.py::test_add_k_by_hand",
      "tests/test_18_ngram.py::test_add_k_tends_to_mle_where_it_is_defined",
      "tests/test_18_ngram.py::test_mle_is_counts_over_history_counts",
      "tests/test_18_chapter.py::"
      "test_one_unseen_event_makes_the_mle_perplexity_infinite_and_add_k_finite")),
    ("18.2", "tinyllm.ngram:KneserNey._level", kneser_ney_level,
     ("tests/test_18_ngram.py::test_kneser_ney_by_hand",
      "tests/test_18_ngram.py::test_lower_orders_of_a_higher_order_count_sum_to_one_too",
      "tests/test_18_ngram.py::test_kneser_ney_beats_add_k_on_held_out_text")),
    ("18.3", "tinyllm.nn.recurrent:LSTMCell.forward", lstm_cell_forward,
     ("tests/test_18_recurrent.py::test_lstm_cell_equals_the_numpy_reference_over_several_steps",
      "tests/test_18_recurrent.py::test_gradcheck_lstm_cell_over_three_steps",
      "tests/test_18_chapter.py::test_the_cell_state_derivative_is_the_forget_gate")),
    ("18.4", "tinyllm.objectives.streams:make_streams", make_streams,
     ("tests/test_18_recurrent.py::test_streams_are_contiguous_rows_cut_into_whole_batches",
      "tests/test_18_recurrent.py::"
      "test_batches_continue_the_streams_and_an_epoch_resets_the_state")),
    ("18.5", "tinyllm.glove:cooccurrence", cooccurrence,
     ("tests/test_18_glove.py::test_cooccurrence_of_a_tiny_sentence_by_hand",
      "tests/test_18_glove.py::"
      "test_out_of_vocabulary_words_keep_their_place_and_one_sided_windows",
      "tests/test_18_glove.py::test_cooccurrence_equals_a_loop_over_positions")),
    ("18.6", "tinyllm.glove:GloVe.objective", glove_objective,
     ("tests/test_18_glove.py::test_objective_value_is_eq_8",
      "tests/test_18_glove.py::test_objective_gradcheck[0]",
      "tests/test_18_glove.py::test_gradient_equals_the_closed_form")),
)

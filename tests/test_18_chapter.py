"""Chapter 18's equations not already covered by tests/test_18_{ngram,recurrent,glove}.py.

- eq. 18.2: the perplexity of a model that gives an event zero probability is infinite;
- eq. 18.4: Kneser-Ney's continuation probability N1+(. w) / N1+(. .), and the "San Francisco"
  effect (a frequent token seen after one history only is a poor guess after a new one);
- eqs. 18.9-18.10: the BPTT gradient is the row vector times the product of the step Jacobians
  diag(1 - h_t^2) W_h^T, whose norm follows the spectral radius of W_h in the linear regime;
- eq. 18.11: the LSTM cell's additive path, dc_t / dc_{t-1} = f_t, and sigmoid(1)^k through k
  steps of an untrained cell with its forget-gate bias of 1;
- eqs. 18.15-18.16: GloVe's ratio of co-occurrence probabilities, recovered exactly by vectors
  that fit eq. 18.16, where the objective and its gradient vanish;
- benchmarks/perplexity_table.py: each validation character is scored exactly once, with the
  history the chapter says.
"""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyllm as tl
from tinyllm import nn
from tinyllm.glove import GloVe, cooccurrence
from tinyllm.models import GPT, GPTConfig, LSTMConfig, LSTMLanguageModel
from tinyllm.ngram import AddK, KneserNey, MaximumLikelihood, NGramCounts

pytestmark = pytest.mark.ch18

ROOT = Path(__file__).resolve().parent.parent


def perplexity_table():
    spec = importlib.util.spec_from_file_location(
        "perplexity_table", ROOT / "benchmarks" / "perplexity_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------------
# n-grams: eq. 18.2 (one zero is an infinite perplexity), eq. 18.4 (continuation probability)
# --------------------------------------------------------------------------------------------------


def test_one_unseen_event_makes_the_mle_perplexity_infinite_and_add_k_finite():
    train, held_out = [0, 1, 0, 1, 0, 1, 2], [0, 1, 0, 2]  # "0 2" never occurs in training
    # bigrams 01 x3, 10 x2, 12 x1: c(0 .) = c(1 .) = 3, V = 3
    counts = NGramCounts(train, 3, 2)
    log_p = MaximumLikelihood(counts).log_prob(held_out)
    assert np.isneginf(log_p[3]) and np.isfinite(log_p[:3]).all()
    assert MaximumLikelihood(counts).perplexity(held_out) == math.inf  # eq. 18.2
    add_one = AddK(counts, k=1.0)
    expected = math.exp(-np.mean(np.log(
        [add_one.distribution([])[0], 4 / 6, 3 / 6, 1 / 6])))  # (c + 1) / (c(h .) + V)
    assert math.isclose(add_one.perplexity(held_out), expected, rel_tol=1e-12)


def test_continuation_probability_counts_distinct_left_neighbours():
    """With no discount (D = 0) the lowest level of Kneser-Ney is eq. 18.4 alone:
    p_cont(w) = N1+(. w) / N1+(. .). Token 3 is the most frequent but follows token 2 only."""
    ids = [0, 1, 2, 3, 2, 3, 2, 3, 1, 0, 2, 3, 0, 1]
    counts = NGramCounts(ids, 4, 2)
    bigrams = {tuple(ids[i:i + 2]) for i in range(len(ids) - 1)}
    left = np.array([sum(1 for (_, b) in bigrams if b == w) for w in range(4)])  # N1+(. w)
    p_cont = KneserNey(counts, discounts=(0.0, 0.0, 0.0)).distribution([])
    np.testing.assert_allclose(p_cont, left / left.sum(), rtol=1e-12)
    frequency = np.bincount(ids, minlength=4) / len(ids)
    assert frequency[3] > frequency[1] and p_cont[3] < p_cont[1]  # frequent, but only after 2


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=3, max_size=40))
def test_continuation_probability_for_any_text(ids):
    counts = NGramCounts(ids, 4, 2)
    bigrams = {tuple(ids[i:i + 2]) for i in range(len(ids) - 1)}
    left = np.array([sum(1 for (_, b) in bigrams if b == w) for w in range(4)], dtype=float)
    p_cont = KneserNey(counts, discounts=(0.0, 0.0, 0.0)).distribution([])
    expected = left / left.sum() if left.sum() > 0 else np.full(4, 0.25)
    np.testing.assert_allclose(p_cont, expected, rtol=1e-12)


# --------------------------------------------------------------------------------------------------
# BPTT: eqs. 18.9 and 18.10
# --------------------------------------------------------------------------------------------------


def unrolled_rnn(cell, xs, h0):
    """h_1 .. h_T of ``cell`` from h0, each kept with its gradient."""
    hs, state = [], (h0,)
    for x in xs:
        state = cell(x, state)
        state[0].retain_grad()
        hs.append(state[0])
    return hs


def test_bptt_gradient_is_the_product_of_step_jacobians():
    rng = np.random.default_rng(0)
    cell = nn.RNNCell(3, 5, rng=rng).astype(np.float64)
    xs = [tl.tensor(rng.standard_normal((1, 3))) for _ in range(6)]
    h0 = tl.tensor(rng.standard_normal((1, 5)), requires_grad=True)
    hs = unrolled_rnn(cell, xs, h0)
    v = rng.standard_normal((1, 5))
    hs[-1].backward(v)  # L = <v, h_T>
    W_h = cell.weight_h.numpy()
    row = v[0]
    for t in range(len(hs) - 1, -1, -1):  # eq. 18.9: g_{t-1} = g_t diag(1 - h_t^2) W_h^T
        np.testing.assert_allclose(hs[t].grad.numpy()[0], row, rtol=1e-12, atol=1e-15)
        J = np.diag(1 - hs[t].numpy()[0] ** 2) @ W_h.T  # dh_t / dh_{t-1}, (C_h, C_h)
        row = row @ J
    np.testing.assert_allclose(h0.grad.numpy()[0], row, rtol=1e-12, atol=1e-15)  # eq. 18.10


@pytest.mark.parametrize("radius", [0.5, 0.9, 1.1, 2.0])
def test_gradient_norm_follows_the_spectral_radius_in_the_linear_regime(radius):
    """W_h = rho Q with Q orthogonal: every singular value is rho. With tiny inputs, h stays near 0
    and tanh' near 1, so after k steps back the norm is rho^k times the first (eq. 18.10)."""
    rng = np.random.default_rng(1)
    H, k = 16, 12
    cell = nn.RNNCell(4, H, rng=rng).astype(np.float64)
    q, _ = np.linalg.qr(rng.standard_normal((H, H)))
    cell.weight_h.data = radius * q
    cell.bias.data = np.zeros(H)
    xs = [tl.tensor(1e-9 * rng.standard_normal((1, 4))) for _ in range(k)]
    h0 = tl.tensor(np.zeros((1, H)), requires_grad=True)
    hs = unrolled_rnn(cell, xs, h0)
    hs[-1].backward(rng.standard_normal((1, H)))
    back = np.array([np.linalg.norm(h.grad.numpy()) for h in [h0, *hs]])[::-1]  # h_k .. h_0
    np.testing.assert_allclose(back / back[0], radius ** np.arange(k + 1), rtol=1e-7)


def test_saturated_tanh_stops_an_exploding_gradient_and_clipping_bounds_the_step():
    rng = np.random.default_rng(2)
    cell = nn.RNNCell(4, 16, rng=rng).astype(np.float64)
    q, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    cell.weight_h.data = 3.0 * q
    xs = [tl.tensor(rng.standard_normal((1, 4))) for _ in range(30)]
    hs = unrolled_rnn(cell, xs, tl.tensor(np.zeros((1, 16))))
    slopes = np.array([np.mean(1 - h.numpy() ** 2) for h in hs])  # mean tanh' per step
    assert np.mean(slopes[5:]) < 0.5  # large states: tanh' small, the product is damped
    (hs[-1] * hs[-1]).sum().backward()
    norm = tl.optim.clip_grad_norm_(cell.parameters(), max_norm=1.0)  # eq. 9.13
    clipped = math.sqrt(sum(float((p.grad.numpy() ** 2).sum()) for p in cell.parameters()))
    assert norm > 1.0 and math.isclose(clipped, 1.0, rel_tol=1e-5)


# --------------------------------------------------------------------------------------------------
# The LSTM's additive path: eq. 18.11
# --------------------------------------------------------------------------------------------------


def test_the_cell_state_derivative_is_the_forget_gate():
    # eq. 18.11: dc_t / dc_{t-1} = diag(f_t) on the direct path
    rng = np.random.default_rng(3)
    cell = nn.LSTMCell(3, 4, rng=rng).astype(np.float64)
    x = tl.tensor(rng.standard_normal((2, 3)))
    h = tl.tensor(rng.standard_normal((2, 4)))
    c = tl.tensor(rng.standard_normal((2, 4)), requires_grad=True)
    _, c_next = cell(x, (h, c))
    v = rng.standard_normal((2, 4))
    c_next.backward(v)
    z = np.concatenate([x.numpy(), h.numpy()], axis=1) @ cell.weight.numpy() + cell.bias.numpy()
    f = 1 / (1 + np.exp(-z[:, 4:8]))  # the forget gate, (B, C_h)
    np.testing.assert_allclose(c.grad.numpy(), v * f, rtol=1e-12)  # dc_t/dc_{t-1} = diag(f_t)


def test_forget_bias_one_keeps_sigmoid_one_to_the_k_where_an_rnn_keeps_nothing():
    """Weights zero, biases as initialised: the LSTM's gates are constants and c_k depends on
    c_0 through the forget gates only, sigmoid(1)^k; an Elman cell with W_h = 0 forgets at once."""
    H, k = 4, 20
    cell = nn.LSTMCell(2, H, rng=np.random.default_rng(0)).astype(np.float64)
    cell.weight.data = np.zeros_like(cell.weight.data)
    c0 = tl.tensor(np.ones((1, H)), requires_grad=True)
    state = (tl.tensor(np.zeros((1, H))), c0)
    for _ in range(k):
        state = cell(tl.tensor(np.ones((1, 2))), state)
    state[1].sum().backward()
    sigmoid_one = 1 / (1 + math.exp(-1))  # 0.731
    np.testing.assert_allclose(c0.grad.numpy(), sigmoid_one ** k, rtol=1e-12)
    rnn = nn.RNNCell(2, H, rng=np.random.default_rng(0)).astype(np.float64)
    rnn.weight_h.data = np.zeros((H, H))
    h0 = tl.tensor(np.ones((1, H)), requires_grad=True)
    rnn(tl.tensor(np.ones((1, 2))), (h0,))[0].sum().backward()
    np.testing.assert_array_equal(h0.grad.numpy(), 0.0)


# --------------------------------------------------------------------------------------------------
# GloVe: the ratio of co-occurrence probabilities, eqs. 18.15 and 18.16
# --------------------------------------------------------------------------------------------------


def exact_glove(seed=0, V=6, C=3):
    """A model and the dense X it fits exactly: X_ik = exp(w_i . w~_k + b_i + b~_k)."""
    rng = np.random.default_rng(seed)
    model = GloVe(V, C, rng=rng, dtype=np.float64)
    for table in (model.word, model.context, model.word_bias, model.context_bias):
        table.weight.data = 0.5 * rng.standard_normal(table.weight.shape)
    w, wc = model.word.weight.numpy(), model.context.weight.numpy()
    b, bc = model.word_bias.weight.numpy()[:, 0], model.context_bias.weight.numpy()[:, 0]
    X = np.exp(w @ wc.T + b[:, None] + bc[None, :])  # (V, V), every entry > 0
    return model, X


def test_vectors_that_fit_eq_16_recover_every_ratio_of_ratios():
    # eq. 18.16: w_i . w~_k + b_i + b~_k = ln X_ik
    """P_ik / P_jk compared across two contexts k, m: the biases cancel and
    ln[(P_ik / P_jk) / (P_im / P_jm)] = (w_i - w_j) . (w~_k - w~_m)."""
    model, X = exact_glove()
    P = X / X.sum(axis=1, keepdims=True)  # P_ik = X_ik / X_i (eq. 18.15)
    w, wc = model.word.weight.numpy(), model.context.weight.numpy()
    i, j = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    for k, m in [(0, 1), (2, 5), (4, 3)]:
        ratio = (P[i, k] / P[j, k]) / (P[i, m] / P[j, m])  # (V, V)
        np.testing.assert_allclose(np.log(ratio), (w[i] - w[j]) @ (wc[k] - wc[m]), atol=1e-12)


def test_the_objective_and_its_gradient_vanish_at_an_exact_fit():
    model, X = exact_glove(1)
    rows, cols = np.nonzero(X)
    J = model.objective(rows, cols, X[rows, cols])
    assert abs(J.item()) < 1e-20
    J.backward()
    for p in model.parameters():
        np.testing.assert_allclose(p.grad.numpy(), 0.0, atol=1e-12)


def test_ratios_measured_on_a_corpus_are_the_counts_ratios():
    """P_ik / P_jk from cooccurrence(): word 0 co-occurs with context 2, word 1 with context 3,
    both with context 4, so the ratio is large for 2, small for 3 and near 1 for 4 (Pennington
    et al.'s ice / steam table in miniature)."""
    rng = np.random.default_rng(4)
    stream = []
    for _ in range(500):
        word = int(rng.integers(2))  # its context: 2 + word (70%), 3 - word (10%), 4 (20%)
        stream += [word, int(rng.choice([2 + word, 3 - word, 4], p=[0.7, 0.1, 0.2])), 5]
    rows, cols, values = cooccurrence(stream, 6, window=1)
    X = np.zeros((6, 6))
    X[rows, cols] = values
    P = X[:2] / X[:2].sum(axis=1, keepdims=True)  # P_ik for the words i = 0, 1
    ratio = P[0, 2:5] / P[1, 2:5]  # contexts 2, 3, 4
    assert ratio[0] > 3 and ratio[1] < 1 / 3 and 0.5 < ratio[2] < 2  # 7, 1/7, 1 in expectation


# --------------------------------------------------------------------------------------------------
# benchmarks/perplexity_table.py: every character scored once, with the stated history
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [1, 3, 4])
def test_gpt_windows_score_each_target_once_with_at_least_t_minus_stride_plus_one(stride):
    table = perplexity_table()
    T = 4
    config = GPTConfig(vocab_size=5, context_length=T, num_layers=1, num_heads=1, d_model=8)
    model = GPT(config, rng=np.random.default_rng(0), dtype=np.float64)
    ids = np.random.default_rng(1).integers(0, 5, 23)
    lp = table.gpt_log_probs(model, ids, stride, batch_size=2)
    assert lp.shape == (22,)
    last = ids.size - 1 - T
    starts = sorted(set(range(0, last + 1, stride)) | {last})
    with tl.no_grad():  # the slow way: target t read by the first window that reaches it
        for t in range(1, ids.size):
            s = min(s for s in starts if s + T >= t)
            assert s == 0 or t - s >= T - stride + 1  # the history it reads
            logits = model(ids[None, s:t]).numpy()[0, -1]  # (V,)
            expected = table.log_softmax_at(logits, np.array(ids[t]))
            assert math.isclose(lp[t - 1], expected, rel_tol=1e-10), t


def test_recurrent_streams_score_each_target_with_its_whole_stream():
    table = perplexity_table()
    config = LSTMConfig(vocab_size=5, context_length=3, num_layers=1, d_model=4, hidden_size=4)
    model = LSTMLanguageModel(config, rng=np.random.default_rng(0), dtype=np.float64)
    ids = np.random.default_rng(1).integers(0, 5, 30)  # 29 targets, 2 streams of 15 (5 chunks)
    lp = table.recurrent_log_probs(model, ids, streams=2)
    assert lp.shape == (29,)
    with tl.no_grad():
        for begin, end in [(0, 15), (15, 29)]:  # each stream read at once, from a zero state
            logits = model(ids[None, begin:end]).numpy()[0]  # (T, V)
            expected = table.log_softmax_at(logits, ids[begin + 1:end + 1])
            np.testing.assert_allclose(lp[begin:end], expected, rtol=1e-12)

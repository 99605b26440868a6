"""Chapter 04's skip-gram section, built as the chapter builds it from tinyllm's embedding and
binary cross-entropy: the full softmax (eq. 4.7), the negative-sampling loss and its gradients
(eqs. 4.8, 4.9), the subsampling rule (eq. 4.10) and the cosine ranking (eq. 4.11). All float64.
"""

import math

import numpy as np
import pytest

import tinyllm as tl
import tinyllm.nn.functional as F
from tinyllm import glove

pytestmark = pytest.mark.ch04

V, C, K = 9, 4, 3


def tables(seed: int = 0):
    rng = np.random.default_rng(seed)
    centre = tl.tensor(rng.standard_normal((V, C)), requires_grad=True)    # v_w rows
    context = tl.tensor(rng.standard_normal((V, C)), requires_grad=True)   # u_c rows
    return centre, context


def test_the_full_softmax_over_contexts():
    """Eq. 4.7: p(c | w) = exp(u_c . v_w) / sum_c' exp(u_c' . v_w), through F.embedding and
    F.softmax, against the formula term by term."""
    centre, context = tables()
    w = 4
    v_w = F.embedding(np.array([w]), centre)                                # (1, C)
    p = F.softmax(v_w @ context.T, axis=-1).numpy()[0]                      # (V,)
    u, v = context.numpy(), centre.numpy()[w]
    denominator = sum(math.exp(u[c] @ v) for c in range(V))
    np.testing.assert_allclose(p, [math.exp(u[c] @ v) / denominator for c in range(V)],
                               rtol=1e-13)


def test_negative_sampling_loss_and_gradients():
    """Eq. 4.8: l = -log sigma(s_0) - sum_k log sigma(-s_k) = sum_j BCE(s_j, t_j), t = (1, 0, ...);
    eq. 4.9: dl/dv_w = sum_j (sigma(s_j) - t_j) u_j, dl/du_j = (sigma(s_j) - t_j) v_w."""
    centre, context = tables(1)
    w, positive, negatives = 2, 5, np.array([0, 7, 3])
    candidates = np.concatenate([[positive], negatives])                   # (K + 1,)
    targets = np.array([1.0] + [0.0] * K)
    v_w = F.embedding(np.array([w]), centre)                                # (1, C)
    u = F.embedding(candidates, context)                                    # (K + 1, C)
    scores = (u @ v_w.T).reshape(K + 1)                                     # (K + 1,) s_j
    loss = F.binary_cross_entropy_with_logits(scores, targets, reduction="sum")
    loss.backward()

    s = context.numpy()[candidates] @ centre.numpy()[w]
    sigma = 1 / (1 + np.exp(-s))
    assert loss.item() == pytest.approx(-math.log(sigma[0]) - np.log(1 - sigma[1:]).sum(),
                                        rel=1e-13)
    coefficient = sigma - targets                                           # sigma(s_j) - t_j
    expected_v = np.zeros((V, C))
    expected_v[w] = coefficient @ context.numpy()[candidates]
    expected_u = np.zeros((V, C))
    expected_u[candidates] = coefficient[:, None] * centre.numpy()[w]
    np.testing.assert_allclose(centre.grad.numpy(), expected_v, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(context.grad.numpy(), expected_u, rtol=1e-12, atol=1e-15)


def test_subsampling_keeps_sqrt_t_f_of_a_frequent_word():
    """Eq. 4.10, drawn as the chapter draws it: a word of frequency f > t keeps a fraction
    sqrt(t / f) of its occurrences, so its share of the text drops from f towards sqrt(t f); a
    word with f <= t keeps all of them."""
    t = 1e-3
    frequency = np.array([0.05, 0.01, 0.002, 0.0005])
    keep_probability = np.minimum(1.0, np.sqrt(t / frequency))
    np.testing.assert_allclose(keep_probability[:3], np.sqrt(t / frequency[:3]), rtol=1e-15)
    assert keep_probability[3] == 1.0
    rng = np.random.default_rng(0)
    occurrences = 200_000
    for f, p in zip(frequency, keep_probability):
        kept = (rng.random(occurrences) < p).mean()
        assert abs(kept - p) < 5 * math.sqrt(p * (1 - p) / occurrences) + 1e-12
    kept_share = frequency * keep_probability
    np.testing.assert_allclose(kept_share[:3], np.sqrt(t * frequency[:3]), rtol=1e-14)


def test_cosine_ranking():
    """Eq. 4.11: cos(a, b) = a . b / (|a| |b|) in [-1, 1], ignoring length; tinyllm.glove.nearest
    ranks by it (a rescaled row ranks the same)."""
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((V, C))
    vectors[6] = -3.0 * vectors[0]                                          # cos = -1 with word 0
    vectors[7] = 10.0 * vectors[0] + 1e-3 * rng.standard_normal(C)          # cos ~ +1, long
    hand = np.array([vectors[0] @ vectors[j] / (np.linalg.norm(vectors[0])
                                                 * np.linalg.norm(vectors[j])) for j in range(V)])
    ids, cosines = glove.nearest(vectors, 0, k=V - 1)
    order = [j for j in np.argsort(-hand, kind="stable") if j != 0]
    assert list(ids) == order and ids[0] == 7 and ids[-1] == 6
    np.testing.assert_allclose(cosines, hand[ids], rtol=1e-12)
    assert cosines[-1] == pytest.approx(-1.0, abs=1e-12) and np.all(np.abs(cosines) <= 1 + 1e-12)

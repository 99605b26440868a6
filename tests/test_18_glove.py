"""Chapter 18, GloVe and AdaGrad: co-occurrences, the weighting function, the objective's gradient.

Under test: ``tinyllm/glove.py`` and ``tinyllm/optim/adagrad.py``. The gradient of the weighted
least-squares objective is checked against finite differences (float64) and against the
hand-derived closed form; AdaGrad against two steps computed by hand; training on a corpus with a
planted structure must recover it.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyllm as tl
from tinyllm import optim
from tinyllm.glove import (
    GloVe,
    analogy,
    cooccurrence,
    nearest,
    train_glove,
    weighting,
    word_ids,
)
from tinyllm.nn import Parameter

pytestmark = pytest.mark.ch18


# --------------------------------------------------------------------------------------------------
# Co-occurrences and the weighting function
# --------------------------------------------------------------------------------------------------


def test_cooccurrence_of_a_tiny_sentence_by_hand():
    # "the cat saw the dog", window 2: the=0 cat=1 saw=2 dog=3
    # eq. 18.14: X_ik weighted by 1 / |s - t| inside the window
    ids = [0, 1, 2, 0, 3]
    rows, cols, values = cooccurrence(ids, 4, window=2)
    X = np.zeros((4, 4))
    X[rows, cols] = values
    expected = np.zeros((4, 4))
    # distance 1: the-cat, cat-saw, saw-the, the-dog (weight 1); distance 2: the-saw, cat-the,
    # saw-dog (weight 1/2); symmetric
    for i, j, w in [(0, 1, 1), (1, 2, 1), (2, 0, 1), (0, 3, 1), (0, 2, .5), (1, 0, .5), (2, 3, .5)]:
        expected[i, j] += w
        expected[j, i] += w
    np.testing.assert_allclose(X, expected)
    assert X[0, 2] == 1.5 and X[0, 1] == 1.5  # "the saw" at d=2, "saw the" at d=1
    order = rows * 4 + cols
    assert np.all(np.diff(order) > 0)  # sorted by (row, col), each pair once


def test_out_of_vocabulary_words_keep_their_place_and_one_sided_windows():
    rows, cols, values = cooccurrence([0, -1, 1], 2, window=2)  # 0 and 1 are 2 apart
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0] and values.tolist() == [0.5, 0.5]
    rows, cols, values = cooccurrence([0, 1, 1], 2, window=1, symmetric=False)
    assert list(zip(rows, cols, values)) == [(0, 1, 1.0), (1, 1, 1.0)]


@given(st.lists(st.integers(-1, 4), max_size=30), st.integers(1, 4))
def test_cooccurrence_equals_a_loop_over_positions(ids, window):
    # eq. 18.14
    rows, cols, values = cooccurrence(ids, 5, window=window)
    X = np.zeros((5, 5))
    X[rows, cols] = values
    expected = np.zeros((5, 5))
    for t, i in enumerate(ids):
        for s in range(max(t - window, 0), min(t + window + 1, len(ids))):
            if s != t and i >= 0 and ids[s] >= 0:
                expected[i, ids[s]] += 1 / abs(s - t)
    np.testing.assert_allclose(X, expected, atol=1e-12)
    assert np.all(values > 0)


def test_weighting_function():
    # eq. 18.18: (x / x_max)^alpha below x_max, 1 above
    x = np.array([1.0, 10.0, 50.0, 99.0, 100.0, 1000.0])
    np.testing.assert_allclose(weighting(x), [0.01 ** 0.75, 0.1 ** 0.75, 0.5 ** 0.75,
                                              0.99 ** 0.75, 1.0, 1.0])
    assert math.isclose(weighting(3.0, x_max=3.0, alpha=0.5), 1.0)
    assert math.isclose(weighting(1.0, x_max=4.0, alpha=0.5), 0.5)
    assert np.all(np.diff(weighting(np.linspace(0.1, 200, 50))) >= 0)  # non-decreasing


def test_word_ids_keep_the_most_frequent_words():
    ids, vocab = word_ids("b a c a b a d".split(), 2)
    assert vocab == ["a", "b"]
    assert ids.tolist() == [1, 0, -1, 0, 1, 0, -1]


# --------------------------------------------------------------------------------------------------
# The objective and its gradient
# --------------------------------------------------------------------------------------------------


def small_problem(seed=0, V=6, C=3, N=9):
    rng = np.random.default_rng(seed)
    model = GloVe(V, C, rng=rng, dtype=np.float64)
    for table in (model.word, model.context, model.word_bias, model.context_bias):
        table.weight.data = rng.standard_normal(table.weight.shape)
    rows, cols = rng.integers(0, V, N), rng.integers(0, V, N)
    rows[1], cols[1] = rows[0], cols[0] + 1 if cols[0] + 1 < V else 0  # a word used twice
    values = rng.uniform(0.5, 150.0, N)  # on both sides of x_max
    return model, rows, cols, values


def test_objective_value_is_eq_8():
    # eq. 18.17: the weighted least-squares objective
    model, rows, cols, values = small_problem()
    w, wc = model.word.weight.numpy(), model.context.weight.numpy()
    b, bc = model.word_bias.weight.numpy()[:, 0], model.context_bias.weight.numpy()[:, 0]
    residual = (w[rows] * wc[cols]).sum(1) + b[rows] + bc[cols] - np.log(values)
    expected = np.sum(weighting(values) * residual ** 2)
    assert math.isclose(model.objective(rows, cols, values).item(), expected, rel_tol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_objective_gradcheck(seed):
    model, rows, cols, values = small_problem(seed)
    assert tl.gradcheck(lambda *weights: model.objective(rows, cols, values).reshape(1),
                        *model.parameters())


def test_gradient_equals_the_closed_form():
    # eq. 18.17: its gradients
    """dJ/dw_i = sum_j 2 f(X_ij) e_ij w~_j, dJ/dw~_j = sum_i 2 f e w_i, dJ/db_i = sum_j 2 f e."""
    model, rows, cols, values = small_problem(3)
    model.objective(rows, cols, values).backward()
    w, wc = model.word.weight.numpy(), model.context.weight.numpy()
    b, bc = model.word_bias.weight.numpy()[:, 0], model.context_bias.weight.numpy()[:, 0]
    e = (w[rows] * wc[cols]).sum(1) + b[rows] + bc[cols] - np.log(values)  # (N,)
    two_f_e = 2 * weighting(values) * e  # (N,)
    grad_w, grad_wc = np.zeros_like(w), np.zeros_like(wc)
    grad_b, grad_bc = np.zeros(len(b)), np.zeros(len(bc))
    np.add.at(grad_w, rows, two_f_e[:, None] * wc[cols])
    np.add.at(grad_wc, cols, two_f_e[:, None] * w[rows])
    np.add.at(grad_b, rows, two_f_e)
    np.add.at(grad_bc, cols, two_f_e)
    np.testing.assert_allclose(model.word.weight.grad.numpy(), grad_w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.context.weight.grad.numpy(), grad_wc, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.word_bias.weight.grad.numpy()[:, 0], grad_b, rtol=1e-12)
    np.testing.assert_allclose(model.context_bias.weight.grad.numpy()[:, 0], grad_bc, rtol=1e-12)


def test_vectors_are_word_plus_context():
    model, _, _, _ = small_problem()
    np.testing.assert_array_equal(model.vectors(),
                                  model.word.weight.numpy() + model.context.weight.numpy())


# --------------------------------------------------------------------------------------------------
# AdaGrad
# --------------------------------------------------------------------------------------------------


def test_adagrad_two_steps_by_hand():
    # eq. 18.19: G += g^2, theta -= lr g / (sqrt(G) + eps)
    p = Parameter(np.array([1.0, -2.0]))
    opt = optim.Adagrad([p], lr=0.5, eps=0.0, initial_accumulator_value=1.0)
    p.grad = tl.Tensor(np.array([3.0, 0.0]))
    opt.step()  # G = [1 + 9, 1] = [10, 1];  p = [1 - 0.5 * 3 / sqrt(10), -2]
    np.testing.assert_allclose(p.numpy(), [1 - 1.5 / math.sqrt(10), -2.0], rtol=1e-14)
    p.grad = tl.Tensor(np.array([-1.0, 4.0]))
    opt.step()  # G = [11, 17];  p -= 0.5 * [-1 / sqrt(11), 4 / sqrt(17)]
    expected = [1 - 1.5 / math.sqrt(10) + 0.5 / math.sqrt(11), -2.0 - 2.0 / math.sqrt(17)]
    np.testing.assert_allclose(p.numpy(), expected, rtol=1e-14)
    np.testing.assert_allclose(opt.state[0]["sum"], [11.0, 17.0])
    assert opt.state[0]["step"] == 2


def test_adagrad_defaults_weight_decay_and_eps():
    p = Parameter(np.array([2.0]))
    opt = optim.Adagrad([p], lr=0.1, eps=1e-10, weight_decay=0.5)
    p.grad = tl.Tensor(np.array([1.0]))
    opt.step()  # g = 1 + 0.5 * 2 = 2, G = 4: p = 2 - 0.1 * 2 / (2 + 1e-10)
    np.testing.assert_allclose(p.numpy(), [2 - 0.1 * 2 / (2 + 1e-10)], rtol=1e-14)
    assert optim.Adagrad([Parameter(np.zeros(1))]).param_groups[0]["lr"] == 1e-2


def test_adagrad_state_dict_resumes_exactly():
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((3, 2)) for _ in range(4)]

    def run(params, opt, steps):
        for g in steps:
            params[0].grad = tl.Tensor(g.copy())
            opt.step()

    straight = [Parameter(np.ones((3, 2)))]
    opt = optim.Adagrad(straight, lr=0.3)
    run(straight, opt, grads)
    first = [Parameter(np.ones((3, 2)))]
    opt_first = optim.Adagrad(first, lr=0.3)
    run(first, opt_first, grads[:2])
    resumed = [Parameter(first[0].numpy().copy())]
    opt_resumed = optim.Adagrad(resumed, lr=0.3)
    opt_resumed.load_state_dict(opt_first.state_dict())
    run(resumed, opt_resumed, grads[2:])
    np.testing.assert_array_equal(resumed[0].numpy(), straight[0].numpy())
    with pytest.raises(ValueError, match="saved by Adagrad"):
        optim.Adam(straight).load_state_dict(opt.state_dict())


def test_adagrad_errors():
    with pytest.raises(ValueError, match="initial_accumulator_value"):
        optim.Adagrad([Parameter(np.zeros(1))], initial_accumulator_value=-1.0)
    with pytest.raises(ValueError, match="eps"):
        optim.Adagrad([Parameter(np.zeros(1))], eps=-1.0)


# --------------------------------------------------------------------------------------------------
# Training recovers a planted structure; neighbours and analogies
# --------------------------------------------------------------------------------------------------


def test_training_recovers_words_that_share_contexts():
    """Four topics, each three interchangeable words (ids 3t..3t+2) between two copies of the
    topic's own context word (12 + t): words of one topic share every context, and never
    co-occur with each other. They must come out each other's nearest neighbours."""
    rng = np.random.default_rng(0)
    stream = []
    for _ in range(2000):
        t = int(rng.integers(4))
        stream += [12 + t, 3 * t + int(rng.integers(3)), 12 + t]
    rows, cols, values = cooccurrence(stream, 16, window=2)
    model, losses = train_glove(rows, cols, values, 16, d_model=8, epochs=1000, batch_size=64)
    assert losses[-1] < 0.05 * losses[0]
    vectors = model.vectors()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit[:12] @ unit[:12].T  # (12, 12) among the topic words
    same_topic = np.kron(np.eye(4), np.ones((3, 3))).astype(bool) & ~np.eye(12, dtype=bool)
    other_topic = ~np.kron(np.eye(4), np.ones((3, 3))).astype(bool)
    assert similarity[same_topic].min() > similarity[other_topic].max() + 0.1
    for word in range(12):
        ids, _ = nearest(vectors, word, k=2, exclude=range(12, 16))
        assert set(ids.tolist()) == {3 * (word // 3) + j for j in range(3)} - {word}


def test_nearest_and_analogy_on_planted_vectors():
    # king = royal + male, queen = royal + female, man = male, woman = female, apple far away
    royal, male, female = np.eye(4)[0], np.eye(4)[1], np.eye(4)[2]
    vectors = np.stack([royal + male, royal + female, male, female, np.eye(4)[3]])
    king, queen, man, woman, apple = range(5)
    ids, cosines = analogy(vectors, king, man, woman, k=2)
    assert ids[0] == queen and ids[1] != king
    ids, cosines = nearest(vectors, king, k=4)
    assert ids.tolist() == [man, queen, woman, apple]  # king itself is left out; a tie: by id
    np.testing.assert_allclose(cosines, [0.5 ** 0.5, 0.5, 0.0, 0.0], atol=1e-15)
    ids, cosines = nearest(vectors, royal + male, k=1)  # a vector query does not exclude itself
    assert ids[0] == king and math.isclose(cosines[0], 1.0)

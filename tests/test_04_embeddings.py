"""Chapter 04, embeddings: the lookup, its scatter-add gradient, the one-hot closed form, errors,
the layer.

Under test: ``tinyllm/nn/embedding.py`` (``F.embedding``, ``EmbeddingFunction``, ``nn.Embedding``).
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyllm as tl
import tinyllm.nn.functional as F
from tinyllm import nn
from tinyllm.nn.embedding import EmbeddingFunction

pytestmark = pytest.mark.ch04


def table(V, C, seed=0, dtype=np.float64, device="cpu") -> tl.Tensor:
    """A (V, C) weight that requires a gradient."""
    values = np.random.default_rng(seed).standard_normal((V, C)).astype(dtype)
    return tl.tensor(values, requires_grad=True, device=device)


def one_hot(ids: np.ndarray, V: int) -> np.ndarray:
    """(N, V) matrix with a single 1 per row, at column ids[n]   (eq. 4.1)."""
    X = np.zeros((ids.size, V))
    X[np.arange(ids.size), ids.reshape(-1)] = 1.0
    return X


def add_at_reference(ids: np.ndarray, G: np.ndarray, V: int) -> np.ndarray:
    """dW by the textbook unbuffered scatter-add on whole rows (eq. 4.5)."""
    dW = np.zeros((V, G.shape[-1]), dtype=G.dtype)
    np.add.at(dW, ids.reshape(-1), G.reshape(-1, G.shape[-1]))
    return dW


# --------------------------------------------------------------------------------------------------
# Forward: rows of the table, any ids shape
# --------------------------------------------------------------------------------------------------


@given(
    ids_shape=st.sampled_from([(), (5,), (2, 3), (3, 1, 4)]),
    V=st.integers(1, 9),
    C=st.integers(1, 6),
    seed=st.integers(0, 10_000),
)
def test_lookup_returns_rows(ids_shape, V, C, seed):
    # eq. 4.2: y_n = W_{i_n}
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, ids_shape)
    W = table(V, C, seed)
    y = F.embedding(ids, W)
    assert y.shape == ids_shape + (C,)
    np.testing.assert_array_equal(y.numpy(), W.numpy()[ids])


def test_ids_as_list_and_integer_tensor_and_small_int_types():
    W = table(300, 3)
    expected = W.numpy()[[[7, 299], [0, 7]]]
    for ids in (
        [[7, 299], [0, 7]],
        tl.tensor(np.array([[7, 299], [0, 7]])),
        np.array([[7, 299], [0, 7]], dtype=np.int16),
        np.array([[7, 299], [0, 7]], dtype=np.uint16),
    ):
        np.testing.assert_array_equal(F.embedding(ids, W).numpy(), expected)


def test_small_integer_ids_do_not_overflow_in_the_backward():
    """ids of dtype uint8 times C would wrap around; the op works on intp indices."""
    W = table(200, 300)
    ids = np.array([199, 3, 199], dtype=np.uint8)
    G = np.random.default_rng(1).standard_normal((3, 300))
    F.embedding(ids, W).backward(G)
    np.testing.assert_allclose(
        W.grad.numpy(), add_at_reference(ids.astype(np.int64), G, 200), rtol=1e-14
    )


def test_float32_stays_float32():
    W = table(11, 4, dtype=np.float32)
    y = F.embedding(np.array([[1, 1, 10]]), W)
    assert y.dtype == np.float32
    y.backward(np.ones((1, 3, 4), np.float32))
    assert W.grad.dtype == np.float32
    np.testing.assert_array_equal(W.grad.numpy()[1], 2.0)


# --------------------------------------------------------------------------------------------------
# Gradients: finite differences and the closed forms (eqs. 4.3-4.5)
# --------------------------------------------------------------------------------------------------


def test_gradcheck_with_repeated_ids():
    ids = np.array([[0, 3, 3, 1], [3, 0, 4, 3]])  # token 3 four times, token 2 never
    W = table(5, 3)
    assert tl.gradcheck(lambda w: F.embedding(ids, w), W)


@given(V=st.integers(1, 6), T=st.integers(1, 7), C=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_gradcheck_random_ids(V, T, C, seed):
    ids = np.random.default_rng(seed).integers(0, V, (2, T))
    assert tl.gradcheck(lambda w: F.embedding(ids, w), table(V, C, seed), seed=seed)


def test_lookup_is_one_hot_matmul_values_and_gradients():
    # eq. 4.1: X_nj = [j = i_n] (one_hot)
    # eq. 10.2: x_i = onehot(t_i)^T E, and row v of dE sums the gradients of its positions
    """y = X W and dW = X^T G (eqs. 4.3, 4.4), compared with autograd through the lookup and through
    X @ W."""
    rng = np.random.default_rng(3)
    V, C = 7, 5
    ids = np.array([[2, 6, 2], [0, 2, 6]])  # (B, T)
    G = rng.standard_normal((2, 3, C))  # dL/dy
    X = one_hot(ids, V)  # (N, V)

    W = table(V, C, seed=4)
    y = F.embedding(ids, W)
    np.testing.assert_allclose(y.numpy().reshape(-1, C), X @ W.numpy(), rtol=0, atol=1e-15)
    y.backward(G)
    closed_form = X.T @ G.reshape(-1, C)  # (V, C)  eq. 4.4
    np.testing.assert_allclose(W.grad.numpy(), closed_form, rtol=1e-13, atol=1e-15)

    W_matmul = table(V, C, seed=4)
    (tl.tensor(X) @ W_matmul).backward(G.reshape(-1, C))  # the composed route: a real matmul
    np.testing.assert_allclose(W.grad.numpy(), W_matmul.grad.numpy(), rtol=1e-13, atol=1e-15)

    # Row 2 (used three times) gets the sum of its three gradient rows; row 1 (never used) gets
    # zero.
    np.testing.assert_allclose(W.grad.numpy()[2], G[0, 0] + G[0, 2] + G[1, 1], rtol=1e-13)
    np.testing.assert_array_equal(W.grad.numpy()[1], 0.0)


def test_gradient_with_all_ones_counts_tokens():
    """With dL/dy = 1, row v of dW is the number of times token v occurs (eq. 4.5)."""
    ids = np.array([[4, 4, 0], [4, 1, 1]])
    W = table(6, 3)
    F.embedding(ids, W).backward(np.ones((2, 3, 3)))
    counts = np.bincount(ids.reshape(-1), minlength=6).astype(float)
    np.testing.assert_array_equal(W.grad.numpy(), np.repeat(counts[:, None], 3, axis=1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "case",
    ["uniform", "one_token", "zipf", "two_tokens", "every_token_once"],
)
def test_fast_backward_equals_add_at_reference(case, dtype):
    """EmbeddingFunction.backward (backend.scatter_add's flat cells) equals np.add.at on rows, heavy
    repeats too."""
    rng = np.random.default_rng(7)
    V, C, N = 300, 24, 2000
    ids = {
        "uniform": rng.integers(0, V, N),
        "one_token": np.full(N, 17),
        "zipf": np.minimum(rng.zipf(1.3, N) - 1, V - 1),
        "two_tokens": rng.choice([0, V - 1], N),
        "every_token_once": rng.permutation(V),
    }[case].reshape(-1, 4 if case != "every_token_once" else 3)
    G = rng.standard_normal(ids.shape + (C,)).astype(dtype)
    fn = EmbeddingFunction(ids.astype(np.intp))
    fn.forward(np.zeros((V, C), dtype))
    grad = fn.backward(G)
    assert grad.dtype == dtype and grad.shape == (V, C)
    reference = add_at_reference(ids, G.astype(np.float64), V)
    tolerance = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(grad, reference, rtol=tolerance, atol=tolerance * np.sqrt(N))


@given(V=st.integers(1, 40), N=st.integers(1, 60), C=st.integers(1, 9), seed=st.integers(0, 10_000))
def test_fast_backward_equals_add_at_random_shapes(V, N, C, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, N)
    G = rng.standard_normal((N, C))
    fn = EmbeddingFunction(ids)
    fn.forward(np.zeros((V, C)))
    np.testing.assert_allclose(fn.backward(G), add_at_reference(ids, G, V), rtol=1e-12, atol=1e-12)


def test_shared_table_used_twice_accumulates():
    """Two lookups into one table (e.g. tied input/output use): the engine adds both
    scatter-adds."""
    W = table(4, 2)
    a, b = F.embedding([0, 1], W), F.embedding([1, 1], W)
    (a * 2.0 + b).sum().backward()
    np.testing.assert_array_equal(W.grad.numpy(), [[2, 2], [4, 4], [0, 0], [0, 0]])


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


def test_id_too_large_names_id_position_and_V():
    W = table(65, 4)
    with pytest.raises(IndexError, match=r"token id 70 at position \(1, 2\).*V=65.*0\.\.64"):
        F.embedding(np.array([[1, 2, 3], [4, 5, 70]]), W)


def test_negative_id_names_id_and_position():
    W = table(10, 4)
    with pytest.raises(IndexError, match=r"token id -1 at position \(3,\).*V=10"):
        F.embedding(np.array([0, 1, 2, -1]), W)


def test_float_and_bool_ids_are_rejected():
    W = table(10, 4)
    with pytest.raises(
        TypeError, match=r"token ids must be integers, got dtype float64.*astype\(np.int64\)"
    ):
        F.embedding(np.array([1.0, 2.0]), W)
    with pytest.raises(TypeError, match="got dtype float32"):
        F.embedding(tl.tensor([[1.0, 2.0]]), W)
    with pytest.raises(TypeError, match="got dtype bool"):
        F.embedding(np.array([True, False]), W)


def test_weight_must_be_a_2d_tensor():
    with pytest.raises(
        ValueError, match=r"weight expected a Tensor of shape \(V, C\), got \(2, 3, 4\)"
    ):
        F.embedding([0], tl.zeros(2, 3, 4))
    with pytest.raises(
        TypeError, match=r"shape \(V, C\), got ndarray; wrap an array with tl.tensor"
    ):
        F.embedding([0], np.zeros((3, 4)))


def test_layer_rejects_bad_sizes():
    with pytest.raises(ValueError, match=r"vocab_size >= 1 and d_model >= 1, got \(0, 8\)"):
        nn.Embedding(0, 8)


# --------------------------------------------------------------------------------------------------
# The layer
# --------------------------------------------------------------------------------------------------


def test_layer_shapes_parameters_and_repr():
    layer = nn.Embedding(65, 32, rng=np.random.default_rng(0))
    assert layer.weight.shape == (65, 32) and layer.weight.dtype == np.float32
    assert layer.num_parameters() == 65 * 32  # eq. 4.6
    assert list(layer.state_dict()) == ["weight"]
    assert repr(layer) == "Embedding(vocab_size=65, d_model=32)"
    y = layer(np.zeros((4, 8), dtype=np.int64))
    assert y.shape == (4, 8, 32)
    np.testing.assert_array_equal(y.numpy()[2, 5], layer.weight.numpy()[0])


def test_layer_init_is_standard_normal_and_seeded():
    weight = nn.Embedding(500, 200, rng=np.random.default_rng(1)).weight.numpy()
    assert (
        abs(weight.mean()) < 0.01 and abs(weight.std() - 1.0) < 0.01
    )  # 100 000 draws: sd of mean 0.003
    again = nn.Embedding(500, 200, rng=np.random.default_rng(1)).weight.numpy()
    np.testing.assert_array_equal(weight, again)


def test_layer_float64_gradcheck():
    layer = nn.Embedding(6, 3, rng=np.random.default_rng(2), dtype=np.float64)
    ids = np.array([[5, 0, 5], [5, 2, 0]])
    assert tl.gradcheck(lambda w: F.embedding(ids, w), layer.weight)
    layer.zero_grad()
    layer(ids).backward(np.ones((2, 3, 3)))
    np.testing.assert_array_equal(layer.weight.grad.numpy()[:, 0], [2, 0, 1, 0, 0, 3])


# --------------------------------------------------------------------------------------------------
# Devices
# --------------------------------------------------------------------------------------------------


def test_embedding_on_device(device):
    rng = np.random.default_rng(5)
    V, C = 13, 6
    ids = rng.integers(0, V, (3, 9))
    ids[0, :4] = 2  # repeats
    G = rng.standard_normal((3, 9, C)).astype(np.float32)
    W = table(V, C, seed=6, dtype=np.float32, device=device)
    y = F.embedding(ids, W)  # host ids are moved to the table's device
    assert y.device == device
    y.backward(tl.tensor(G, device=device))
    np.testing.assert_allclose(y.numpy(), W.numpy()[ids], rtol=0, atol=0)
    np.testing.assert_allclose(
        W.grad.numpy(), add_at_reference(ids, G.astype(np.float64), V), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(IndexError, match=r"token id 13 at position \(0, 0\)"):
        F.embedding(tl.tensor(np.array([[13]]), device=device), W)

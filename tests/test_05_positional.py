"""Chapter 05, positional encoding: sinusoidal, learned and rotary positions and the chapter's
identities.

Under test: ``tinyllm/nn/positional.py``. The closed forms: the table of eq. 5.2, the rotation
PE(pos + k) = M_k PE(pos) (eq. 5.4), dot products that depend only on the offset (eq. 5.5), RoPE's
relative-position property (eq. 5.9) and its inverse-rotation backward (eq. 5.10), and the
permutation equivariance of bare attention (eq. 5.1).
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyllm as tl
import tinyllm.nn.functional as F
from tinyllm import nn
from tinyllm.nn.positional import Rotary, rotary_angles, sinusoidal_table

pytestmark = pytest.mark.ch05


def variable(values, device="cpu") -> tl.Tensor:
    return tl.tensor(np.asarray(values, dtype=np.float64), requires_grad=True, device=device)


def rotation_block(angle: float) -> np.ndarray:
    """[[cos a, sin a], [-sin a, cos a]]: maps (sin p, cos p) to (sin(p + a), cos(p + a))   (eq.
    5.4)."""
    return np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])


def rope_by_formula(x: np.ndarray, positions: np.ndarray, base: float = 10000.0) -> np.ndarray:
    """RoPE written pair by pair with 2 x 2 rotation matrices, halves pairing (i, i + D/2)   (eq.
    5.7)."""
    D = x.shape[-1]
    half = D // 2
    out = np.empty_like(x)
    for t, position in enumerate(positions):
        for i in range(half):
            angle = position * base ** (-2 * i / D)
            rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            pair = np.stack([x[..., t, i], x[..., t, i + half]], axis=-1)  # (..., 2)
            rotated = pair @ rotation.T
            out[..., t, i], out[..., t, i + half] = rotated[..., 0], rotated[..., 1]
    return out


# --------------------------------------------------------------------------------------------------
# Why positions: bare attention is permutation equivariant (eq. 5.1)
# --------------------------------------------------------------------------------------------------


def bare_attention(x: tl.Tensor) -> tl.Tensor:
    """softmax(x x^T / sqrt(C)) x: attention with identity projections and no positions."""
    scores = x @ x.transpose(0, 2, 1) * (1.0 / np.sqrt(x.shape[-1]))  # (B, T, T)
    return F.softmax(scores, axis=-1) @ x  # (B, T, C)


def test_attention_without_positions_is_permutation_equivariant_and_with_them_is_not():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 6, 8))
    perm = rng.permutation(6)
    out = bare_attention(tl.tensor(x)).numpy()
    out_permuted = bare_attention(tl.tensor(x[:, perm])).numpy()
    np.testing.assert_allclose(out_permuted, out[:, perm], rtol=1e-12, atol=1e-12)  # eq. 5.1

    pe = nn.SinusoidalPositionalEncoding(16, 8)
    with_positions = bare_attention(pe(tl.tensor(x))).numpy()
    with_positions_permuted = bare_attention(pe(tl.tensor(x[:, perm]))).numpy()
    assert np.abs(with_positions_permuted - with_positions[:, perm]).max() > 0.1


# --------------------------------------------------------------------------------------------------
# Sinusoidal encoding (eqs. 5.2-5.5)
# --------------------------------------------------------------------------------------------------


def test_sinusoidal_table_matches_the_formula_entry_by_entry():
    context_length, d = 50, 12
    table = sinusoidal_table(context_length, d)
    for pos in range(context_length):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert table[pos, 2 * i] == pytest.approx(np.sin(angle), abs=1e-13)
            assert table[pos, 2 * i + 1] == pytest.approx(np.cos(angle), abs=1e-13)
    np.testing.assert_array_equal(table[0, 0::2], 0.0)  # sin 0
    np.testing.assert_array_equal(table[0, 1::2], 1.0)  # cos 0


def test_wavelengths_go_from_2pi_to_nearly_2pi_times_10000():
    """Column pair i repeats with period 2 pi / w_i (eq. 5.3): check the fastest pair's period
    numerically."""
    d = 64
    table = sinusoidal_table(200, d)
    w = 10000.0 ** (-np.arange(0, d, 2) / d)
    wavelengths = 2 * np.pi / w
    assert wavelengths[0] == pytest.approx(2 * np.pi)
    assert wavelengths[-1] == pytest.approx(2 * np.pi * 10000 ** (62 / 64))
    # pair 0 has period 2 pi ~ 6.28: sin(pos) at pos and pos + 44 (= 7 periods ~ 43.98) nearly agree
    np.testing.assert_allclose(table[:100, 0], table[44:144, 0], atol=0.03)


@pytest.mark.parametrize("k", [1, 3, 17, 100])
def test_shift_by_k_is_a_rotation_independent_of_pos(k):
    """PE(pos + k) = M_k PE(pos) with M_k block diagonal, built from the angle-addition formulas
    (eq. 5.4)."""
    d = 16
    table = sinusoidal_table(400, d)
    w = 10000.0 ** (-np.arange(0, d, 2) / d)
    M = np.zeros((d, d))
    for i, frequency in enumerate(w):
        M[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = rotation_block(k * frequency)
    for pos in [0, 1, 5, 42, 250]:
        np.testing.assert_allclose(table[pos + k], M @ table[pos], rtol=0, atol=1e-12)
    np.testing.assert_allclose(M @ M.T, np.eye(d), atol=1e-12)  # a rotation: orthogonal


def test_dot_product_depends_only_on_the_offset():
    """PE(p) . PE(p + k) = sum_i cos(k w_i) for every p (eq. 5.5)."""
    d = 32
    table = sinusoidal_table(300, d)
    w = 10000.0 ** (-np.arange(0, d, 2) / d)
    for k in [0, 1, 7, 60]:
        expected = np.cos(k * w).sum()
        dots = np.einsum("pc,pc->p", table[:200], table[k : 200 + k])
        np.testing.assert_allclose(dots, expected, rtol=0, atol=1e-11)
    assert np.allclose(np.einsum("pc,pc->p", table, table), d / 2)  # every row has norm sqrt(d/2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sinusoidal_forward_adds_the_table(dtype):
    pe = nn.SinusoidalPositionalEncoding(32, 8)
    x = np.random.default_rng(1).standard_normal((3, 10, 8)).astype(dtype)
    y = pe(tl.tensor(x))
    assert y.dtype == dtype and y.shape == (3, 10, 8)
    tolerance = 1e-6 if dtype == np.float32 else 1e-15
    np.testing.assert_allclose(y.numpy(), x + sinusoidal_table(32, 8)[:10], rtol=0, atol=tolerance)
    shifted = pe(tl.tensor(x), offset=5)
    np.testing.assert_allclose(shifted.numpy(), x + pe.table[5:15], rtol=0, atol=tolerance)
    np.testing.assert_array_equal(pe.encoding(10, offset=5), pe.table[5:15])


def test_sinusoidal_has_no_parameters_and_gradcheck_in_x():
    pe = nn.SinusoidalPositionalEncoding(20, 6)
    assert pe.parameters() == [] and pe.state_dict() == {}
    x = variable(np.random.default_rng(2).standard_normal((2, 7, 6)))
    assert tl.gradcheck(lambda t: pe(t, offset=3), x)
    x.grad = None
    v = np.random.default_rng(3).standard_normal((2, 7, 6))
    pe(x).backward(v)
    np.testing.assert_array_equal(x.grad.numpy(), v)  # the gradient of x + const is the identity


def test_sinusoidal_errors():
    with pytest.raises(ValueError, match="even width d_model.*got 7"):
        nn.SinusoidalPositionalEncoding(10, 7)
    pe = nn.SinusoidalPositionalEncoding(10, 8)
    with pytest.raises(
        ValueError, match=r"T=11 tokens at offset 0 need positions up to 10.*context_length=10"
    ):
        pe(tl.zeros(2, 11, 8))
    with pytest.raises(
        ValueError, match=r"T=4 tokens at offset 8 need positions up to 11.*context_length >= 12"
    ):
        pe(tl.zeros(2, 4, 8), offset=8)
    with pytest.raises(
        ValueError, match=r"expected inputs \(B, T, 8\) with the last axis 8, got \(2, 4, 6\)"
    ):
        pe(tl.zeros(2, 4, 6))
    with pytest.raises(ValueError, match="offset must be a non-negative integer"):
        pe(tl.zeros(2, 4, 8), offset=-1)


# --------------------------------------------------------------------------------------------------
# Learned positions (eq. 5.6)
# --------------------------------------------------------------------------------------------------


def test_learned_positions_values_offset_and_gradients():
    # eq. 5.6: y = x + P[offset + t], dP = G summed over the batch, dx = G
    layer = nn.LearnedPositionalEmbedding(12, 4, rng=np.random.default_rng(0), dtype=np.float64)
    assert [name for name, _ in layer.named_parameters()] == [
        "weight"
    ] and layer.num_parameters() == 48
    x = variable(np.random.default_rng(1).standard_normal((3, 5, 4)))
    y = layer(x, offset=6)
    np.testing.assert_array_equal(y.numpy(), x.numpy() + layer.weight.numpy()[6:11])
    G = np.random.default_rng(2).standard_normal((3, 5, 4))
    y.backward(G)
    expected = np.zeros((12, 4))
    expected[6:11] = G.sum(axis=0)  # each position's row collects its gradient over the batch
    np.testing.assert_allclose(layer.weight.grad.numpy(), expected, rtol=1e-14)
    np.testing.assert_array_equal(x.grad.numpy(), G)


def test_learned_positions_gradcheck_weight_and_input():
    layer = nn.LearnedPositionalEmbedding(9, 3, rng=np.random.default_rng(3), dtype=np.float64)
    x = variable(np.random.default_rng(4).standard_normal((2, 4, 3)))
    assert tl.gradcheck(lambda t, w: layer(t, offset=2), x, layer.weight)


def test_learned_positions_offset_matches_slicing_the_full_sequence():
    """Generation with a cache: positions [offset, offset + T) of a long sequence, fed piece by
    piece."""
    layer = nn.LearnedPositionalEmbedding(16, 6, rng=np.random.default_rng(5))
    x = tl.tensor(np.random.default_rng(6).standard_normal((2, 10, 6)).astype(np.float32))
    full = layer(x).numpy()
    for offset, T in [(0, 3), (3, 1), (4, 6)]:
        piece = layer(x[:, offset : offset + T], offset=offset).numpy()
        np.testing.assert_array_equal(piece, full[:, offset : offset + T])


def test_learned_positions_errors_and_repr():
    layer = nn.LearnedPositionalEmbedding(8, 4)
    assert repr(layer) == "LearnedPositionalEmbedding(context_length=8, d_model=4)"
    with pytest.raises(
        ValueError, match=r"T=3 tokens at offset 6 need positions up to 8.*context_length=8"
    ):
        layer(tl.zeros(1, 3, 4), offset=6)
    with pytest.raises(ValueError, match=r"expected inputs \(B, T, 4\).*got \(1, 3, 5\)"):
        layer(tl.zeros(1, 3, 5))
    with pytest.raises(ValueError, match=r"context_length >= 1 and d_model >= 1, got \(0, 4\)"):
        nn.LearnedPositionalEmbedding(0, 4)


# --------------------------------------------------------------------------------------------------
# Rotary embeddings, RoPE (eqs. 5.7-5.10)
# --------------------------------------------------------------------------------------------------


def test_rope_matches_the_pairwise_rotation_formula():
    # eqs. 5.7, 5.8: 2 x 2 rotations of the pairs (i, i + D/2) by m theta_i, theta_i = base^(-2i/D)
    rope = nn.RotaryEmbedding(8, context_length=64)
    x = np.random.default_rng(0).standard_normal((2, 3, 10, 8))
    np.testing.assert_allclose(
        rope(tl.tensor(x)).numpy(), rope_by_formula(x, np.arange(10)), atol=1e-13
    )
    np.testing.assert_allclose(
        rope(tl.tensor(x), offset=7).numpy(), rope_by_formula(x, np.arange(7, 17)), atol=1e-13
    )


def test_rope_with_d2_is_complex_multiplication():
    """For D = 2, RoPE at position t multiplies x_0 + i x_1 by e^(i t) (base^0 = 1)."""
    x = np.random.default_rng(1).standard_normal((1, 1, 5, 2))
    y = nn.RotaryEmbedding(2, context_length=5)(tl.tensor(x)).numpy()
    z = (x[..., 0] + 1j * x[..., 1]) * np.exp(1j * np.arange(5))
    np.testing.assert_allclose(y[..., 0], z.real, atol=1e-14)
    np.testing.assert_allclose(y[..., 1], z.imag, atol=1e-14)


def test_rope_preserves_norms():
    x = np.random.default_rng(2).standard_normal((2, 4, 30, 16))
    y = nn.RotaryEmbedding(16, context_length=100)(tl.tensor(x), offset=50).numpy()
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-13)
    assert np.abs(y - x).max() > 0.5  # and it really moved them


def test_rope_dot_product_depends_only_on_relative_position():
    """<R_m q, R_n k> = <q, R_(n-m) k>: same value for every (m, n) with the same n - m (eq.
    5.9)."""
    rng = np.random.default_rng(3)
    D, L = 16, 60
    rope = nn.RotaryEmbedding(D, context_length=L)
    q, k = rng.standard_normal(D), rng.standard_normal(D)
    rotated_q = rope(tl.tensor(np.broadcast_to(q, (1, 1, L, D)).copy())).numpy()[
        0, 0
    ]  # (L, D) row m = R_m q
    rotated_k = rope(tl.tensor(np.broadcast_to(k, (1, 1, L, D)).copy())).numpy()[
        0, 0
    ]  # row n = R_n k
    scores = rotated_q @ rotated_k.T  # (L, L)  scores[m, n] = <R_m q, R_n k>
    for delta in [-20, -3, 0, 1, 9, 40]:
        diagonal = np.diagonal(scores, offset=delta)  # all (m, n) with n - m = delta
        np.testing.assert_allclose(diagonal, diagonal[0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            diagonal[0], q @ rotated_k[delta] if delta >= 0 else rotated_q[-delta] @ k, atol=1e-12
        )
    assert (
        np.std([np.diagonal(scores, offset=d)[0] for d in range(10)]) > 0.1
    )  # and it does vary with n - m


def test_rope_offset_equals_slicing_the_full_rotation():
    rope = nn.RotaryEmbedding(8, context_length=32)
    x = np.random.default_rng(4).standard_normal((2, 2, 20, 8)).astype(np.float32)
    full = rope(tl.tensor(x)).numpy()
    for offset, T in [(0, 5), (5, 1), (6, 14), (19, 1)]:
        piece = rope(tl.tensor(x[:, :, offset : offset + T]), offset=offset).numpy()
        np.testing.assert_allclose(piece, full[:, :, offset : offset + T], rtol=0, atol=1e-6)


def test_rope_backward_is_the_inverse_rotation():
    """dL/dx = R_(-theta) g (eq. 5.10): rotating the backward's result forward again gives g
    back."""
    rng = np.random.default_rng(5)
    angles = rotary_angles(12, 6)[3:12]  # (T, D/2) positions 3..11
    cos, sin = np.cos(angles), np.sin(angles)
    g = rng.standard_normal((2, 3, 9, 6))
    op = Rotary(cos, sin)
    back = op.backward(g)
    np.testing.assert_allclose(
        back, rope_by_formula(g, -np.arange(3, 12)), atol=1e-13
    )  # rotation by -theta
    np.testing.assert_allclose(Rotary(cos, sin).forward(back), g, atol=1e-13)
    np.testing.assert_allclose(
        Rotary(cos, sin).backward(Rotary(cos, sin).forward(g)), g, atol=1e-13
    )


def test_rope_gradcheck_in_x():
    rope = nn.RotaryEmbedding(6, context_length=16)
    x = variable(np.random.default_rng(6).standard_normal((2, 2, 5, 6)))
    assert tl.gradcheck(lambda t: rope(t, offset=4), x)


@given(
    B=st.integers(1, 2),
    H=st.integers(1, 3),
    T=st.integers(1, 6),
    half=st.integers(1, 4),
    offset=st.integers(0, 5),
    seed=st.integers(0, 10_000),
)
def test_rope_random_shapes_formula_and_gradcheck(B, H, T, half, offset, seed):
    D = 2 * half
    rope = nn.RotaryEmbedding(D, context_length=12, base=100.0)
    x = variable(np.random.default_rng(seed).standard_normal((B, H, T, D)))
    expected = rope_by_formula(x.numpy(), np.arange(offset, offset + T), base=100.0)
    np.testing.assert_allclose(rope(x, offset=offset).numpy(), expected, atol=1e-12)
    assert tl.gradcheck(lambda t: rope(t, offset=offset), x, seed=seed)


def test_apply_rotary_functional_and_dtype():
    angles = rotary_angles(7, 4)  # (T, D/2)
    x32 = (
        np.random.default_rng(7).standard_normal((3, 7, 4)).astype(np.float32)
    )  # (B, T, D): no head axis
    y = F.apply_rotary(tl.tensor(x32), np.cos(angles), np.sin(angles))
    assert y.dtype == np.float32
    np.testing.assert_allclose(
        y.numpy(), rope_by_formula(x32.astype(np.float64), np.arange(7)), atol=1e-6
    )


def test_rope_has_no_parameters_and_its_repr():
    rope = nn.RotaryEmbedding(64, context_length=128, base=500.0)
    assert rope.parameters() == [] and rope.state_dict() == {}
    assert repr(rope) == "RotaryEmbedding(head_dim=64, context_length=128, base=500)"
    assert rope.cos.shape == rope.sin.shape == (128, 32)


def test_rope_errors():
    with pytest.raises(ValueError, match="head_dim must be even, got 5"):
        nn.RotaryEmbedding(5)
    rope = nn.RotaryEmbedding(8, context_length=10)
    with pytest.raises(
        ValueError, match=r"inputs \(B, H, T, 8\) with the last axis 8, got \(1, 2, 3, 6\)"
    ):
        rope(tl.zeros(1, 2, 3, 6))
    with pytest.raises(
        ValueError, match=r"T=4 tokens at offset 7 need positions up to 10.*context_length=10"
    ):
        rope(tl.zeros(1, 2, 4, 8), offset=7)
    with pytest.raises(
        ValueError, match=r"cos and sin of the same shape \(T, D/2\) = \(T, 4\), got \(3, 3"
    ):
        F.apply_rotary(tl.zeros(1, 3, 8), np.ones((3, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"x of shape \(..., T, D\) with D even, got \(3, 5\)"):
        F.apply_rotary(tl.zeros(3, 5), np.ones((3, 2)), np.ones((3, 2)))


# --------------------------------------------------------------------------------------------------
# Devices
# --------------------------------------------------------------------------------------------------


def test_positional_modules_on_device(device):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    heads = rng.standard_normal((2, 2, 5, 8)).astype(np.float32)
    sinusoidal = nn.SinusoidalPositionalEncoding(16, 8)
    learned = nn.LearnedPositionalEmbedding(16, 8, rng=np.random.default_rng(9)).to(device)
    rope = nn.RotaryEmbedding(8, context_length=16)
    for module, inputs, expected in [
        (sinusoidal, x, x + sinusoidal.table[2:7]),
        (learned, x, x + learned.weight.numpy()[2:7]),
        (rope, heads, rope_by_formula(heads.astype(np.float64), np.arange(2, 7))),
    ]:
        t = tl.tensor(inputs, requires_grad=True, device=device)
        y = module(t, offset=2)
        assert y.device == device and y.dtype == np.float32
        np.testing.assert_allclose(y.numpy(), expected, rtol=0, atol=1e-5)
        v = rng.standard_normal(y.shape).astype(np.float32)
        y.backward(tl.tensor(v, device=device))
        if module is rope:  # the inverse rotation of v
            inverse = rope_by_formula(v.astype(np.float64), -np.arange(2, 7))
            np.testing.assert_allclose(t.grad.numpy(), inverse, atol=1e-5)
        else:
            np.testing.assert_array_equal(t.grad.numpy(), v)

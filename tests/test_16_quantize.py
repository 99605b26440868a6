"""Chapter 16, quantization: absmax int8 / int4 per channel and per group, the two products.

The error bound of eq. 16.6 (at most half a step per entry) on random matrices of every shape and
group size; int4 packing; the int8 x int8 -> int32 product against the same product in float64
(the integer sums are exact) and against the float product within the bound of eq. 16.9; the
dequantized product within eq. 16.7; a quantized GPT against the float one, its state as plain
arrays through a safetensors file, and its size.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyllm as tl
from tinyllm.checkpoint import load_safetensors, save_safetensors
from tinyllm.compress import (
    QuantizedLinear,
    QuantizedModel,
    dequantize,
    dequantized_matmul,
    int8_matmul,
    pack_int4,
    quantize_absmax,
    quantize_model,
    unpack_int4,
)
from tinyllm.compress.quantize import quantize_rows
from tinyllm.models import GPT, GPTConfig
from tinyllm.nn import Linear

pytestmark = pytest.mark.ch16


@st.composite
def matrices(draw, even_rows: bool = False):
    """A float32 matrix (K, N) with a group size dividing K (None: per output channel)."""
    K = draw(st.integers(1, 12)) * (2 if even_rows else 1) * draw(st.sampled_from([1, 2, 4]))
    N = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2 ** 16))
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((K, N)) * 10.0 ** rng.uniform(-3, 2)).astype(np.float32)
    if draw(st.booleans()):
        w[:, 0] = 0  # an all-zero column
    if draw(st.booleans()):
        w[rng.integers(K), rng.integers(N)] *= 50  # an outlier
    divisors = [d for d in range(1, K + 1) if K % d == 0 and (not even_rows or d % 2 == 0 or
                                                                d == K)]
    group_size = draw(st.sampled_from([None, *divisors]))
    return w, group_size


def scales_per_entry(qweight):
    """s_{G(i) j} broadcast to (K, N)."""
    return np.repeat(qweight.scales, qweight.group_size, axis=0)


@given(matrices(even_rows=True), st.sampled_from([8, 4]))
def test_dequantize_error_is_at_most_half_a_step(case, bits):
    w, group_size = case
    q = quantize_absmax(w, bits=bits, group_size=group_size)
    s = scales_per_entry(q)
    error = np.abs(w.astype(np.float64) - dequantize(q))
    assert np.all(error <= s / 2 + 2.0 ** -22 * np.abs(w))  # eq. 16.6 (+ float32 rounding of s q)
    levels = q.levels
    q_max = 2 ** (bits - 1) - 1
    assert levels.dtype == np.int8 and np.abs(levels).max() <= q_max
    G = w.shape[0] // q.group_size
    absmax = np.abs(w).reshape(G, q.group_size, -1).max(axis=1)  # (G, N)
    np.testing.assert_allclose(q.scales, np.where(absmax > 0, absmax / q_max, 1), rtol=1e-6)


def test_the_bound_is_nearly_reached_and_the_absmax_entry_is_exact():
    # eq. 16.5: s = max |W| / q_max, so the absmax entry is q_max s exactly
    w = np.random.default_rng(0).standard_normal((256, 64)).astype(np.float32)
    q = quantize_absmax(w, group_size=32)
    ratio = np.abs(w - dequantize(q)) / (scales_per_entry(q) / 2)
    assert 0.99 < ratio.max() <= 1.0 + 1e-5  # half a step is the worst case, and it occurs
    column = np.abs(w[:, 5]).argmax()
    assert abs(q.levels[column, 5]) == 127
    np.testing.assert_allclose(dequantize(q)[column, 5], w[column, 5], rtol=1e-6)
    assert q.scales.shape == (8, 64) and quantize_absmax(w).scales.shape == (1, 64)


def test_quantize_refuses_bad_settings():
    w = np.ones((6, 4), dtype=np.float32)
    with pytest.raises(ValueError, match=r"group_size 4 must divide the input width K = 6"):
        quantize_absmax(w, group_size=4)
    with pytest.raises(ValueError, match="bits must be 8"):
        quantize_absmax(w, bits=3)
    with pytest.raises(ValueError, match="must be even"):
        quantize_absmax(np.ones((3, 2), dtype=np.float32), bits=4)


# --------------------------------------------------------------------------------------------------
# int4 packing
# --------------------------------------------------------------------------------------------------


def test_pack_int4_by_hand():
    packed = pack_int4(np.array([[-8, 1], [7, -1]], dtype=np.int8))  # rows 0 (low), 1 (high)
    np.testing.assert_array_equal(packed, [[0xF0, 0x79]])  # -8+8=0 | 15<<4 ;  9 | 7<<4
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        pack_int4(np.array([[8], [0]]))


@given(st.integers(1, 8), st.integers(1, 5), st.integers(0, 2 ** 16))
def test_unpack_int4_inverts_pack(half_rows, N, seed):
    levels = np.random.default_rng(seed).integers(-8, 8, (2 * half_rows, N)).astype(np.int8)
    packed = pack_int4(levels)
    assert packed.dtype == np.uint8 and packed.shape == (half_rows, N)
    np.testing.assert_array_equal(unpack_int4(packed), levels)


def test_int4_stores_half_the_bytes_of_int8():
    w = np.random.default_rng(1).standard_normal((64, 32)).astype(np.float32)
    assert quantize_absmax(w, bits=4).values.nbytes * 2 == quantize_absmax(w).values.nbytes


# --------------------------------------------------------------------------------------------------
# The two products
# --------------------------------------------------------------------------------------------------


@given(matrices(), st.integers(1, 5), st.integers(0, 2 ** 16))
def test_int8_product_is_exact_in_its_integers_and_within_the_bound(case, M, seed):
    # eqs. 16.8, 16.9
    w, group_size = case
    x = np.random.default_rng(seed).standard_normal((M, w.shape[0])).astype(np.float32)
    q = quantize_absmax(w, group_size=group_size)
    y = int8_matmul(x, q)
    p, t = quantize_rows(x)  # x ~ t p
    exact = (t.astype(np.float64) * p) @ dequantize(q).astype(np.float64)
    np.testing.assert_allclose(y, exact, rtol=1e-5, atol=1e-6 * np.abs(exact).max())
    s = scales_per_entry(q)
    bound = (t / 2) * np.abs(w.astype(np.float64)).sum(axis=0) + np.abs(t * p) @ (s / 2)  # 16.9
    slack = 1e-5 * (np.abs(x) @ np.abs(w)) + 1e-30
    assert np.all(np.abs(y - x.astype(np.float64) @ w) <= bound + slack)


@given(matrices(), st.integers(1, 5), st.integers(0, 2 ** 16))
def test_dequantized_product_is_within_its_bound(case, M, seed):
    w, group_size = case
    x = np.random.default_rng(seed).standard_normal((M, w.shape[0])).astype(np.float32)
    q = quantize_absmax(w, group_size=group_size)
    y = dequantized_matmul(x, q)
    bound = np.abs(x.astype(np.float64)) @ (scales_per_entry(q) / 2)  # eq. 16.7
    slack = 1e-5 * (np.abs(x) @ np.abs(w)) + 1e-30
    assert np.all(np.abs(y - x.astype(np.float64) @ w) <= bound + slack)


def test_int8_matmul_checks_its_input():
    q = quantize_absmax(np.ones((4, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"x \(M, K\) with K = 4"):
        int8_matmul(np.ones((3, 5), dtype=np.float32), q)


def test_quantized_linear_dequant_path_is_differentiable_and_int8_path_refuses_grad():
    layer = Linear(6, 3, rng=np.random.default_rng(0)).astype(np.float64)
    q = quantize_absmax(layer.weight.numpy())
    dequant = QuantizedLinear(q, layer.bias.numpy(), "dequant")
    x = tl.tensor(np.random.default_rng(1).standard_normal((2, 4, 6)), requires_grad=True)
    assert tl.gradcheck(lambda x: dequant(x), x)
    integer = QuantizedLinear(q, layer.bias.numpy(), "int8")
    with pytest.raises(RuntimeError, match="no_grad"):
        integer(x)
    with tl.no_grad():
        np.testing.assert_allclose(integer(x).numpy(), dequant(x).numpy(), atol=0.05)
    with pytest.raises(ValueError, match=r"inputs \(\.\.\., 6\)"):
        dequant(tl.tensor(np.ones((2, 5))))


# --------------------------------------------------------------------------------------------------
# A quantized GPT
# --------------------------------------------------------------------------------------------------

CONFIG = GPTConfig(vocab_size=20, context_length=16, num_layers=2, num_heads=2, d_model=32)


def float_model():
    return GPT(CONFIG, rng=np.random.default_rng(0))


@pytest.mark.parametrize("settings", [
    dict(), dict(group_size=8), dict(matmul="int8"), dict(matmul="int8", group_size=16),
    dict(bits=4, group_size=8),
])
def test_a_quantized_gpt_stays_close_and_leaves_the_original_alone(settings):
    model = float_model()
    ids = np.random.default_rng(1).integers(0, 20, (2, 16))
    with tl.no_grad():
        reference = model(ids).numpy()
        quantized = quantize_model(model, **settings)
        logits = quantized(ids).numpy()
    tolerance = 0.1 if settings.get("bits") == 4 else 0.01
    assert np.abs(logits - reference).max() < tolerance * np.abs(reference).max() + 1e-3
    assert not np.array_equal(logits, reference)  # it really is another computation
    assert all(isinstance(m, Linear) for n, m in model.named_modules() if n.endswith("_proj"))
    swapped = [m for _, m in quantized.model.named_modules() if isinstance(m, QuantizedLinear)]
    assert len(swapped) == 6 * CONFIG.num_layers  # q, k, v, out, fc1, fc2 per block
    assert not any(isinstance(m, Linear) for _, m in quantized.model.named_modules())
    out = quantized.generate(ids[:, :3], 5, temperature=0.0)
    assert out.shape == (2, 8)
    np.testing.assert_array_equal(out, quantized.generate(ids[:, :3], 5, temperature=0.0))


def test_the_tied_embedding_is_quantized_per_token_and_can_be_left_float():
    model = float_model()
    quantized = quantize_model(model)
    table = quantized.model.wte.weight.numpy()
    error = np.abs(table - model.wte.weight.numpy())
    steps = quantized.tables["wte"].scales[0]  # (V,): one scale per token row
    assert np.all(error <= steps[:, None] / 2 + 1e-7)
    assert not np.array_equal(table, model.wte.weight.numpy())
    float_table = quantize_model(model, embeddings=False)
    np.testing.assert_array_equal(float_table.model.wte.weight.numpy(), model.wte.weight.numpy())


@pytest.mark.parametrize("settings", [dict(), dict(bits=4, group_size=16, matmul="int8")])
def test_quantized_state_is_plain_arrays_through_a_safetensors_file(tmp_path, settings):
    model = float_model()
    quantized = quantize_model(model, **settings)
    arrays = quantized.quantized_state_dict()
    q_dtype = np.uint8 if settings.get("bits") == 4 else np.int8
    assert arrays["blocks.0.attn.q_proj.weight.q"].dtype == q_dtype
    assert arrays["blocks.0.attn.q_proj.weight.scale"].dtype == np.float32
    assert "wte.weight" not in arrays and "wte.weight.q" in arrays and "wpe.weight" in arrays
    save_safetensors(tmp_path / "q.safetensors", arrays)
    loaded, _ = load_safetensors(tmp_path / "q.safetensors")
    template = GPT(CONFIG, rng=np.random.default_rng(99))  # other weights: all replaced
    restored = QuantizedModel.from_state_dict(template, loaded, quantized.spec_dict())
    ids = np.arange(12)[None] % 20
    with tl.no_grad():
        np.testing.assert_array_equal(restored(ids).numpy(), quantized(ids).numpy())
    with pytest.raises(KeyError, match="lacks"):
        QuantizedModel.from_state_dict(template, {}, quantized.spec_dict())


@pytest.mark.parametrize("bits, group_size", [(8, None), (8, 8), (4, 16)])
def test_quantized_size_is_levels_plus_scales_plus_the_float_rest(bits, group_size):
    model = float_model()
    quantized = quantize_model(model, bits=bits, group_size=group_size)
    matrices = [m.weight.shape for _, m in model.named_modules() if isinstance(m, Linear)]
    matrices.append(model.wte.weight.shape[::-1])  # the tied output matrix W^T (C, V)
    levels = sum(K * N * bits // 8 for K, N in matrices)
    scales = sum(4 * N * K // (group_size or K) for K, N in matrices)
    rest = sum(p.nbytes for n, p in model.state_dict().items()
               if n == "wpe.weight" or p.ndim == 1)  # positions and LayerNorm gains stay float32
    assert quantized.nbytes() == levels + scales + rest
    if group_size is None:  # one float32 scale per column: close to a quarter of float32
        assert quantized.nbytes() < sum(a.nbytes for a in model.state_dict().values()) / 3

"""Chapter 16's equations that tests/test_16_{precision,quantize,distill,prune}.py do not already
check: the formats table of section 16.1 (range, smallest normal, unit roundoff, bit layout), the
int8 product's error bound (eq. 16.9) on random shapes, and the T^2 factor of eq. 16.11.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyllm as tl
from tinyllm import compress
from tinyllm.compress.precision import UNIT_ROUNDOFF
from tinyllm.compress.quantize import quantize_rows

pytestmark = pytest.mark.ch16

BF16_MAX = (2 - 2.0 ** -7) * 2.0 ** 127  # 0 11111110 1111111: the largest finite bfloat16


def test_the_formats_table_of_section_16_1():
    """Largest finite value, smallest normal and u = 2^-p (eq. 16.1) of each row of the table."""
    f16, f32 = np.finfo(np.float16), np.finfo(np.float32)
    assert float(f16.max) == 65504 and float(f16.tiny) == 2.0 ** -14
    assert float(f32.max) == pytest.approx(3.4028235e38) and float(f32.tiny) == 2.0 ** -126
    assert UNIT_ROUNDOFF["fp16"] == float(f16.eps) / 2
    assert UNIT_ROUNDOFF["fp32"] == float(f32.eps) / 2
    top = compress.round_to_bfloat16(np.float32(BF16_MAX))
    assert float(top) == BF16_MAX  # bfloat16 keeps float32's range ...
    assert np.isinf(compress.round_to_bfloat16(np.float32(f32.max)))  # ... rounding past it: inf
    assert float(compress.round_to_bfloat16(np.float32(2.0 ** -126))) == 2.0 ** -126
    assert int(compress.bfloat16_bits(np.float32(1 + 2.0 ** -7))) == 0x3F81  # 7 stored bits
    assert float(compress.round_to_bfloat16(np.float32(1 + 2.0 ** -8))) == 1.0  # tie to even


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.sampled_from([8, 16, 32]), st.integers(1, 5),
       st.sampled_from([None, 4, 8]), st.integers(0, 2 ** 16))
def test_the_int8_product_error_is_within_eq_16_9(m, k, n, group, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)) * rng.uniform(0.1, 10)
    w = rng.standard_normal((k, n)) * rng.uniform(0.01, 1)
    q = compress.quantize_absmax(w, 8, group)
    p, t = quantize_rows(x)
    steps = np.repeat(q.scales, q.group_size, axis=0)  # s_G(i)j, (K, N)
    bound = (t / 2) * np.abs(w).sum(0) + np.abs(t * p) @ (steps / 2)  # (M, N)
    error = np.abs(compress.int8_matmul(x, q).astype(np.float64) - x @ w)
    assert np.all(error <= bound * (1 + 1e-5) + 1e-5)


@pytest.mark.parametrize("temperature", [1.0, 4.0, 16.0])
def test_the_t_squared_factor_keeps_the_soft_gradient_of_order_one(temperature):
    """d(T^2 KL)/ds = T (q_T - p_T) / N: with T^2 its size stays put as T grows (eq. 16.11); it is
    T^2 times the gradient of the plain KL."""
    rng = np.random.default_rng(0)
    s, t = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    student = tl.tensor(s, requires_grad=True)
    compress.distillation_kl(student, t, temperature).backward()
    grad = student.grad.numpy()
    centred = (s - t) - (s - t).mean(-1, keepdims=True)
    limit = centred / 7 / 5  # (s - t - mean) / (V N): the large-T limit
    assert np.abs(grad).max() == pytest.approx(np.abs(limit).max(), rel=0.6)
    if temperature == 16.0:
        np.testing.assert_allclose(grad, limit, atol=5e-3)  # O(1/T) off


def test_head_importance_is_the_mean_absolute_gate_derivative():
    """Eq. 16.13: I_h = mean over batches of |dL/d xi_h|, here recomputed by central differences of
    the loss in each gate (float64), on the same batches head_importance draws."""
    from tinyllm.compress import head_gates, head_importance
    from tinyllm.models import GPT, GPTConfig
    from tinyllm.objectives import LanguageModelTask

    config = GPTConfig(vocab_size=12, context_length=6, num_layers=2, num_heads=2, d_model=8)
    model = GPT(config, rng=np.random.default_rng(0), dtype=np.float64)
    ids = np.random.default_rng(1).integers(0, 12, 400)
    task = LanguageModelTask(ids[:300], ids[300:], 4, config.context_length)
    raw = head_importance(model, task, batches=3, seed=5, normalize=False)
    rng = np.random.default_rng(5)
    batches = [task.batch("train", rng) for _ in range(3)]
    model.eval()
    eps = 1e-6
    with tl.no_grad(), head_gates(model) as gates:
        for name, gate in gates.items():
            for h in range(config.num_heads):
                total = 0.0
                for batch in batches:
                    losses = []
                    for sign in (1, -1):
                        gate.data = np.ones(config.num_heads)
                        gate.data[h] += sign * eps
                        losses.append(task.loss(model, batch).item())
                    total += abs(losses[0] - losses[1]) / (2 * eps)
                gate.data = np.ones(config.num_heads)
                assert raw[name][h] == pytest.approx(total / 3, rel=1e-5, abs=1e-9), (name, h)

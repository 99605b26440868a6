"""Chapter 17, memory-efficient attention: the online softmax and a blockwise backward.

Under test: ``tinyllm/nn/blockwise_attention.py`` (``BlockwiseAttention``, ``blockwise_attention``)
and its selection by ``MultiHeadAttention(attention="blockwise")`` and
``GPTConfig(attention="blockwise")``. The fused op of chapter 06 is the oracle: values and
gradients agree to float64 rounding for generated shapes, block sizes that do not divide T, masks,
causal alignment and fully masked rows; finite differences check the gradients, dropout included;
tracemalloc checks that the memory grows with T, not T^2.
"""

import dataclasses
import json
import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyllm as tl
import tinyllm.nn.functional as F
from tinyllm import optim
from tinyllm.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_safetensors,
    save_checkpoint,
    save_safetensors,
)
from tinyllm.models import GPT, GPTConfig
from tinyllm.nn import MultiHeadAttention
from tinyllm.nn.blockwise_attention import BlockwiseAttention, blockwise_attention
from tinyllm.tensor import apply
from tinyllm.tokenizers import CharTokenizer

pytestmark = pytest.mark.ch17


def variable(values) -> tl.Tensor:
    return tl.tensor(np.asarray(values, dtype=np.float64), requires_grad=True)


def run(attention, arrays, g, **kwargs):
    """Output and the gradients of <g, output> for q, k, v: four arrays."""
    q, k, v = (variable(a) for a in arrays)
    out = attention(q, k, v, **kwargs)
    out.backward(g)
    return [out.numpy(), q.grad.numpy(), k.grad.numpy(), v.grad.numpy()]


def assert_all_close(results, expected, rtol=1e-10, atol=1e-12):
    for name, got, want in zip(("out", "dq", "dk", "dv"), results, expected):
        assert np.all(np.isfinite(got)), name
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)


# --------------------------------------------------------------------------------------------------
# Blockwise == fused, values and gradients
# --------------------------------------------------------------------------------------------------


@st.composite
def attention_problems(draw):
    B, H = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    T_q, T_k = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    D, D_v = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    kv_heads = draw(st.sampled_from([H, 1]))  # 1: keys and values shared by the heads
    mask_shape = draw(st.sampled_from(
        [None, (B, 1, 1, T_k), (T_q, T_k), (B, H, T_q, T_k), (1, 1, T_q, 1), (T_k,)]))
    is_causal = draw(st.booleans())
    block_q, block_k = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    return B, H, kv_heads, T_q, T_k, D, D_v, mask_shape, is_causal, block_q, block_k, seed


@given(attention_problems())
def test_blockwise_equals_fused(problem):
    # eqs. 17.10-17.12: the backward from lse, Delta and the block products = the fused gradients
    B, H, kv_heads, T_q, T_k, D, D_v, mask_shape, is_causal, block_q, block_k, seed = problem
    rng = np.random.default_rng(seed)
    arrays = (rng.standard_normal((B, H, T_q, D)), rng.standard_normal((B, kv_heads, T_k, D)),
              rng.standard_normal((B, kv_heads, T_k, D_v)))
    mask = None if mask_shape is None else rng.random(mask_shape) > 0.3  # rows may be all masked
    g = rng.standard_normal((B, H, T_q, D_v))
    fused = run(F.scaled_dot_product_attention, arrays, g, mask=mask, is_causal=is_causal)
    blockwise = run(blockwise_attention, arrays, g, mask=mask, is_causal=is_causal,
                    block_q=block_q, block_k=block_k)
    assert_all_close(blockwise, fused)


@pytest.mark.parametrize("T_q, T_k", [(7, 7), (3, 10), (10, 4), (1, 9)])
@pytest.mark.parametrize("block_q, block_k", [(1, 1), (2, 3), (4, 256), (128, 2)])
def test_causal_is_bottom_right_aligned_as_in_the_fused_op(T_q, T_k, block_q, block_k):
    """T_q < T_k (a KV cache) and T_q > T_k (the first queries see no key); the blocks above the
    diagonal are skipped, the ones across it are masked."""
    rng = np.random.default_rng(T_q * 31 + T_k)
    arrays = [rng.standard_normal((2, 2, T, 3)) for T in (T_q, T_k, T_k)]
    g = rng.standard_normal((2, 2, T_q, 3))
    fused = run(F.scaled_dot_product_attention, arrays, g, is_causal=True)
    blockwise = run(blockwise_attention, arrays, g, is_causal=True, block_q=block_q,
                    block_k=block_k)
    assert_all_close(blockwise, fused)


def test_fully_masked_rows_give_zero_output_and_zero_gradient():
    """Eq. 6.8: a query that may see no key: output 0, gradient 0, no NaN anywhere."""
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((2, 3, 9, 4)) for _ in range(3)]
    mask = np.ones((2, 1, 9, 9), dtype=bool)
    mask[0, :, 2] = False  # example 0, query 2 sees nothing
    mask[1, :, 5:, :] = False  # example 1, a whole query block sees nothing
    g = rng.standard_normal((2, 3, 9, 4))
    out, dq, dk, dv = blockwise = run(blockwise_attention, arrays, g, mask=mask, block_q=4,
                                      block_k=3)
    assert_all_close(blockwise, run(F.scaled_dot_product_attention, arrays, g, mask=mask))
    np.testing.assert_array_equal(out[0, :, 2], 0.0)
    np.testing.assert_array_equal(out[1, :, 5:], 0.0)
    np.testing.assert_array_equal(dq[0, :, 2], 0.0)
    np.testing.assert_array_equal(dq[1, :, 5:], 0.0)
    assert np.all(out[0, :, 3] != 0)


@pytest.mark.parametrize("dropout_p", [0.0, 0.3])
def test_blockwise_runs_on_every_device(device, dropout_p):
    """On "cuda" (a GPU, or the strict CuPy stand-in of the test run) the op stays on the device
    and gives the CPU's values: masks, causal blocks and dropout masks are made where they go."""
    rng = np.random.default_rng(12)
    arrays = [rng.standard_normal((2, 2, 9, 4)) for _ in range(3)]
    padding = rng.random((2, 1, 1, 9)) > 0.3
    g = rng.standard_normal((2, 2, 9, 4))
    results = []
    for where in ("cpu", device):
        q, k, v = (tl.tensor(a, requires_grad=True, device=where) for a in arrays)
        out = blockwise_attention(q, k, v, mask=padding, is_causal=True, dropout_p=dropout_p,
                                  rng=np.random.default_rng(3), block_q=4, block_k=3)
        out.backward(tl.tensor(g, device=where))
        assert out.device == q.grad.device == where
        results.append([t.numpy() for t in (out, q.grad, k.grad, v.grad)])
    assert_all_close(results[1], results[0])


def test_float32_agrees_with_the_fused_op():
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal((2, 4, 300, 16)).astype(np.float32) for _ in range(3)]
    g = rng.standard_normal((2, 4, 300, 16)).astype(np.float32)
    results = []
    for attention in (F.scaled_dot_product_attention, blockwise_attention):
        q, k, v = (tl.tensor(a, requires_grad=True) for a in arrays)
        out = attention(q, k, v, is_causal=True)
        out.backward(g)
        assert out.dtype == q.grad.dtype == np.float32
        results.append([out.numpy(), q.grad.numpy(), k.grad.numpy(), v.grad.numpy()])
    assert_all_close(results[1], results[0], rtol=1e-4, atol=2e-5)


# --------------------------------------------------------------------------------------------------
# Finite differences
# --------------------------------------------------------------------------------------------------


GRADCHECK_CASES = [  # (T_q, T_k, mask shape or None, is_causal)
    (5, 7, None, False),
    (7, 7, None, True),
    (6, 4, None, True),  # fully masked rows
    (5, 7, (2, 1, 1, 7), True),
    (5, 7, (5, 7), False),
]


@pytest.mark.parametrize("T_q, T_k, mask_shape, is_causal", GRADCHECK_CASES)
@pytest.mark.parametrize("dropout_p", [0.0, 0.4])
def test_gradcheck(T_q, T_k, mask_shape, is_causal, dropout_p):
    """With dropout, a generator with a fixed seed in every call fixes the masks, so f is a fixed
    function; the backward regenerates each block's mask from the seed."""
    rng = np.random.default_rng(3)
    q, k, v = (variable(rng.standard_normal((2, 2, T, 3))) for T in (T_q, T_k, T_k))
    mask = None if mask_shape is None else rng.random(mask_shape) > 0.3
    assert tl.gradcheck(lambda q, k, v: blockwise_attention(
        q, k, v, mask=mask, is_causal=is_causal, dropout_p=dropout_p,
        rng=np.random.default_rng(7), block_q=2, block_k=3), q, k, v)


# --------------------------------------------------------------------------------------------------
# Dropout: the formula of chapter 06 with the masks drawn block by block
# --------------------------------------------------------------------------------------------------


def dropout_reference(q, k, v, keep, p, g, is_causal):
    """Eqs. 6.3-6.14 in NumPy with a given keep-mask: O and dQ, dK, dV."""
    T_q, T_k = q.shape[-2], k.shape[-2]
    scale = 1 / math.sqrt(q.shape[-1])
    scores = q @ np.swapaxes(k, -1, -2) * scale
    if is_causal:
        scores = np.where(np.tri(T_q, T_k, T_k - T_q, dtype=bool), scores, -np.inf)
    P = np.exp(scores - scores.max(-1, keepdims=True))
    P /= P.sum(-1, keepdims=True)
    dropped = P * keep / (1 - p)
    out = dropped @ v
    dV = np.swapaxes(dropped, -1, -2) @ g
    dP = (g @ np.swapaxes(v, -1, -2)) * keep / (1 - p)
    dS = P * (dP - (g * out).sum(-1, keepdims=True))
    return out, dS @ k * scale, np.swapaxes(dS, -1, -2) @ q * scale, dV


@pytest.mark.parametrize("is_causal", [False, True])
def test_dropout_is_the_chapter_06_formula_with_the_block_masks(is_causal):
    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal((2, 3, 9, 4)) for _ in range(3)]
    g = rng.standard_normal((2, 3, 9, 4))
    p, block_q, block_k = 0.3, 4, 3
    fn = BlockwiseAttention(None, is_causal, p, seed=12345, block_q=block_q, block_k=block_k)
    q, k, v = (variable(a) for a in arrays)
    out = apply(fn, q, k, v)
    keep = np.zeros((2, 3, 9, 9))  # the full mask, assembled from the blocks' (a test helper)
    for i0 in range(0, 9, block_q):
        for j0 in range(0, 9, block_k):
            shape = (2, 3, min(block_q, 9 - i0), min(block_k, 9 - j0))
            block = fn._keep(np, i0, j0, shape, np.float64) * (1 - p)
            keep[..., i0:i0 + block_q, j0:j0 + block_k] = block
    assert set(np.unique(keep)) == {0.0, 1.0}
    out.backward(g)
    got = [out.numpy(), q.grad.numpy(), k.grad.numpy(), v.grad.numpy()]
    assert_all_close(got, dropout_reference(*arrays, keep, p, g, is_causal))


def test_dropout_masks_are_fresh_per_call_and_fixed_by_a_seed():
    rng = np.random.default_rng(5)
    q, k, v = (tl.tensor(rng.standard_normal((1, 2, 64, 8))) for _ in range(3))
    generator = np.random.default_rng(0)
    first = blockwise_attention(q, k, v, dropout_p=0.5, rng=generator).numpy()
    second = blockwise_attention(q, k, v, dropout_p=0.5, rng=generator).numpy()
    again = blockwise_attention(q, k, v, dropout_p=0.5, rng=np.random.default_rng(0)).numpy()
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(first, again)


def test_dropout_keeps_a_fraction_one_minus_p_and_is_unbiased():
    """E[O] over masks is the attention without dropout: the mean of 200 runs is close to it."""
    rng = np.random.default_rng(6)
    q, k, v = (tl.tensor(rng.standard_normal((1, 1, 40, 4))) for _ in range(3))
    fn = BlockwiseAttention(None, False, 0.25, seed=1, block_q=16, block_k=16)
    kept = fn._keep(np, 0, 0, (1, 1, 16, 16), np.float64) > 0
    assert abs(kept.mean() - 0.75) < 0.08
    generator = np.random.default_rng(1)
    runs = [blockwise_attention(q, k, v, dropout_p=0.25, rng=generator, block_q=16,
                                block_k=16).numpy() for _ in range(200)]
    exact = blockwise_attention(q, k, v).numpy()
    assert np.abs(np.mean(runs, axis=0) - exact).max() < 0.12
    assert np.abs(runs[0] - exact).max() > 0.12  # one run alone is not the mean


# --------------------------------------------------------------------------------------------------
# Memory: O(T), not O(T^2)
# --------------------------------------------------------------------------------------------------


def peak_bytes(attention, T: int, **kwargs) -> int:
    """tracemalloc's peak over forward + backward (the inputs and cotangent made before)."""
    rng = np.random.default_rng(T)
    q, k, v = (tl.tensor(rng.standard_normal((1, 2, T, 16)).astype(np.float32),
                         requires_grad=True) for _ in range(3))
    g = rng.standard_normal((1, 2, T, 16)).astype(np.float32)
    tracemalloc.start()
    try:
        attention(q, k, v, is_causal=True, **kwargs).backward(g)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_at_T_1024_is_far_below_the_fused_op():
    # eq. 17.13: c B H T^2 bytes for the fused op against c' B H T D for the blockwise one
    """The fused op holds P (B, H, T, T) and its gradient; blockwise attention holds O(T) arrays and
    one (B, H, block_q, block_k) block at a time."""
    T = 1024
    one_scores_matrix = 1 * 2 * T * T * 4  # (B, H, T, T) float32: 8 MiB
    fused = peak_bytes(F.scaled_dot_product_attention, T)
    blockwise = peak_bytes(blockwise_attention, T, block_q=64, block_k=64)
    assert fused > 2 * one_scores_matrix
    assert blockwise < one_scores_matrix / 4
    assert blockwise < fused / 10


def test_peak_memory_grows_linearly_with_T():
    # eq. 17.13: the blockwise memory grows with T, not T^2
    small = peak_bytes(blockwise_attention, 1024, block_q=64, block_k=64)
    large = peak_bytes(blockwise_attention, 2048, block_q=64, block_k=64)
    assert 1.5 < large / small < 2.5  # quadratic memory would give 4


# --------------------------------------------------------------------------------------------------
# Selecting it in a layer and in a GPT
# --------------------------------------------------------------------------------------------------


def test_multihead_attention_blockwise_equals_fused_with_padding_and_causal_masks():
    rng = np.random.default_rng(7)
    layers = [MultiHeadAttention(8, 2, rng=np.random.default_rng(0), dtype=np.float64,
                                 attention=kind) for kind in ("fused", "blockwise")]
    x_data = rng.standard_normal((2, 5, 8))
    padding = np.array([[True] * 5, [True, True, True, False, False]])
    g = rng.standard_normal((2, 5, 8))
    results = []
    for layer in layers:
        x = variable(x_data)
        out = layer(x, mask=padding, is_causal=True)
        out.backward(g)
        results.append([out.numpy(), x.grad.numpy(), layer.q_proj.weight.grad.numpy()])
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert "attention='blockwise'" in repr(layers[1])


def test_multihead_attention_refuses_unknown_ops_and_returning_weights():
    with pytest.raises(ValueError, match=r"unknown attention 'flash'; expected one of \['fused'"):
        MultiHeadAttention(8, 2, attention="flash")
    layer = MultiHeadAttention(8, 2, attention="blockwise")
    with pytest.raises(ValueError, match="use attention='fused' to plot them"):
        layer(tl.randn(1, 3, 8), return_weights=True)


def test_blockwise_attention_refuses_bad_block_sizes_and_masks():
    q = tl.randn(1, 1, 4, 2)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="needs block_q a positive integer"):
            blockwise_attention(q, q, q, block_q=bad)
    with pytest.raises(TypeError, match="attention mask must be boolean"):
        blockwise_attention(q, q, q, mask=np.ones((4, 4)))
    with pytest.raises(ValueError, match="does not broadcast to the attention scores"):
        blockwise_attention(q, q, q, mask=np.ones((3, 4), dtype=bool))


def tiny_gpt(attention: str, context_length: int = 16, dtype=np.float64, **changes) -> GPT:
    config = GPTConfig(vocab_size=11, context_length=context_length, num_layers=2, num_heads=2,
                       d_model=8, attention=attention, **changes)
    return GPT(config, rng=np.random.default_rng(0), dtype=dtype)


def test_gpt_blockwise_gives_the_fused_logits_and_gradients():
    ids = np.random.default_rng(8).integers(0, 11, (3, 16))
    results = []
    for kind in ("fused", "blockwise"):
        model = tiny_gpt(kind)
        assert all(block.attn.attention == kind for block in model.blocks)
        logits, loss = model(ids[:, :-1], ids[:, 1:])
        loss.backward()
        results.append([logits.numpy()] + [p.grad.numpy() for p in model.parameters()])
    assert len(results[0]) == len(results[1]) > 10
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_gpt_blockwise_generates_the_same_tokens_with_the_kv_cache():
    prompt = np.array([[1, 2, 3]])
    texts = [tiny_gpt(kind).generate(prompt, 10, temperature=0.0) for kind in ("fused",
                                                                                 "blockwise")]
    np.testing.assert_array_equal(texts[0], texts[1])


def test_gpt_refuses_an_unknown_attention():
    with pytest.raises(ValueError, match="unknown attention 'flash'"):
        tiny_gpt("flash")


def test_a_gpt_with_context_1024_trains():
    """A few AdamW steps on one batch of 2 x 1024 tokens lower the loss (float32, blockwise)."""
    ids = np.random.default_rng(9).integers(0, 11, (2, 1025))
    model = tiny_gpt("blockwise", context_length=1024, dtype=np.float32)
    optimizer = optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(6):
        _, loss = model(ids[:, :-1], ids[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 0.1


# --------------------------------------------------------------------------------------------------
# Checkpoints: the new config field
# --------------------------------------------------------------------------------------------------


def saved_gpt(path, attention: str):
    tokenizer = CharTokenizer.from_text("to be or not to be")
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, context_length=4, num_layers=1,
                          num_heads=1, d_model=4, attention=attention),
                rng=np.random.default_rng(1))
    optimizer = optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = optim.LRScheduler(optimizer, lambda step: 1e-3)
    save_checkpoint(path, model, optimizer, scheduler, tokenizer, np.random.default_rng(0),
                    settings={"model": "gpt"}, step=0, history={})
    return model


def with_config(path, config: dict):
    arrays, metadata = load_safetensors(path)
    target = path.with_name("edited.safetensors")
    save_safetensors(target, arrays, {**metadata, "model_config": json.dumps(config)})
    return target


def test_a_blockwise_checkpoint_loads_as_blockwise(tmp_path):
    model = saved_gpt(tmp_path / "gpt.safetensors", "blockwise")
    loaded, _, _ = load_checkpoint(tmp_path / "gpt.safetensors")
    assert loaded.config == model.config and loaded.config.attention == "blockwise"
    assert all(block.attn.attention == "blockwise" for block in loaded.blocks)


def test_a_checkpoint_from_before_the_field_loads_as_fused(tmp_path):
    model = saved_gpt(tmp_path / "gpt.safetensors", "fused")
    old = dataclasses.asdict(model.config)
    del old["attention"]
    loaded, _, _ = load_checkpoint(with_config(tmp_path / "gpt.safetensors", old))
    assert loaded.config == model.config and loaded.config.attention == "fused"


@pytest.mark.parametrize("value, phrase", [("flash", "must be one of ['fused', 'blockwise']"),
                                           (3, "must be a string")])
def test_a_checkpoint_with_a_bad_attention_is_refused(tmp_path, value, phrase):
    model = saved_gpt(tmp_path / "gpt.safetensors", "fused")
    bad = with_config(tmp_path / "gpt.safetensors",
                      {**dataclasses.asdict(model.config), "attention": value})
    with pytest.raises(CheckpointError, match=r"'model_config.attention' " + phrase.replace(
            "[", r"\[").replace("]", r"\]")):
        load_checkpoint(bad)

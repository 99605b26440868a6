"""Chapter 11: the GPT model, generation with and without the KV cache, and the sampling
distributions.

Under test: ``tinyllm/models/gpt.py`` (parameter count eq. 11.7, causality, the tied output layer,
GPT-2 initialisation eq. 11.6, the loss at initialisation, input errors, ``generate``) and
``tinyllm/sampling.py`` (temperature, top-k, top-p). Three layers of evidence: float64 gradient
checks of the whole model's loss; hypothesis-drawn shapes for causality and the filters; the
chapter's closed forms (the parameter count, the cross-entropy of a near-uniform model, the gradient
of the tied output layer, the filtered distributions) computed directly in NumPy.
"""

import math
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyllm as tl
from tinyllm.models import GPT, GPTConfig, gpt_parameter_count
from tinyllm.nn import KVCache
from tinyllm.objectives import LanguageModelTask, get_batch, next_token_loss
from tinyllm.sampling import filter_logits, sample_next

pytestmark = pytest.mark.ch11

TINY = GPTConfig(vocab_size=11, context_length=8, num_layers=2, num_heads=2, d_model=16)


@lru_cache(maxsize=None)
def tiny_gpt(seed: int = 0) -> GPT:
    """A tiny GPT in evaluation mode, shared by the read-only tests (built once per seed)."""
    return GPT(TINY, rng=np.random.default_rng(seed)).eval()


def random_ids(shape, seed: int = 0, vocab: int = TINY.vocab_size) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, shape)


def numpy_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def numpy_softmax(z: np.ndarray) -> np.ndarray:
    return np.exp(numpy_log_softmax(z))


# ==================================================================================================
# Parameters: closed form (eq. 11.7), an independent count by name, tied weights
# ==================================================================================================


def expected_gpt_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter of a GPT by name, written out from the architecture (no output matrix: it is
    tied)."""
    V, T, C = config.vocab_size, config.context_length, config.d_model
    shapes = {"wte.weight": (V, C), "wpe.weight": (T, C)}
    for layer in range(config.num_layers):
        p = f"blocks.{layer}."
        linears = {
            "attn.q_proj": (C, C),
            "attn.k_proj": (C, C),
            "attn.v_proj": (C, C),
            "attn.out_proj": (C, C),
            "ff.fc1": (C, 4 * C),
            "ff.fc2": (4 * C, C),
        }
        for norm in ("ln1", "ln2"):
            shapes[p + norm + ".weight"] = (C,)
            if config.bias:
                shapes[p + norm + ".bias"] = (C,)
        for name, shape in linears.items():
            shapes[p + name + ".weight"] = shape
            if config.bias:
                shapes[p + name + ".bias"] = (shape[1],)
    shapes["ln_f.weight"] = (C,)
    if config.bias:
        shapes["ln_f.bias"] = (C,)
    return shapes


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(11, 8, 2, 2, 16), (65, 64, 4, 4, 128), (7, 3, 1, 1, 4)])
def test_parameter_count_closed_form_and_by_name(shape, bias):
    V, T, L, H, C = shape
    config = GPTConfig(
        vocab_size=V, context_length=T, num_layers=L, num_heads=H, d_model=C, bias=bias
    )
    model = GPT(config, rng=np.random.default_rng(0))
    by_name = {name: p.shape for name, p in model.named_parameters()}
    expected = expected_gpt_shapes(config)
    assert by_name == expected
    independent = sum(math.prod(s) for s in expected.values())
    assert model.num_parameters() == gpt_parameter_count(config) == independent


def test_parameter_count_of_the_cpu_preset():
    """nanoGPT's CPU recipe on our corpus: V = 70, T = 64, L = 4, C = 128 -> 0.80M parameters."""
    config = GPTConfig()
    C = 128
    assert gpt_parameter_count(config) == 70 * C + 64 * C + 4 * (12 * C * C + 2 * C) + C == 804_736


def test_output_layer_is_the_token_embedding():
    model = GPT(TINY, rng=np.random.default_rng(0))
    matrices = [p for p in model.parameters() if p.shape == (TINY.vocab_size, TINY.d_model)]
    assert len(matrices) == 1 and matrices[0] is model.wte.weight
    # Changing the one matrix changes the input lookup and the output layer: logits = h W_te^T.
    ids = random_ids((2, 8))
    with tl.no_grad():
        x = model.wpe(model.wte(ids))
        for block in model.blocks:
            x = block(x, is_causal=True)
        h = model.ln_f(x).numpy()  # (B, T, C)
        logits = model(ids).numpy()
    np.testing.assert_allclose(logits, h @ model.wte.weight.numpy().T, rtol=1e-5, atol=1e-6)


# ==================================================================================================
# Causality and the loss at initialisation
# ==================================================================================================


@given(batch=st.integers(1, 3), length=st.integers(1, TINY.context_length), data=st.data())
def test_logits_at_t_do_not_see_later_tokens(batch, length, data):
    """Changing every token after position t leaves the logits at positions <= t bit for bit
    unchanged."""
    t = data.draw(st.integers(0, length - 1), label="t")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    ids = random_ids((batch, length), seed)
    changed = ids.copy()
    changed[:, t + 1 :] = (
        changed[:, t + 1 :] + 1 + random_ids((batch, length - t - 1), seed + 1, 10)
    ) % 11
    model = tiny_gpt()
    with tl.no_grad():
        before, after = model(ids).numpy(), model(changed).numpy()
    np.testing.assert_array_equal(before[:, : t + 1], after[:, : t + 1])
    if t + 1 < length:  # and the later positions do see them
        assert np.abs(before[:, t + 1 :] - after[:, t + 1 :]).max() > 1e-4


def test_loss_at_initialisation_is_log_vocabulary():
    """Logits of std about 0.02 sqrt(C) make softmax nearly uniform: loss ~ ln V (eq. 11.3)."""
    config = GPTConfig(vocab_size=65, context_length=16, num_layers=2, num_heads=2, d_model=32)
    model = GPT(config, rng=np.random.default_rng(3))
    ids, targets = random_ids((8, 16), 4, 65), random_ids((8, 16), 5, 65)
    logits, loss = model(ids, targets)
    assert abs(loss.item() - math.log(65)) < 0.1
    # The loss is the mean cross-entropy of the logits, computed here from its definition.
    log_probs = numpy_log_softmax(logits.numpy().astype(np.float64))
    expected = -np.take_along_axis(log_probs, targets[..., None], axis=-1).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-5)


# ==================================================================================================
# Gradients: float64 gradcheck of the whole loss, and the two contributions to the tied matrix
# ==================================================================================================


def float64_gpt(seed: int = 0) -> GPT:
    return GPT(TINY, rng=np.random.default_rng(seed)).astype(np.float64)


@pytest.mark.parametrize(
    "name",
    [
        "wte.weight",
        "wpe.weight",
        "blocks.0.attn.q_proj.weight",
        "ln_f.weight",
        "blocks.1.ln2.weight",
    ],
)
def test_gradcheck_of_the_whole_loss(name):
    model = float64_gpt()
    ids, targets = random_ids((2, 6), 1), random_ids((2, 6), 2)
    parameter = dict(model.named_parameters())[name]
    assert parameter.dtype == np.float64
    assert tl.gradcheck(lambda p: model(ids, targets)[1], parameter)


def test_tied_matrix_gets_the_input_and_the_output_gradient():
    """dL/dW_te = (softmax - onehot)^T h / N   (output layer)   + scatter-add of the input path (eq.
    4.5).

    Rows of tokens that never appear in the input get only the output term; rows of input tokens get
    both.
    """
    model = float64_gpt(1)
    ids = np.array([[0, 1, 2, 3, 0, 1], [2, 3, 4, 0, 1, 2]])  # tokens 5..10 are never inputs
    targets = random_ids((2, 6), 3)
    _, loss = model(ids, targets)
    model.zero_grad()
    loss.backward()
    total = model.wte.weight.grad.numpy()  # (V, C)
    with tl.no_grad():
        x = model.wpe(model.wte(ids))
        for block in model.blocks:
            x = block(x, is_causal=True)
        h = model.ln_f(x).numpy().reshape(-1, TINY.d_model)  # (N, C)
    logits = h @ model.wte.weight.numpy().T  # (N, V)
    d_logits = numpy_softmax(logits)
    d_logits[np.arange(len(h)), targets.reshape(-1)] -= 1
    output_term = d_logits.T @ h / len(h)  # (V, C)
    input_term = total - output_term
    np.testing.assert_allclose(
        input_term[5:], 0.0, atol=1e-13
    )  # only the output layer reaches these rows
    assert (
        np.linalg.norm(input_term[:5], axis=1).min() > 1e-6
    )  # ... and the input path reaches these
    assert np.linalg.norm(output_term, axis=1).min() > 1e-6


# ==================================================================================================
# GPT-2 initialisation (eq. 11.6)
# ==================================================================================================


@pytest.mark.parametrize("bias", [False, True])
def test_gpt2_initialisation(bias):
    # eq. 11.6: N(0, 0.02^2), the residual projections N(0, 0.02^2 / 2L)
    config = GPTConfig(
        vocab_size=256, context_length=64, num_layers=4, num_heads=4, d_model=128, bias=bias
    )
    model = GPT(config, rng=np.random.default_rng(0))
    residual_std = 0.02 / math.sqrt(2 * config.num_layers)
    for name, p in model.named_parameters():
        values = p.numpy()
        if p.ndim == 2:
            expected = (
                residual_std if name.endswith(("attn.out_proj.weight", "ff.fc2.weight")) else 0.02
            )
            assert values.std() == pytest.approx(expected, rel=0.05), name
            assert abs(values.mean()) < 5 * expected / math.sqrt(values.size), name
        elif name.endswith(".bias"):
            np.testing.assert_array_equal(values, 0.0)
        else:  # LayerNorm gains
            np.testing.assert_array_equal(values, 1.0)
    # The pooled residual projections separate clearly from the other matrices.
    stds = {name: p.numpy().std() for name, p in model.named_parameters() if p.ndim == 2}
    assert max(v for k, v in stds.items() if k.endswith(("out_proj.weight", "fc2.weight"))) < 0.009
    assert (
        min(v for k, v in stds.items() if not k.endswith(("out_proj.weight", "fc2.weight"))) > 0.019
    )


def test_initialisation_is_seeded():
    a, b = GPT(TINY, rng=np.random.default_rng(7)), GPT(TINY, rng=np.random.default_rng(7))
    c = GPT(TINY, rng=np.random.default_rng(8))
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        np.testing.assert_array_equal(pa.numpy(), pb.numpy())
        if pa.ndim == 2:
            assert not np.array_equal(pa.numpy(), pc.numpy()), name


# ==================================================================================================
# Bad inputs
# ==================================================================================================


def test_too_long_input_is_a_clear_error():
    model = tiny_gpt()
    with pytest.raises(
        ValueError, match=r"sequence of 9 positions is longer than the context_length = 8"
    ):
        model(random_ids((1, 9)))
    model(random_ids((1, 8)))  # exactly context_length is fine


def test_bad_token_ids_are_clear_errors():
    model = tiny_gpt()
    ids = random_ids((2, 5))
    ids[1, 3] = 11
    with pytest.raises(
        IndexError, match=r"token id 11 at position \(1, 3\).*V=11.*valid ids are 0\.\.10"
    ):
        model(ids)
    ids[1, 3] = -1
    with pytest.raises(IndexError, match=r"token id -1 at position \(1, 3\)"):
        model(ids)
    with pytest.raises(TypeError, match=r"token ids must be integers, got dtype float64"):
        model(random_ids((2, 5)).astype(np.float64))
    with pytest.raises(
        ValueError, match=r"GPT expects token ids \(B, T\), got shape \(5,\); .*ids\[None\]"
    ):
        model(random_ids(5))
    with pytest.raises(IndexError, match=r"target id 11 is out of range for V=11"):
        model(random_ids((2, 5)), np.full((2, 5), 11))


def test_dropout_is_active_in_training_only():
    config = GPTConfig(
        vocab_size=11, context_length=8, num_layers=2, num_heads=2, d_model=16, dropout=0.5
    )
    model = GPT(config, rng=np.random.default_rng(0))
    ids = random_ids((2, 8))
    with tl.no_grad():
        first, second = model(ids).numpy(), model(ids).numpy()
        model.eval()
        third, fourth = model(ids).numpy(), model(ids).numpy()
    assert np.abs(first - second).max() > 1e-3
    np.testing.assert_array_equal(third, fourth)


# ==================================================================================================
# Generation: the KV cache changes nothing, temperature 0 is greedy, seeds reproduce
# ==================================================================================================


def generate_by_definition(
    model: GPT, ids: np.ndarray, new: int, rng, temperature=1.0, top_k=None, top_p=None
) -> np.ndarray:
    """The definition of generation: recompute the last context_length tokens every step, sample the
    last row."""
    with tl.no_grad():
        for _ in range(new):
            logits = model(ids[:, -model.config.context_length :]).numpy()[:, -1, :]  # (B, V)
            ids = np.concatenate(
                [ids, sample_next(logits, rng, temperature, top_k, top_p)[:, None]], axis=1
            )
    return ids


@pytest.mark.parametrize("prompt_length", [1, 3, 8, 10])
@pytest.mark.parametrize(
    "settings",
    [
        dict(temperature=0.0),
        dict(temperature=1.0),
        dict(temperature=0.7, top_k=4),
        dict(temperature=1.3, top_p=0.8),
    ],
)
def test_generate_with_and_without_cache_equals_the_definition(prompt_length, settings):
    """Prompts shorter than, equal to and longer than the window; 12 new tokens run past
    context_length = 8."""
    model = tiny_gpt()
    prompt = random_ids((2, prompt_length), 10 + prompt_length)
    cached = model.generate(prompt, 12, rng=np.random.default_rng(42), use_cache=True, **settings)
    recomputed = model.generate(
        prompt, 12, rng=np.random.default_rng(42), use_cache=False, **settings
    )
    reference = generate_by_definition(model, prompt, 12, np.random.default_rng(42), **settings)
    assert cached.shape == (2, prompt_length + 12) and cached.dtype == np.int64
    np.testing.assert_array_equal(cached[:, :prompt_length], prompt)
    np.testing.assert_array_equal(cached, recomputed)
    np.testing.assert_array_equal(cached, reference)


@pytest.mark.parametrize("dtype, tolerance", [(np.float32, 2e-5), (np.float64, 1e-12)])
def test_cached_logits_equal_full_recomputation(dtype, tolerance):
    """Feeding a prompt, then one token at a time through the KV caches, gives the full forward's
    logits."""
    model = GPT(TINY, rng=np.random.default_rng(2)).astype(dtype).eval()
    ids = random_ids((3, TINY.context_length), 6)
    with tl.no_grad():
        full = model(ids).numpy()
        caches = [KVCache(TINY.context_length) for _ in model.blocks]
        pieces = [model(ids[:, :3], caches=caches).numpy()]
        for t in range(3, TINY.context_length):
            pieces.append(model(ids[:, t : t + 1], caches=caches).numpy())
        with pytest.raises(ValueError, match=r"sequence of 9 positions is longer than the context"):
            model(ids[:, :1], caches=caches)
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, rtol=tolerance, atol=tolerance)


def test_temperature_zero_is_greedy_argmax():
    model = tiny_gpt(3)
    prompt = random_ids((2, 2), 9)
    out = model.generate(prompt, 10, temperature=0.0, rng=np.random.default_rng(0))
    with tl.no_grad():
        for t in range(2, 12):
            logits = model(out[:, max(0, t - 8) : t]).numpy()[:, -1]
            np.testing.assert_array_equal(out[:, t], logits.argmax(axis=-1))
    # Greedy decoding ignores the generator and the filters.
    again = model.generate(prompt, 10, temperature=0.0, top_k=3, rng=np.random.default_rng(99))
    np.testing.assert_array_equal(out, again)


def test_seeded_generation_is_reproducible():
    model = tiny_gpt()
    prompt = random_ids((2, 3), 1)
    a = model.generate(prompt, 15, rng=np.random.default_rng(5))
    b = model.generate(prompt, 15, rng=np.random.default_rng(5))
    c = model.generate(prompt, 15, rng=np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(
        a, c
    )  # a near-uniform model over 11 tokens: 30 equal draws would be a miracle


def test_generate_uses_eval_mode_and_restores_training_mode():
    config = GPTConfig(
        vocab_size=11, context_length=8, num_layers=2, num_heads=2, d_model=16, dropout=0.5
    )
    model = GPT(config, rng=np.random.default_rng(0))
    assert model.training
    prompt = random_ids((1, 3))
    a = model.generate(prompt, 10, temperature=0.0)
    b = model.generate(prompt, 10, temperature=0.0)
    np.testing.assert_array_equal(a, b)  # no dropout while generating
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    model.generate(prompt, 2)
    assert not model.training


def test_generate_edge_cases_and_errors():
    model = tiny_gpt()
    prompt = random_ids((2, 3))
    np.testing.assert_array_equal(model.generate(prompt, 0), prompt)
    np.testing.assert_array_equal(
        model.generate(tl.tensor(prompt), 0), prompt
    )  # an integer Tensor works
    with pytest.raises(
        ValueError, match=r"generate expects a prompt of token ids \(B, T0\) with T0 >= 1"
    ):
        model.generate(np.zeros((2, 0), dtype=np.int64), 3)
    with pytest.raises(ValueError, match=r"generate expects a prompt of token ids \(B, T0\)"):
        model.generate(prompt[0], 3)
    with pytest.raises(ValueError, match=r"temperature must be >= 0"):
        model.generate(prompt, 3, temperature=-1.0)


def test_generate_restores_training_mode_after_an_error():
    model = GPT(TINY, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"temperature must be >= 0"):
        model.generate(random_ids((1, 3)), 3, temperature=-1.0)
    assert model.training


# ==================================================================================================
# Sampling distributions: temperature, top-k, top-p (tinyllm/sampling.py)
# ==================================================================================================

P = np.array([0.1, 0.2, 0.3, 0.4])
DRAWS = 40_000


def frequencies(logits_row: np.ndarray, seed: int = 0, **settings) -> np.ndarray:
    """Empirical distribution of DRAWS tokens sampled from one row of logits (all rows drawn at
    once)."""
    logits = np.tile(logits_row, (DRAWS, 1))  # (DRAWS, V)
    tokens = sample_next(logits, np.random.default_rng(seed), **settings)
    assert tokens.shape == (DRAWS,) and tokens.dtype == np.int64
    return np.bincount(tokens, minlength=len(logits_row)) / DRAWS


def assert_frequencies(observed: np.ndarray, expected: np.ndarray) -> None:
    """Each frequency within 5 standard errors of its probability; zero-probability tokens never
    drawn."""
    sigma = np.sqrt(expected * (1 - expected) / DRAWS)
    assert np.all(np.abs(observed - expected) <= 5 * sigma + 1e-12), (observed, expected)
    assert np.all(observed[expected == 0] == 0)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_sampled_frequencies_follow_softmax_with_temperature(temperature):
    # eq. 11.9: p(tau) = softmax(z / tau)
    """p_T = softmax(z / T): with z = log p that is p^(1/T) renormalised."""
    expected = P ** (1 / temperature) / (P ** (1 / temperature)).sum()
    assert_frequencies(frequencies(np.log(P) + 3.0, temperature=temperature), expected)


@pytest.mark.parametrize(
    "top_k, expected",
    [(1, [0, 0, 0, 1]), (2, [0, 0, 3 / 7, 4 / 7]), (3, [0, 2 / 9, 3 / 9, 4 / 9]), (4, P), (10, P)],
)
def test_top_k_sampling_renormalises_the_k_most_likely(top_k, expected):
    # eq. 11.10
    assert_frequencies(frequencies(np.log(P), top_k=top_k), np.asarray(expected, dtype=float))


@pytest.mark.parametrize(
    "top_p, expected",
    [
        (0.01, [0, 0, 0, 1]),  # the most likely token always stays
        (0.35, [0, 0, 0, 1]),
        (0.45, [0, 0, 3 / 7, 4 / 7]),  # 0.4 < 0.45: the second token is needed
        (0.65, [0, 0, 3 / 7, 4 / 7]),
        (0.75, [0, 2 / 9, 3 / 9, 4 / 9]),
        (0.95, P),
        (1.0, P),
    ],
)
def test_top_p_sampling_keeps_the_smallest_nucleus(top_p, expected):
    # eq. 11.11
    assert_frequencies(frequencies(np.log(P), top_p=top_p), np.asarray(expected, dtype=float))


def test_top_k_and_top_p_combine_and_rows_are_independent():
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]]))
    filtered = filter_logits(logits, top_k=3, top_p=0.6)
    # row 0: top-3 = {1, 2, 3} renormalised (2/9, 3/9, 4/9); the nucleus of 0.6 is {3, 2}
    assert np.isfinite(filtered).tolist() == [
        [False, False, True, True],
        [True, True, False, False],
    ]
    np.testing.assert_array_equal(filtered[np.isfinite(filtered)], logits[np.isfinite(filtered)])
    draws = sample_next(
        np.repeat(logits, 2000, axis=0), np.random.default_rng(0), top_k=3, top_p=0.6
    )
    assert set(draws[:2000].tolist()) == {2, 3} and set(draws[2000:].tolist()) == {0, 1}


def test_tokens_with_minus_infinity_logits_are_never_drawn():
    logits = np.array([[-np.inf, 0.0, -np.inf, 0.0, -np.inf]] * 5000)
    draws = sample_next(logits, np.random.default_rng(0), temperature=1.7)
    assert set(draws.tolist()) == {1, 3}
    assert abs((draws == 1).mean() - 0.5) < 0.03


def test_filter_logits_keeps_values_and_copies():
    logits = np.random.default_rng(0).standard_normal((3, 9)).astype(np.float32)
    before = logits.copy()
    filtered = filter_logits(logits, top_k=4)
    np.testing.assert_array_equal(logits, before)  # the input is untouched
    kept = np.isfinite(filtered)
    assert (kept.sum(axis=1) == 4).all()
    np.testing.assert_array_equal(filtered[kept], logits[kept])
    np.testing.assert_array_equal(filter_logits(logits), logits)  # no filter: the same values


@given(rows=st.integers(1, 4), vocab=st.integers(1, 30), data=st.data())
def test_top_k_keeps_exactly_the_k_largest(rows, vocab, data):
    # eq. 11.10: K_k, the k largest logits
    k = data.draw(st.integers(1, vocab + 3), label="k")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    rng = np.random.default_rng(seed)
    logits = np.stack([rng.permutation(vocab) for _ in range(rows)]).astype(
        float
    )  # distinct per row
    kept = np.isfinite(filter_logits(logits, top_k=k))
    assert (kept == (logits >= vocab - min(k, vocab))).all()


@given(
    rows=st.integers(1, 4), vocab=st.integers(1, 30), top_p=st.floats(0.02, 0.98), data=st.data()
)
def test_top_p_keeps_the_smallest_set_reaching_the_mass(rows, vocab, top_p, data):
    # eq. 11.11: the smallest prefix of the sorted probabilities reaching p
    seed = data.draw(st.integers(0, 2**16), label="seed")
    logits = 2 * np.random.default_rng(seed).standard_normal((rows, vocab))
    probs = numpy_softmax(logits)
    kept = np.isfinite(filter_logits(logits, top_p=top_p))
    for row in range(rows):
        mass = probs[row, kept[row]].sum()
        assert mass >= top_p - 1e-12  # the kept set reaches the mass ...
        assert mass - probs[row, kept[row]].min() < top_p + 1e-12  # ... and no smaller prefix does
        # ... and it is a prefix of the tokens sorted by probability
        assert probs[row, kept[row]].min() >= probs[row, ~kept[row]].max(initial=0.0)


def test_top_p_of_one_keeps_every_token_of_moderate_probability():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    np.testing.assert_array_equal(filter_logits(logits, top_p=1.0), logits)


def test_top_p_of_one_disables_the_filter():
    """top_p = 1 asks for the whole distribution: no token may be removed, however unlikely."""
    logits = np.array([[10.0, 0.0, -10.0, -30.0]])
    np.testing.assert_array_equal(filter_logits(logits, top_p=1.0), logits)


def test_bad_sampling_arguments_raise():
    logits = np.zeros((2, 5))
    rng = np.random.default_rng(0)
    for k in (0, -1):
        with pytest.raises(ValueError, match=rf"top_k must be a positive integer, got {k}"):
            filter_logits(logits, top_k=k)
    for p in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
            filter_logits(logits, top_p=p)
    with pytest.raises(ValueError, match=r"temperature must be >= 0, got -0.5"):
        sample_next(logits, rng, temperature=-0.5)
    with pytest.raises(ValueError, match=r"sample_next expects logits \(B, V\), got shape \(5,\)"):
        sample_next(np.zeros(5), rng)


def test_non_integer_top_k_is_a_clear_error():
    with pytest.raises((TypeError, ValueError), match=r"top_k must be a positive integer"):
        filter_logits(np.zeros((2, 5)), top_k=2.5)


# ==================================================================================================
# The objective (tinyllm/objectives/language_model.py): shifted windows and the loss of eq. 11.2
# ==================================================================================================


def test_get_batch_windows_and_shift():
    tokens = np.arange(1000, 1100, dtype=np.uint16)
    x, y = get_batch(tokens, batch_size=8, context_length=16, rng=np.random.default_rng(0))
    starts = np.random.default_rng(0).integers(0, 100 - 16 - 1, 8)  # the reference's draw
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 0], 1000 + starts)
    np.testing.assert_array_equal(x, 1000 + starts[:, None] + np.arange(16))
    np.testing.assert_array_equal(y, x + 1)  # y is x shifted by one


def test_get_batch_shortest_data_and_error():
    x, y = get_batch(np.arange(6), batch_size=3, context_length=4, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(x, np.tile(np.arange(4), (3, 1)))  # only start 0 fits
    np.testing.assert_array_equal(y, x + 1)
    with pytest.raises(ValueError, match=r"needs at least T \+ 2 = 6"):
        get_batch(np.arange(5), batch_size=3, context_length=4, rng=np.random.default_rng(1))


def test_next_token_loss_is_eq_11_2():
    """The mean over B T positions of -log softmax(z_{b,t})[y_{b,t}], and its gradient (eq.
    3.11)."""
    rng = np.random.default_rng(4)
    z, y = rng.normal(size=(3, 5, 7)), rng.integers(0, 7, size=(3, 5))
    logits = tl.tensor(z, requires_grad=True)
    loss = next_token_loss(logits, y)
    loss.backward()
    log_probs = numpy_log_softmax(z)
    expected = -np.take_along_axis(log_probs, y[..., None], axis=-1).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-13)
    np.testing.assert_allclose(
        logits.grad.numpy(), (np.exp(log_probs) - np.eye(7)[y]) / 15, rtol=1e-12, atol=1e-15
    )
    with pytest.raises(
        ValueError, match=r"next_token_loss expected logits \(B, T, V\), got \(5, 7\)"
    ):
        next_token_loss(tl.tensor(z[0]), y[0])
    with pytest.raises(ValueError, match=r"next_token_loss expected targets of shape \(B, T\)"):
        next_token_loss(logits, y[:, :4])


def test_language_model_task_loss_is_next_token_loss_of_the_model():
    """The trainer's loss is eq. 11.2 on the model's logits: the same number the model computes."""
    train_ids = random_ids(200, 12)
    task = LanguageModelTask(
        train_ids, train_ids[:50], batch_size=4, context_length=TINY.context_length
    )
    model = tiny_gpt()
    x, y = task.batch("train", np.random.default_rng(2))
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    with tl.no_grad():
        loss = task.loss(model, (x, y)).item()
        logits, own = model(x, y)
    log_probs = numpy_log_softmax(logits.numpy().astype(np.float64))
    expected = -np.take_along_axis(log_probs, y[..., None], axis=-1).mean()
    assert loss == pytest.approx(expected, rel=1e-5)
    assert loss == pytest.approx(own.item(), rel=1e-6)
    metrics = task.evaluate(model, "val", iters=2, seed=3)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]), rel=1e-12)

"""Chapter 15, decoding: greedy and beam search with the length penalty of Wu et al. (2016).

Cached == uncached token for token; beam width 1 == greedy; a wide beam finds the best
length-penalised hypothesis of an exhaustive search; EOS and max_len; a batch == its sources one
by one; and a tiny model trained for a few hundred steps on a synthetic task (reverse a string and
substitute its letters) that both searches then get right on held-out strings.

Under test: ``tinyllm/decoding.py`` (``greedy_search``, ``beam_search``, ``length_penalty``) on
``tinyllm/models/seq2seq.py``.
"""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyllm as tl
from tinyllm import optim
from tinyllm.decoding import beam_search, greedy_search, length_penalty
from tinyllm.models import Seq2Seq, Seq2SeqConfig
from tinyllm.models.seq2seq import pad_sequences, shift_right

pytestmark = pytest.mark.ch15

PAD, BOS, EOS = 0, 1, 2
TINY = Seq2SeqConfig(vocab_size=9, context_length=10, num_encoder_layers=1, num_decoder_layers=2,
                     num_heads=2, d_model=8, d_ff=12, dropout=0.0)


def float64_model(config: Seq2SeqConfig = TINY, seed: int = 0, scale: float = 3.0) -> Seq2Seq:
    """A random float64 model; ``scale`` multiplies the tied embedding, so that the next-token
    distributions are peaked and differ from source to source, as a trained model's do."""
    model = Seq2Seq(config, rng=np.random.default_rng(seed)).astype(np.float64)
    model.tgt_emb.weight.data = model.tgt_emb.weight.data * scale
    return model


def random_sources(seed: int, lengths=(3, 6, 1, 5), V: int = TINY.vocab_size) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return pad_sequences([rng.integers(3, V, n) for n in lengths], PAD)  # (B, S)


def hypotheses(decoded) -> list[list[int]]:
    return [list(row[:n]) for row, n in zip(decoded.ids, decoded.lengths)]


def sequence_log_probs(model: Seq2Seq, src: np.ndarray, outputs: list[list[int]]) -> np.ndarray:
    """log P(Y | X) of each output for the one source src (1, S), by teacher forcing: the sum of
    log-softmax over the tokens that may be generated (not PAD, not BOS) of every next token."""
    tgt = pad_sequences(outputs, PAD)  # (N, T)
    with tl.no_grad():
        logits = model.eval()(np.repeat(src, len(outputs), axis=0), shift_right(tgt, BOS, PAD))
    z = logits.numpy()  # (N, T, V)
    z[..., [PAD, BOS]] = -np.inf
    log_p = z - z.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    token_log_p = np.take_along_axis(log_p, tgt[..., None], axis=-1)[..., 0]  # (N, T)
    return np.where(tgt != PAD, token_log_p, 0.0).sum(axis=1)  # (N,)


# ==================================================================================================
# The length penalty (eq. 15.4)
# ==================================================================================================


def test_length_penalty_of_wu_et_al():
    # eq. 15.4
    assert length_penalty(1, 0.6) == 1.0  # (5 + 1)^alpha / 6^alpha
    assert length_penalty(7, 0.6) == pytest.approx((12 / 6) ** 0.6)
    np.testing.assert_array_equal(length_penalty(np.arange(1, 9), 0.0), 1.0)
    assert np.all(np.diff(length_penalty(np.arange(1, 20), 0.7)) > 0)  # longer: divided by more


# ==================================================================================================
# Cached == uncached, beam width 1 == greedy, batch == one by one
# ==================================================================================================


@settings(max_examples=10)
@given(seed=st.integers(0, 1000), max_len=st.integers(1, 10))
def test_greedy_cached_equals_uncached_token_for_token(seed, max_len):
    model, src = float64_model(seed=seed), random_sources(seed)
    cached = greedy_search(model, src, max_len)
    uncached = greedy_search(model, src, max_len, use_cache=False)
    np.testing.assert_array_equal(cached.ids, uncached.ids)
    np.testing.assert_array_equal(cached.lengths, uncached.lengths)
    np.testing.assert_allclose(cached.scores, uncached.scores, rtol=1e-12)


@settings(max_examples=10)
@given(seed=st.integers(0, 1000), beam_width=st.integers(2, 5),
       alpha=st.sampled_from([0.0, 0.6, 1.5]), max_len=st.integers(1, 10))
def test_beam_cached_equals_uncached_token_for_token(seed, beam_width, alpha, max_len):
    model, src = float64_model(seed=seed), random_sources(seed)
    cached = beam_search(model, src, beam_width, max_len, alpha)
    uncached = beam_search(model, src, beam_width, max_len, alpha, use_cache=False)
    np.testing.assert_array_equal(cached.ids, uncached.ids)
    np.testing.assert_array_equal(cached.lengths, uncached.lengths)
    np.testing.assert_allclose(cached.scores, uncached.scores, rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_beam_width_one_is_greedy(seed):
    """An EOS candidate counts only if it ranks among the K best, so with K = 1 and alpha = 0 the
    beam keeps exactly greedy's choices (scale 1: greedy often ends early here, see below)."""
    model, src = float64_model(seed=seed, scale=1.0), random_sources(seed + 10)
    greedy = greedy_search(model, src, 10)
    beam = beam_search(model, src, beam_width=1, max_len=10, alpha=0.0)
    np.testing.assert_array_equal(beam.ids, greedy.ids)
    np.testing.assert_array_equal(beam.lengths, greedy.lengths)
    np.testing.assert_allclose(beam.scores, greedy.scores, rtol=1e-12)


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_a_batch_equals_its_sources_one_by_one(search):
    model = float64_model(seed=4)
    lengths = (3, 6, 1, 5)
    src = random_sources(5, lengths)
    run = (lambda s: greedy_search(model, s, 10)) if search == "greedy" else (
        lambda s: beam_search(model, s, 3, 10, alpha=0.6))
    batch = run(src)
    for b, n in enumerate(lengths):
        alone = run(src[b:b + 1, :n])
        assert hypotheses(alone) == hypotheses(batch)[b:b + 1]
        assert alone.scores[0] == pytest.approx(batch.scores[b], rel=1e-12)


# ==================================================================================================
# A wide beam finds the exhaustive optimum
# ==================================================================================================


def all_outputs(letters: list[int], max_len: int) -> list[list[int]]:
    """Every output of up to max_len tokens: n letters then EOS (n < max_len), or max_len letters
    (the search stops there without EOS)."""
    ended = [list(p) + [EOS] for n in range(max_len) for p in itertools.product(letters, repeat=n)]
    return ended + [list(p) for p in itertools.product(letters, repeat=max_len)]


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_a_wide_beam_finds_the_best_length_penalised_output(seed, alpha):
    """V = 5: PAD, BOS, EOS and two letters; max_len = 4 gives 1 + 2 + 4 + 8 + 16 = 31 outputs.
    With 16 beams nothing is ever pruned, so the beam's answer must be the exhaustive arg-max of
    log P(Y | X) / lp(Y); a beam of 1 can only do as well or worse."""
    config = Seq2SeqConfig(**{**TINY.__dict__, "vocab_size": 5})
    model = float64_model(config, seed=seed, scale=1.0)
    src = random_sources(seed, lengths=(4,), V=5)
    outputs = all_outputs([3, 4], 4)
    assert len(outputs) == 31
    scores = sequence_log_probs(model, src, outputs) / length_penalty(
        [len(y) for y in outputs], alpha)
    best = int(np.argmax(scores))
    beam = beam_search(model, src, beam_width=16, max_len=4, alpha=alpha)
    assert hypotheses(beam) == [outputs[best]]
    assert beam.scores[0] == pytest.approx(scores[best], rel=1e-12)
    narrow = beam_search(model, src, beam_width=1, max_len=4, alpha=alpha)
    assert narrow.scores[0] <= scores[best] + 1e-12
    assert narrow.scores[0] == pytest.approx(scores[outputs.index(hypotheses(narrow)[0])])


def test_the_exhaustive_optimum_is_not_always_the_greedy_output():
    """The test above has teeth: on some of its cases greedy search misses the optimum."""
    config = Seq2SeqConfig(**{**TINY.__dict__, "vocab_size": 5})
    misses = 0
    for seed in range(6):
        model = float64_model(config, seed=seed, scale=1.0)
        src = random_sources(seed, lengths=(4,), V=5)
        wide = beam_search(model, src, beam_width=16, max_len=4, alpha=0.0)
        misses += hypotheses(greedy_search(model, src, 4)) != hypotheses(wide)
    assert misses >= 2


# ==================================================================================================
# End of sequence and max_len
# ==================================================================================================


@settings(max_examples=10)
@given(seed=st.integers(0, 1000), max_len=st.integers(1, 10), beam_width=st.integers(1, 4))
def test_outputs_end_at_eos_or_max_len_and_are_padded_after(seed, max_len, beam_width):
    model, src = float64_model(seed=seed, scale=1.0), random_sources(seed)
    for decoded in (greedy_search(model, src, max_len), beam_search(model, src, beam_width,
                                                                     max_len)):
        assert decoded.ids.shape[1] == decoded.lengths.max() <= max_len
        for row, n in zip(decoded.ids, decoded.lengths):
            assert 1 <= n <= max_len
            assert row[n - 1] == EOS or n == max_len  # EOS ends it, or max_len cut it
            assert EOS not in row[:n - 1] and PAD not in row[:n] and BOS not in row[:n]
            np.testing.assert_array_equal(row[n:], PAD)


# ==================================================================================================
# Arguments
# ==================================================================================================


def test_bad_arguments_are_refused_and_the_mode_is_restored():
    model, src = float64_model(), random_sources(0)
    for bad in (0, 11, 2.5, True):
        with pytest.raises(ValueError, match="max_len"):
            greedy_search(model, src, bad)
    with pytest.raises(ValueError, match="beam_width"):
        beam_search(model, src, 0, 5)
    for alpha in (-0.5, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            beam_search(model, src, 2, 5, alpha=alpha)
    model.train()
    greedy_search(model, src, 3)
    beam_search(model, src, 2, 3)
    assert model.training and all(m.training for m in model.modules())


# ==================================================================================================
# It learns: reverse a string and substitute its letters
# ==================================================================================================

LETTERS = 8  # ids 3 .. 10
SUBSTITUTE = np.random.default_rng(0).permutation(LETTERS) + 3  # letter id -> its substitute


def reversal_pairs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n random strings of 2-6 letters; target: the string reversed, each letter substituted, EOS.
    Returns src (n, S) and targets (n, T), padded."""
    sources = [rng.integers(3, 3 + LETTERS, k) for k in rng.integers(2, 7, n)]
    targets = [np.append(SUBSTITUTE[s[::-1] - 3], EOS) for s in sources]
    return pad_sequences(sources, PAD), pad_sequences(targets, PAD)


@pytest.fixture(scope="module")
def reversal_model() -> Seq2Seq:
    """A 1 + 1 block model, C = 32, trained for 600 AdamW steps of 32 pairs (seconds on a CPU;
    400 steps reach 76-100% depending on the seed, 600 steps 99.5-100% on five seeds)."""
    config = Seq2SeqConfig(vocab_size=3 + LETTERS, context_length=10, num_encoder_layers=1,
                           num_decoder_layers=1, num_heads=2, d_model=32, d_ff=64, dropout=0.0,
                           label_smoothing=0.0)
    model = Seq2Seq(config, rng=np.random.default_rng(0))
    optimizer = optim.AdamW(optim.param_groups_for_weight_decay(model, 0.0), lr=1e-2,
                            betas=(0.9, 0.98))
    rng, steps = np.random.default_rng(1), 600
    for step in range(steps):
        optim.set_lr(optimizer, optim.warmup_cosine(step, 1e-2, 1e-3, 20, steps))
        src, targets = reversal_pairs(rng, 32)
        _, loss = model(src, shift_right(targets, BOS, PAD), targets=targets)
        loss.backward()
        optim.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    model.final_loss = loss.item()
    return model.eval()


def test_a_trained_model_reverses_held_out_strings(reversal_model):
    """Held-out strings (a different generator; 8^2 + ... + 8^6 = 299,584 possible strings, 19,200
    drawn in training): both searches get at least 95% exactly right (measured: 100% both)."""
    src, targets = reversal_pairs(np.random.default_rng(99), 200)
    assert reversal_model.final_loss < 0.05
    for decoded in (greedy_search(reversal_model, src, 8), beam_search(reversal_model, src, 4, 8)):
        exact = [h == list(t[t != PAD]) for h, t in zip(hypotheses(decoded), targets)]
        assert np.mean(exact) >= 0.95


def test_a_trained_model_ends_with_eos_and_beam_search_stops_early(reversal_model, monkeypatch):
    src = np.array([[3, 4, 5]])
    expected = list(SUBSTITUTE[[2, 1, 0]]) + [EOS]
    assert hypotheses(greedy_search(reversal_model, src, 8)) == [expected]
    steps = []
    real_step = reversal_model.decode_step
    monkeypatch.setattr(reversal_model, "decode_step",
                        lambda ids, cache: steps.append(1) or real_step(ids, cache))
    beam = beam_search(reversal_model, src, 4, 8, alpha=0.6)
    assert hypotheses(beam) == [expected]
    assert len(steps) < 8  # stopped once no alive beam could beat the finished one
    cut = beam_search(reversal_model, src, 4, max_len=2)  # too short for the answer
    assert cut.lengths[0] == 2 and EOS not in hypotheses(cut)[0]


def test_cross_attention_learns_the_mirror_alignment(reversal_model):
    """Output position i spells source letter n - 1 - i: the cross-attention weights, averaged over
    the heads, peak there for at least 90% of the target positions (measured: 95.9%)."""
    src, targets = reversal_pairs(np.random.default_rng(5), 50)
    weights = reversal_model.cross_attention_weights(src, shift_right(targets, BOS, PAD))
    (w,) = weights  # one decoder layer: (B, H, T, S)
    assert w.shape == (50, 2) + targets.shape[1:] + src.shape[1:]
    real = src != PAD  # (B, S)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(w * ~real[:, None, None, :], 0.0)  # never on padding
    lengths = real.sum(1)
    peaks = w.mean(axis=1).argmax(axis=-1)  # (B, T)
    hits = [peaks[b, :n] == n - 1 - np.arange(n) for b, n in enumerate(lengths)]
    assert np.concatenate(hits).mean() >= 0.9


def test_cross_attention_weights_are_those_of_the_decoder_layers():
    model = float64_model(seed=8)
    src = random_sources(8)
    tgt_in = shift_right(random_sources(9, lengths=(2, 4, 4, 3)), BOS, PAD)
    weights = model.cross_attention_weights(src, tgt_in)
    with tl.no_grad():
        memory, mask = model.encode(src), src != PAD
        x = model.embed(tgt_in, model.tgt_emb, model.tgt_pos)
        for block, w in zip(model.decoder.layers, weights):
            h = x + block.attn(block.ln1(x), is_causal=True)
            _, expected = block.cross_attn(block.ln_cross(h), context=memory, mask=mask,
                                           return_weights=True)
            np.testing.assert_allclose(w, expected.numpy(), rtol=0, atol=1e-12)
            x = block(x, is_causal=True, context=memory, context_mask=mask)
    assert len(weights) == TINY.num_decoder_layers


def test_decoding_on_a_device_equals_the_cpu(device):
    """On "cuda" (a GPU, or the strict stand-in for CuPy) both searches give the CPU's tokens."""
    src = random_sources(7)
    cpu = float64_model(seed=7)
    moved = float64_model(seed=7).to(device)
    for run in (lambda m: greedy_search(m, src, 8), lambda m: beam_search(m, src, 3, 8),
                lambda m: beam_search(m, src, 3, 8, use_cache=False)):
        on_device, on_cpu = run(moved), run(cpu)
        assert hypotheses(on_device) == hypotheses(on_cpu)
        np.testing.assert_allclose(on_device.scores, on_cpu.scores, rtol=1e-12)
    logits, loss = moved(src, shift_right(src, BOS, PAD), targets=src)
    assert logits.device == device and np.isfinite(loss.item())

"""Chapter 15, the encoder-decoder: shapes, the parameter count, shared and tied embeddings, the
label-smoothed loss, float64 gradchecks of the whole loss, padding and causality, and the cached
decoder step.

Under test: ``tinyllm/models/seq2seq.py`` (``Seq2SeqConfig``, ``Seq2Seq``, ``DecoderCache``,
``seq2seq_loss``, ``seq2seq_parameter_count``, ``shift_right``, ``pad_sequences``).
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyllm as tl
from tinyllm.models import Seq2Seq, Seq2SeqConfig, seq2seq_parameter_count
from tinyllm.models.seq2seq import pad_sequences, seq2seq_loss, shift_right

pytestmark = pytest.mark.ch15

PAD, BOS, EOS = 0, 1, 2
TINY = Seq2SeqConfig(vocab_size=9, context_length=10, num_encoder_layers=2, num_decoder_layers=2,
                     num_heads=2, d_model=8, d_ff=12, dropout=0.0, label_smoothing=0.1)


def float64_model(config: Seq2SeqConfig = TINY, seed: int = 0) -> Seq2Seq:
    """A tiny float64 model in eval mode whose LayerNorms have random gains (not the special 1)."""
    rng = np.random.default_rng(seed)
    model = Seq2Seq(config, rng=rng).astype(np.float64).eval()
    for name, p in model.named_parameters():
        if "ln" in name or name.endswith("norm.weight"):
            p.data = p.data + 0.3 * rng.standard_normal(p.shape)
    return model


def random_batch(seed: int, B: int = 2, S: int = 6, T: int = 5, V: int = TINY.vocab_size):
    """src (B, S) with row 1 padded after 4 tokens; targets (B, T) ending in EOS, row 1 padded;
    tgt_in = targets shifted right."""
    rng = np.random.default_rng(seed)
    src = rng.integers(3, V, (B, S))
    src[1, 4:] = PAD
    targets = rng.integers(3, V, (B, T))
    targets[:, -1] = EOS
    targets[1, 3], targets[1, 4:] = EOS, PAD
    return src, shift_right(targets, BOS, PAD), targets


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


# ==================================================================================================
# Shapes, the parameter count, shared and tied embeddings
# ==================================================================================================


@settings(max_examples=15)
@given(
    V=st.integers(4, 30), T=st.integers(1, 12), heads=st.sampled_from([1, 2]),
    width=st.sampled_from([4, 8]), F=st.integers(1, 20), L_enc=st.integers(1, 3),
    L_dec=st.integers(1, 3), positions=st.sampled_from(["sinusoidal", "learned"]),
    share=st.booleans(), bias=st.booleans(),
)
def test_parameter_count_formula(V, T, heads, width, F, L_enc, L_dec, positions, share, bias):
    # eq. 15.3
    config = Seq2SeqConfig(vocab_size=V, context_length=T, num_encoder_layers=L_enc,
                           num_decoder_layers=L_dec, num_heads=heads, d_model=width, d_ff=F,
                           positions=positions, share_embeddings=share, bias=bias)
    model = Seq2Seq(config, rng=np.random.default_rng(0))
    assert model.num_parameters() == seq2seq_parameter_count(config)


def test_default_shape_has_the_counted_parameters():
    """The default (V = 96, C = 128, F = 512, 3 + 3 blocks, shared, sinusoidal, no biases):
    96 * 128 + 3 (4 C^2 + 2 C F + 2 C) + 3 (8 C^2 + 2 C F + 3 C) + 2 C."""
    C, F = 128, 512
    expected = 96 * C + 3 * (4 * C * C + 2 * C * F + 2 * C) + 3 * (8 * C * C + 2 * C * F + 3 * C)
    assert seq2seq_parameter_count(Seq2SeqConfig()) == expected + 2 * C == 1_390_720
    assert Seq2Seq(Seq2SeqConfig(), rng=np.random.default_rng(0)).num_parameters() == 1_390_720


def test_forward_shapes_and_one_shared_tied_matrix():
    model = float64_model()
    src, tgt_in, targets = random_batch(1)
    logits = model(src, tgt_in)
    assert logits.shape == (2, 5, TINY.vocab_size)
    assert model.src_emb is None  # shared: the source is embedded with the target's table
    names = [name for name, _ in model.named_parameters()]
    assert [n for n in names if "emb" in n or "pos" in n] == ["tgt_emb.weight"]
    # The output layer is the transposed embedding: logits = decoder output @ E^T.
    with tl.no_grad():
        memory = model.encode(src)
        x = model.embed(tgt_in, model.tgt_emb, model.tgt_pos)
        h = model.decoder(x, memory, src != PAD).numpy()
    np.testing.assert_allclose(logits.numpy(), h @ model.tgt_emb.weight.numpy().T, atol=1e-12)
    # The input side: E[ids] sqrt(C) plus the sinusoidal table of eq. 5.2.
    table = model.tgt_pos.encoding(5)
    expected = model.tgt_emb.weight.numpy()[tgt_in] * math.sqrt(TINY.d_model) + table
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-12)


def test_separate_embeddings_and_learned_positions():
    config = Seq2SeqConfig(**{**TINY.__dict__, "share_embeddings": False, "positions": "learned"})
    model = float64_model(config)
    names = {name for name, _ in model.named_parameters()}
    assert {"tgt_emb.weight", "src_emb.weight", "src_pos.weight", "tgt_pos.weight"} <= names
    src, tgt_in, _ = random_batch(2)
    before = model(src, tgt_in).numpy()
    model.src_emb.weight.data = model.src_emb.weight.data * 2  # the source side only
    after = model(src, tgt_in).numpy()
    assert np.abs(after - before).max() > 1e-3
    with tl.no_grad():
        x = model.embed(tgt_in, model.tgt_emb, model.tgt_pos).numpy()
    expected = (model.tgt_emb.weight.numpy()[tgt_in] * math.sqrt(TINY.d_model)
                + model.tgt_pos.weight.numpy()[:5])
    np.testing.assert_allclose(x, expected, atol=1e-12)


def test_embeddings_start_with_entries_of_variance_one_over_width():
    config = Seq2SeqConfig(vocab_size=500, d_model=64, num_encoder_layers=1, num_decoder_layers=1)
    model = Seq2Seq(config, rng=np.random.default_rng(3))
    std = model.tgt_emb.weight.numpy().std()
    assert std == pytest.approx(1 / math.sqrt(64), rel=0.03)  # so E sqrt(C) has unit entries


# ==================================================================================================
# The loss: label-smoothed cross-entropy over the real target tokens (eq. 15.2)
# ==================================================================================================


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_loss_is_label_smoothed_cross_entropy_over_real_tokens(eps):
    config = Seq2SeqConfig(**{**TINY.__dict__, "label_smoothing": eps})
    model = float64_model(config)
    src, tgt_in, targets = random_batch(3)
    logits, loss = model(src, tgt_in, targets=targets)
    log_p = log_softmax(logits.numpy())  # (B, T, V)
    real = targets != PAD  # (B, T): 5 + 4 positions
    nll = -np.take_along_axis(log_p, targets[..., None], axis=-1)[..., 0]  # (B, T)
    smooth = -log_p.mean(axis=-1)  # (B, T)
    expected = ((1 - eps) * nll + eps * smooth)[real].mean()
    assert real.sum() == 9
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert seq2seq_loss(logits, targets, PAD, eps).item() == pytest.approx(expected, rel=1e-12)


def test_padded_targets_get_no_gradient():
    model = float64_model()
    src, tgt_in, targets = random_batch(4)
    logits = model(src, tgt_in).retain_grad()
    seq2seq_loss(logits, targets, PAD, 0.1).backward()
    grad = logits.grad.numpy()  # (B, T, V)
    np.testing.assert_array_equal(grad[1, 4:], 0.0)  # the padded target position
    assert np.abs(grad[1, :4]).min(axis=-1).min() > 0
    # The gradient of a real position is (softmax - (1 - eps) onehot - eps / V) / N (eq. 3.12).
    p = np.exp(log_softmax(logits.numpy()[0, 0]))
    onehot = np.eye(TINY.vocab_size)[targets[0, 0]]
    np.testing.assert_allclose(grad[0, 0], (p - 0.9 * onehot - 0.1 / TINY.vocab_size) / 9,
                               atol=1e-14)


# ==================================================================================================
# float64 gradchecks of the whole loss
# ==================================================================================================


@pytest.mark.parametrize(
    "name",
    [
        "tgt_emb.weight",  # source, target and output: three paths into one matrix
        "encoder.layers.0.attn.q_proj.weight",
        "encoder.norm.weight",
        "decoder.layers.1.cross_attn.k_proj.weight",
        "decoder.layers.0.ln_cross.weight",
        "decoder.layers.1.ff.fc2.weight",
    ],
)
def test_gradcheck_of_the_whole_loss(name):
    model = float64_model()
    src, tgt_in, targets = random_batch(5)
    parameter = dict(model.named_parameters())[name]
    assert tl.gradcheck(lambda p: model(src, tgt_in, targets=targets)[1], parameter)


@pytest.mark.parametrize("name", ["src_emb.weight", "src_pos.weight", "tgt_pos.weight",
                                  "decoder.layers.0.cross_attn.v_proj.bias"])
def test_gradcheck_separate_embeddings_learned_positions_and_biases(name):
    config = Seq2SeqConfig(**{**TINY.__dict__, "share_embeddings": False, "positions": "learned",
                              "bias": True})
    model = float64_model(config, seed=1)
    src, tgt_in, targets = random_batch(6)
    parameter = dict(model.named_parameters())[name]
    assert tl.gradcheck(lambda p: model(src, tgt_in, targets=targets)[1], parameter)


def test_gradcheck_of_the_logits_with_a_random_cotangent():
    """Every logit (B, T, V) weighted by its own random number, through the cross-attention."""
    model = float64_model(seed=2)
    src, tgt_in, _ = random_batch(7)
    parameter = model.decoder.layers[0].cross_attn.q_proj.weight
    assert tl.gradcheck(lambda p: model(src, tgt_in), parameter, seed=3)


# ==================================================================================================
# Padding, batching and causality
# ==================================================================================================


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_extra_source_padding_leaves_the_logits_unchanged(positions):
    model = float64_model(Seq2SeqConfig(**{**TINY.__dict__, "positions": positions}))
    src, tgt_in, _ = random_batch(8)
    padded = np.concatenate([src, np.full((2, 3), PAD)], axis=1)  # (B, S + 3)
    np.testing.assert_allclose(model(padded, tgt_in).numpy(), model(src, tgt_in).numpy(),
                               rtol=0, atol=1e-12)
    # The mask is what does it: attending to the padding changes the logits.
    unmasked = model(padded, tgt_in, src_mask=np.ones(padded.shape, dtype=bool)).numpy()
    assert np.abs(unmasked - model(src, tgt_in).numpy()).max() > 1e-4


def test_a_padded_batch_equals_its_sentences_one_by_one():
    model = float64_model(seed=3)
    rng = np.random.default_rng(9)
    sources = [rng.integers(3, 9, n) for n in (2, 6, 4)]
    targets = [np.append(rng.integers(3, 9, n), EOS) for n in (4, 1, 6)]
    src, tgt = pad_sequences(sources, PAD), pad_sequences(targets, PAD)  # (3, 6), (3, 7)
    batch = model(src, shift_right(tgt, BOS, PAD)).numpy()  # (3, 7, V)
    for b, (s, t) in enumerate(zip(sources, targets)):
        alone = model(s[None], shift_right(t[None], BOS, PAD)).numpy()[0]  # (len t, V)
        np.testing.assert_allclose(batch[b, :len(t)], alone, rtol=0, atol=1e-12)


def test_the_decoder_never_looks_ahead_and_every_source_token_matters():
    model = float64_model(seed=4)
    src, tgt_in, _ = random_batch(10)
    logits = model(src, tgt_in).numpy()
    changed = tgt_in.copy()
    changed[:, 3] = 3 + (changed[:, 3] - 2) % 6  # another real token at position 3
    delta = np.abs(model(src, changed).numpy() - logits).max(axis=(0, 2))  # (T,)
    np.testing.assert_array_equal(delta[:3], 0.0)
    assert delta[3:].min() > 1e-6
    other = src.copy()
    other[0, 5] = 3 + (other[0, 5] - 2) % 6  # the last source token of row 0
    assert np.abs(model(other, tgt_in).numpy()[0] - logits[0]).min(axis=-1).min() > 0


# ==================================================================================================
# The cached decoder step (what decoding runs)
# ==================================================================================================


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_cached_steps_equal_the_full_decoder(positions):
    model = float64_model(Seq2SeqConfig(**{**TINY.__dict__, "positions": positions}), seed=5)
    src, tgt_in, _ = random_batch(11)
    with tl.no_grad():
        memory, mask = model.encode(src), src != PAD
        full = model.decode(tgt_in, memory, mask).numpy()  # (B, T, V)
        cache = model.start_cache(memory, mask, max_len=TINY.context_length)
        first = model.decode_step(tgt_in[:, :2], cache).numpy()  # two positions at once
        rest = [model.decode_step(tgt_in[:, t:t + 1], cache).numpy() for t in range(2, 5)]
    assert cache.length == 5
    np.testing.assert_allclose(np.concatenate([first, *rest], axis=1), full, rtol=0, atol=1e-12)


def test_reordered_cache_follows_its_rows():
    """After reorder([1, 1, 0]) the cache continues row 1 twice and row 0 once."""
    model = float64_model(seed=6)
    src, tgt_in, _ = random_batch(12)
    with tl.no_grad():
        memory, mask = model.encode(src), src != PAD
        cache = model.start_cache(memory, mask, max_len=6)
        model.decode_step(tgt_in[:, :3], cache)
        cache.reorder(np.array([1, 1, 0]))
        step = model.decode_step(tgt_in[[1, 1, 0], 3:4], cache).numpy()  # (3, 1, V)
        full = model.decode(tgt_in[:, :4], memory, mask).numpy()[:, 3]  # (B, V)
    np.testing.assert_allclose(step[:, 0], full[[1, 1, 0]], rtol=0, atol=1e-12)


def test_cached_decoding_needs_eval_and_no_grad():
    model = float64_model()
    src, _, _ = random_batch(13)
    memory = model.encode(src)
    with pytest.raises(RuntimeError, match="no_grad"):
        model.start_cache(memory, src != PAD, 5)
    model.train()
    with tl.no_grad(), pytest.raises(RuntimeError, match="eval"):
        model.start_cache(memory, src != PAD, 5)


# ==================================================================================================
# Helpers and errors
# ==================================================================================================


def test_shift_right_and_pad_sequences():
    tgt = pad_sequences([[5, 6, EOS], [7, EOS]], PAD)
    np.testing.assert_array_equal(tgt, [[5, 6, EOS], [7, EOS, PAD]])
    np.testing.assert_array_equal(shift_right(tgt, BOS, PAD), [[BOS, 5, 6], [BOS, 7, EOS]])
    np.testing.assert_array_equal(pad_sequences([[3]], PAD, length=3), [[3, PAD, PAD]])
    with pytest.raises(ValueError, match="does not fit"):
        pad_sequences([[3, 4, 5]], PAD, length=2)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="positions"):
        Seq2Seq(Seq2SeqConfig(**{**TINY.__dict__, "positions": "rotary"}))
    with pytest.raises(ValueError, match="three different ids"):
        Seq2Seq(Seq2SeqConfig(**{**TINY.__dict__, "eos_id": 0}))
    model = float64_model()
    src, tgt_in, _ = random_batch(14)
    with pytest.raises(ValueError, match="context_length"):
        model(np.full((1, 11), 3), tgt_in[:1])
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        model(src[0], tgt_in)
    with pytest.raises(ValueError, match="src_mask must be boolean"):
        model(src, tgt_in, src_mask=(src != PAD).astype(int))
    with pytest.raises(ValueError, match="logits"):
        seq2seq_loss(tl.tensor(np.zeros((2, 9))), np.zeros(2, dtype=int))

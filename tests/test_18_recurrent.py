"""Chapter 18, recurrent networks: the Elman and LSTM cells, their unrolling (BPTT), the recurrent
language model, and the streams of truncated BPTT.

Under test: ``tinyllm/nn/recurrent.py`` (``RNNCell``, ``LSTMCell``, ``RNN``, ``LSTM``),
``tinyllm/models/lstm.py`` (``LSTMLanguageModel``, ``lstm_parameter_count``) and
``tinyllm/objectives/streams.py`` (``make_streams``, ``StreamTask``).
"""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyllm as tl
import tinyllm.nn.functional as F
from tinyllm import nn
from tinyllm.gradcheck import gradcheck
from tinyllm.models import LSTMConfig, LSTMLanguageModel, lstm_parameter_count
from tinyllm.objectives import StreamTask, make_streams

pytestmark = pytest.mark.ch18


def tensor(shape, seed, requires_grad=True):
    values = np.random.default_rng(seed).standard_normal(shape)
    return tl.tensor(values, dtype=np.float64, requires_grad=requires_grad)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def lstm_reference(x, h, c, W, b):
    """The LSTM step written out in NumPy (eq. 18.11), gates in the order i, f, g, o."""
    H = h.shape[1]
    z = np.concatenate([x, h], axis=1) @ W + b
    i, f, g, o = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), \
        sigmoid(z[:, 3 * H:])
    c = f * c + i * g
    return o * np.tanh(c), c, (i, f, g, o)


# --------------------------------------------------------------------------------------------------
# The cells: values against NumPy, initialisation
# --------------------------------------------------------------------------------------------------


def test_lstm_cell_equals_the_numpy_reference_over_several_steps():
    # eq. 18.11: the gates, c_t and h_t
    cell = nn.LSTMCell(3, 4, rng=np.random.default_rng(0)).astype(np.float64)
    cell.bias.data = np.random.default_rng(1).standard_normal(16)  # every gate's bias matters
    xs = [np.random.default_rng(2 + t).standard_normal((2, 3)) for t in range(4)]
    h, c = np.zeros((2, 4)), np.zeros((2, 4))
    state = (tl.tensor(h), tl.tensor(c))
    for x in xs:
        h, c, gates = lstm_reference(x, h, c, cell.weight.numpy(), cell.bias.numpy())
        state = cell(tl.tensor(x), state)
        np.testing.assert_allclose(state[0].numpy(), h, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(state[1].numpy(), c, rtol=1e-12, atol=1e-14)
    i, f, g, o = gates
    assert ((0 < i) & (i < 1)).all() and ((-1 < g) & (g < 1)).all()  # the gates' ranges


def test_rnn_cell_is_tanh_of_the_two_products():
    # eq. 18.8: h_t = tanh(x_t W_x + h_{t-1} W_h + b)
    cell = nn.RNNCell(3, 5, rng=np.random.default_rng(0)).astype(np.float64)
    x, h = np.ones((2, 3)), np.full((2, 5), 0.5)
    (out,) = cell(tl.tensor(x), (tl.tensor(h),))
    expected = np.tanh(x @ cell.weight_x.numpy() + h @ cell.weight_h.numpy() + cell.bias.numpy())
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-13)


def test_lstm_initialisation_forget_bias_one_and_uniform_weights():
    H = 8
    cell = nn.LSTMCell(5, H, rng=np.random.default_rng(0))
    bias = cell.bias.numpy()
    assert cell.weight.shape == (5 + H, 4 * H) and bias.shape == (4 * H,)
    np.testing.assert_array_equal(bias[H:2 * H], 1.0)  # forget gate (Jozefowicz et al. 2015)
    np.testing.assert_array_equal(np.delete(bias, np.s_[H:2 * H]), 0.0)
    assert np.abs(cell.weight.numpy()).max() <= 1 / np.sqrt(H)
    assert cell.weight.numpy().std() > 0.5 / np.sqrt(3 * H)  # not all zeros: uniform(+-1/sqrt H)


def test_state_shape_errors_name_the_expected_shape():
    cell = nn.LSTMCell(3, 4)
    with pytest.raises(ValueError, match=r"input x_t of shape \(B, 3\), got \(2, 5\)"):
        cell(tl.zeros(2, 5), (tl.zeros(2, 4), tl.zeros(2, 4)))
    with pytest.raises(ValueError, match=r"state of shape \(B, C_h\) = \(2, 4\), got \(2, 3\)"):
        cell(tl.zeros(2, 3), (tl.zeros(2, 3), tl.zeros(2, 4)))
    with pytest.raises(ValueError, match="expects a state of 2 tensor"):
        nn.LSTM(3, 4)(tl.zeros(2, 6, 3), (tl.zeros(2, 4),))


# --------------------------------------------------------------------------------------------------
# Gradchecks: BPTT over several steps, random cotangents, gradients into h0 and c0
# --------------------------------------------------------------------------------------------------


def test_gradcheck_lstm_cell_over_three_steps():
    cell = nn.LSTMCell(3, 4, rng=np.random.default_rng(0)).astype(np.float64)
    xs = [tensor((2, 3), 10 + t) for t in range(3)]
    h0, c0 = tensor((2, 4), 1), tensor((2, 4), 2)

    def unrolled(h0, c0, weight, bias, *xs):
        state = (h0, c0)
        for x in xs:
            state = cell(x, state)
        return state  # (h_3, c_3), each with its own random cotangent

    assert gradcheck(unrolled, h0, c0, cell.weight, cell.bias, *xs)


def test_gradcheck_rnn_cell_over_four_steps():
    cell = nn.RNNCell(3, 4, rng=np.random.default_rng(0)).astype(np.float64)
    xs = [tensor((2, 3), 10 + t) for t in range(4)]
    h0 = tensor((2, 4), 1)

    def unrolled(h0, weight_x, weight_h, bias, *xs):
        hs, state = [], (h0,)
        for x in xs:
            state = cell(x, state)
            hs.append(state[0])
        return hs  # every h_t gets a cotangent: the loss of a language model reads them all

    assert gradcheck(unrolled, h0, cell.weight_x, cell.weight_h, cell.bias, *xs)


@pytest.mark.parametrize("layer_class", [nn.LSTM, nn.RNN])
def test_gradcheck_unrolled_layers_outputs_and_final_state(layer_class):
    layer = layer_class(3, 4, rng=np.random.default_rng(0)).astype(np.float64)
    x = tensor((2, 5, 3), 3)  # (B, T, C_in), T = 5 steps
    state = tuple(tensor((2, 4), 4 + k) for k in range(layer.cell.state_size))

    def run(x, *inputs):
        outputs, final = layer(x, state)
        return [outputs, *final]  # (B, T, C_h) and every part of the final state

    assert gradcheck(run, x, *state, *layer.parameters())


def test_layer_forward_equals_the_unrolled_cells():
    layer = nn.LSTM(3, 4, rng=np.random.default_rng(0)).astype(np.float64)
    x = tensor((2, 6, 3), 0, requires_grad=False)
    outputs, (h, c) = layer(x)
    state = (tl.zeros(2, 4, dtype=np.float64), tl.zeros(2, 4, dtype=np.float64))
    for t in range(6):
        state = layer.cell(x[:, t], state)
        np.testing.assert_allclose(outputs.numpy()[:, t], state[0].numpy(), rtol=1e-14)
    np.testing.assert_allclose(h.numpy(), state[0].numpy(), rtol=1e-14)
    np.testing.assert_allclose(c.numpy(), state[1].numpy(), rtol=1e-14)


@settings(max_examples=15, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 5), C_in=st.integers(1, 4), H=st.integers(1, 4),
       seed=st.integers(0, 1000))
def test_lstm_layer_matches_numpy_for_any_shape(B, T, C_in, H, seed):
    layer = nn.LSTM(C_in, H, rng=np.random.default_rng(seed)).astype(np.float64)
    x = np.random.default_rng(seed + 1).standard_normal((B, T, C_in))
    outputs, (h_last, c_last) = layer(tl.tensor(x))
    assert outputs.shape == (B, T, H)
    h, c = np.zeros((B, H)), np.zeros((B, H))
    for t in range(T):
        h, c, _ = lstm_reference(x[:, t], h, c, layer.cell.weight.numpy(), layer.cell.bias.numpy())
        np.testing.assert_allclose(outputs.numpy()[:, t], h, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c_last.numpy(), c, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------------------------------
# The language model
# --------------------------------------------------------------------------------------------------

TINY = LSTMConfig(vocab_size=7, context_length=4, num_layers=2, d_model=5, hidden_size=5)


@given(L=st.integers(1, 3), C=st.integers(1, 6), H=st.integers(1, 6), V=st.integers(2, 9),
       tie=st.booleans(), cell=st.sampled_from(["lstm", "rnn"]))
@settings(max_examples=25, deadline=None)
def test_parameter_count_closed_form(L, C, H, V, tie, cell):
    # eq. 18.12
    config = LSTMConfig(vocab_size=V, num_layers=L, d_model=C, hidden_size=C if tie else H,
                        tie_weights=tie, cell=cell)
    model = LSTMLanguageModel(config, rng=np.random.default_rng(0))
    assert model.num_parameters() == lstm_parameter_count(config)


def test_tied_head_is_the_embedding_and_untied_sizes_are_checked():
    model = LSTMLanguageModel(TINY, rng=np.random.default_rng(0))
    assert model.head is None and "wte.weight" in dict(model.named_parameters())
    with pytest.raises(ValueError, match="tie_weights needs d_model = hidden_size, got 5 and 6"):
        LSTMLanguageModel(dataclasses.replace(TINY, hidden_size=6))
    untied = LSTMLanguageModel(dataclasses.replace(TINY, hidden_size=6, tie_weights=False))
    assert untied.head.shape == (6, 7)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_gradcheck_the_language_model_loss(cell):
    config = dataclasses.replace(TINY, num_layers=2, d_model=3, hidden_size=3, vocab_size=5,
                                 cell=cell)
    model = LSTMLanguageModel(config, rng=np.random.default_rng(0), dtype=np.float64)
    ids = np.random.default_rng(1).integers(0, 5, (2, 4))
    targets = np.random.default_rng(2).integers(0, 5, (2, 4))
    assert gradcheck(lambda *params: model(ids, targets)[1], *model.parameters())


def test_carried_state_equals_reading_the_whole_sequence():
    """Reading ids in two parts, the second from the first's final state, gives the logits of
    reading them at once: the state summarises the past exactly."""
    model = LSTMLanguageModel(TINY, rng=np.random.default_rng(0), dtype=np.float64)
    ids = np.random.default_rng(1).integers(0, 7, (3, 9))
    whole, _ = model.forward_with_state(ids, None)
    first, state = model.forward_with_state(ids[:, :4], None)
    second, _ = model.forward_with_state(ids[:, 4:], state)
    np.testing.assert_allclose(np.concatenate([first.numpy(), second.numpy()], axis=1),
                               whole.numpy(), rtol=1e-12)


def test_generate_streams_the_tokens_of_a_full_recomputation():
    model = LSTMLanguageModel(TINY, rng=np.random.default_rng(0), dtype=np.float64)
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    greedy = model.generate(prompt, 6, temperature=0)
    assert greedy.shape == (2, 9) and (greedy[:, :3] == prompt).all()
    ids = prompt
    for _ in range(6):  # the slow way: the whole text from a zero state at every step
        ids = np.concatenate([ids, model(ids).numpy()[:, -1].argmax(-1)[:, None]], axis=1)
    np.testing.assert_array_equal(greedy, ids)
    sampled = model.generate(prompt, 5, temperature=1.0, top_k=3, rng=np.random.default_rng(4))
    streamed = list(model.generate_stream(prompt, 5, 1.0, 3, None, np.random.default_rng(4)))
    np.testing.assert_array_equal(sampled[:, 3:], np.stack(streamed, axis=1))
    assert model.training  # restored after sampling
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        model.generate_stream(prompt, 3, temperature=-1)


def test_dropout_is_seeded_and_off_in_eval():
    config = dataclasses.replace(TINY, dropout=0.5)
    a = LSTMLanguageModel(config, rng=np.random.default_rng(0))
    b = LSTMLanguageModel(config, rng=np.random.default_rng(0))
    ids = np.random.default_rng(1).integers(0, 7, (2, 5))
    np.testing.assert_array_equal(a(ids).numpy(), b(ids).numpy())  # the same seeds, the same masks
    assert not np.array_equal(a(ids).numpy(), a(ids).numpy())  # fresh masks every call
    a.eval()
    np.testing.assert_array_equal(a(ids).numpy(), a(ids).numpy())


# --------------------------------------------------------------------------------------------------
# Truncated BPTT: streams, the carried and detached state
# --------------------------------------------------------------------------------------------------


def test_streams_are_contiguous_rows_cut_into_whole_batches():
    # eq. 18.13: streams[b] are contiguous pieces
    ids = np.arange(50)
    rows = make_streams(ids, batch_size=3, context_length=4)  # n = 49 // 3 // 4 * 4 = 16
    np.testing.assert_array_equal(rows, [np.arange(0, 17), np.arange(16, 33), np.arange(32, 49)])
    with pytest.raises(ValueError, match="make no batch of B=3 streams of T=20"):
        make_streams(ids, 3, 20)


def test_batches_continue_the_streams_and_an_epoch_resets_the_state():
    # eq. 18.13: X, Y = streams[:, kT : kT + T], shifted by one
    task = StreamTask(np.arange(50), np.arange(50), batch_size=3, context_length=4)
    x1, y1 = task.batch("train")
    x2, _ = task.batch("train")
    np.testing.assert_array_equal(x1, [[0, 1, 2, 3], [16, 17, 18, 19], [32, 33, 34, 35]])
    np.testing.assert_array_equal(y1, x1 + 1)
    np.testing.assert_array_equal(x2, x1 + 4)  # row b of batch 2 continues row b of batch 1
    assert task.batches_per_epoch("train") == 4
    task.batch("train"), task.batch("train")
    task.state = "carried"
    x5, _ = task.batch("train")  # the fifth batch starts a new epoch, from a zero state
    np.testing.assert_array_equal(x5, x1)
    assert task.state is None and task.position == 4


def test_reset_interval_zeroes_the_state_before_every_kth_batch():
    task = StreamTask(np.arange(200), np.arange(50), batch_size=2, context_length=4,
                      reset_interval=3)
    seen = []
    for _ in range(12):  # 24 batches an epoch: no epoch end here
        task.state = "carried"
        task.batch("train")
        seen.append(task.state)
    assert [state is None for state in seen] == [k % 3 == 0 for k in range(12)]


def test_the_carried_state_is_detached_truncated_bptt():
    """Batch 2's loss has the value of reading batches 1 and 2 at once (the state carries the
    past), but its gradient is that of batch 2 alone from a constant state: BPTT stops at the
    cut."""
    model = LSTMLanguageModel(TINY, rng=np.random.default_rng(0), dtype=np.float64)
    ids = np.random.default_rng(1).integers(0, 7, 60)
    task = StreamTask(ids, ids, batch_size=2, context_length=4)
    batch1, batch2 = task.batch("train"), task.batch("train")
    task.position = 4
    task.loss(model, batch1)  # carries the state of batch 1 (arrays: no graph)
    loss2 = task.loss(model, batch2)
    loss2.backward()
    truncated = {name: p.grad.numpy() for name, p in model.named_parameters()}
    model.zero_grad()
    both = np.concatenate([batch1[0], batch2[0]], axis=1)  # (B, 2T)
    logits, _ = model.forward_with_state(both, None)
    full = F.cross_entropy(logits[:, 4:], batch2[1])
    assert loss2.item() == pytest.approx(full.item(), rel=1e-12)
    full.backward()
    differs = [not np.allclose(p.grad.numpy(), truncated[name], rtol=1e-6)
               for name, p in model.named_parameters()]
    assert any(differs)  # full BPTT sends gradient back into batch 1's steps; truncation not
    _, state = model.forward_with_state(batch1[0], None)
    model.zero_grad()
    constant = [tuple(tl.tensor(part.numpy()) for part in layer) for layer in state]
    logits, _ = model.forward_with_state(batch2[0], constant)
    F.cross_entropy(logits, batch2[1]).backward()
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), truncated[name], rtol=1e-12, atol=1e-15)


def test_evaluate_reads_the_streams_in_order_and_leaves_training_alone():
    model = LSTMLanguageModel(TINY, rng=np.random.default_rng(0), dtype=np.float64)
    ids = np.random.default_rng(1).integers(0, 7, 60)
    task = StreamTask(ids, ids[::-1].copy(), batch_size=2, context_length=4)
    task.loss(model, task.batch("train"))
    position, state = task.position, task.state
    result = task.evaluate(model, "val", iters=100, seed=0)  # capped at one pass: 7 batches
    assert task.position == position and task.state is state
    logits, _ = model.forward_with_state(task.streams["val"][:, :28], None)
    expected = F.cross_entropy(logits, task.streams["val"][:, 1:29]).item()
    assert result["loss"] == pytest.approx(expected, rel=1e-12)
    assert result["perplexity"] == pytest.approx(np.exp(expected))


def test_task_state_round_trip():
    model = LSTMLanguageModel(TINY, rng=np.random.default_rng(0))
    ids = np.random.default_rng(1).integers(0, 7, 60)
    task = StreamTask(ids, ids, batch_size=2, context_length=4)
    task.loss(model, task.batch("train"))
    arrays = task.state_dict()
    assert sorted(arrays) == ["position", "state.0.0", "state.0.1", "state.1.0", "state.1.1"]
    other = StreamTask(ids, ids, batch_size=2, context_length=4)
    other.load_state_dict(arrays)
    assert other.position == 4
    for mine, theirs in zip(task.state, other.state):
        for a, b in zip(mine, theirs):
            np.testing.assert_array_equal(a, b)
    other.load_state_dict({"position": np.array(0)})
    assert other.state is None

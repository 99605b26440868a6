"""The GPU path without a GPU (issue 13): models, sampling and training on the strict stand-in.

``strict_device`` (tests/conftest.py) installs tests/fake_cupy.py as CuPy: device arrays that refuse
implicit conversion to NumPy, only CuPy's functions, no NumPy function on a device array, and a
count of device->host transfers. What these tests prove: dispatch and host/device hygiene, and how
often a training step waits for the device. What they cannot: CUDA numerics and speed (here every
number is NumPy's, so cuda results equal the cpu's bit for bit; on a real GPU they would not).
"""

import dataclasses

import numpy as np
import pytest
from synthetic import synthetic_play

import tinyllm as tl
from tinyllm import optim
from tinyllm.backend import to_numpy
from tinyllm.models import BERT, GPT, BERTConfig, GPTConfig, LSTMConfig, LSTMLanguageModel
from tinyllm.nn import Dropout
from tinyllm.objectives import (
    BERT_SPECIAL_TOKENS,
    LanguageModelTask,
    MaskedLMTask,
    StreamTask,
    lm_loss,
)
from tinyllm.tokenizers import BPETokenizer
from tinyllm.train import train_step

TINY_GPT = GPTConfig(vocab_size=11, context_length=8, num_layers=2, num_heads=2, d_model=8)
TINY_BERT = BERTConfig(vocab_size=13, context_length=8, num_layers=2, num_heads=2, d_model=8,
                       d_ff=16, dropout=0.0)


def gpt_pair(dtype=np.float32, config=TINY_GPT):
    """The same GPT twice: on the cpu and on the stand-in's 'cuda'."""
    cpu = GPT(config, rng=np.random.default_rng(0), dtype=dtype)
    cuda = GPT(config, rng=np.random.default_rng(0), dtype=dtype).to("cuda")
    return cpu, cuda


# --- the stand-in itself --------------------------------------------------------------------------
def test_the_stand_in_refuses_what_cupy_refuses(strict_device):
    x = tl.zeros(3, device="cuda").data
    assert type(x).__module__ == "cupy" and tl.cuda_available()
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(x)
    with pytest.raises(TypeError, match="Unsupported type"):
        x + np.ones(3)
    with pytest.raises(TypeError, match="numpy.exp was applied to a device array"):
        np.exp(x)
    with pytest.raises(TypeError, match="numpy.sum was applied to a device array"):
        np.sum(x)
    with pytest.raises(AttributeError):
        strict_device.put_along_axis  # noqa: B018  (NumPy has it; the stand-in offers only CuPy's)
    assert type(x.sum()) is strict_device.ndarray and x.sum().ndim == 0  # a 0-d device array


def test_the_stand_in_counts_every_device_to_host_transfer(strict_device):
    x = strict_device.arange(4, dtype=np.float32)
    strict_device.reset()
    float(x.sum()), int(x[1]), bool(x[2] > 0), x[3].item(), x.get(), strict_device.asnumpy(x)
    x[x > 1]  # a boolean mask needs its count on the host: a sync
    assert strict_device.TRANSFERS["to_host"] == 7
    assert all("tests/test_13_device.py" in event for event in strict_device.EVENTS)


def test_without_cupy_cuda_is_a_clear_error(monkeypatch):
    """The message a machine without a GPU gives (the stand-in hidden, CuPy made unimportable)."""
    import sys

    from tinyllm import backend
    monkeypatch.setitem(sys.modules, "cupy", None)
    backend._probe_cupy.cache_clear()
    try:
        assert not tl.cuda_available()
        with pytest.raises(tl.DeviceError, match="'cuda' requested but unavailable: CuPy"):
            tl.zeros(2, device="cuda")
    finally:
        backend._probe_cupy.cache_clear()


# --- the host/device mixes of the issue -----------------------------------------------------------
def test_a_cpu_tensor_meeting_a_device_array_is_a_device_error(strict_device):
    with pytest.raises(tl.DeviceError, match="a cuda array met a cpu tensor; move one"):
        tl.ones(3) + strict_device.ones(3, dtype=np.float32)


def test_where_with_a_host_condition_and_device_operands(strict_device):
    rng = np.random.default_rng(1)
    condition = rng.random((3, 4)) < 0.5
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((1, 4))
    x, y = tl.tensor(a).to("cuda").requires_grad_(), tl.tensor(b).to("cuda").requires_grad_()
    out = tl.where(condition, x, y)
    assert out.device == "cuda"
    np.testing.assert_array_equal(out.numpy(), np.where(condition, a, b))
    assert tl.gradcheck(lambda p, q: tl.where(condition, p, q), x, y)
    with pytest.raises(tl.DeviceError, match="where\\(\\) got a condition on 'cuda'"):
        tl.where(strict_device.asarray(condition), tl.tensor(a), 0.0)


def test_a_host_index_into_a_device_tensor_is_moved_once(strict_device):
    x = tl.tensor(np.arange(6.0).reshape(3, 2)).to("cuda").requires_grad_()
    index = np.array([2, 0, 2])  # a repeated row: the backward adds twice (cupyx.scatter_add)
    x[index].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[1, 1], [0, 0], [2, 2]])


def test_load_state_dict_from_device_arrays(strict_device):
    cpu, cuda = gpt_pair()
    device_state = {name: p.data for name, p in cuda.named_parameters()}  # device arrays
    fresh = GPT(TINY_GPT, rng=np.random.default_rng(5))  # on the cpu
    fresh.load_state_dict(device_state)
    for (name, p), (_, q) in zip(fresh.named_parameters(), cpu.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)
    other = GPT(TINY_GPT, rng=np.random.default_rng(6)).to("cuda")
    other.load_state_dict(device_state)
    assert other.wte.weight.device == "cuda"
    np.testing.assert_array_equal(other.wte.weight.numpy(), cpu.wte.weight.numpy())


# --- models --------------------------------------------------------------------------------------
@pytest.mark.parametrize("ids_on_device", [False, True])
def test_gpt_forward_and_backward_on_the_device_equal_the_cpu(strict_device, ids_on_device):
    cpu, cuda = gpt_pair()
    rng = np.random.default_rng(2)
    ids, targets = rng.integers(0, 11, (2, 8)), rng.integers(0, 11, (2, 8))
    given = (strict_device.asarray(ids), strict_device.asarray(targets)) if ids_on_device \
        else (ids, targets)
    (logits_cpu, loss_cpu), (logits_cuda, loss_cuda) = cpu(ids, targets), cuda(*given)
    loss_cpu.backward()
    loss_cuda.backward()
    assert logits_cuda.device == "cuda" and loss_cuda.device == "cuda"
    np.testing.assert_array_equal(logits_cuda.numpy(), logits_cpu.numpy())
    for (name, p), (_, q) in zip(cpu.named_parameters(), cuda.named_parameters()):
        assert q.grad.device == "cuda"
        np.testing.assert_array_equal(q.grad.numpy(), p.grad.numpy(), err_msg=name)


def test_gpt_gradcheck_on_the_device(strict_device):
    """float64 finite differences through the whole model, on the device (a few entries of W_te)."""
    config = GPTConfig(vocab_size=5, context_length=4, num_layers=1, num_heads=1, d_model=4)
    model = GPT(config, rng=np.random.default_rng(3), dtype=np.float64).to("cuda")
    ids, targets = np.array([[1, 2, 3, 4]]), np.array([[2, 3, 4, 0]])
    weight = model.wte.weight
    assert tl.gradcheck(lambda w: model(ids, targets)[1], weight)


def test_gpt_rejects_out_of_range_device_ids(strict_device):
    _, cuda = gpt_pair()
    with pytest.raises(IndexError, match="token id 11 .* V=11"):
        cuda(strict_device.asarray(np.array([[1, 11]])))


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_sampling_with_a_device_prompt_equals_the_cpu(strict_device, use_cache, temperature):
    cpu, cuda = gpt_pair()
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    expected = cpu.generate(prompt, 9, temperature=temperature, top_k=5,
                            rng=np.random.default_rng(4), use_cache=use_cache)
    got = cuda.generate(strict_device.asarray(prompt), 9, temperature=temperature, top_k=5,
                        rng=np.random.default_rng(4), use_cache=use_cache)
    assert isinstance(got, np.ndarray)  # token ids come back to the host
    np.testing.assert_array_equal(got, expected)


def test_generation_makes_one_transfer_per_new_token(strict_device):
    """The logits of the last position come to the host once per token; nothing else does."""
    _, cuda = gpt_pair()
    strict_device.reset()
    cuda.generate(np.array([[1, 2]]), 5, rng=np.random.default_rng(0))
    events = [e for e in strict_device.EVENTS if e.startswith("to_host")]
    outside_attention = [e for e in events if not e.startswith("to_host nn/attention.py")]
    assert len(outside_attention) == 5 and all("gpt.py" in e for e in outside_attention), events


@pytest.mark.parametrize("ids_on_device", [False, True])
def test_bert_forward_and_backward_on_the_device_equal_the_cpu(strict_device, ids_on_device):
    cpu = BERT(TINY_BERT, rng=np.random.default_rng(0))
    cuda = BERT(TINY_BERT, rng=np.random.default_rng(0)).to("cuda")
    rng = np.random.default_rng(5)
    ids, segments = rng.integers(0, 13, (2, 8)), (np.arange(8) >= 4).astype(np.int64)[None]
    segments = np.repeat(segments, 2, axis=0)
    mask = np.ones((2, 8), dtype=bool)
    mask[1, 6:] = False
    chosen = rng.random((2, 8)) < 0.4
    chosen[0, 0] = True
    move = strict_device.asarray if ids_on_device else (lambda a: a)
    mlm_cpu, nsp_cpu = cpu(ids, segments, mask, masked_positions=chosen)
    mlm_cuda, nsp_cuda = cuda(move(ids), move(segments), move(mask), masked_positions=chosen)
    np.testing.assert_array_equal(mlm_cuda.numpy(), mlm_cpu.numpy())
    np.testing.assert_array_equal(nsp_cuda.numpy(), nsp_cpu.numpy())
    (mlm_cpu.sum() + nsp_cpu.sum()).backward()
    (mlm_cuda.sum() + nsp_cuda.sum()).backward()
    for (name, p), (_, q) in zip(cpu.named_parameters(), cuda.named_parameters()):
        np.testing.assert_array_equal(q.grad.numpy(), p.grad.numpy(), err_msg=name)


# --- no per-step host synchronisation -------------------------------------------------------------
def test_dropout_is_drawn_on_the_device_and_seeded_from_the_host_generator(strict_device):
    x = tl.ones(4000, device="cuda").requires_grad_()
    layer = Dropout(0.25, rng=np.random.default_rng(7))
    strict_device.reset()
    y = layer(x)
    assert strict_device.TRANSFERS == {"to_host": 0, "to_device": 0}  # drawn there, not copied up
    kept = y.numpy() != 0
    assert abs(kept.mean() - 0.75) < 0.03  # Bernoulli(1 - p): 4000 draws, 5 standard deviations
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.75)
    again = Dropout(0.25, rng=np.random.default_rng(7))(x)  # the same host seed, the same mask
    np.testing.assert_array_equal(again.numpy(), y.numpy())
    y.backward(tl.ones(4000, device="cuda"))
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())  # dL/dx = g * m / (1 - p)


def test_clipping_computes_the_norm_on_the_device(strict_device):
    rng = np.random.default_rng(8)
    grads = [rng.standard_normal(shape).astype(np.float32) for shape in ((3, 4), (5,), (2, 2))]
    on_cpu = [tl.zeros(*g.shape).requires_grad_() for g in grads]
    on_cuda = [tl.zeros(*g.shape, device="cuda").requires_grad_() for g in grads]
    for p, q, g in zip(on_cpu, on_cuda, grads):
        p.grad, q.grad = tl.tensor(g), tl.tensor(g).to("cuda")
    norm_cpu = optim.clip_grad_norm_(on_cpu, 1.0)
    strict_device.reset()
    norm_cuda = optim.clip_grad_norm_(on_cuda, 1.0)
    assert strict_device.TRANSFERS["to_host"] == 0, strict_device.EVENTS
    assert isinstance(norm_cpu, float) and norm_cuda.ndim == 0
    assert float(norm_cuda) == norm_cpu == pytest.approx(np.sqrt(sum((g**2).sum() for g in grads)))
    for p, q in zip(on_cpu, on_cuda):
        np.testing.assert_array_equal(q.grad.numpy(), p.grad.numpy())


def _tiny_model_and_task(kind: str, dropout: float):
    """A tiny model of ``kind`` on "cuda" and its training task (token ids on the host)."""
    ids = np.random.default_rng(1).integers(0, 11, 400)
    if kind == "gpt":
        model = GPT(dataclasses.replace(TINY_GPT, dropout=dropout), rng=np.random.default_rng(0))
        task = LanguageModelTask(ids[:300], ids[300:], batch_size=4, context_length=8)
    elif kind == "lstm":  # the carried state stays on the device from step to step
        model = LSTMLanguageModel(LSTMConfig(vocab_size=11, context_length=8, num_layers=2,
                                             d_model=8, hidden_size=8, dropout=dropout),
                                  rng=np.random.default_rng(0))
        task = StreamTask(ids[:300], ids[300:], batch_size=4, context_length=8)
    else:  # bert: masked LM + next-sentence prediction on a BPE vocabulary
        text = synthetic_play()
        tokenizer = BPETokenizer.train(text, 300, special_tokens=BERT_SPECIAL_TOKENS)
        config = BERTConfig(vocab_size=tokenizer.vocab_size, context_length=16, num_layers=2,
                            num_heads=2, d_model=8, d_ff=16, dropout=dropout)
        model = BERT(config, rng=np.random.default_rng(0))
        task = MaskedLMTask(tokenizer, text[:4000], text[4000:], batch_size=4, context_length=16)
    return model.to("cuda"), task


def _tiny_step(kind: str = "gpt", dropout: float = 0.0, grad_accum: int = 1):
    """One tinyllm.train.train_step on a tiny model on 'cuda' (after a first step, which
    allocates the optimizer's moments)."""
    model, task = _tiny_model_and_task(kind, dropout)
    optimizer = optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = optim.LRScheduler(optimizer, lambda step: 1e-3)  # a constant rate
    data_rng = np.random.default_rng(2)
    step = lambda: train_step(model, task, data_rng, optimizer, scheduler, 1.0,  # noqa: E731
                              grad_accum)
    step()
    return step


def _count_transfers(strict_device, step) -> list[str]:
    strict_device.reset()
    loss = step()
    assert isinstance(loss, float) and np.isfinite(loss)
    return [event for event in strict_device.EVENTS if event.startswith("to_host")]


@pytest.mark.parametrize("dropout", [0.0, 0.1])
@pytest.mark.parametrize("kind", ["gpt", "bert", "lstm"])
def test_a_training_step_waits_for_the_device_only_in_the_trainer(strict_device, kind, dropout):
    """Outside tinyllm/train.py (the loss for the log and the gradient norm, in one transfer),
    nothing in a training step copies from the device: not the embedding's id check, not the
    attention masks, not the loss, not the clipping, not dropout, not AdamW, not the LSTM's
    carried state."""
    events = _count_transfers(strict_device, _tiny_step(kind, dropout))
    assert events and all("tinyllm/train.py" in e for e in events), events


@pytest.mark.parametrize("kind, grad_accum", [("gpt", 1), ("gpt", 3), ("bert", 1), ("bert", 2),
                                              ("lstm", 1), ("lstm", 2)])
def test_a_training_step_makes_at_most_one_device_to_host_transfer(strict_device, kind,
                                                                   grad_accum):
    """The bound: one transfer per step, whatever the number k of micro-batches (the k losses add
    up on the device; their sum and the gradient norm come to the host together, as the logged
    loss and the finiteness check). It was 1 + k before (a .item() per micro-batch, a float() of
    the norm); 29 for a GPT step before issue 13."""
    events = _count_transfers(strict_device, _tiny_step(kind, 0.0, grad_accum))
    assert len(events) == 1, events


def test_the_one_transfer_still_stops_a_non_finite_step(strict_device, monkeypatch):
    """A nan loss, then an inf gradient norm, on the device: the step raises before the update,
    naming which was not finite, and the weights stay as they were."""
    from tinyllm.runs import NonFiniteError

    model, task = _tiny_model_and_task("gpt", 0.0)
    optimizer = optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = optim.LRScheduler(optimizer, lambda step: 1e-3)
    before = {name: p.numpy() for name, p in model.named_parameters()}
    original = LanguageModelTask.loss
    monkeypatch.setattr(LanguageModelTask, "loss",
                        lambda self, m, batch: original(self, m, batch) * float("nan"))
    with pytest.raises(NonFiniteError, match="^the training loss is nan$"):
        train_step(model, task, np.random.default_rng(0), optimizer, scheduler, 1.0, 2)
    monkeypatch.setattr(LanguageModelTask, "loss", original)
    monkeypatch.setattr(optim, "clip_grad_norm_",
                        lambda params, max_norm: strict_device.asarray(np.float32(np.inf)))
    with pytest.raises(NonFiniteError, match="^the gradient norm is inf$"):
        train_step(model, task, np.random.default_rng(0), optimizer, scheduler, 1.0, 1)
    assert optimizer.step_count == 0
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(p.numpy(), before[name], err_msg=name)


def test_optimizer_step_and_lm_loss_make_no_transfer(strict_device):
    _, cuda = gpt_pair()
    ids = np.random.default_rng(3).integers(0, 11, (2, 8))
    optimizer = optim.AdamW(cuda.parameters(), lr=1e-2)
    strict_device.reset()
    logits = cuda(ids)
    loss = lm_loss(logits, ids)
    loss.backward()
    optimizer.step()
    events = [e for e in strict_device.EVENTS if e.startswith("to_host")]
    assert [e for e in events if not e.startswith("to_host nn/attention.py")] == [], events
    assert to_numpy(loss.data).shape == ()

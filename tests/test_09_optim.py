"""Chapter 09, optimizers: SGD, Adam, AdamW, schedules, clipping, state dicts, accumulation.

Each optimizer is compared over several steps, with a new random gradient each step, with the
chapter's update formulas written out below in plain NumPy (eqs. 9.1-9.10); then the schedules
(9.11, 9.12), clipping (9.13), gradient accumulation (9.14), exact resume from a saved state,
parameter groups and every error message.
"""

import functools
import json
import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyllm as tl
from tinyllm import optim
from tinyllm.checkpoint import (
    CheckpointError,
    load_optimizer,
    load_safetensors,
    optimizer_state_from_arrays,
    optimizer_state_to_arrays,
    save_optimizer,
    save_safetensors,
)
from tinyllm.nn import Linear, Module, Parameter

pytestmark = pytest.mark.ch09

SHAPES = [(3, 4), (4,), (2, 3, 2), ()]


def make_params(shapes=SHAPES, seed=0, dtype=np.float64) -> list[Parameter]:
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(shape).astype(dtype)) for shape in shapes]


def gradient_sequence(shapes=SHAPES, steps=5, seed=1, dtype=np.float64) -> list[list[np.ndarray]]:
    """A new random gradient for every parameter at every step, with scales from 1e-3 to 10."""
    rng = np.random.default_rng(seed)
    return [[np.asarray(rng.standard_normal(s) * 10.0 ** rng.uniform(-3, 1), dtype=dtype)
             for s in shapes]
            for _ in range(steps)]


def run(optimizer, params, gradients) -> None:
    """Set each step's gradients by hand and call step(), like backward() would."""
    for step_grads in gradients:
        for p, g in zip(params, step_grads):
            p.grad = tl.Tensor(g.copy())
        optimizer.step()


# --------------------------------------------------------------------------------------------------
# The chapter's formulas, written out in NumPy (one parameter at a time, no in-place tricks)
# --------------------------------------------------------------------------------------------------


def sgd_reference(theta, gradients, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    b = np.zeros_like(theta)
    for g in gradients:
        g = g + weight_decay * theta  # eq. 9.4
        if momentum:
            b = momentum * b + g  # eq. 9.2
            g = g + momentum * b if nesterov else b  # eq. 9.3
        theta = theta - lr * g  # eq. 9.1
    return theta


def adam_reference(theta, gradients, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                   decoupled=False):
    beta1, beta2 = betas
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for t, g in enumerate(gradients, start=1):
        if decoupled:
            theta = theta - lr * weight_decay * theta  # eq. 9.10
        else:
            g = g + weight_decay * theta  # eq. 9.4
        m = beta1 * m + (1 - beta1) * g  # eq. 9.6
        v = beta2 * v + (1 - beta2) * g ** 2
        m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)  # eq. 9.8
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)  # eq. 9.9
    return theta


def assert_matches_reference(optimizer, params, gradients, reference):
    start = [p.data.copy() for p in params]
    run(optimizer, params, gradients)
    for i, p in enumerate(params):
        expected = reference(start[i], [step_grads[i] for step_grads in gradients])
        np.testing.assert_allclose(p.data, expected, rtol=1e-10, atol=1e-12)
        assert not np.allclose(p.data, start[i])  # the parameters did move


# --------------------------------------------------------------------------------------------------
# Updates against the formulas
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("momentum, nesterov, weight_decay", [
    (0.0, False, 0.0), (0.0, False, 0.1), (0.9, False, 0.0), (0.9, False, 0.05), (0.8, True, 0.0),
    (0.9, True, 0.1),
])
def test_sgd_matches_formula(momentum, nesterov, weight_decay):
    # eqs. 9.1-9.4: sgd_reference, plain, momentum, Nesterov, L2
    params, gradients = make_params(), gradient_sequence()
    optimizer = optim.SGD(params, lr=0.05, momentum=momentum, weight_decay=weight_decay,
                          nesterov=nesterov)
    reference = functools.partial(sgd_reference, lr=0.05, momentum=momentum,
                                  weight_decay=weight_decay, nesterov=nesterov)
    assert_matches_reference(optimizer, params, gradients, reference)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_matches_formula(weight_decay):
    # eqs. 9.6, 9.9: adam_reference's moments and update
    params, gradients = make_params(), gradient_sequence()
    optimizer = optim.Adam(params, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=weight_decay)
    reference = functools.partial(adam_reference, lr=0.01, betas=(0.8, 0.99), eps=1e-6,
                                  weight_decay=weight_decay)
    assert_matches_reference(optimizer, params, gradients, reference)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01, 0.5])
def test_adamw_matches_formula(weight_decay):
    params, gradients = make_params(), gradient_sequence()
    optimizer = optim.AdamW(params, lr=0.02, weight_decay=weight_decay)
    reference = functools.partial(adam_reference, lr=0.02, weight_decay=weight_decay,
                                  decoupled=True)
    assert_matches_reference(optimizer, params, gradients, reference)


@given(
    shape=st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple),
    lr=st.floats(1e-4, 0.5),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.5, 0.9999),
    weight_decay=st.floats(0.0, 1.0),
    decoupled=st.booleans(),
    steps=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_adam_and_adamw_match_formula_for_any_settings(shape, lr, beta1, beta2, weight_decay,
                                                       decoupled, steps, seed):
    params, gradients = make_params([shape], seed), gradient_sequence([shape], steps, seed + 1)
    kind = optim.AdamW if decoupled else optim.Adam
    optimizer = kind(params, lr=lr, betas=(beta1, beta2), weight_decay=weight_decay)
    start = params[0].data.copy()
    run(optimizer, params, gradients)
    expected = adam_reference(start, [g[0] for g in gradients], lr, (beta1, beta2), 1e-8,
                              weight_decay, decoupled)
    np.testing.assert_allclose(params[0].data, expected, rtol=1e-9, atol=1e-12)


@given(
    shape=st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple),
    momentum=st.floats(0.0, 0.99),
    nesterov=st.booleans(),
    weight_decay=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_sgd_matches_formula_for_any_settings(shape, momentum, nesterov, weight_decay, seed):
    nesterov = nesterov and momentum > 0
    params, gradients = make_params([shape], seed), gradient_sequence([shape], 4, seed + 1)
    optimizer = optim.SGD(params, lr=0.1, momentum=momentum, weight_decay=weight_decay,
                          nesterov=nesterov)
    start = params[0].data.copy()
    run(optimizer, params, gradients)
    expected = sgd_reference(start, [g[0] for g in gradients], 0.1, momentum, weight_decay,
                             nesterov)
    np.testing.assert_allclose(params[0].data, expected, rtol=1e-10, atol=1e-12)


def test_adam_first_step_has_size_lr_whatever_the_gradient_scale():
    """Bias correction (eq. 9.8) at t = 1: m_hat = g, v_hat = g^2, so the step is
    lr * g / (|g| + eps)."""
    gradient = np.array([1e-3, -0.5, 2.0, -300.0])
    p = Parameter(np.zeros(4))
    optimizer = optim.Adam([p], lr=0.01)
    p.grad = tl.Tensor(gradient.copy())
    optimizer.step()
    np.testing.assert_allclose(p.data, -0.01 * np.sign(gradient), rtol=1e-5)
    # without the correction the first step would be lr (1 - beta1) / sqrt(1 - beta2) ~ 3.16 lr
    assert abs(0.01 * 0.1 / math.sqrt(0.001) / 0.01 - 3.162) < 1e-3


def test_adamw_decay_differs_from_adam_l2():
    """With a zero loss gradient: AdamW shrinks theta by lr*lambda*theta (eq. 9.10), but Adam + L2
    feeds lambda*theta through the adaptive scaling and moves every weight by ~lr, whatever lambda
    is."""
    theta = np.array([3.0, -0.2, 1e-2])
    lr, weight_decay = 0.01, 0.1
    adam_param, adamw_param = Parameter(theta.copy()), Parameter(theta.copy())
    adam = optim.Adam([adam_param], lr=lr, weight_decay=weight_decay)
    adamw = optim.AdamW([adamw_param], lr=lr, weight_decay=weight_decay)
    for p, optimizer in ((adam_param, adam), (adamw_param, adamw)):
        p.grad = tl.Tensor(np.zeros(3))
        optimizer.step()
    np.testing.assert_allclose(adamw_param.data, theta * (1 - lr * weight_decay), rtol=1e-12)
    decay_gradient = weight_decay * theta  # m_hat = g, v_hat = g^2 at t = 1 (eq. 9.8)
    np.testing.assert_allclose(adam_param.data,
                               theta - lr * decay_gradient / (np.abs(decay_gradient) + 1e-8),
                               rtol=1e-12)
    # ~lr for every weight
    np.testing.assert_allclose(np.abs(adam_param.data - theta), lr, rtol=1e-4)
    assert np.all(np.abs(adam_param.data - adamw_param.data) > 5e-3)

    # and with a gradient, over several steps, the two trajectories differ
    params_l2, params_w = make_params(seed=3), make_params(seed=3)
    gradients = gradient_sequence(seed=4)
    run(optim.Adam(params_l2, lr=lr, weight_decay=weight_decay), params_l2, gradients)
    run(optim.AdamW(params_w, lr=lr, weight_decay=weight_decay), params_w, gradients)
    assert max(np.abs(a.data - b.data).max() for a, b in zip(params_l2, params_w)) > 1e-3


def test_adamw_without_decay_is_adam():
    params_a, params_w = make_params(), make_params()
    gradients = gradient_sequence()
    run(optim.Adam(params_a, lr=0.01), params_a, gradients)
    run(optim.AdamW(params_w, lr=0.01, weight_decay=0.0), params_w, gradients)
    for a, w in zip(params_a, params_w):
        np.testing.assert_array_equal(a.data, w.data)


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1, nesterov=True),
    lambda ps: optim.Adam(ps, weight_decay=0.1),
    lambda ps: optim.AdamW(ps),
])
def test_float32_stays_float32_and_updates_in_place(make):
    params = make_params(dtype=np.float32)
    arrays = [p.data for p in params]
    optimizer = make(params)
    run(optimizer, params, gradient_sequence(dtype=np.float32, steps=2))
    for p, array in zip(params, arrays):
        assert p.data is array and p.data.dtype == np.float32
    for entry in optimizer.state.values():
        assert all(value.dtype == np.float32 for value in entry.values() if hasattr(value, "dtype"))


def test_optimizer_leaves_the_gradients_alone():
    params, gradients = make_params(), gradient_sequence(steps=1)
    optimizer = optim.Adam(params, weight_decay=0.1)
    run(optimizer, params, gradients)
    for p, g in zip(params, gradients[0]):
        np.testing.assert_array_equal(p.grad.data, g)


def test_optimizer_on_device_matches_cpu(device):
    """The same update on every device (CuPy on "cuda"), within float32 rounding."""
    results = []
    for where in ("cpu", device):
        params = make_params(dtype=np.float32)
        model_params = [Parameter(tl.tensor(p.data, device=where).data) for p in params]
        optimizer = optim.AdamW(model_params, lr=0.01, weight_decay=0.1)
        for step_grads in gradient_sequence(dtype=np.float32, steps=3):
            for p, g in zip(model_params, step_grads):
                p.grad = tl.tensor(g, device=where)
            optimizer.step()
        results.append([p.numpy() for p in model_params])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# Parameter groups, skipped parameters, zero_grad
# --------------------------------------------------------------------------------------------------


def test_param_groups_with_their_own_learning_rates():
    params = make_params()
    optimizer = optim.SGD([{"params": params[:2], "lr": 0.5}, {"params": params[2:]}], lr=0.01)
    assert [group["lr"] for group in optimizer.param_groups] == [0.5, 0.01]
    start = [p.data.copy() for p in params]
    gradients = gradient_sequence(steps=1)
    run(optimizer, params, gradients)
    for i, p in enumerate(params):
        np.testing.assert_allclose(p.data, start[i] - (0.5 if i < 2 else 0.01) * gradients[0][i],
                                   rtol=1e-12)


class TinyNet(Module):
    def __init__(self):
        rng = np.random.default_rng(0)
        self.embed = Parameter(rng.standard_normal((5, 3)))  # (V, C)
        self.fc = Linear(3, 4, rng=rng, dtype=np.float64)
        self.gain = Parameter(np.ones(4))  # a LayerNorm-like gain: 1-D, not decayed


def test_param_groups_for_weight_decay_leaves_vectors_alone():
    model = TinyNet()
    groups = optim.param_groups_for_weight_decay(model, 0.1)
    assert [[p.ndim for p in g["params"]] for g in groups] == [[2, 2], [1, 1]]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in model.parameters()}
    optimizer = optim.AdamW(groups, lr=0.1)
    before = {name: p.data.copy() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = tl.Tensor(np.zeros(p.shape))
    optimizer.step()
    after = dict(model.named_parameters())
    for name in ("embed", "fc.weight"):
        np.testing.assert_allclose(after[name].data, before[name] * (1 - 0.1 * 0.1), rtol=1e-12)
    for name in ("fc.bias", "gain"):
        np.testing.assert_array_equal(after[name].data, before[name])
    # a plain list of parameters works too
    assert len(optim.param_groups_for_weight_decay(model.parameters(), 0.1)) == 2


def test_parameter_without_gradient_is_skipped():
    """A parameter with grad None keeps its value, gets no state, and its own Adam step count (t) is
    not advanced: bias correction uses the number of updates it actually received, as in PyTorch."""
    used, unused = make_params([(3,), (2,)])
    start = unused.data.copy()
    optimizer = optim.Adam([used, unused], lr=0.1)
    gradients = gradient_sequence([(3,), (2,)], steps=3)
    used.grad = tl.Tensor(gradients[0][0].copy())
    optimizer.step()
    np.testing.assert_array_equal(unused.data, start)
    assert set(optimizer.state) == {0}
    unused_start = unused.data.copy()
    for step_grads in gradients[1:]:
        used.grad, unused.grad = tl.Tensor(step_grads[0].copy()), tl.Tensor(step_grads[1].copy())
        optimizer.step()
    assert optimizer.state[0]["step"] == 3 and optimizer.state[1]["step"] == 2
    assert optimizer.step_count == 3
    expected = adam_reference(unused_start, [g[1] for g in gradients[1:]], lr=0.1)
    np.testing.assert_allclose(unused.data, expected, rtol=1e-12)


def test_zero_grad_sets_gradients_to_none():
    model = TinyNet()
    x = tl.tensor(np.ones((2, 3)))
    (model.fc(x) * model.gain).sum().backward()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    assert model.fc.weight.grad is not None
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------------------------------
# Gradient clipping (eq. 9.13)
# --------------------------------------------------------------------------------------------------


def test_clip_grad_norm_scales_to_max_norm_and_returns_the_norm_before():
    params = make_params()
    gradients = gradient_sequence(steps=1, seed=5)[0]
    gradients = [g * 100 for g in gradients]
    for p, g in zip(params, gradients):
        p.grad = tl.Tensor(g.copy())
    extra = Parameter(np.ones(3))  # no gradient: ignored
    expected_norm = math.sqrt(sum(float((g ** 2).sum()) for g in gradients))
    norm = optim.clip_grad_norm_(params + [extra], max_norm=1.5)
    assert norm == pytest.approx(expected_norm, rel=1e-12)
    after = math.sqrt(sum(float((p.grad.data ** 2).sum()) for p in params))
    assert after == pytest.approx(1.5, rel=1e-6)
    for p, g in zip(params, gradients):  # same direction
        np.testing.assert_allclose(p.grad.data, g * 1.5 / (expected_norm + 1e-6), rtol=1e-12)
    assert extra.grad is None


def test_clip_grad_norm_below_the_threshold_leaves_gradients_untouched():
    p, q = make_params([(4,), (2, 2)])
    p.grad, q.grad = tl.Tensor(np.array([0.1, -0.2, 0.3, 0.0])), tl.Tensor(np.full((2, 2), 0.1))
    before = [p.grad.data.copy(), q.grad.data.copy()]
    norm = optim.clip_grad_norm_([p, q], max_norm=1.0)
    assert norm == pytest.approx(math.sqrt(0.14 + 0.04), rel=1e-12)
    np.testing.assert_array_equal(p.grad.data, before[0])
    np.testing.assert_array_equal(q.grad.data, before[1])
    # one tensor works
    assert optim.clip_grad_norm_(p, max_norm=1.0) == pytest.approx(math.sqrt(0.14))
    with pytest.raises(ValueError, match="max_norm must be > 0, got -1"):
        optim.clip_grad_norm_([p], max_norm=-1)


def test_clip_grad_norm_float32():
    p = Parameter(np.zeros(1000, dtype=np.float32))
    p.grad = tl.Tensor(np.full(1000, 0.5, dtype=np.float32))
    assert optim.clip_grad_norm_([p], 1.0) == pytest.approx(0.5 * math.sqrt(1000), rel=1e-6)
    assert p.grad.dtype == np.float32
    clipped_norm = float(np.sqrt((p.grad.data.astype(np.float64) ** 2).sum()))
    assert clipped_norm == pytest.approx(1.0, rel=1e-5)


# --------------------------------------------------------------------------------------------------
# Schedules (eqs. 9.11, 9.12)
# --------------------------------------------------------------------------------------------------


def test_warmup_cosine_values():
    schedule = functools.partial(optim.warmup_cosine, max_lr=1.0, min_lr=0.1, warmup_steps=4,
                                 total_steps=14)
    assert [schedule(s) for s in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8], abs=1e-15)
    assert schedule(4) == 1.0  # the peak, at step == warmup_steps
    assert schedule(9) == pytest.approx(0.1 + 0.5 * 0.9, abs=1e-15)  # halfway down the cosine
    assert schedule(14) == pytest.approx(0.1, abs=1e-15)
    assert schedule(1000) == pytest.approx(0.1, abs=1e-15)
    lrs = np.array([schedule(s) for s in range(30)])
    assert np.all(np.diff(lrs[:5]) > 0)  # warm-up rises
    assert np.all(np.diff(lrs[4:15]) < 0)  # the cosine decays strictly to the end
    assert np.all(np.diff(lrs[14:]) == 0)  # then stays at min_lr
    assert lrs.max() == 1.0 and lrs.min() == pytest.approx(0.1)


def test_warmup_cosine_without_warmup_and_errors():
    assert optim.warmup_cosine(0, 3.0, 1.0, warmup_steps=0, total_steps=10) == 3.0
    assert optim.warmup_cosine(5, 3.0, 1.0, warmup_steps=0, total_steps=10) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="step and warmup_steps must be >= 0, got step=-1"):
        optim.warmup_cosine(-1, 1.0, 0.0, 2, 10)


def test_inverse_sqrt_schedule():
    # eq. 9.12: warm-up to the peak, then d^-1/2 (s + 1)^-1/2
    d_model, warmup = 512, 4000
    schedule = functools.partial(optim.inverse_sqrt, d_model=d_model, warmup_steps=warmup)
    peak = d_model ** -0.5 * warmup ** -0.5
    # update number `warmup` (1-based)
    assert schedule(warmup - 1) == pytest.approx(peak, rel=1e-12)
    steps = np.arange(0, 3 * warmup, 97)
    lrs = np.array([schedule(int(s)) for s in steps])
    assert lrs.max() <= peak * (1 + 1e-12)
    np.testing.assert_allclose(lrs[steps < warmup], peak * (steps[steps < warmup] + 1) / warmup,
                               rtol=1e-12)
    late = steps >= warmup
    np.testing.assert_allclose(lrs[late], d_model ** -0.5 / np.sqrt(steps[late] + 1), rtol=1e-12)
    # 1/sqrt: 4x the steps, half
    assert schedule(4 * warmup - 1) == pytest.approx(peak / 2, rel=1e-12)
    with pytest.raises(ValueError, match="d_model and warmup_steps must be > 0, got 512 and 0"):
        optim.inverse_sqrt(0, 512, 0)
    with pytest.raises(ValueError, match="step must be >= 0, got -3"):
        optim.inverse_sqrt(-3, 512, 10)


def test_set_lr_and_scheduler():
    params = make_params()
    optimizer = optim.AdamW([{"params": params[:1]}, {"params": params[1:], "lr": 0.5}], lr=0.1)
    optim.set_lr(optimizer, 0.25)
    assert [g["lr"] for g in optimizer.param_groups] == [0.25, 0.25]
    schedule = functools.partial(optim.warmup_cosine, max_lr=1.0, min_lr=0.0, warmup_steps=2,
                                 total_steps=6)
    scheduler = optim.LRScheduler(optimizer, schedule)
    assert [scheduler.step() for _ in range(3)] == [schedule(0), schedule(1), schedule(2)]
    assert optimizer.param_groups[1]["lr"] == schedule(2)
    resumed = optim.LRScheduler(optimizer, schedule)
    resumed.load_state_dict(json.loads(json.dumps(scheduler.state_dict())))
    assert resumed.step() == scheduler.step() == schedule(3)
    with pytest.raises(ValueError, match="invalid learning rate -1"):
        optim.set_lr(optimizer, -1)


# --------------------------------------------------------------------------------------------------
# Exact resume from a saved optimizer state
# --------------------------------------------------------------------------------------------------

OPTIMIZERS = {
    "sgd": lambda groups: optim.SGD(groups, lr=0.05, momentum=0.9, weight_decay=0.01,
                                    nesterov=True),
    "adam": lambda groups: optim.Adam(groups, lr=0.01, weight_decay=0.01),
    "adamw": lambda groups: optim.AdamW(groups, lr=0.01, weight_decay=0.1),
}


def two_groups(params):
    return [{"params": params[:2]}, {"params": params[2:], "lr": 0.003, "weight_decay": 0.0}]


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
@pytest.mark.parametrize("through", ["memory", "file"])
def test_state_dict_round_trip_resumes_exactly(kind, through, tmp_path):
    """3 steps, save, 3 more; versus: restore the saved parameters and optimizer state into fresh
    objects and run the same 3 steps. The parameters must be bit-for-bit identical (float32, as in
    training)."""
    gradients = gradient_sequence(SHAPES, steps=6, dtype=np.float32)  # a 0-d parameter included
    params = make_params(SHAPES, dtype=np.float32)
    optimizer = OPTIMIZERS[kind](two_groups(params))
    run(optimizer, params, gradients[:3])
    saved_params = [p.data.copy() for p in params]
    if through == "memory":
        state = optimizer.state_dict()
    else:
        save_optimizer(tmp_path / "optimizer.safetensors", optimizer, metadata={"note": "step 3"})
    run(optimizer, params, gradients[3:])

    fresh = [Parameter(array.copy()) for array in saved_params]
    # settings come from the state
    resumed = OPTIMIZERS[kind]([{"params": fresh[:2]}, {"params": fresh[2:]}])
    if through == "memory":
        resumed.load_state_dict(state)
    else:
        assert load_optimizer(tmp_path / "optimizer.safetensors", resumed) is resumed
        assert load_safetensors(tmp_path / "optimizer.safetensors")[1]["note"] == "step 3"
    assert resumed.step_count == 3 and resumed.param_groups[1]["lr"] == 0.003
    run(resumed, fresh, gradients[3:])
    for p, q in zip(params, fresh):
        np.testing.assert_array_equal(p.data, q.data)
    assert resumed.step_count == optimizer.step_count == 6


def test_state_dict_is_a_copy_of_plain_arrays_and_numbers():
    params = make_params()
    optimizer = optim.AdamW(params, lr=0.01)
    run(optimizer, params, gradient_sequence(steps=2))
    state = optimizer.state_dict()
    assert state["type"] == "AdamW" and state["step_count"] == 2
    assert state["param_groups"] == [{"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8,
                                      "weight_decay": 0.01, "params": [0, 1, 2, 3]}]
    assert set(state["state"]) == {0, 1, 2, 3}
    assert set(state["state"][0]) == {"step", "m", "v"} and state["state"][0]["step"] == 2
    assert all(isinstance(state["state"][i]["m"], np.ndarray) for i in range(4))
    state["state"][0]["m"][...] = 123.0  # changing the copy leaves the optimizer alone
    assert not np.any(optimizer.state[0]["m"] == 123.0)
    # the trainer's layout: arrays for safetensors, the rest JSON
    arrays, numbers = optimizer_state_to_arrays(state)
    assert sorted(arrays) == sorted(f"optimizer.{i}.{name}"
                                    for i in range(4) for name in ("m", "v"))
    assert json.loads(json.dumps(numbers))["state"]["1"] == {"step": 2}


def test_model_and_optimizer_in_one_file_resume_exactly(tmp_path):
    """A trainer's checkpoint: model weights and optimizer moments in one safetensors file, numbers
    in JSON."""
    x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)

    def train(model, optimizer, steps):
        for _ in range(steps):
            loss = (model(tl.tensor(x)) ** 2).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    model = Linear(3, 2, rng=np.random.default_rng(1))
    optimizer = optim.AdamW(optim.param_groups_for_weight_decay(model, 0.1), lr=0.01)
    train(model, optimizer, 3)
    arrays, numbers = optimizer_state_to_arrays(optimizer.state_dict())
    save_safetensors(tmp_path / "ckpt.safetensors", {**model.state_dict(), **arrays},
                     {"optimizer": json.dumps(numbers)})
    train(model, optimizer, 3)

    loaded, metadata = load_safetensors(tmp_path / "ckpt.safetensors")
    fresh = Linear(3, 2, rng=np.random.default_rng(99))
    fresh.load_state_dict({k: v for k, v in loaded.items() if not k.startswith("optimizer.")})
    resumed = optim.AdamW(optim.param_groups_for_weight_decay(fresh, 0.1), lr=0.01)
    resumed.load_state_dict(optimizer_state_from_arrays(loaded, json.loads(metadata["optimizer"])))
    train(fresh, resumed, 3)
    np.testing.assert_array_equal(fresh.weight.data, model.weight.data)
    np.testing.assert_array_equal(fresh.bias.data, model.bias.data)


def test_load_state_dict_errors(tmp_path):
    params = make_params()
    adam = optim.Adam(params)
    run(adam, params, gradient_sequence(steps=1))
    state = adam.state_dict()
    with pytest.raises(ValueError, match="this optimizer state was saved by Adam, not by AdamW"):
        optim.AdamW(make_params()).load_state_dict(state)
    with pytest.raises(ValueError, match=re.escape("groups of sizes [4], this optimizer [2, 2]")):
        params2 = make_params()
        optim.Adam([{"params": params2[:2]}, {"params": params2[2:]}]).load_state_dict(state)
    with pytest.raises(ValueError, match=re.escape("optimizer state 'm' of parameter 0 has shape "
                                                   "(3, 4), the parameter has (4, 3)")):
        optim.Adam(make_params([(4, 3), (4,), (2, 3, 2), ()])).load_state_dict(state)
    save_safetensors(tmp_path / "weights.safetensors", {"w": np.zeros(2)})
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        load_optimizer(tmp_path / "weights.safetensors", optim.Adam(make_params()))


# --------------------------------------------------------------------------------------------------
# Gradient accumulation (eq. 9.14)
# --------------------------------------------------------------------------------------------------


def test_gradient_accumulation_equals_one_large_batch():
    # eq. 9.14: k micro-batch gradients of L_j / k add up to the large batch's
    """k micro-batches of size b, each loss scaled by 1/k, backward k times (the engine adds into
    .grad), one step: the same update as one batch of size k*b, because the mean over k*b is the
    mean of k means."""
    rng = np.random.default_rng(0)
    k, b = 4, 3
    x, y = rng.standard_normal((k * b, 5)), rng.standard_normal((k * b, 2))  # (B, C), (B, 2)

    def mse(model, xs, ys):
        return ((model(tl.tensor(xs)) - tl.tensor(ys)) ** 2).mean()

    big, small = Linear(5, 2, rng=np.random.default_rng(1), dtype=np.float64), \
        Linear(5, 2, rng=np.random.default_rng(1), dtype=np.float64)
    big_opt = optim.AdamW(big.parameters(), lr=0.1)
    small_opt = optim.AdamW(small.parameters(), lr=0.1)
    for _ in range(3):
        mse(big, x, y).backward()
        for j in range(k):
            (mse(small, x[j * b:(j + 1) * b], y[j * b:(j + 1) * b]) / k).backward()
        for p, q in zip(big.parameters(), small.parameters()):
            np.testing.assert_allclose(q.grad.data, p.grad.data, rtol=1e-12, atol=1e-14)
        big_opt.step(), small_opt.step()
        big_opt.zero_grad(), small_opt.zero_grad()
    for p, q in zip(big.parameters(), small.parameters()):
        np.testing.assert_allclose(q.data, p.data, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------------------------------
# Convergence on the chapter's test functions
# --------------------------------------------------------------------------------------------------


def quadratic(p):
    """0.5 (x^2 + 25 y^2): condition number 25, minimum 0 at the origin."""
    return 0.5 * (p[0] ** 2 + 25 * p[1] ** 2)


def rosenbrock(p):
    """(1 - x)^2 + 100 (y - x^2)^2: a curved valley, minimum 0 at (1, 1)."""
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] * p[0]) ** 2


@pytest.mark.parametrize("function, start, minimum, make", [
    (quadratic, [2.0, 1.0], [0.0, 0.0], lambda ps: optim.SGD(ps, lr=0.03)),
    (quadratic, [2.0, 1.0], [0.0, 0.0], lambda ps: optim.SGD(ps, lr=0.01, momentum=0.9)),
    (quadratic, [2.0, 1.0], [0.0, 0.0], lambda ps: optim.Adam(ps, lr=0.05)),
    (quadratic, [2.0, 1.0], [0.0, 0.0], lambda ps: optim.AdamW(ps, lr=0.05, weight_decay=0.1)),
    (rosenbrock, [-1.5, 2.0], [1.0, 1.0], lambda ps: optim.SGD(ps, lr=1e-3, momentum=0.9)),
    (rosenbrock, [-1.5, 2.0], [1.0, 1.0],
     lambda ps: optim.SGD(ps, lr=1e-3, momentum=0.9, nesterov=True)),
    (rosenbrock, [-1.5, 2.0], [1.0, 1.0], lambda ps: optim.Adam(ps, lr=0.02)),
    (rosenbrock, [-1.5, 2.0], [1.0, 1.0], lambda ps: optim.AdamW(ps, lr=0.02, weight_decay=0.0)),
])
def test_optimizers_converge(function, start, minimum, make):
    p = Parameter(np.array(start))
    optimizer = make([p])
    for _ in range(3000):
        function(p).backward()
        optimizer.step()
        optimizer.zero_grad()
    np.testing.assert_allclose(p.data, minimum, atol=1e-3)


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("build, error, message", [
    (lambda ps: optim.SGD(ps, lr=-0.1), ValueError, "invalid learning rate -0.1: it must be >= 0"),
    (lambda ps: optim.Adam(ps, lr=float("nan")), ValueError, "invalid learning rate nan"),
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=-0.5), ValueError, "invalid momentum -0.5"),
    (lambda ps: optim.SGD(ps, lr=0.1, nesterov=True), ValueError,
     "Nesterov momentum needs momentum > 0"),
    (lambda ps: optim.SGD(ps, lr=0.1, weight_decay=-1), ValueError, "invalid weight_decay -1"),
    (lambda ps: optim.Adam(ps, betas=(0.9, 1.0)), ValueError,
     re.escape("invalid betas (0.9, 1.0): need two")),
    (lambda ps: optim.Adam(ps, betas=(-0.1, 0.9)), ValueError,
     re.escape("invalid betas (-0.1, 0.9)")),
    (lambda ps: optim.AdamW(ps, betas=(0.9, 0.99, 0.9)), ValueError, "invalid betas"),
    (lambda ps: optim.AdamW(ps, eps=-1e-8), ValueError, "invalid eps -1e-08"),
    (lambda ps: optim.Adam([{"params": ps[:1], "lr": -1.0}, {"params": ps[1:]}]), ValueError,
     "invalid learning rate -1.0"),
    (lambda ps: optim.SGD([], lr=0.1), ValueError, "empty parameter list: pass model.parameters()"),
    (lambda ps: optim.Adam([{"params": []}]), ValueError, "Adam got an empty parameter list"),
    (lambda ps: optim.SGD(ps[0], lr=0.1), TypeError,
     re.escape("got one Tensor: wrap it in a list, [p]")),
    (lambda ps: optim.SGD(TinyNet(), lr=0.1), TypeError,
     re.escape("got a Module: pass model.parameters()")),
    (lambda ps: optim.SGD([ps[0], {"params": ps[1:]}], lr=0.1), TypeError,
     "mixes Parameters and group dicts"),
    (lambda ps: optim.SGD([{"lr": 0.1}], lr=0.1), ValueError,
     "a parameter group needs a 'params' entry"),
    (lambda ps: optim.SGD([ps[0], ps[0]], lr=0.1), ValueError, "a parameter appears twice"),
    (lambda ps: optim.SGD([np.zeros(3)], lr=0.1), TypeError,
     "an optimizer updates Tensors .* got a ndarray"),
    (lambda ps: optim.SGD([ps[0] * 2], lr=0.1), ValueError,
     "cannot optimize a tensor made by an op"),
])
def test_optimizer_errors(build, error, message):
    with pytest.raises(error, match=message):
        build(make_params())

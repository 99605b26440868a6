"""Chapter 16, mixed precision: float16 and bfloat16 rounding, the loss scaler, the mixed step.

bfloat16 rounding is checked against bit patterns worked out by hand, against a slow reference
written here (pick the nearer of the two bfloat16 neighbours, ties to the even one) and against
``ml_dtypes.bfloat16`` where that package is installed; the rounding error bounds of eq. 16.1;
the loss scaler's state machine (eq. 16.4); that an overflowing float16 step changes nothing;
and that a tiny GPT trained in float16 or bfloat16 stays close to the float32 run.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyllm import optim
from tinyllm.compress import (
    LossScaler,
    MixedPrecision,
    bfloat16_bits,
    bfloat16_to_float32,
    mixed_precision_step,
    round_to_bfloat16,
)
from tinyllm.compress.precision import UNIT_ROUNDOFF
from tinyllm.models import GPT, GPTConfig
from tinyllm.nn import Parameter
from tinyllm.objectives import LanguageModelTask
from tinyllm.tensor import Tensor

pytestmark = pytest.mark.ch16


def from_bits(pattern: int) -> np.float32:
    return np.array([pattern], dtype=np.uint32).view(np.float32)[0]


# --------------------------------------------------------------------------------------------------
# bfloat16 rounding
# --------------------------------------------------------------------------------------------------

HAND_WORKED = [  # float32 bit pattern -> bfloat16 bit pattern, worked out by hand
    (0x3F800000, 0x3F80),  # 1.0 is exact
    (0x3F807FFF, 0x3F80),  # just below half an ulp: down
    (0x3F808000, 0x3F80),  # 1 + 2^-8, a tie: to even (0x3F80 is even)
    (0x3F808001, 0x3F81),  # just above the tie: up
    (0x3F818000, 0x3F82),  # a tie whose lower neighbour 0x3F81 is odd: up to even 0x3F82
    (0xBF808000, 0xBF80),  # the same tie, negative: magnitude to even
    (0x3FFF8000, 0x4000),  # a carry out of the significand bumps the exponent: 2.0
    (0x7F7FFFFF, 0x7F80),  # the largest float32 rounds to inf
    (0x7F800000, 0x7F80),  # inf
    (0xFF800000, 0xFF80),  # -inf
    (0x00000001, 0x0000),  # the smallest subnormal rounds to +0
    (0x00018000, 0x0002),  # a subnormal tie, odd lower neighbour: up
    (0x80000000, 0x8000),  # -0 keeps its sign
]


@pytest.mark.parametrize("pattern, expected", HAND_WORKED)
def test_bfloat16_bits_of_hand_worked_patterns(pattern, expected):
    # eq. 16.3: high half, ties to even
    assert int(bfloat16_bits(np.array([from_bits(pattern)]))[0]) == expected


@pytest.mark.parametrize("pattern", [0x7FC00000, 0x7F800001, 0xFFFFFFFF, 0x7FFFFFFF])
def test_nan_stays_nan_and_keeps_its_sign(pattern):
    x = np.array([from_bits(pattern)])
    bits = int(bfloat16_bits(x)[0])
    assert np.isnan(round_to_bfloat16(x)[0])
    assert bits >> 15 == pattern >> 31  # the sign bit
    assert bits & 0x0040  # a quiet nan


def slow_bfloat16(x: np.float32) -> np.float32:
    """The nearer of the two bfloat16 values around x (ties: the even one), in exact float64."""
    bits = int(np.array([x], dtype=np.float32).view(np.uint32)[0])
    low = bits & 0xFFFF0000  # truncation toward zero: the neighbour of smaller magnitude
    high = low + 0x10000  # the next bfloat16 away from zero (may be inf)
    lo, hi = float(from_bits(low)), float(from_bits(high))
    distance_lo, distance_hi = abs(float(x) - lo), abs(hi - float(x))
    if distance_lo < distance_hi or (distance_lo == distance_hi and not (low >> 16) & 1):
        return from_bits(low)
    return from_bits(high)


@given(st.integers(0, 2 ** 32 - 1))
def test_bfloat16_matches_the_slow_reference(pattern):
    # eq. 16.3
    x = from_bits(pattern)
    if np.isnan(x):
        return
    fast = round_to_bfloat16(np.array([x]))[0]
    assert fast.view(np.uint32) == slow_bfloat16(x).view(np.uint32)


def test_bfloat16_matches_ml_dtypes_if_installed():
    ml_dtypes = pytest.importorskip("ml_dtypes")  # not a dependency; an oracle where present
    rng = np.random.default_rng(0)
    patterns = rng.integers(0, 2 ** 32, 100_000, dtype=np.uint64).astype(np.uint32)
    x = patterns.view(np.float32)
    x = x[~np.isnan(x)]
    expected = x.astype(ml_dtypes.bfloat16).view(np.uint16)
    np.testing.assert_array_equal(bfloat16_bits(x), expected)


def test_bfloat16_bits_round_trip_and_low_half_is_zero():
    x = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    rounded = round_to_bfloat16(x)
    assert rounded.dtype == np.float32
    assert not (rounded.view(np.uint32) & 0xFFFF).any()
    np.testing.assert_array_equal(bfloat16_to_float32(bfloat16_bits(rounded)), rounded)
    np.testing.assert_array_equal(round_to_bfloat16(rounded), rounded)  # idempotent


def normal_floats(smallest: float, largest: float):
    """float32 values whose magnitude is in [smallest, largest], either sign."""
    return st.floats(smallest, largest, width=32) | st.floats(-largest, -smallest, width=32)


normal_fp16 = normal_floats(2.0 ** -14, 65504.0)
normal_bf16 = normal_floats(2.0 ** -126, 2.0 ** 127)


@given(normal_fp16)
def test_float16_relative_error_is_at_most_2_to_the_minus_11(x):
    rounded = float(np.float16(np.float32(x)))
    assert abs(rounded - x) <= UNIT_ROUNDOFF["fp16"] * abs(x)  # eq. 16.1, u = 2^-11


@given(normal_bf16)
def test_bfloat16_relative_error_is_at_most_2_to_the_minus_8(x):
    rounded = float(round_to_bfloat16(np.array([x], dtype=np.float32))[0])
    assert abs(rounded - x) <= UNIT_ROUNDOFF["bf16"] * abs(x)  # eq. 16.1, u = 2^-8


def test_the_error_bounds_are_reached_at_a_tie():
    tie16 = np.float32(1 + 2.0 ** -11)  # halfway between 1 and 1 + 2^-10
    assert float(np.float16(tie16)) == 1.0
    tie_bf = np.array([1 + 2.0 ** -8], dtype=np.float32)  # halfway between 1 and 1 + 2^-7
    assert round_to_bfloat16(tie_bf)[0] == 1.0
    with np.errstate(over="ignore"):
        assert np.float16(70000.0) == np.inf  # beyond float16's range; bfloat16 has float32's
    assert round_to_bfloat16(np.array([7e4], np.float32))[0] == 70144.0


# --------------------------------------------------------------------------------------------------
# The loss scaler (eq. 16.4)
# --------------------------------------------------------------------------------------------------


def params_with_grads(*grads):
    params = []
    for grad in grads:
        p = Parameter(np.zeros(len(grad), dtype=np.float32))
        p.grad = Tensor(np.asarray(grad, dtype=np.float32))
        params.append(p)
    return params


def test_scaler_grows_after_n_clean_steps():
    # eq. 16.4: S doubles after N clean steps
    scaler = LossScaler(init_scale=2.0 ** 16, growth_interval=3)
    scales = []
    for _ in range(7):
        assert scaler.unscale_and_check(params_with_grads([1.0, 2.0]))
        scaler.update()
        scales.append(scaler.loss_scale)
    assert scales == [2.0 ** 16, 2.0 ** 16, 2.0 ** 17, 2.0 ** 17, 2.0 ** 17, 2.0 ** 18, 2.0 ** 18]
    assert scaler.skipped_steps == 0


def test_scaler_unscales_in_place_and_halves_and_skips_on_overflow():
    # eqs. 16.2, 16.4: g = (1/S) d(SL)/dtheta; a non-finite step is skipped and S halved
    scaler = LossScaler(init_scale=8.0, growth_interval=2)
    params = params_with_grads([8.0, -16.0], [4.0])
    assert scaler.unscale_and_check(params)
    np.testing.assert_array_equal(params[0].grad.data, [1.0, -2.0])  # g / S
    np.testing.assert_array_equal(params[1].grad.data, [0.5])
    scaler.update()  # one clean step
    for bad in (np.inf, -np.inf, np.nan):
        assert not scaler.unscale_and_check(params_with_grads([1.0], [bad]))
        scaler.update()
    assert scaler.loss_scale == 1.0  # 8 -> 4 -> 2 -> 1
    assert scaler.clean_steps == 0 and scaler.skipped_steps == 3
    assert scaler.unscale_and_check(params_with_grads([1.0]))
    scaler.update()
    assert scaler.unscale_and_check(params_with_grads([1.0]))
    scaler.update()
    assert scaler.loss_scale == 2.0  # two clean steps after the overflow: doubled


def test_scaler_scale_multiplies_the_loss_and_update_needs_a_check():
    scaler = LossScaler(init_scale=4.0)
    assert scaler.scale(Tensor(np.float32(1.5))).item() == 6.0
    with pytest.raises(RuntimeError, match="unscale_and_check"):
        scaler.update()
    with pytest.raises(ValueError, match="growth_interval"):
        LossScaler(growth_interval=0)


def test_scaler_state_dict_round_trip_continues_identically():
    events = [True, True, False, True, True, True, False, True]  # True: clean
    first = LossScaler(init_scale=64.0, growth_interval=2)
    for clean in events[:5]:
        first.unscale_and_check(params_with_grads([1.0 if clean else np.inf]))
        first.update()
    second = LossScaler()
    second.load_state_dict(first.state_dict())
    assert second.state_dict() == first.state_dict()
    for clean in events[5:]:
        for scaler in (first, second):
            scaler.unscale_and_check(params_with_grads([1.0 if clean else np.inf]))
            scaler.update()
        assert second.state_dict() == first.state_dict()
    with pytest.raises(KeyError, match="lacks"):
        LossScaler().load_state_dict({"loss_scale": 1.0})


def test_a_disabled_scaler_keeps_scale_one_but_still_refuses_non_finite_gradients():
    scaler = LossScaler(enabled=False, growth_interval=1)
    for _ in range(3):
        assert scaler.unscale_and_check(params_with_grads([3.0]))
        scaler.update()
    assert scaler.loss_scale == 1.0
    assert not scaler.unscale_and_check(params_with_grads([np.nan]))


# --------------------------------------------------------------------------------------------------
# Master weights and the mixed-precision step
# --------------------------------------------------------------------------------------------------


def test_float32_master_weights_keep_updates_float16_would_round_away():
    assert np.float16(1.0) - np.float16(1e-4) == np.float16(1.0)  # below half an ulp of 1
    p = Parameter(np.ones(1, dtype=np.float32))
    sgd = optim.SGD([p], lr=1e-4)
    for _ in range(10):
        p.grad = Tensor(np.ones(1, dtype=np.float32))
        sgd.step()
    np.testing.assert_allclose(p.data, [1 - 1e-3], rtol=1e-6)  # ten updates of 1e-4 all counted


CONFIG = GPTConfig(vocab_size=16, context_length=12, num_layers=2, num_heads=2, d_model=16)


def tiny_run(precision: str, steps: int, init_scale: float = 2.0 ** 16):
    rng = np.random.default_rng(0)
    pattern = np.tile(np.arange(16), 200)  # a learnable stream: token t is followed by t + 1
    ids = np.where(rng.random(pattern.size) < 0.1, rng.integers(0, 16, pattern.size), pattern)
    task = LanguageModelTask(ids[:2800], ids[2800:], batch_size=4, context_length=12)
    model = GPT(CONFIG, rng=np.random.default_rng(1))
    optimizer = optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    scheduler = optim.LRScheduler(optimizer, lambda step: 3e-3)
    mixed = MixedPrecision(model, precision, LossScaler(init_scale=init_scale,
                                                        enabled=precision == "fp16"))
    data_rng = np.random.default_rng(2)
    results = [mixed_precision_step(mixed, task, data_rng, optimizer, scheduler, 1.0, 1)
               for _ in range(steps)]
    return model, mixed, optimizer, results


def test_compute_weights_swaps_in_low_precision_and_restores_the_masters():
    model = GPT(CONFIG, rng=np.random.default_rng(0))
    masters = [p.data for p in model.parameters()]
    mixed = MixedPrecision(model, "fp16")
    with mixed.compute_weights():
        for p, master in zip(model.parameters(), masters):
            assert p.dtype == np.float16
            np.testing.assert_array_equal(p.data, master.astype(np.float16))
        logits, loss = mixed.forward_model(np.zeros((1, 4), dtype=np.int64),
                                           np.zeros((1, 4), dtype=np.int64))
        assert logits.dtype == np.float32 and loss.dtype == np.float32
        loss.backward()
    for p, master in zip(model.parameters(), masters):
        assert p.data is master  # the very same float32 array
        assert p.grad is not None and p.grad.dtype == np.float32
    with pytest.raises(TypeError, match="float32 master weights"):
        MixedPrecision(GPT(CONFIG, rng=np.random.default_rng(0), dtype=np.float16))


def test_an_overflowing_float16_step_is_skipped_and_changes_no_weight():
    model = GPT(CONFIG, rng=np.random.default_rng(1))
    before = {name: p.data.copy() for name, p in model.named_parameters()}
    optimizer = optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    scheduler = optim.LRScheduler(optimizer, lambda step: 3e-3)
    mixed = MixedPrecision(model, "fp16", LossScaler(init_scale=2.0 ** 60))  # S L overflows
    pattern = np.tile(np.arange(16), 50)
    task = LanguageModelTask(pattern[:700], pattern[700:], batch_size=4, context_length=12)
    step = mixed_precision_step(mixed, task, np.random.default_rng(0), optimizer, scheduler,
                                1.0, 1)
    assert not step.stepped and step.loss_scale == 2.0 ** 60 and np.isfinite(step.loss)
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(p.data, before[name])  # bit for bit unchanged
        assert p.grad is None and p.dtype == np.float32
    assert optimizer.state == {} and optimizer.step_count == 0  # AdamW never stepped
    assert mixed.scaler.loss_scale == 2.0 ** 59 and mixed.scaler.skipped_steps == 1


def test_the_scaler_backs_off_from_a_huge_scale_until_steps_go_through():
    model, mixed, optimizer, results = tiny_run("fp16", steps=40, init_scale=2.0 ** 40)
    skipped = [not r.stepped for r in results]
    first = skipped.index(False)  # overflow, halve, ..., until S L's gradients fit float16
    assert first >= 10 and all(skipped[:first])
    assert sum(skipped[first:]) <= 3  # later overflows are rare (each halves S again)
    assert optimizer.step_count == 40 - sum(skipped)
    assert mixed.scaler.loss_scale == 2.0 ** (40 - sum(skipped))


@pytest.mark.parametrize("precision, tolerance", [("fp16", 0.02), ("bf16", 0.05)])
def test_a_tiny_gpt_in_low_precision_stays_close_to_float32(precision, tolerance):
    _, _, _, reference = tiny_run("fp32", steps=30)
    model, mixed, _, results = tiny_run(precision, steps=30)
    assert all(r.stepped for r in results)
    fp32_losses = np.array([r.loss for r in reference])
    losses = np.array([r.loss for r in results])
    assert losses[-5:].mean() < losses[:5].mean() - 0.3  # it learns
    np.testing.assert_allclose(losses, fp32_losses, atol=tolerance)
    assert all(p.dtype == np.float32 for p in model.parameters())


def test_bfloat16_gradients_are_bfloat16_values():
    model = GPT(CONFIG, rng=np.random.default_rng(0))
    mixed = MixedPrecision(model, "bf16")
    assert mixed.scaler.loss_scale == 1.0 and not mixed.scaler.enabled
    with mixed.compute_weights():
        for p in model.parameters():
            assert p.dtype == np.float32 and not (p.data.view(np.uint32) & 0xFFFF).any()
        _, loss = mixed.forward_model(np.ones((2, 5), dtype=np.int64),
                                      np.ones((2, 5), dtype=np.int64))
        loss.backward()
    for p in model.parameters():
        assert not (p.grad.data.view(np.uint32) & 0xFFFF).any()

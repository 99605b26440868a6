"""Chapter 16, distillation: the softened KL term, its gradient, and a student that learns.

The fused T^2 KL term is checked by float64 finite differences, against the same term built from
primitives, and against its closed-form gradient T (q_T - p_T) / N (eq. 16.11), with the
cross-entropy part of eq. 16.10; the T^2 factor is checked through the high-temperature limit
(the gradient tends to (s - t - mean) / (V N), independent of T). Then a small GPT that never sees
a label learns the task from a teacher's soft targets, through the trainer's own train_step.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyllm as tl
from tinyllm import optim
from tinyllm.compress import (
    DistillationTask,
    distillation_kl,
    distillation_kl_composed,
    distillation_loss,
)
from tinyllm.models import GPT, GPTConfig
from tinyllm.nn.losses import IGNORE_INDEX
from tinyllm.objectives import LanguageModelTask
from tinyllm.train import train_step

pytestmark = pytest.mark.ch16


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def logits(shape, seed, scale=2.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


@given(st.sampled_from([(5,), (3, 5), (2, 3, 4)]), st.sampled_from([0.5, 1.0, 2.0, 4.0]),
       st.integers(0, 1000))
def test_fused_kl_passes_a_float64_gradcheck_and_equals_the_composed_one(shape, T, seed):
    shape = (1, *shape) if len(shape) == 1 else shape
    teacher = logits(shape, seed + 1)
    s = tl.tensor(logits(shape, seed), requires_grad=True)
    assert tl.gradcheck(lambda s: distillation_kl(s, teacher, T), s, seed=seed)
    s.grad = None  # gradcheck leaves the gradient of its random cotangent
    fused = distillation_kl(s, teacher, T)
    fused.backward()
    fused_grad = s.grad.numpy()
    s.grad = None
    composed = distillation_kl_composed(s, teacher, T)
    composed.backward()
    np.testing.assert_allclose(fused.item(), composed.item(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fused_grad, s.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("T", [1.0, 2.0, 5.0])
def test_kl_gradient_is_the_closed_form(T):
    student, teacher = logits((3, 4, 7), 0), logits((3, 4, 7), 1)
    s = tl.tensor(student, requires_grad=True)
    loss = distillation_kl(s, teacher, T)
    loss.backward()
    N = 12
    closed = T * (softmax(student / T) - softmax(teacher / T)) / N  # eq. 16.11
    np.testing.assert_allclose(s.grad.numpy(), closed, rtol=1e-12, atol=1e-15)
    p, q = softmax(teacher / T), softmax(student / T)
    kl = (p * (np.log(p) - np.log(q))).sum(axis=-1).mean()
    np.testing.assert_allclose(loss.item(), T * T * kl, rtol=1e-12)


@pytest.mark.parametrize("alpha, T", [(0.0, 2.0), (0.5, 2.0), (0.9, 4.0), (1.0, 1.0)])
def test_distillation_loss_gradient_is_the_closed_form(alpha, T):
    student, teacher = logits((2, 5, 6), 2), logits((2, 5, 6), 3)
    targets = np.random.default_rng(4).integers(0, 6, (2, 5))
    s = tl.tensor(student, requires_grad=True)
    distillation_loss(s, teacher, targets, T, alpha).backward()
    N, onehot = 10, np.eye(6)[targets]
    closed = ((1 - alpha) * (softmax(student) - onehot)
              + alpha * T * (softmax(student / T) - softmax(teacher / T))) / N  # eq. 16.10-16.11
    np.testing.assert_allclose(s.grad.numpy(), closed, rtol=1e-11, atol=1e-15)
    assert tl.gradcheck(lambda s: distillation_loss(s, teacher, targets, T, alpha),
                        tl.tensor(student, requires_grad=True))


def test_the_t_squared_factor_keeps_the_gradient_finite_at_high_temperature():
    student, teacher = logits((4, 8), 5), logits((4, 8), 6)
    N, V = 4, 8
    diff = student - teacher
    limit = (diff - diff.mean(axis=-1, keepdims=True)) / (V * N)  # Hinton et al. 2015, sec. 2.1
    errors = []
    for T in (100.0, 1000.0):
        s = tl.tensor(student, requires_grad=True)
        distillation_kl(s, teacher, T).backward()
        errors.append(np.abs(s.grad.numpy() - limit).max())
    assert errors[1] < 1e-2 * np.abs(limit).max()  # T = 1000: the limit, to 1%
    assert 5 < errors[0] / errors[1] < 20  # and the distance to it shrinks like 1/T


def test_kl_is_zero_for_the_teacher_itself_and_positive_otherwise():
    teacher = logits((3, 5), 7)
    s = tl.tensor(teacher.copy(), requires_grad=True)
    loss = distillation_kl(s, teacher, 3.0)
    loss.backward()
    assert abs(loss.item()) < 1e-14 and np.abs(s.grad.numpy()).max() < 1e-16
    assert distillation_kl(tl.tensor(teacher + logits((3, 5), 8)), teacher, 3.0).item() > 0.01


def test_ignored_positions_count_for_neither_term():
    student, teacher = logits((1, 4, 5), 9), logits((1, 4, 5), 10)
    targets = np.array([[1, IGNORE_INDEX, 3, IGNORE_INDEX]])
    s = tl.tensor(student, requires_grad=True)
    loss = distillation_loss(s, teacher, targets, 2.0, 0.5)
    loss.backward()
    assert np.all(s.grad.numpy()[0, [1, 3]] == 0)
    kept = tl.tensor(student[:, [0, 2]], requires_grad=True)
    expected = distillation_loss(kept, teacher[:, [0, 2]], targets[:, [0, 2]], 2.0, 0.5)
    np.testing.assert_allclose(loss.item(), expected.item(), rtol=1e-12)


def test_distillation_errors_name_the_problem():
    s = tl.tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="same shape"):
        distillation_kl(s, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        distillation_kl(s, np.zeros((2, 3)), temperature=0.0)
    with pytest.raises(ValueError, match=r"alpha .* \[0, 1\]"):
        distillation_loss(s, np.zeros((2, 3)), np.zeros(2, dtype=np.int64), alpha=1.5)


# --------------------------------------------------------------------------------------------------
# A student learns from a teacher's soft targets alone
# --------------------------------------------------------------------------------------------------


def pattern_task():
    rng = np.random.default_rng(0)
    pattern = (np.arange(3000) * 3) % 16  # token t is followed by t + 3 (mod 16)
    ids = np.where(rng.random(pattern.size) < 0.1, rng.integers(0, 16, pattern.size), pattern)
    return LanguageModelTask(ids[:2600], ids[2600:], batch_size=8, context_length=8)


def train(model, task, steps, lr=1e-2, seed=0):
    optimizer = optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    scheduler = optim.LRScheduler(optimizer, lambda step: lr)
    rng = np.random.default_rng(seed)
    return [train_step(model, task, rng, optimizer, scheduler, 1.0, 1) for _ in range(steps)]


def test_a_student_learns_the_task_from_soft_targets_without_labels():
    task = pattern_task()
    teacher = GPT(GPTConfig(vocab_size=16, context_length=8, num_layers=2, num_heads=2,
                            d_model=32), rng=np.random.default_rng(1))
    train(teacher, task, 80)
    teacher_val = task.evaluate(teacher, "val", 5, seed=1)["loss"]
    assert teacher_val < 1.2  # the teacher knows the pattern (uniform guessing: log 16 = 2.77)

    student_config = GPTConfig(vocab_size=16, context_length=8, num_layers=1, num_heads=1,
                               d_model=16)
    student = GPT(student_config, rng=np.random.default_rng(2))
    before = task.evaluate(student, "val", 5, seed=1)["loss"]
    soft_only = DistillationTask(task, teacher, temperature=2.0, alpha=1.0)  # labels unused
    losses = train(student, soft_only, 80, seed=3)
    after = soft_only.evaluate(student, "val", 5, seed=1)["loss"]  # plain cross-entropy
    assert losses[-1] < 0.3 * losses[0]  # the KL to the teacher falls
    assert before > 2.5 and after < teacher_val + 0.4  # and the student learned the task

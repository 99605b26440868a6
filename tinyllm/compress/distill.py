"""Knowledge distillation: a small student learns a large teacher's soft targets (chapter 16).

Hinton, Vinyals & Dean 2015 ("Distilling the Knowledge in a Neural Network") soften both models'
distributions with a temperature T > 1, so the teacher's small probabilities (which wrong tokens
it thinks plausible) carry signal, and mix the matching term with the ordinary cross-entropy
(eq. 16.10):

    p_T = softmax(t / T),  q_T = softmax(s / T)        teacher logits t, student logits s (N, V)
    L = (1 - a) CE(s, y) + a T^2 KL(p_T || q_T),   KL(p || q) = 1/N sum_n sum_v p_nv log(p_nv/q_nv)

The gradient of the KL term with respect to the student logits (the teacher is a constant) is
(eq. 16.11)

    d/ds_n [T^2 KL] = T^2 * (1/N) * (1/T) (q_T,n - p_T,n) = T (q_T,n - p_T,n) / N,

so the factor T^2 keeps its size comparable to the cross-entropy's (q_n - onehot(y_n)) / N as T
changes (the soft gradients shrink like 1/T^2 for large T otherwise). :class:`DistillationKL` is
that term as one fused op; :func:`distillation_kl_composed` builds it from primitives (the tests
check one against the other, and both against eq. 16.11).
"""

from __future__ import annotations

import numpy as np

from tinyllm.backend import get_array_module
from tinyllm.nn import Module
from tinyllm.nn.losses import IGNORE_INDEX, as_targets, check_logits, cross_entropy
from tinyllm.nn.softmax import log_softmax_composed
from tinyllm.tensor import Function, Tensor, apply, no_grad


def _log_softmax(z, axis: int = -1):
    """log softmax of an array (eq. 3.6), for the fused op's forward."""
    xp = get_array_module(z)
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


class DistillationKL(Function):
    """L = T^2 / N sum_{n kept} sum_v p_nv (log p_nv - log q_nv), p = softmax(t/T) (a constant of
    the op), q = softmax(s/T)  (eq. 16.10);  dL/ds_n = g T (q_n - p_n) / N on kept rows, 0 on the
    others (eq. 16.11). N counts the kept rows."""

    def __init__(self, teacher_logits, temperature: float, kept):
        self.teacher, self.temperature, self.kept = teacher_logits, temperature, kept

    def forward(self, student):
        xp = get_array_module(student)
        T, V = self.temperature, student.shape[-1]
        kept = self.kept.reshape(-1)  # (N_all,)
        self.count = max(int(kept.sum()), 1)
        log_p = _log_softmax(self.teacher.reshape(-1, V).astype(student.dtype) / T)  # (N_all, V)
        log_q = _log_softmax(student.reshape(-1, V) / T)  # (N_all, V)
        self.p, self.q = xp.exp(log_p), xp.exp(log_q)
        self.weights = kept.astype(student.dtype)[:, None]  # (N_all, 1): 1 kept, 0 ignored
        self.shape = student.shape
        per_row = (self.p * (log_p - log_q)).sum(axis=-1)  # (N_all,) KL of each row
        return xp.asarray(T * T * (per_row * self.weights[:, 0]).sum() / self.count,
                          dtype=student.dtype)

    def backward(self, grad):
        scale = grad * self.temperature / self.count  # g T / N
        return ((self.q - self.p) * (self.weights * scale)).reshape(self.shape)  # eq. 16.11


def _kept_rows(student: Tensor, targets, ignore_index: int):
    """Boolean array (...) of the positions that count: all, or those whose target is not
    ``ignore_index``."""
    xp = get_array_module(student.data)
    if targets is None:
        return xp.ones(student.shape[:-1], dtype=bool)
    return as_targets(targets, student, "distillation_kl") != ignore_index


def _check_pair(student: Tensor, teacher, temperature: float):
    check_logits(student, "distillation_kl")
    teacher = teacher.data if isinstance(teacher, Tensor) else teacher
    if tuple(teacher.shape) != student.shape:
        raise ValueError(f"teacher logits {tuple(teacher.shape)} and student logits "
                         f"{student.shape} must have the same shape (..., V): the same batch and "
                         "the same vocabulary")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return teacher


def distillation_kl(student_logits: Tensor, teacher_logits, temperature: float = 2.0,
                    targets=None, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """T^2 KL(softmax(t/T) || softmax(s/T)), mean over the positions (eq. 16.10), fused. The
    teacher's logits are a constant; positions whose target is ``ignore_index`` do not count."""
    teacher = _check_pair(student_logits, teacher_logits, temperature)
    kept = _kept_rows(student_logits, targets, ignore_index)
    return apply(DistillationKL(teacher, float(temperature), kept), student_logits)


def distillation_kl_composed(student_logits: Tensor, teacher_logits,
                             temperature: float = 2.0) -> Tensor:
    """The same term from primitive ops (every position counted): the chapter's starting point."""
    teacher = _check_pair(student_logits, teacher_logits, temperature)
    T = float(temperature)
    log_p = _log_softmax(teacher.astype(student_logits.dtype) / T)  # (..., V), a constant
    log_q = log_softmax_composed(student_logits / T)  # (..., V)
    p = get_array_module(log_p).exp(log_p)  # (..., V) softmax(t / T)
    per_row = (Tensor(p) * (Tensor(log_p) - log_q)).sum(axis=-1)  # (...)
    return per_row.mean() * (T * T)


def distillation_loss(student_logits: Tensor, teacher_logits, targets, temperature: float = 2.0,
                      alpha: float = 0.5, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """(1 - alpha) CE(s, y) + alpha T^2 KL(p_T || q_T)   (eq. 16.10; Hinton et al. 2015).

    dL/ds_n = [(1 - alpha)(softmax(s_n) - onehot(y_n)) + alpha T (q_T,n - p_T,n)] / N.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha weighs the soft term and must be in [0, 1], got {alpha}")
    soft = distillation_kl(student_logits, teacher_logits, temperature, targets, ignore_index)
    hard = cross_entropy(student_logits, targets, ignore_index=ignore_index)
    return hard * (1 - alpha) + soft * alpha


class DistillationTask:
    """A next-token task (``LanguageModelTask``: batches (x, y), ``model(x)`` logits) whose training
    loss is :func:`distillation_loss` against ``teacher``; validation is the base task's (plain
    cross-entropy). ``train_step`` runs it unchanged: ``task.loss(student, batch)``.
    """

    def __init__(self, task, teacher: Module, temperature: float = 2.0, alpha: float = 0.5):
        if not temperature > 0 or not 0 <= alpha <= 1:
            raise ValueError(f"need temperature > 0 and alpha in [0, 1], got {temperature}, "
                             f"{alpha}")
        self.task, self.teacher = task, teacher
        self.temperature, self.alpha = float(temperature), float(alpha)

    @property
    def tokens_per_batch(self) -> int:
        return self.task.tokens_per_batch

    def batch(self, split: str, rng: np.random.Generator):
        return self.task.batch(split, rng)

    def loss(self, model: Module, batch) -> Tensor:
        x, y = batch  # (B, T), (B, T)
        self.teacher.eval()
        with no_grad():
            teacher_logits = self.teacher(x).data  # (B, T, V), a constant
        return distillation_loss(model(x), teacher_logits, y, self.temperature, self.alpha)

    def evaluate(self, model: Module, split: str, iters: int, seed: int) -> dict[str, float]:
        return self.task.evaluate(model, split, iters, seed)

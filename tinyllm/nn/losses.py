"""Losses for language models: cross-entropy and its uses (chapter 03, "Softmax and cross-entropy").

Cross-entropy is the negative log-likelihood of the correct class under softmax(z) (eq. 3.8):

    loss_n = -log softmax(z_n)[t_n] = logsumexp(z_n) - z_n[t_n]

and its gradient with respect to the logits is the simplest one in the book (eq. 3.11):

    dloss_n/dz_n = softmax(z_n) - onehot(t_n)

:func:`cross_entropy` is ONE fused op built on that formula, with PyTorch's options:
``ignore_index``, ``label_smoothing`` and the three reductions (eqs. 3.12, 3.13); next to it the
two-class :func:`binary_cross_entropy_with_logits` (eq. 3.15). Each fused op has a ``*_composed``
twin built from primitive ops: the chapter's starting point, used to test and benchmark the fused
op. The losses of GPT and BERT built on cross_entropy (eq. 3.14, section 3.9) are the objectives'
(``tinyllm.objectives``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tinyllm.backend import device_of, get_array_module, to_device
from tinyllm.nn.softmax import log_softmax_composed
from tinyllm.tensor import Function, Tensor, apply

IGNORE_INDEX = -100  # the target of a position with no label (PyTorch's convention)

REDUCTIONS = ("mean", "sum", "none")

ClassIds = np.ndarray | Tensor | Sequence[int]  # class ids: an array, an integer Tensor or a list


# -------------------------------------------------------------------------------------------------
# Checking inputs
# -------------------------------------------------------------------------------------------------


def _shape_name(ndim: int) -> str:
    """The shape vocabulary for logits with ``ndim`` axes: (V,), (N, V), (B, T, V), (..., V)."""
    return {1: "(V,)", 2: "(N, V)", 3: "(B, T, V)"}.get(ndim, "(..., V)")


def _leading_name(ndim: int) -> str:
    """The shape vocabulary for the targets of ``ndim``-axis logits: (), (N,), (B, T), (...)."""
    return {1: "()", 2: "(N,)", 3: "(B, T)"}.get(ndim, "(...)")


def as_targets(targets: ClassIds, logits: Tensor, name: str, move: bool = True):
    """Integer class ids as an array on ``logits``' device (where they are, with ``move=False``),
    shaped like ``logits`` without its last axis."""
    if isinstance(targets, Tensor):
        if targets.requires_grad:
            raise TypeError(f"{name} targets are class ids and get no gradient; "
                            "pass targets.detach()")
        targets = targets.data
    if not hasattr(targets, "dtype"):
        targets = np.asarray(targets)
    if not np.issubdtype(targets.dtype, np.integer):
        raise TypeError(
            f"{name} targets must be integer class ids, got dtype {targets.dtype}; "
            "convert them with targets.astype(np.int64)"
        )
    expected = logits.shape[:-1]
    if targets.shape != expected:
        raise ValueError(
            f"{name} expected targets of shape {_leading_name(logits.ndim)} = {expected} for "
            f"logits {_shape_name(logits.ndim)} = {logits.shape}, got {targets.shape}"
        )
    return to_device(targets, device_of(logits.data)) if move else targets


def check_logits(logits: Tensor, name: str) -> None:
    """Refuse what no classification loss can use (``name`` is the loss, for the message)."""
    if not isinstance(logits, Tensor):
        raise TypeError(f"{name} expects logits as a Tensor, got {type(logits).__name__}")
    if logits.ndim < 1 or logits.shape[-1] == 0:
        raise ValueError(f"{name} expected logits (..., V) with V >= 1 classes on the last axis, "
                         f"got {logits.shape}")
    if not np.issubdtype(logits.dtype, np.floating):
        raise TypeError(f"{name} expects floating-point logits, got dtype {logits.dtype}")


# -------------------------------------------------------------------------------------------------
# Cross-entropy, fused
# -------------------------------------------------------------------------------------------------


class CrossEntropy(Function):
    """Cross-entropy of logits z (N, V) against integer targets t (N,), fused (eqs. 3.8, 3.11-3.13)

    loss_n = (1 - eps) * (lse_n - z_n[t_n]) + eps * (lse_n - mean_j z_nj),
    lse_n = log sum_j exp z_nj, which is -sum_j q_nj log p_nj for the smoothed target
    q_n = (1 - eps) onehot(t_n) + eps / V.
    dL/dz_n = w_n * (softmax(z_n) - q_n), where w_n = g / (number of kept rows) for "mean", g for
    "sum", g_n for "none", and w_n = 0 on rows whose target is ``ignore_index`` (their gradient is
    exactly 0).

    The forward pass keeps exp(z - max z) and its row sums; the backward pass turns that array
    *in place* into the gradient (normalising and scaling in one pass), so it can run only once per
    forward pass.
    """

    def __init__(self, targets: np.ndarray, ignore_index: int, label_smoothing: float,
                 reduction: str):
        self.targets = targets.reshape(-1)  # (N,)
        self.ignore_index, self.eps, self.reduction = ignore_index, label_smoothing, reduction

    def forward(self, logits):
        xp = get_array_module(logits)
        self.logits_shape = logits.shape
        num_classes = logits.shape[-1]
        z = logits.reshape(-1, num_classes)  # (N, V)
        targets_xp, device = get_array_module(self.targets), device_of(logits)
        kept = self.targets != self.ignore_index  # (N,), where the targets are (host batches)
        kept_rows = targets_xp.flatnonzero(kept)  # (K,) rows that have a target
        self.count = int(kept_rows.size)  # a host number: no device sync for host targets
        self.kept_rows = to_device(kept_rows, device)  # (K,)
        self.ignored_rows = to_device(targets_xp.flatnonzero(~kept), device)  # (N - K,)
        self.kept_targets = to_device(self.targets[kept_rows], device)  # (K,)

        shifted = z - z.max(axis=1, keepdims=True)  # (N, V), a new array we own; entries <= 0
        target_score = shifted[self.kept_rows, self.kept_targets]  # (K,)  z_t - max z
        if self.eps:
            mean_score = shifted.mean(axis=1)[self.kept_rows]  # (K,)  mean_j z_j - max z
        exp_shifted = xp.exp(shifted, out=shifted)  # (N, V), in place: entries in (0, 1]
        self.row_sums = exp_shifted.sum(axis=1)  # (N,), each in [1, V]: log never sees 0 or inf
        log_sum = xp.log(self.row_sums[self.kept_rows])  # (K,)  lse - max z
        kept_loss = log_sum - target_score  # (K,)  -log p_t, eq. 3.8
        if self.eps:
            kept_loss *= 1 - self.eps
            kept_loss += self.eps * (log_sum - mean_score)  # eq. 3.12
        self.exp_shifted = exp_shifted

        if self.reduction == "none":
            loss = xp.zeros(z.shape[0], dtype=z.dtype)  # (N,), 0 on ignored rows (as in PyTorch)
            loss[self.kept_rows] = kept_loss
            return loss.reshape(self.logits_shape[:-1])  # the targets' shape
        total = kept_loss.sum()
        if self.reduction == "mean":
            # every target ignored: loss 0, not 0/0 (eq. 3.13)
            total = total * (1.0 / max(self.count, 1))
        return xp.asarray(total, dtype=z.dtype)

    def backward(self, grad):
        xp = get_array_module(grad)
        if self.exp_shifted is None:
            raise RuntimeError(
                "cross_entropy's backward turns its saved probabilities into the gradient in "
                "place, so it runs once per forward pass; compute the loss again to differentiate "
                "it again"
            )
        grad_z, self.exp_shifted = self.exp_shifted, None  # (N, V) exp(z - max z), ours now
        num_rows, num_classes = grad_z.shape
        if self.reduction == "none":
            weights = grad.reshape(-1)  # (N,)  w_n = g_n
        elif self.reduction == "mean":
            weight = grad * (1.0 / max(self.count, 1))  # w = g / K
            weights = xp.broadcast_to(weight, (num_rows,))  # (N,)
        else:
            weights = xp.broadcast_to(grad, (num_rows,))  # (N,)  w = g
        grad_z *= (weights / self.row_sums)[:, None]  # w_n softmax(z_n): normalise, scale at once
        kept_weights = weights[self.kept_rows]  # (K,)
        # - w_n (1 - eps) onehot(t_n)
        grad_z[self.kept_rows, self.kept_targets] -= (1 - self.eps) * kept_weights
        if self.eps:
            grad_z -= (self.eps / num_classes) * weights[:, None]  # - w_n eps / V
        if self.ignored_rows.size:
            grad_z[self.ignored_rows] = 0  # exactly zero, even if an ignored row held inf or nan
        return grad_z.reshape(self.logits_shape)


def cross_entropy(logits: Tensor, targets: ClassIds, ignore_index: int = IGNORE_INDEX,
                  label_smoothing: float = 0.0, reduction: str = "mean") -> Tensor:
    """Cross-entropy between softmax(logits) and integer targets, as PyTorch's ``F.cross_entropy``.

    ``logits`` (N, V) or (B, T, V): any leading axes, classes on the last axis; ``targets``:
    integer ids of the leading shape (a NumPy array or an integer Tensor). Positions whose target is
    ``ignore_index`` add nothing and get a zero gradient; ``label_smoothing`` eps trains towards
    (1 - eps) onehot + eps / V. ``reduction``: "mean" over the non-ignored targets (0, with zero
    gradient, when every target is ignored, where PyTorch gives nan), "sum", or "none" (the loss of
    every position, targets' shape).
    One fused op (eqs. 3.8, 3.11-3.13); :func:`cross_entropy_composed` is its reference.
    """
    targets = _validate_cross_entropy(logits, targets, ignore_index, label_smoothing, reduction)
    return apply(CrossEntropy(targets, ignore_index, label_smoothing, reduction), logits)


def _validate_cross_entropy(logits: Tensor, targets: ClassIds, ignore_index: int,
                            label_smoothing: float, reduction: str, name: str = "cross_entropy"):
    """Check every argument; return the targets as an integer array on the logits' device."""
    check_logits(logits, name)
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name} reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{name} label_smoothing must be in [0, 1], got {label_smoothing}")
    targets = as_targets(targets, logits, name, move=False)  # checked where they are: no sync
    num_classes = logits.shape[-1]
    bad = ((targets < 0) | (targets >= num_classes)) & (targets != ignore_index)
    if bool(bad.any()):
        first = int(targets.reshape(-1)[get_array_module(bad).flatnonzero(bad.reshape(-1))[0]])
        raise IndexError(
            f"{name}: target id {first} is out of range for V={num_classes} classes "
            f"(valid ids are 0..{num_classes - 1}, or ignore_index={ignore_index}); "
            "check that the model's vocabulary size matches the tokenizer's"
        )
    return targets


def cross_entropy_composed(logits: Tensor, targets: ClassIds, ignore_index: int = IGNORE_INDEX,
                           label_smoothing: float = 0.0, reduction: str = "mean") -> Tensor:
    """Cross-entropy from primitive ops: log_softmax_composed, a gather of the targets' entries, a
    mean.

    The chapter's starting point; used to test and benchmark the fused :func:`cross_entropy` (same
    arguments, same results, including the loss 0 when every target is ignored).
    """
    targets = _validate_cross_entropy(logits, targets, ignore_index, label_smoothing, reduction)
    xp, targets = get_array_module(logits.data), to_device(targets, device_of(logits.data))
    num_classes = logits.shape[-1]
    flat_targets = targets.reshape(-1)  # (N,)
    kept = flat_targets != ignore_index  # (N,)
    safe_targets = xp.where(kept, flat_targets, 0)  # (N,) a valid id on ignored rows; masked below
    log_probs = log_softmax_composed(logits.reshape(-1, num_classes))  # (N, V)
    rows = xp.arange(flat_targets.size)  # (N,)
    losses = -log_probs[rows, safe_targets]  # (N,)  -log p_t
    if label_smoothing:
        smooth = log_probs.mean(axis=1) * label_smoothing  # (N,) eq. 3.12
        losses = losses * (1 - label_smoothing) - smooth
    losses = losses * Tensor(kept.astype(logits.dtype))  # (N,) zero on ignored rows
    if reduction == "none":
        return losses.reshape(targets.shape)
    if reduction == "sum":
        return losses.sum()
    return losses.sum() * (1.0 / max(int(kept.sum()), 1))


# -------------------------------------------------------------------------------------------------
# Binary cross-entropy with logits
# -------------------------------------------------------------------------------------------------


class BinaryCrossEntropyWithLogits(Function):
    """loss = max(x, 0) - x t + log(1 + exp(-|x|)) per entry, then the reduction   (eq. 3.15)

    This is -t log sigmoid(x) - (1 - t) log(1 - sigmoid(x)) written so that exp never sees a
    positive argument. dL/dx = g * (sigmoid(x) - t) / n for "mean" (g for "sum", g_i for "none").
    """

    def __init__(self, targets: np.ndarray, reduction: str):
        self.targets, self.reduction = targets, reduction

    def forward(self, x):
        xp = get_array_module(x)
        t = self.targets
        e = xp.exp(-xp.abs(x))  # in (0, 1]
        loss = xp.maximum(x, 0) - x * t + xp.log1p(e)
        sigmoid = xp.where(x >= 0, 1, e) / (1 + e)  # 1/(1+e) for x >= 0, e/(1+e) for x < 0
        self.residual = sigmoid - t  # sigmoid(x) - t: all the backward pass needs
        if self.reduction == "none":
            return loss
        total = loss.sum()
        if self.reduction == "mean":
            total = total * (1.0 / max(loss.size, 1))
        return xp.asarray(total, dtype=x.dtype)

    def backward(self, grad):
        if self.reduction == "mean":
            return self.residual * (grad * (1.0 / max(self.residual.size, 1)))
        return self.residual * grad


def _validate_binary(logits: Tensor, targets: np.ndarray | Tensor | float, reduction: str):
    name = "binary_cross_entropy_with_logits"
    if not isinstance(logits, Tensor) or not np.issubdtype(logits.dtype, np.floating):
        raise TypeError(f"{name} expects floating-point logits as a Tensor")
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name} reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if isinstance(targets, Tensor):
        if targets.requires_grad:
            raise TypeError(f"{name} treats targets as constants; pass targets.detach()")
        targets = targets.data
    if not hasattr(targets, "dtype"):
        targets = np.asarray(targets)
    targets = to_device(targets, device_of(logits.data))
    if targets.shape != logits.shape:
        raise ValueError(f"{name} expected targets of the logits' shape {logits.shape}, "
                         f"got {targets.shape}")
    return targets.astype(logits.dtype, copy=False)


def binary_cross_entropy_with_logits(logits: Tensor, targets: np.ndarray | Tensor,
                                     reduction: str = "mean") -> Tensor:
    """Binary cross-entropy of sigmoid(logits) against targets in [0, 1], fused and stable
    (eq. 3.15).

    Finite for any finite logit (also +-1e4, where log(sigmoid(x)) computed naively would be log 0).
    """
    targets = _validate_binary(logits, targets, reduction)
    return apply(BinaryCrossEntropyWithLogits(targets, reduction), logits)


def binary_cross_entropy_with_logits_composed(logits: Tensor, targets: np.ndarray | Tensor,
                                              reduction: str = "mean") -> Tensor:
    """relu(x) - x t + log(1 + exp(-|x|)) from primitive ops, |x| = relu(x) + relu(-x).

    The chapter's starting point; used to test the fused :func:`binary_cross_entropy_with_logits`.
    """
    targets = Tensor(_validate_binary(logits, targets, reduction))
    absolute = logits.relu() + (-logits).relu()
    loss = logits.relu() - logits * targets + ((-absolute).exp() + 1.0).log()
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()

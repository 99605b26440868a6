"""Chapter 09 exercises: SGD, Adam, the warm-up cosine schedule, gradient clipping. Grade them with

    python exercises/grade.py 09

Each function replaces one piece of ``tinyllm/optim/`` while the chapter's real tests run (see
exercises/README.md). Arrays are NumPy or CuPy: use ``xp = get_array_module(param)`` from
``tinyllm.backend``.
"""

from __future__ import annotations


def sgd_update(self, param, grad, state, group):
    """Replaces ``tinyllm.optim.optimizers.SGD._update``: one step for one parameter (eqs. 9.1-9.4)

    ``param`` and ``grad`` are arrays; update ``param`` IN PLACE (``param -= ...``). ``group`` holds
    "lr", "momentum" (mu), "weight_decay" (lambda) and "nesterov"; ``state`` is this parameter's
    dict, kept between steps. Do not modify ``grad`` itself (it is ``p.grad``).
        g <- g + lambda * theta                            (eq. 9.4, if lambda != 0)
        b <- mu * b + g   (b starts at 0)                  (eq. 9.2, if mu != 0; keep b in state)
        theta <- theta - lr * b,  or with nesterov  theta - lr * (g + mu * b)   (eqs. 9.2, 9.3)
        without momentum:  theta <- theta - lr * g          (eq. 9.1)
    """
    raise NotImplementedError("exercise 09.1: weight decay, momentum buffer, in-place step")


def adam_update(self, param, grad, state, group):
    """Replaces ``tinyllm.optim.optimizers.Adam._update`` (AdamW too)   (eqs. 9.4, 9.6-9.10)

    ``group``: "lr", "betas" = (beta1, beta2), "eps", "weight_decay" (lambda). ``state`` starts
    empty: keep "step" (t, counting from 1 at the first update), "m" and "v" there. Update
    ``param`` in place.
        if lambda != 0:  AdamW (``self.decoupled_weight_decay``): theta <- theta (1 - lr lambda)
                         Adam: g <- g + lambda theta
        m <- beta1 m + (1 - beta1) g,   v <- beta2 v + (1 - beta2) g^2
        theta <- theta - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """
    raise NotImplementedError("exercise 09.2: the moments, the bias correction, the step")


def warmup_cosine(step, max_lr, min_lr, warmup_steps, total_steps):
    """Replaces ``tinyllm.optim.schedules.warmup_cosine``: the learning rate at ``step`` (eq. 9.11)

    step < warmup:  lr = max_lr (step + 1) / (warmup + 1)
    otherwise:      r = min((step - warmup) / max(total - warmup, 1), 1)
                    lr = min_lr + (1 + cos(pi r)) / 2 * (max_lr - min_lr)
    A negative step or warmup_steps is a ValueError that names them.
    """
    raise NotImplementedError("exercise 09.3: a linear ramp, then half a cosine")


def clip_grad_norm_(params, max_norm):
    """Replaces ``tinyllm.optim.clipping.clip_grad_norm_``   (eq. 9.13)

    ||g|| = sqrt(sum over the parameters of sum(p.grad.data ** 2)) (skip p.grad None);
    c = max_norm / (||g|| + 1e-6); if c < 1 multiply every ``p.grad.data`` by c in place.
    Return ||g|| before clipping, as a float. ``params`` is a Tensor or an iterable of them.
    """
    raise NotImplementedError("exercise 09.4: the global norm, then scale in place")


# number, the library attribute it replaces, your function, the tests that grade it
EXERCISES = (
    ("09.1", "tinyllm.optim.optimizers:SGD._update", sgd_update,
     ("tests/test_09_optim.py::test_sgd_matches_formula[0.9-False-0.05]",
      "tests/test_09_optim.py::test_sgd_matches_formula[0.9-True-0.1]")),
    ("09.2", "tinyllm.optim.optimizers:Adam._update", adam_update,
     ("tests/test_09_optim.py::test_adam_matches_formula[0.1]",
      "tests/test_09_optim.py::test_adamw_matches_formula[0.01]")),
    ("09.3", "tinyllm.optim.schedules:warmup_cosine", warmup_cosine,
     ("tests/test_09_optim.py::test_warmup_cosine_values",)),
    ("09.4", "tinyllm.optim.clipping:clip_grad_norm_", clip_grad_norm_,
     ("tests/test_09_optim.py::"
      "test_clip_grad_norm_scales_to_max_norm_and_returns_the_norm_before",)),
)

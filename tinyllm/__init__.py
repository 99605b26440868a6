"""tinyllm: a from-scratch deep-learning framework for language models, in NumPy (CuPy on a GPU).

    import tinyllm as tl
    x = tl.tensor([[1.0, 2.0]], requires_grad=True)
    y = (x @ x.T).sum()
    y.backward()          # x.grad == 2 * x

Read it in chapter order: backend -> tensor -> ops -> shape_ops -> gradcheck (chapters 01-02).
"""

from tinyllm import nn
from tinyllm import optim
from tinyllm.backend import DeviceError, cuda_available
from tinyllm.gradcheck import GradcheckError, gradcheck
from tinyllm.ops import erf, maximum, where
from tinyllm.shape_ops import concatenate, split, stack
from tinyllm.tensor import (
    DEFAULT_DTYPE,
    Tensor,
    arange,
    default_rng,
    is_grad_enabled,
    manual_seed,
    no_grad,
    ones,
    randn,
    tensor,
    zeros,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_DTYPE",
    "DeviceError",
    "GradcheckError",
    "Tensor",
    "arange",
    "default_rng",
    "concatenate",
    "cuda_available",
    "erf",
    "gradcheck",
    "is_grad_enabled",
    "manual_seed",
    "nn",
    "maximum",
    "no_grad",
    "ones",
    "optim",
    "randn",
    "split",
    "stack",
    "tensor",
    "where",
    "zeros",
]

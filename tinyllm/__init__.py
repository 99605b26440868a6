"""tinyllm: a from-scratch deep-learning framework for language models, in NumPy (CuPy on a GPU).

    import tinyllm as tl
    x = tl.tensor([[1.0, 2.0]], requires_grad=True)
    y = (x @ x.T).sum()
    y.backward()          # x.grad == 2 * x

Read it in chapter order: backend -> tensor -> ops -> shape_ops -> creation -> gradcheck (chapters 01-02),
then nn/ (03-08), optim/ (09), tokenizers and data (10), models, train and sampling (11-12).
"""

from tinyllm import data, models, nn, optim, tokenizers
from tinyllm.backend import DeviceError, cuda_available
from tinyllm.creation import arange, default_rng, manual_seed, ones, randn, tensor, zeros
from tinyllm.gradcheck import GradcheckError, gradcheck
from tinyllm.ops import erf, maximum, where
from tinyllm.shape_ops import concatenate, split, stack
from tinyllm.tensor import DEFAULT_DTYPE, Tensor, is_grad_enabled, no_grad

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_DTYPE",
    "DeviceError",
    "GradcheckError",
    "Tensor",
    "arange",
    "concatenate",
    "data",
    "default_rng",
    "cuda_available",
    "erf",
    "gradcheck",
    "is_grad_enabled",
    "manual_seed",
    "maximum",
    "models",
    "nn",
    "no_grad",
    "ones",
    "optim",
    "randn",
    "split",
    "stack",
    "tensor",
    "tokenizers",
    "where",
    "zeros",
]

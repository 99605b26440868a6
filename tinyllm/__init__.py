"""tinyllm: a from-scratch deep-learning framework for language models, in NumPy (CuPy on a GPU).

    import tinyllm as tl
    x = tl.tensor([[1.0, 2.0]], requires_grad=True)
    y = (x @ x.T).sum()
    y.backward()          # x.grad == 2 * x

Read it in chapter order: backend -> autograd -> ops -> shape_ops -> tensor -> creation -> gradcheck
(chapters 01-02), then nn/ (03-08), optim/ (09), tokenizers and corpus (10), models, train and
sampling (11-12).
"""

from tinyllm import corpus, models, nn, optim, tokenizers
from tinyllm.autograd import is_grad_enabled, no_grad
from tinyllm.backend import DeviceError, cuda_available
from tinyllm.creation import (
    arange,
    concatenate,
    default_rng,
    erf,
    from_numpy,
    manual_seed,
    maximum,
    ones,
    randn,
    spawn_rng,
    split,
    stack,
    tensor,
    where,
    zeros,
)
from tinyllm.gradcheck import GradcheckError, gradcheck
from tinyllm.tensor import DEFAULT_DTYPE, Tensor

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_DTYPE",
    "DeviceError",
    "GradcheckError",
    "Tensor",
    "arange",
    "concatenate",
    "corpus",
    "default_rng",
    "cuda_available",
    "erf",
    "from_numpy",
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
    "spawn_rng",
    "split",
    "stack",
    "tensor",
    "tokenizers",
    "where",
    "zeros",
]

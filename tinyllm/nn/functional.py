"""Functions of tinyllm.nn, imported as ``F`` (``import tinyllm.nn.functional as F``).

Each name is implemented next to its layer and its chapter; this module gathers them in one
namespace.
"""

from tinyllm.nn.activations import gelu, gelu_composed, relu
from tinyllm.nn.attention import (
    scaled_dot_product_attention,
    scaled_dot_product_attention_composed,
)
from tinyllm.nn.blockwise_attention import blockwise_attention
from tinyllm.nn.embedding import embedding
from tinyllm.nn.layers import dropout
from tinyllm.nn.losses import (
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_composed,
    cross_entropy,
    cross_entropy_composed,
)
from tinyllm.nn.normalization import layer_norm, layer_norm_composed
from tinyllm.nn.positional import apply_rotary
from tinyllm.nn.softmax import (
    log_softmax,
    log_softmax_composed,
    softmax,
    softmax_composed,
)

__all__ = [
    "apply_rotary",
    "blockwise_attention",
    "embedding",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_composed",
    "cross_entropy",
    "cross_entropy_composed",
    "dropout",
    "gelu",
    "gelu_composed",
    "layer_norm",
    "layer_norm_composed",
    "log_softmax",
    "log_softmax_composed",
    "relu",
    "scaled_dot_product_attention",
    "scaled_dot_product_attention_composed",
    "softmax",
    "softmax_composed",
]

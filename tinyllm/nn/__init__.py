"""Layers and models' building blocks (chapters 03-08). ``tinyllm.nn.functional`` (``F``) holds
the functions."""

from tinyllm.nn import functional
from tinyllm.nn.activations import GELU, ReLU
from tinyllm.nn.embedding import Embedding
from tinyllm.nn.layers import Dropout, Linear
from tinyllm.nn.module import Module, Parameter
from tinyllm.nn.multihead import KVCache, MultiHeadAttention
from tinyllm.nn.normalization import LayerNorm
from tinyllm.nn.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)
from tinyllm.nn.recurrent import LSTM, RNN, LSTMCell, RNNCell
from tinyllm.nn.transformer import (
    FeedForward,
    TransformerBlock,
    TransformerDecoder,
    TransformerEncoder,
    TransformerStack,
)

__all__ = [
    "Embedding",
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
    "SinusoidalPositionalEncoding",
    "Dropout",
    "FeedForward",
    "GELU",
    "KVCache",
    "LayerNorm",
    "LSTM",
    "LSTMCell",
    "MultiHeadAttention",
    "ReLU",
    "RNN",
    "RNNCell",
    "TransformerBlock",
    "TransformerDecoder",
    "TransformerEncoder",
    "TransformerStack",
    "Linear",
    "Module",
    "Parameter",
    "functional",
]

"""GPT: a decoder-only Transformer language model (chapter 11).

    ids (B, T) -> token embedding + learned position embedding -> L pre-LN blocks with causal
    self-attention -> final LayerNorm -> logits = x W_te^T (B, T, V), the output layer tied to the
    input embedding (Press & Wolf 2017).

Trained with the autoregressive objective: the logits at position t predict token t + 1 (eq. 11.2).
The initialisation follows GPT-2 (Radford et al. 2019): every matrix N(0, 0.02^2), except the two
projections that write into the residual stream in each block (``attn.out_proj`` and ``ff.fc2``),
whose standard deviation is divided by sqrt(2 L), so that the variance of the residual stream does
not grow with depth (eq. 11.6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import tinyllm.nn.functional as F
from tinyllm.backend import to_numpy
from tinyllm.creation import default_rng, spawn_rng
from tinyllm.nn import (
    Dropout,
    Embedding,
    KVCache,
    LayerNorm,
    LearnedPositionalEmbedding,
    Module,
    TransformerBlock,
)
from tinyllm.nn.multihead import check_attention
from tinyllm.sampling import append_stream, check_generation, prompt_ids, sample_next
from tinyllm.tensor import DEFAULT_DTYPE, Tensor, no_grad


@dataclass(frozen=True)
class GPTConfig:
    """The shape of a GPT. ``vocab_size`` comes from the tokenizer."""

    vocab_size: int = 70  # V: distinct tokens (the 70 characters of our Shakespeare corpus)
    context_length: int = 64  # longest context the model sees (number of learned positions)
    num_layers: int = 4  # L: Transformer blocks
    num_heads: int = 4  # H: attention heads per block
    d_model: int = 128  # C: model width; each head has D = C / H
    dropout: float = 0.0  # on embeddings, attention weights and residual branches during training
    bias: bool = False  # biases in Linear and LayerNorm (GPT-2 has them, nanoGPT's CPU recipe not)
    activation: str = "gelu"  # exact GELU; "gelu_tanh" is GPT-2's approximation
    attention: str = "fused"  # the fused op (ch. 06); "blockwise": memory O(T), not O(T^2) (ch. 17)


GPT_PRESETS = {
    # nanoGPT's CPU recipe for character-level Shakespeare (trains in minutes on a laptop CPU)
    "shakespeare-char": GPTConfig(context_length=64, num_layers=4, num_heads=4, d_model=128),
    # nanoGPT's GPU recipe for the same data: 10.7M parameters, for a GPU or a patient CPU
    "shakespeare-char-large": GPTConfig(context_length=256, num_layers=6, num_heads=6, d_model=384,
                                        dropout=0.2),
}


def gpt_parameter_count(config: GPTConfig) -> int:
    """Closed form (eq. 11.7): V C + T C + L (12 C^2 + 2 C) + C without biases; with biases add
    L (13 C) + C (attention 4 C, feed-forward 4 C + C, two LayerNorm shifts 2 C, final shift C)."""
    V, T, L, C = config.vocab_size, config.context_length, config.num_layers, config.d_model
    count = V * C + T * C + L * (12 * C * C + 2 * C) + C
    if config.bias:
        count += L * (4 * C + 5 * C + 2 * C) + C
    return count


class GPT(Module):
    """A GPT language model: ``model(ids)`` gives logits (B, T, V), ``model(ids, targets)`` also the
    loss."""

    def __init__(self, config: GPTConfig, rng: np.random.Generator | None = None,
                 dtype=DEFAULT_DTYPE):
        rng = rng or default_rng()
        self.config = config
        C = config.d_model
        self.wte = Embedding(config.vocab_size, C, rng=rng, dtype=dtype)
        self.wpe = LearnedPositionalEmbedding(config.context_length, C, rng=rng, dtype=dtype)
        self.drop = Dropout(config.dropout, rng=spawn_rng(rng))
        self.blocks = [
            TransformerBlock(C, config.num_heads, d_ff=4 * C, dropout=config.dropout,
                             norm_first=True, bias=config.bias, activation=config.activation,
                             rng=rng, dtype=dtype)
            for _ in range(config.num_layers)
        ]
        for block in self.blocks:  # the attention op of every block: fused or blockwise (ch. 17)
            block.attn.attention = check_attention(config.attention)
        self.ln_f = LayerNorm(C, bias=config.bias, dtype=dtype)
        self._init_weights(rng)

    def _init_weights(self, rng: np.random.Generator) -> None:
        """GPT-2 initialisation (eq. 11.6): matrices N(0, 0.02^2), residual projections scaled by
        1/sqrt(2L)."""
        residual_std = 0.02 / math.sqrt(2 * self.config.num_layers)
        for name, p in self.named_parameters():
            if p.ndim == 2:
                residual = name.endswith(("attn.out_proj.weight", "ff.fc2.weight"))
                std = residual_std if residual else 0.02
                p.data = rng.normal(0.0, std, p.shape).astype(p.dtype)
            elif name.endswith(".bias"):
                p.data = np.zeros(p.shape, dtype=p.dtype)

    def forward(self, ids, targets=None, caches: list[KVCache] | None = None):
        """ids (B, T) -> logits (B, T, V); with ``targets`` (B, T) also the mean cross-entropy.

        ``caches`` (one :class:`KVCache` per block, generation only): ids are the *new* positions,
        which continue the cached ones.
        """
        ids = ids.data if isinstance(ids, Tensor) else ids
        ids = ids if hasattr(ids, "dtype") else np.asarray(ids)  # host or device ids, as given
        offset = caches[0].length if caches else 0  # positions already in the cache
        self._check_ids(ids, offset)
        x = self.wte(ids)  # (B, T, C)
        x = self.drop(self.wpe(x, offset=offset))  # (B, T, C)
        for index, block in enumerate(self.blocks):
            x = block(x, is_causal=True, cache=caches[index] if caches else None)  # (B, T, C)
        x = self.ln_f(x)
        logits = x @ self.wte.weight.T  # (B, T, C) @ (C, V) -> (B, T, V), tied output layer
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits, targets)

    def _check_ids(self, ids, offset: int) -> None:
        if ids.ndim != 2:
            raise ValueError(f"GPT expects token ids (B, T), got shape {ids.shape}; "
                             "for one sequence use ids[None]")
        T, context_length = ids.shape[1], self.config.context_length
        if offset + T > context_length:
            raise ValueError(
                f"sequence of {offset + T} positions is longer than the context_length = "
                f"{context_length}; crop the input to its last {context_length} tokens"
            )

    def generate(self, ids, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, rng: np.random.Generator | None = None,
                 use_cache: bool = True) -> np.ndarray:
        """Continue each row of ``ids`` (B, T0) by ``max_new_tokens`` sampled tokens: (B, T0 + new).

        The model sees at most ``context_length`` tokens: beyond that the window slides. With
        ``use_cache`` the keys and values of the window are kept (:class:`KVCache`) so each new
        token costs one position, not the whole window; the result is identical to
        ``use_cache=False``. Learned absolute positions mean a slid window must be recomputed from
        scratch, so the cache helps while the text fits the window. Temperature 0 is greedy.
        """
        ids = prompt_ids(ids)
        return append_stream(ids, self.generate_stream(ids, max_new_tokens, temperature, top_k,
                                                       top_p, rng, use_cache))

    def generate_stream(self, ids, max_new_tokens: int, temperature: float = 1.0,
                        top_k: int | None = None, top_p: float | None = None,
                        rng: np.random.Generator | None = None, use_cache: bool = True):
        """Like :meth:`generate`, but yield each new column of token ids (B,) as soon as it is
        drawn (``tinyllm sample`` prints them as they come). The arguments are checked at once."""
        ids = prompt_ids(ids)
        check_generation(max_new_tokens, temperature, top_k, top_p)
        return self._sample_loop(ids, max_new_tokens, temperature, top_k, top_p,
                                 rng or default_rng(), use_cache)

    def _sample_loop(self, ids, max_new_tokens, temperature, top_k, top_p, rng, use_cache):
        """The generator behind generate_stream: eval mode while it runs, restored at the end."""
        window, caches = self.config.context_length, None
        was_training = self.training
        self.eval()
        try:
            for _ in range(max_new_tokens):
                with no_grad():  # not held across the yield: the caller may use autograd meanwhile
                    if use_cache and ids.shape[1] <= window:
                        if caches is None:  # first step: run the whole prompt through the model
                            caches = [KVCache(window) for _ in self.blocks]
                            logits = self.forward(ids, caches=caches)
                        else:  # later steps: only the newest token
                            logits = self.forward(ids[:, -1:], caches=caches)
                    else:
                        logits = self.forward(ids[:, -window:])
                next_ids = sample_next(to_numpy(logits.data[:, -1, :]), rng, temperature,
                                       top_k, top_p)  # (B,)
                ids = np.concatenate([ids, next_ids[:, None]], axis=1)  # (B, T + 1)
                yield next_ids
        finally:
            self.train(was_training)

    def extra_repr(self) -> str:
        c = self.config
        return (f"V={c.vocab_size}, T={c.context_length}, L={c.num_layers}, H={c.num_heads}, "
                f"C={c.d_model}")

"""The Transformer encoder-decoder for sequence-to-sequence tasks (chapter 15).

    src (B, S) -> E[src] sqrt(C) + positions -> L_enc pre-LN encoder blocks -> LayerNorm -> memory
    tgt_in (B, T) -> E[tgt_in] sqrt(C) + positions -> L_dec pre-LN decoder blocks (causal
    self-attention, cross-attention to memory) -> LayerNorm -> logits = h E^T (B, T, V)

This is the original Transformer (Vaswani et al. 2017) with the pre-LN blocks of GPT-2 (eq. 8.14),
which train without the long warm-up post-LN needs. Teacher forcing (eq. 15.1): the decoder reads
the target shifted right, tgt_in = [BOS, y_1 .. y_n], and its logits at t predict
targets = [y_1 .. y_n, EOS]; the loss is the label-smoothed cross-entropy (Szegedy et al. 2016;
eps = 0.1 in Vaswani et al.) over the real target tokens, padding ignored (eq. 15.2).

One embedding matrix E (V, C) serves the source, the target and the output layer by default: our
task normalises the spelling of the First Folio to modern spelling, and both sides are written in
the same alphabet, so a token means the same on both sides (Press & Wolf 2017 tie the output
layer to the target embedding; Vaswani et al. share all three). Embeddings are N(0, 1/C) and
multiplied by sqrt(C) (Vaswani et al., sec. 3.4), so tokens and the sinusoidal positions of eq.
5.2 have entries of the same size. For fast generation :meth:`Seq2Seq.start_cache` computes the
cross-attention keys and values once per source and :meth:`Seq2Seq.decode_step` runs only the new
positions (``tinyllm.decoding`` does greedy and beam search with them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import tinyllm.nn.functional as F
from tinyllm.backend import get_array_module
from tinyllm.creation import default_rng, spawn_rng
from tinyllm.nn import (
    Dropout,
    Embedding,
    KVCache,
    LearnedPositionalEmbedding,
    Module,
    SinusoidalPositionalEncoding,
    TransformerDecoder,
    TransformerEncoder,
)
from tinyllm.nn.attention import scaled_dot_product_attention
from tinyllm.tensor import DEFAULT_DTYPE, Tensor, is_grad_enabled, no_grad

POSITION_KINDS = ("sinusoidal", "learned")


@dataclass(frozen=True)
class Seq2SeqConfig:
    """The shape of an encoder-decoder. ``vocab_size`` and the special ids come from the
    tokenizer."""

    vocab_size: int = 96  # V: tokens shared by source and target (characters + 3 specials)
    context_length: int = 128  # longest source and longest decoder input, in tokens
    num_encoder_layers: int = 3  # L_enc: encoder blocks
    num_decoder_layers: int = 3  # L_dec: decoder blocks
    num_heads: int = 4  # H: attention heads in every attention layer
    d_model: int = 128  # C: model width; each head has D = C / H
    d_ff: int = 512  # F: feed-forward width, 4 C
    dropout: float = 0.1  # on embeddings, attention weights and residual branches (Vaswani: 0.1)
    bias: bool = False  # biases in Linear and LayerNorm (as our GPT; the original has them)
    activation: str = "relu"  # the original Transformer's ReLU; "gelu" as GPT and BERT
    positions: str = "sinusoidal"  # "sinusoidal" (fixed, eq. 5.2) or "learned" (eq. 5.6)
    share_embeddings: bool = True  # one matrix for source and target (and always the output)
    label_smoothing: float = 0.1  # eps of the label-smoothed loss (Vaswani et al., sec. 5.4)
    pad_id: int = 0  # padding: ignored by attention (source) and by the loss (target)
    bos_id: int = 1  # begins every decoder input
    eos_id: int = 2  # ends every target; decoding stops at it


def seq2seq_parameter_count(config: Seq2SeqConfig) -> int:
    """Closed form (eq. 15.3), without biases: embeddings V C (shared) or 2 V C, learned positions
    2 T C; per encoder block 4 C^2 + 2 C F + 2 C, per decoder block 8 C^2 + 2 C F + 3 C (a second
    attention and its LayerNorm); two final LayerNorms 2 C; the output layer is tied (0). Biases add
    4 C + F + C + 2 C per encoder block, 8 C + F + C + 3 C per decoder block and 2 C."""
    V, T, C, F = config.vocab_size, config.context_length, config.d_model, config.d_ff
    L_enc, L_dec = config.num_encoder_layers, config.num_decoder_layers
    count = V * C * (1 if config.share_embeddings else 2)
    count += 2 * T * C if config.positions == "learned" else 0
    count += L_enc * (4 * C * C + 2 * C * F + 2 * C) + L_dec * (8 * C * C + 2 * C * F + 3 * C)
    count += 2 * C
    if config.bias:
        count += L_enc * (4 * C + F + C + 2 * C) + L_dec * (8 * C + F + C + 3 * C) + 2 * C
    return count


def seq2seq_loss(logits: Tensor, targets, pad_id: int = 0, label_smoothing: float = 0.1) -> Tensor:
    """The label-smoothed cross-entropy of logits (B, T, V) against targets (B, T) (eq. 15.2):

    L = 1/N sum over the N real positions of (1 - eps) (-log p_y) + eps * mean_v (-log p_v),

    positions whose target is ``pad_id`` ignored. F.cross_entropy does it in one fused op; its
    gradient is (softmax - (1 - eps) onehot - eps / V) / N (eq. 3.12)."""
    if logits.ndim != 3:
        raise ValueError(f"seq2seq_loss expected logits (B, T, V), got {logits.shape}")
    return F.cross_entropy(logits, targets, ignore_index=pad_id, label_smoothing=label_smoothing)


class DecoderCache:
    """What generation keeps per decoder layer: the self-attention :class:`KVCache` of the target
    positions so far, and the cross-attention keys and values of the source, (N, H, S, D), computed
    once per source; ``memory_mask`` (N, S) marks the real source tokens.

    :meth:`reorder` keeps row ``index[n]`` as the new row n of everything (beam search calls it
    when it selects hypotheses, so every beam carries its own past with it)."""

    def __init__(self, self_caches: list[KVCache], cross_keys: list, cross_values: list,
                 memory_mask):
        self.self_caches, self.memory_mask = self_caches, memory_mask
        self.cross_keys, self.cross_values = cross_keys, cross_values

    @property
    def length(self) -> int:
        """Decoder positions cached so far (the position of the next token)."""
        return self.self_caches[0].length

    def reorder(self, index) -> None:
        index = np.asarray(index)  # (N_new,) rows to keep, in their new order
        for cache in self.self_caches:
            if cache.keys is not None:  # (N, H, T_max, D) -> (N_new, H, T_max, D)
                cache.keys = take_rows(cache.keys, index)
                cache.values = take_rows(cache.values, index)
        self.cross_keys = [take_rows(keys, index) for keys in self.cross_keys]  # (N_new, H, S, D)
        self.cross_values = [take_rows(values, index) for values in self.cross_values]
        self.memory_mask = take_rows(self.memory_mask, index)  # (N_new, S)


def take_rows(array, index):
    """array[index] along the first axis, the index moved to the array's device."""
    return array[get_array_module(array).asarray(index)]


class Seq2Seq(Module):
    """``model(src, tgt_in, src_mask)`` -> logits (B, T, V); with ``targets`` also the loss."""

    def __init__(self, config: Seq2SeqConfig, rng: np.random.Generator | None = None,
                 dtype=DEFAULT_DTYPE):
        _check_config(config)
        rng = rng or default_rng()
        self.config = config
        C, T = config.d_model, config.context_length
        self.tgt_emb = Embedding(config.vocab_size, C, rng=rng, dtype=dtype)
        self.src_emb = None if config.share_embeddings else Embedding(config.vocab_size, C,
                                                                      rng=rng, dtype=dtype)
        if config.positions == "learned":
            self.src_pos = LearnedPositionalEmbedding(T, C, rng=rng, dtype=dtype)
            self.tgt_pos = LearnedPositionalEmbedding(T, C, rng=rng, dtype=dtype)
        else:
            self.src_pos = self.tgt_pos = SinusoidalPositionalEncoding(T, C)
        self.drop = Dropout(config.dropout, rng=spawn_rng(rng))
        stack = dict(d_ff=config.d_ff, dropout=config.dropout, norm_first=True, bias=config.bias,
                     activation=config.activation, rng=rng, dtype=dtype)
        self.encoder = TransformerEncoder(config.num_encoder_layers, C, config.num_heads, **stack)
        self.decoder = TransformerDecoder(config.num_decoder_layers, C, config.num_heads, **stack)
        for table in (self.tgt_emb, self.src_emb):  # N(0, 1/C): E sqrt(C) has unit-size entries
            if table is not None:
                table.weight.data = (rng.standard_normal(table.weight.shape) / math.sqrt(C)
                                     ).astype(dtype)

    # --- the two halves ---------------------------------------------------------------------------
    def embed(self, ids, table: Embedding, positions: Module, offset: int = 0) -> Tensor:
        """dropout(E[ids] sqrt(C) + P[offset : offset + T]): ids (B, T) -> (B, T, C)."""
        x = table(ids) * math.sqrt(self.config.d_model)  # (B, T, C)
        return self.drop(positions(x, offset=offset))  # (B, T, C)

    def source_mask(self, src, src_mask=None):
        """The (B, S) key padding mask, True at real source tokens: ``src != pad_id`` by default."""
        src = self._ids(src, "src")
        mask = src != self.config.pad_id if src_mask is None else src_mask
        mask = mask.data if isinstance(mask, Tensor) else mask
        mask = mask if hasattr(mask, "dtype") else np.asarray(mask)  # host or device, as given
        if mask.shape != src.shape or mask.dtype != bool:
            raise ValueError(f"src_mask must be boolean (B, S) = {src.shape}, True at real tokens; "
                             f"got {mask.dtype} {mask.shape}")
        return mask

    def encode(self, src, src_mask=None) -> Tensor:
        """The memory (B, S, C): the encoder's vector of every source position. Padded positions
        hold values too, but ``src_mask`` hides them from every query (here and in the decoder)."""
        src = self._ids(src, "src")
        mask = self.source_mask(src, src_mask)
        table = self.src_emb if self.src_emb is not None else self.tgt_emb
        return self.encoder(self.embed(src, table, self.src_pos), mask=mask)  # (B, S, C)

    def decode(self, tgt_in, memory: Tensor, memory_mask) -> Tensor:
        """Teacher-forced decoder: tgt_in (B, T) and memory (B, S, C) -> logits (B, T, V)."""
        tgt_in = self._ids(tgt_in, "tgt_in")
        x = self.embed(tgt_in, self.tgt_emb, self.tgt_pos)  # (B, T, C)
        h = self.decoder(x, memory, memory_mask)  # (B, T, C)
        return h @ self.tgt_emb.weight.T  # (B, T, C) @ (C, V) -> (B, T, V), tied output layer

    def forward(self, src, tgt_in, src_mask=None, targets=None):
        """src (B, S), tgt_in (B, T) -> logits (B, T, V); with ``targets`` (B, T) also the
        label-smoothed loss of eq. 15.2 over the targets that are not ``pad_id``."""
        mask = self.source_mask(src, src_mask)
        logits = self.decode(tgt_in, self.encode(src, mask), mask)  # (B, T, V)
        if targets is None:
            return logits
        c = self.config
        return logits, seq2seq_loss(logits, targets, c.pad_id, c.label_smoothing)

    # --- generation: cached keys and values ------------------------------------------------------
    def start_cache(self, memory: Tensor, memory_mask, max_len: int) -> DecoderCache:
        """A :class:`DecoderCache` for decoder inputs of up to ``max_len`` tokens: empty KV caches,
        and every layer's cross-attention keys k_proj(memory) and values v_proj(memory), computed
        here once for all the steps (B, H, S, D)."""
        self._check_generation(max_len)
        B, S, _ = memory.shape
        H, D = self.config.num_heads, self.config.d_model // self.config.num_heads
        keys, values = [], []
        for block in self.decoder.layers:
            attn = block.cross_attn
            keys.append(attn.k_proj(memory).reshape(B, S, H, D).transpose(0, 2, 1, 3).data)
            values.append(attn.v_proj(memory).reshape(B, S, H, D).transpose(0, 2, 1, 3).data)
        caches = [KVCache(max_len) for _ in self.decoder.layers]
        return DecoderCache(caches, keys, values, memory_mask)

    def decode_step(self, ids, cache: DecoderCache, weights: list | None = None) -> Tensor:
        """The logits (N, T_new, V) of new decoder positions ids (N, T_new), which continue the
        ``cache.length`` cached ones; equal to the matching rows of :meth:`decode` on the whole
        prefix. Each pre-LN decoder block (eq. 8.14) runs as in TransformerBlock.forward, but its
        cross-attention uses the cached keys and values (dropout is off: generation is eval).
        A list ``weights`` receives every layer's cross-attention weights (N, H, T_new, S)."""
        ids = self._ids(ids, "ids")
        self._check_generation(cache.length + ids.shape[1])
        x = self.embed(ids, self.tgt_emb, self.tgt_pos, offset=cache.length)  # (N, T_new, C)
        padding = cache.memory_mask[:, None, None, :]  # (N, 1, 1, S) against (N, H, T_new, S)
        for index, block in enumerate(self.decoder.layers):
            x = x + block.attn(block.ln1(x), is_causal=True, cache=cache.self_caches[index])
            keys, values = cache.cross_keys[index], cache.cross_values[index]
            x = x + _cross_attend(block.cross_attn, block.ln_cross(x), keys, values, padding,
                                  weights)
            x = x + block.ff(block.ln2(x))  # (N, T_new, C)
        h = self.decoder.norm(x)  # (N, T_new, C)
        return h @ self.tgt_emb.weight.T  # (N, T_new, V)

    def cross_attention_weights(self, src, tgt_in, src_mask=None) -> list:
        """Where each target position looks in the source: every decoder layer's cross-attention
        weights (B, H, T, S), rows summing to 1 over the real source tokens (the alignment
        picture of chapter 15). Runs in eval mode without gradients."""
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                mask = self.source_mask(src, src_mask)
                tgt_in = self._ids(tgt_in, "tgt_in")
                cache = self.start_cache(self.encode(src, mask), mask, tgt_in.shape[1])
                weights: list = []
                self.decode_step(tgt_in, cache, weights)
        finally:
            self.train(was_training)
        return weights

    def _check_generation(self, max_len: int) -> None:
        if is_grad_enabled() or self.training:
            raise RuntimeError("cached decoding is for generation: call model.eval() and run it "
                               "under `with tl.no_grad():`")
        if not 1 <= max_len <= self.config.context_length:
            raise ValueError(f"max_len must be in 1..context_length = "
                             f"{self.config.context_length}, got {max_len}")

    def _ids(self, ids, name: str):
        ids = ids.data if isinstance(ids, Tensor) else ids
        ids = ids if hasattr(ids, "dtype") else np.asarray(ids)  # host or device ids, as given
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise ValueError(f"Seq2Seq expects {name} as token ids (B, T) with T >= 1, got shape "
                             f"{ids.shape}; for one sequence use ids[None]")
        if ids.shape[1] > self.config.context_length:
            raise ValueError(f"{name} has {ids.shape[1]} tokens, more than context_length = "
                             f"{self.config.context_length}; shorten it or build the model with a "
                             "longer context_length")
        return ids

    def extra_repr(self) -> str:
        c = self.config
        return (f"V={c.vocab_size}, T={c.context_length}, L_enc={c.num_encoder_layers}, "
                f"L_dec={c.num_decoder_layers}, H={c.num_heads}, C={c.d_model}, "
                f"positions={c.positions}, shared={c.share_embeddings}")


def _cross_attend(attn: Module, x: Tensor, keys, values, mask, weights: list | None) -> Tensor:
    """MultiHeadAttention.forward with the keys and values (N, H, S, D) given: only the queries of
    the new positions x (N, T_new, C) are computed (eqs. 7.1, 7.2)."""
    N, T_new, C = x.shape
    H, D = attn.num_heads, attn.head_dim
    q = attn.q_proj(x).reshape(N, T_new, H, D).transpose(0, 2, 1, 3)  # (N, H, T_new, D)
    out = scaled_dot_product_attention(q, Tensor(keys), Tensor(values), mask=mask,
                                       return_weights=weights is not None)  # (N, H, T_new, D)
    if weights is not None:
        out, p = out
        weights.append(p.data)  # (N, H, T_new, S)
    return attn.out_proj(out.transpose(0, 2, 1, 3).reshape(N, T_new, C))  # (N, T_new, C)


def _check_config(config: Seq2SeqConfig) -> None:
    if config.positions not in POSITION_KINDS:
        raise ValueError(f"unknown positions {config.positions!r}; expected one of "
                         f"{POSITION_KINDS}")
    specials = (config.pad_id, config.bos_id, config.eos_id)
    if len(set(specials)) != 3 or not all(0 <= i < config.vocab_size for i in specials):
        raise ValueError(f"pad_id, bos_id and eos_id must be three different ids in "
                         f"0..{config.vocab_size - 1}, got {specials}")


def shift_right(targets, bos_id: int, pad_id: int) -> np.ndarray:
    """Teacher forcing's decoder input (eq. 15.1): [BOS, y_1 .. y_{T-1}] for targets (B, T) =
    [y_1 .. y_n, EOS, PAD ...]; a position whose previous target is padding is padding too."""
    targets = np.asarray(targets)
    tgt_in = np.full(targets.shape, pad_id, dtype=np.int64)  # (B, T)
    tgt_in[:, 0] = bos_id
    tgt_in[:, 1:] = targets[:, :-1]
    return tgt_in


def pad_sequences(sequences, pad_id: int, length: int | None = None) -> np.ndarray:
    """Lists of token ids of different lengths -> one (B, T) int64 array, padded at the end with
    ``pad_id``; T = the longest (or ``length``)."""
    lengths = np.array([len(s) for s in sequences])  # (B,)
    T = int(lengths.max(initial=0)) if length is None else length
    if lengths.size and lengths.max() > T:
        raise ValueError(f"a sequence of {lengths.max()} tokens does not fit length = {T}")
    out = np.full((len(sequences), T), pad_id, dtype=np.int64)  # (B, T)
    filled = np.arange(T) < lengths[:, None]  # (B, T)
    out[filled] = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences] or [[]])
    return out

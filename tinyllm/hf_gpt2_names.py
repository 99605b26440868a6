"""The one name map between Hugging Face GPT-2 checkpoints and tinyllm's GPT (chapters 11 and 13).

``load_gpt2`` (tinyllm/pretrained.py) reads it one way and ``tinyllm export`` (tinyllm/export.py)
writes it the other. Hugging Face's ``GPT2LMHeadModel`` (Wolf et al. 2020) keeps the names of
OpenAI's released GPT-2 (Radford et al. 2019):

    wte.weight, wpe.weight                      -> wte.weight, wpe.weight   (V, C) and (T, C)
    h.{i}.ln_1 / h.{i}.ln_2                     -> blocks.{i}.ln1 / ln2     (pre-LN, eq. 8.14)
    h.{i}.attn.c_attn       (C, 3C)             -> blocks.{i}.attn.{q,k,v}_proj, three (C, C)
    h.{i}.attn.c_proj       (C, C)              -> blocks.{i}.attn.out_proj
    h.{i}.mlp.c_fc / h.{i}.mlp.c_proj           -> blocks.{i}.ff.fc1 / ff.fc2
    ln_f                                        -> ln_f
    lm_head.weight                              -> (none: tied to wte, as in tinyllm's GPT)

GPT-2's linear layers are ``Conv1D`` modules that store W as (in_features, out_features) and
compute x W + b, tinyllm's layout (eq. 8.2), so no weight is transposed (BERT's nn.Linear is;
see tinyllm/hf_names.py). ``c_attn`` is one (C, 3C) matrix whose output columns are q | k | v:

    [q, k, v] = x W_attn + b_attn,   W_attn = [W_q | W_k | W_v],   b_attn = [b_q | b_k | b_v]

and each of q, k, v is then cut into heads (B, T, C) -> (B, H, T, D) exactly as tinyllm's
MultiHeadAttention cuts it (eq. 7.1), so splitting the columns in three is the whole conversion.

Spellings :func:`canonical_gpt2_name` undoes: ``GPT2LMHeadModel`` prefixes ``transformer.`` (the
released ``gpt2`` files do not); older files hold the causal mask as buffers ``h.{i}.attn.bias``
and ``h.{i}.attn.masked_bias``, which are not weights.
"""

from __future__ import annotations

import numpy as np

GPT2_MODULES = {"wte": "wte", "wpe": "wpe", "ln_f": "ln_f"}  # once per model
GPT2_LAYER = {  # h.{i}.<key> -> blocks.{i}.<value>, once per block
    "ln_1": "ln1",
    "attn.c_proj": "attn.out_proj",
    "ln_2": "ln2",
    "mlp.c_fc": "ff.fc1",
    "mlp.c_proj": "ff.fc2",
}
GPT2_QKV = ("attn.c_attn", ("attn.q_proj", "attn.k_proj", "attn.v_proj"))  # one fused matrix
GPT2_TIED = {"lm_head.weight": "wte.weight"}  # tinyllm's output layer is the token embedding
GPT2_BUFFERS = (".attn.bias", ".attn.masked_bias")  # name endings: the causal mask, not weights
# tinyllm's activation -> the ``activation_function`` / ``hidden_act`` that makes transformers
# compute the same function: "gelu" is the exact erf GELU there, "gelu_new" the tanh one (eq. 8.12)
HF_ACTIVATION = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}


def canonical_gpt2_name(name: str) -> str:
    """A checkpoint's array name as the released GPT-2 spells it:
    'transformer.h.0.ln_1.weight' -> 'h.0.ln_1.weight'."""
    return name.removeprefix("transformer.")


def is_gpt2_buffer(name: str) -> bool:
    """True for the causal-mask buffers some GPT-2 files hold ('h.3.attn.bias'): not weights."""
    return name.endswith(GPT2_BUFFERS)


def gpt2_name_map(num_layers: int) -> dict[str, str | tuple[str, str, str]]:
    """Every canonical GPT-2 name of an L-block model -> the tinyllm parameter it fills, or, for
    ``c_attn``, the three parameters (q, k, v) whose columns it holds side by side."""
    modules: dict[str, str | tuple[str, str, str]] = {}
    for hf, ours in GPT2_MODULES.items():
        modules[hf] = ours
    for i in range(num_layers):
        for hf, ours in GPT2_LAYER.items():
            modules[f"h.{i}.{hf}"] = f"blocks.{i}.{ours}"
        modules[f"h.{i}.{GPT2_QKV[0]}"] = tuple(f"blocks.{i}.{p}" for p in GPT2_QKV[1])
    names: dict[str, str | tuple[str, str, str]] = {}
    for hf, ours in modules.items():
        suffixes = ("weight",) if hf in ("wte", "wpe") else ("weight", "bias")  # tables: no bias
        for suffix in suffixes:
            names[f"{hf}.{suffix}"] = (tuple(f"{p}.{suffix}" for p in ours)
                                       if isinstance(ours, tuple) else f"{ours}.{suffix}")
    return names


def gpt2_arrays(state: dict[str, np.ndarray], num_layers: int, prefix: str = "transformer."
                ) -> dict[str, np.ndarray]:
    """tinyllm GPT's ``state_dict`` -> the arrays of a ``GPT2LMHeadModel``, by Hugging Face name.

    q, k, v are glued column-wise into ``c_attn`` (C, 3C); a bias tinyllm does not have (a GPT
    with ``bias=False``) is written as zeros of the width its weight gives, which adds nothing, so
    transformers computes the same function. ``lm_head.weight`` is left out: transformers ties it
    to ``wte`` (``tie_word_embeddings``).
    """
    arrays = {}
    for hf, ours in gpt2_name_map(num_layers).items():
        parts = ours if isinstance(ours, tuple) else (ours,)
        if all(p in state for p in parts):
            array = np.concatenate([state[p] for p in parts], axis=-1)  # (C, 3C) or (3C,)
        elif hf.endswith(".bias"):  # no bias in tinyllm: zeros, one per output column
            weights = [state[p.removesuffix("bias") + "weight"] for p in parts]
            width = sum(w.shape[-1] for w in weights)
            array = np.zeros(width, dtype=weights[0].dtype)  # (out_features,)
        else:
            raise KeyError(f"the GPT's state has no {ours}: is it a GPT of {num_layers} blocks?")
        arrays[prefix + hf] = np.ascontiguousarray(array)
    return arrays


def gpt_state_from_gpt2(arrays: dict[str, np.ndarray], num_layers: int
                        ) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """The arrays of a GPT-2 checkpoint (any spelling) -> (tinyllm state, names missing from the
    file, names in the file that no tinyllm parameter takes).

    ``c_attn`` (C, 3C) is cut into three (C, C) column blocks q, k, v (its bias (3C,) likewise);
    buffers and ``lm_head.weight`` (tied) are skipped after the tie is checked by the caller.
    """
    names = gpt2_name_map(num_layers)
    canonical = {canonical_gpt2_name(name): array for name, array in arrays.items()}
    state: dict[str, np.ndarray] = {}
    unused = [name for name in canonical
              if name not in names and name not in GPT2_TIED and not is_gpt2_buffer(name)]
    missing = [name for name in names if name not in canonical]
    for hf, ours in names.items():
        if hf not in canonical:
            continue
        array = canonical[hf]
        if isinstance(ours, tuple):
            if array.shape[-1] % 3:
                raise ValueError(f"{hf} has shape {array.shape}: its last axis holds q, k and v "
                                 "side by side, so it must be a multiple of 3")
            for name, part in zip(ours, np.split(array, 3, axis=-1)):  # 3 x (C, C) or 3 x (C,)
                state[name] = np.ascontiguousarray(part)
        else:
            state[ours] = array
    return state, missing, unused

"""Chapter 13: a real pretrained BERT, loaded with NumPy alone, and its sentence embeddings.

    folder = fetch_minilm()                      # sentence-transformers/all-MiniLM-L6-v2, offline
    model = load_bert(folder)                    # any BERT checkpoint in the Hugging Face layout
    tokenizer = WordPieceTokenizer.from_vocab(folder / "vocab.txt", lowercase=True)
    vectors = sentence_embeddings(model, tokenizer, ["To be, or not to be"])      # (N, C)

A Hugging Face checkpoint folder holds ``config.json`` (the shape: sizes, activation, LayerNorm
epsilon), ``model.safetensors`` (the arrays, by name) and ``vocab.txt`` (WordPiece's vocabulary).
:func:`load_bert` builds a :class:`BERTConfig` from the first, renames the arrays through the one
name map (``tinyllm/hf_names.py``), transposes the Linear weights and checks every shape.
:func:`load_gpt2` does the same for a GPT-2 (``GPT2LMHeadModel``) folder, through
``tinyllm/hf_gpt2_names.py``; ``tinyllm export`` writes both layouts (tinyllm/export.py).

Sentence embeddings follow all-MiniLM-L6-v2's recipe (Reimers & Gurevych 2019, Sentence-BERT): the
last hidden states h (B, T, C) averaged over the real tokens, then scaled to unit length:

    u_b = sum_t m_bt h_bt / max(sum_t m_bt, 1e-9),    e_b = u_b / sqrt(|u_b|^2 + eps^2)   (eq. 13.4)

with m the attention mask, inputs truncated at 256 tokens; eps = 1e-12 (torch's F.normalize
divides by max(|u|, eps); the two agree unless |u| is near 1e-12).

The weights of all-MiniLM-L6-v2 are fetched offline by ``tinyllm/minilm.py``
(:func:`fetch_minilm`, re-exported here; see data/README.md).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from tinyllm.autograd import no_grad
from tinyllm.backend import to_numpy
from tinyllm.checkpoint.safetensors import load_safetensors
from tinyllm.hf_gpt2_names import canonical_gpt2_name, gpt_state_from_gpt2
from tinyllm.hf_names import HF_BUFFERS, HF_TIED, bert_name_map, canonical_name, head_of
from tinyllm.minilm import PretrainedError, fetch_minilm  # noqa: F401 (re-exported)
from tinyllm.models import BERT, GPT, BERTConfig, GPTConfig
from tinyllm.nn import Linear
from tinyllm.tensor import Tensor
from tinyllm.wordpiece import WordPieceTokenizer

HIDDEN_ACTS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
               "relu": "relu"}  # Hugging Face's hidden_act -> tinyllm's activation name
MAX_SENTENCE_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length
OTHER_FORMATS = ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "model.ckpt.index")


class AbsentHeadsWarning(UserWarning):
    """A checkpoint lacks some of BERT's pretraining heads: they keep their random values."""


# ----------------------------------------------------------------------------- loading a BERT

def bert_config_from_hf(config: dict, source: str = "config.json",
                        dropout: float | None = None) -> BERTConfig:
    """A :class:`BERTConfig` from a Hugging Face BERT ``config.json``; other architectures refused.

    Sizes map one to one (hidden_size -> d_model, intermediate_size -> d_ff, ...);
    ``max_position_embeddings`` is the context length; ``hidden_dropout_prob`` the dropout.
    """
    model_type = config.get("model_type", "bert")
    architectures = config.get("architectures") or []
    foreign = [name for name in architectures if not name.startswith("Bert")]
    if model_type != "bert" or foreign:
        named = ", ".join(foreign or architectures) or "no architectures"
        raise PretrainedError(f"{source} describes a {named} (model_type {model_type!r}); "
                              "load_bert reads BERT checkpoints only (model_type 'bert', "
                              "architectures Bert*). Its layers and names differ from BERT's.")
    required = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size")
    missing = [key for key in required if not isinstance(config.get(key), int)]
    if missing:
        raise PretrainedError(f"{source} lacks the integer field(s) {missing}; a BERT config.json "
                              f"holds all of {list(required)}")
    act = config.get("hidden_act", "gelu")
    if act not in HIDDEN_ACTS:
        raise PretrainedError(f"{source}: hidden_act {act!r} is not supported; tinyllm has "
                              f"{sorted(HIDDEN_ACTS)}")
    positions = config.get("position_embedding_type", "absolute")
    if positions != "absolute":
        raise PretrainedError(f"{source}: position_embedding_type {positions!r} is not supported;"
                              " tinyllm's BERT learns absolute positions")
    if config["hidden_size"] % config["num_attention_heads"]:
        raise PretrainedError(f"{source}: num_attention_heads = {config['num_attention_heads']} "
                              f"does not divide hidden_size = {config['hidden_size']}")
    return BERTConfig(
        vocab_size=config["vocab_size"], context_length=config.get("max_position_embeddings", 512),
        num_layers=config["num_hidden_layers"], num_heads=config["num_attention_heads"],
        d_model=config["hidden_size"], d_ff=config["intermediate_size"],
        type_vocab_size=config.get("type_vocab_size", 2),
        dropout=config.get("hidden_dropout_prob", 0.1) if dropout is None else dropout,
        eps=float(config.get("layer_norm_eps", 1e-12)), activation=HIDDEN_ACTS[act])


def _read_config(path: str | os.PathLike) -> tuple[Path, dict]:
    """(the folder, its config.json as a dict) of a Hugging Face checkpoint folder."""
    folder = Path(path)
    if not folder.is_dir():
        raise PretrainedError(f"{folder} is not a folder: give the checkpoint's folder (holding "
                              "config.json and model.safetensors)")
    if not (folder / "config.json").is_file():
        raise PretrainedError(f"{folder} has no config.json: a Hugging Face checkpoint folder "
                              "holds config.json and model.safetensors")
    try:
        return folder, json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise PretrainedError(f"{folder / 'config.json'} is not JSON ({error})") from None


def _read_weights(folder: Path) -> dict[str, np.ndarray]:
    """The arrays of ``model.safetensors`` (or of the shards its index names); never a pickle."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return load_safetensors(single)[0]
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        arrays: dict[str, np.ndarray] = {}
        for shard in shards:
            arrays.update(load_safetensors(folder / shard)[0])
        return arrays
    others = [name for name in OTHER_FORMATS if (folder / name).exists()]
    if "pytorch_model.bin" in others:
        raise PretrainedError(
            f"{folder} holds pytorch_model.bin but no model.safetensors. That file is a pickle "
            "(torch.save): loading it runs whatever code it contains, so tinyllm never reads "
            "one. Convert it once where PyTorch is installed: python -c \"import torch; from "
            "safetensors.torch import save_file; save_file(torch.load('pytorch_model.bin', "
            "weights_only=True), 'model.safetensors')\" (or use a revision of the model that "
            "ships model.safetensors).")
    raise PretrainedError(f"{folder} has no model.safetensors"
                          + (f" (only {others}, which tinyllm cannot read)" if others else "")
                          + ": a Hugging Face folder holds config.json and model.safetensors")


def _hf_state(folder: Path, config: BERTConfig, model: BERT) -> tuple[dict, list[str]]:
    """The checkpoint's arrays under tinyllm's names, Linear weights transposed, shapes checked;
    and the names the model does not use."""
    names, own = bert_name_map(config.num_layers), dict(model.named_parameters())
    linear = {name for name, module in model.named_modules() if isinstance(module, Linear)}
    arrays = {canonical_name(name): array for name, array in _read_weights(folder).items()}
    state, unused = {}, []
    for hf, array in arrays.items():
        if hf in HF_BUFFERS:
            continue
        if hf in HF_TIED:
            tied = arrays.get(HF_TIED[hf])
            if tied is not None and not np.array_equal(array, tied):
                raise PretrainedError(f"{folder}: {hf} differs from {HF_TIED[hf]}; tinyllm's "
                                      "MLM head ties them (as BERT does) and cannot load this")
            continue
        if hf not in names:
            unused.append(hf)
            continue
        ours = names[hf]
        if ours.rsplit(".", 1)[0] in linear and ours.endswith(".weight"):
            array = array.T  # PyTorch (out, in) -> tinyllm (in, out)
        if array.shape != own[ours].shape:
            raise PretrainedError(f"{folder}: {hf} has shape {array.shape} in tinyllm's layout, "
                                  f"but config.json implies {own[ours].shape} for {ours}: "
                                  "the config and the weights disagree")
        state[ours] = array
    missing = [hf for hf, ours in names.items() if ours not in state and head_of(ours) is None]
    if missing:
        raise PretrainedError(f"{folder}: the checkpoint lacks {len(missing)} array(s) of the "
                              f"encoder, e.g. {missing[:3]}; is it a BERT of this config?")
    return state, unused


def load_bert(path: str | os.PathLike, dtype=np.float32, dropout: float | None = None) -> BERT:
    """A :class:`BERT` with the weights of a Hugging Face BERT checkpoint folder, in eval mode.

    Heads the checkpoint lacks (a bare ``BertModel`` has no MLM or NSP head) keep their random
    initialisation and are named in an :class:`AbsentHeadsWarning`, with any arrays left unused;
    ``model.absent_heads`` lists them. BF16 and F16 weights are widened to ``dtype``.
    """
    folder, hf_config = _read_config(path)
    config = bert_config_from_hf(hf_config, str(folder / "config.json"), dropout)
    model = BERT(config, rng=np.random.default_rng(0), dtype=dtype)
    state, unused = _hf_state(folder, config, model)
    model.load_state_dict(state, strict=False)
    absent = sorted({head_of(name) for name in dict(model.named_parameters())
                     if name not in state} - {None})
    model.absent_heads = absent
    if absent or unused:
        warnings.warn(f"{folder}: " + (f"no {', '.join(absent)} in the checkpoint; left at random "
                                       "initialisation (fine for the encoder's hidden states)"
                                       if absent else "")
                      + (f"; arrays not used: {unused}" if unused else ""),
                      AbsentHeadsWarning, stacklevel=2)
    return model.eval()


# ----------------------------------------------------------------------------- loading a GPT-2

def gpt_config_from_hf(config: dict, source: str = "config.json",
                       dropout: float | None = None) -> GPTConfig:
    """A :class:`GPTConfig` from a Hugging Face GPT-2 ``config.json``: n_embd -> d_model, n_layer
    -> num_layers, n_head -> num_heads, n_positions -> context_length, biases on (GPT-2 has them in
    every Linear and LayerNorm), activation_function through HIDDEN_ACTS ("gelu_new": tanh GELU).
    Settings tinyllm's GPT does not have (an MLP other than 4 C, another LayerNorm epsilon,
    attention scaled by layer, untied output) are refused by name."""
    if config.get("model_type") != "gpt2":
        raise PretrainedError(f"{source} describes model_type {config.get('model_type')!r}; "
                              "load_gpt2 reads GPT-2 checkpoints only (model_type 'gpt2')")
    required = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
    missing = [key for key in required if not isinstance(config.get(key), int)]
    if missing:
        raise PretrainedError(f"{source} lacks the integer field(s) {missing}; a GPT-2 config.json "
                              f"holds all of {list(required)}")
    act, width = config.get("activation_function", "gelu_new"), config["n_embd"]
    unsupported = {  # field -> (its value, what tinyllm's GPT computes)
        "activation_function": (act in HIDDEN_ACTS, sorted(HIDDEN_ACTS)),
        "n_inner": (config.get("n_inner") in (None, 4 * width), f"None or 4 n_embd = {4 * width}"),
        "layer_norm_epsilon": (config.get("layer_norm_epsilon", 1e-5) == 1e-5, 1e-5),
        "scale_attn_weights": (config.get("scale_attn_weights", True) is True, True),
        "scale_attn_by_inverse_layer_idx":
            (config.get("scale_attn_by_inverse_layer_idx", False) is False, False),
        "tie_word_embeddings": (config.get("tie_word_embeddings", True) is True, True),
    }
    for field, (ok, expected) in unsupported.items():
        if not ok:
            raise PretrainedError(f"{source}: {field} = {config.get(field)!r} is not supported; "
                                  f"tinyllm's GPT computes {field} = {expected}")
    if width % config["n_head"]:
        raise PretrainedError(f"{source}: n_head = {config['n_head']} does not divide "
                              f"n_embd = {width}")
    return GPTConfig(vocab_size=config["vocab_size"], context_length=config["n_positions"],
                     num_layers=config["n_layer"], num_heads=config["n_head"], d_model=width,
                     dropout=config.get("resid_pdrop", 0.1) if dropout is None else dropout,
                     bias=True, activation=HIDDEN_ACTS[act])


def load_gpt2(path: str | os.PathLike, dtype=np.float32, dropout: float | None = None) -> GPT:
    """A :class:`GPT` with the weights of a Hugging Face GPT-2 checkpoint folder, in eval mode.

    The arrays are renamed and ``c_attn`` is cut into q, k, v by the one name map
    (tinyllm/hf_gpt2_names.py, which ``tinyllm export`` writes with); no weight is transposed
    (GPT-2's Conv1D stores (in, out), as tinyllm does). Every array must be there and fit;
    arrays the model does not use are named in a warning.
    """
    folder, hf_config = _read_config(path)
    config = gpt_config_from_hf(hf_config, str(folder / "config.json"), dropout)
    model = GPT(config, rng=np.random.default_rng(0), dtype=dtype)
    arrays = _read_weights(folder)
    state, missing, unused = gpt_state_from_gpt2(arrays, config.num_layers)
    head = {canonical_gpt2_name(k): v for k, v in arrays.items()}.get("lm_head.weight")
    if head is not None and not np.array_equal(head, state.get("wte.weight")):
        raise PretrainedError(f"{folder}: lm_head.weight differs from wte.weight; tinyllm's GPT "
                              "ties its output layer to the token embedding and cannot load it")
    if missing:
        raise PretrainedError(f"{folder}: the checkpoint lacks {len(missing)} array(s) of a "
                              f"{config.num_layers}-block GPT-2, e.g. {missing[:3]}")
    own = dict(model.named_parameters())
    for name, array in state.items():
        if array.shape != own[name].shape:
            raise PretrainedError(f"{folder}: {name} has shape {array.shape} in tinyllm's "
                                  f"layout, but config.json implies {own[name].shape}: the "
                                  "config and the weights disagree")
    model.load_state_dict(state)
    if unused:
        warnings.warn(f"{folder}: arrays not used: {unused}", AbsentHeadsWarning, stacklevel=2)
    return model.eval()


# ----------------------------------------------------------------------------- sentence embeddings

def mean_pool(h: Tensor, attention_mask) -> Tensor:
    """u = sum_t m_t h_t / max(sum_t m_t, 1e-9): h (B, T, C), mask (B, T) -> (B, C) (eq. 13.4)."""
    m = np.asarray(to_numpy(attention_mask), dtype=h.dtype)[:, :, None]  # (B, T, 1)
    counts = np.maximum(m.sum(axis=1), 1e-9)  # (B, 1)
    return (h * m).sum(axis=1) / counts  # (B, C)


def l2_normalize(u: Tensor, eps: float = 1e-12) -> Tensor:
    """e = u / sqrt(|u|^2 + eps^2), each row (..., C) scaled to unit length (eq. 13.4)."""
    return u / ((u * u).sum(axis=-1, keepdims=True) + eps * eps).sqrt()  # (..., C)


def sentence_embeddings(model: BERT, tokenizer: WordPieceTokenizer, sentences: Sequence[str],
                        batch_size: int = 32,
                        max_length: int = MAX_SENTENCE_TOKENS) -> np.ndarray:
    """Unit vectors (N, C), one per sentence: mean of the last hidden states over the real
    tokens, L2-normalised (eq. 13.4); each input ``[CLS] ... [SEP]`` cut at ``max_length``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if isinstance(sentences, str):
        raise TypeError("sentences must be a list of strings, got one string; wrap it: [text]")
    was_training, rows = model.training, []
    model.eval()
    try:
        with no_grad():
            for start in range(0, len(sentences), batch_size):
                batch = tokenizer.encode_batch(sentences[start:start + batch_size],
                                               max_length=max_length)
                h = model.encode(batch["ids"], batch["segment_ids"],
                                 batch["attention_mask"])  # (B, T, C)
                pooled = l2_normalize(mean_pool(h, batch["attention_mask"]))  # (B, C)
                rows.append(to_numpy(pooled.data))
    finally:
        model.train(was_training)
    if not rows:
        return np.zeros((0, model.config.d_model), dtype=model.tok_emb.weight.dtype)
    return np.concatenate(rows)  # (N, C)

"""``tinyllm export``: a trained GPT or BERT as a Hugging Face checkpoint folder (chapter 13).

    tinyllm export --checkpoint runs/shakespeare-char --format hf --out hf/shakespeare-char

The folder is what ``transformers`` reads with ``AutoModelForCausalLM.from_pretrained`` (a GPT, as
``GPT2LMHeadModel``) or ``BertForPreTraining.from_pretrained`` (a BERT), and
``AutoTokenizer.from_pretrained``:

    config.json             the shape, in GPT-2's or BERT's field names
    model.safetensors       the weights under Hugging Face's names (tinyllm/hf_gpt2_names.py for
                            GPT-2, tinyllm/hf_names.py for BERT: the maps the loaders read)
    tokenizer.json, ...     the tokenizer (tinyllm/hf_tokenizer.py)

The conversion changes names and layouts, never values: transformers computes the same logits
(within float32 rounding; tests/test_hf_export.py measures it), and ``load_gpt2`` / ``load_bert``
read the folder back bit for bit. The folder is written whole into a temporary folder beside
``--out`` and renamed into place, so a reader never sees half an export; a non-empty ``--out`` is
replaced only with ``--overwrite``, and a folder holding a tinyllm run never.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tinyllm.checkpoint import (
    CHECKPOINT_NAME,
    QUANTIZED_NAME,
    is_quantized_checkpoint,
    load_checkpoint,
    save_safetensors,
)
from tinyllm.hf_gpt2_names import HF_ACTIVATION, gpt2_arrays
from tinyllm.hf_names import bert_name_map
from tinyllm.hf_tokenizer import tokenizer_files
from tinyllm.models import BERT, GPT
from tinyllm.nn import Linear
from tinyllm.runs import RUN_FILES, write_bytes

EXPORT_FORMATS = ("hf",)  # Hugging Face transformers
EXPORT_KINDS = {"gpt": "GPT2LMHeadModel", "bert": "BertForPreTraining"}  # tinyllm kind -> class


class ExportError(ValueError):
    """A checkpoint that cannot be exported, or an --out that must not be written."""


# ----------------------------------------------------------------------------- configs and arrays

def gpt2_config(model: GPT, tokenizer) -> dict:
    """config.json of a ``GPT2LMHeadModel`` with the shape and function of tinyllm's ``model``:
    pre-LN blocks, LayerNorm epsilon 1e-5, MLP width 4 C (n_inner None), output tied to wte."""
    c = model.config
    end = getattr(tokenizer, "special_tokens", {}).get("<|endoftext|>")  # BPE runs may have it
    return {"architectures": [EXPORT_KINDS["gpt"]], "model_type": "gpt2",
            "vocab_size": c.vocab_size, "n_positions": c.context_length, "n_embd": c.d_model,
            "n_layer": c.num_layers, "n_head": c.num_heads, "n_inner": None,
            "activation_function": HF_ACTIVATION[c.activation],
            "resid_pdrop": c.dropout, "embd_pdrop": c.dropout, "attn_pdrop": c.dropout,
            "layer_norm_epsilon": model.ln_f.eps, "initializer_range": 0.02,
            "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
            "reorder_and_upcast_attn": False, "tie_word_embeddings": True, "use_cache": True,
            "bos_token_id": end, "eos_token_id": end}


def bert_config(model: BERT, tokenizer) -> dict:
    """config.json of a ``BertForPreTraining`` with the shape and function of tinyllm's BERT: the
    same post-LN encoder, MLM head (dense, activation, LayerNorm, tied decoder) and NSP head."""
    c = model.config
    pad = getattr(tokenizer, "special_tokens", {}).get("[PAD]", 0)
    return {"architectures": [EXPORT_KINDS["bert"]], "model_type": "bert",
            "vocab_size": c.vocab_size, "hidden_size": c.d_model, "num_hidden_layers": c.num_layers,
            "num_attention_heads": c.num_heads, "intermediate_size": c.d_ff,
            "hidden_act": HF_ACTIVATION[c.activation], "hidden_dropout_prob": c.dropout,
            "attention_probs_dropout_prob": c.dropout, "max_position_embeddings": c.context_length,
            "type_vocab_size": c.type_vocab_size, "initializer_range": 0.02,
            "layer_norm_eps": c.eps, "pad_token_id": pad, "position_embedding_type": "absolute",
            "tie_word_embeddings": True}


def bert_arrays(model: BERT) -> dict[str, np.ndarray]:
    """tinyllm BERT's weights under ``BertForPreTraining``'s names: the map of
    tinyllm/hf_names.py read backwards, ``bert.`` before the encoder's names, every Linear weight
    transposed to PyTorch's (out, in). The decoder (tied to the word embeddings) and its bias (the
    same array as cls.predictions.bias) are left to transformers' tying."""
    state = model.state_dict()
    linear = {name for name, module in model.named_modules() if isinstance(module, Linear)}
    arrays = {}
    for hf, ours in bert_name_map(model.config.num_layers).items():
        array = state[ours]
        if ours.endswith(".weight") and ours.rsplit(".", 1)[0] in linear:
            array = array.T  # tinyllm (in, out) -> PyTorch (out, in)
        arrays[hf if hf.startswith("cls.") else "bert." + hf] = np.ascontiguousarray(array)
    return arrays


def hf_files(model, tokenizer) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(the arrays of model.safetensors, file name -> text of every other file) for a GPT or BERT
    and its tokenizer."""
    if isinstance(model, GPT):
        arrays, config = gpt2_arrays(model.state_dict(), model.config.num_layers), \
            gpt2_config(model, tokenizer)
        kind = "gpt"
    elif isinstance(model, BERT):
        arrays, config, kind = bert_arrays(model), bert_config(model, tokenizer), "bert"
    else:
        raise ExportError(f"cannot export a {type(model).__name__}: tinyllm exports "
                          f"{' and '.join(k.upper() for k in EXPORT_KINDS)} models")
    files = {"config.json": json.dumps(config, indent=2) + "\n"}
    files.update(tokenizer_files(tokenizer, model.config.context_length, kind))
    return arrays, files


# ----------------------------------------------------------------------------- the folder

def check_out_folder(out: Path, overwrite: bool) -> None:
    """Refuse a file, a folder holding a tinyllm run (never replaced), and a non-empty folder
    without ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file: give a folder for the exported checkpoint")
    if not out.is_dir():
        return
    runs = [name for name in (*RUN_FILES, QUANTIZED_NAME) if (out / name).exists()]
    if runs:
        raise ExportError(f"--out {out} holds a tinyllm run ({', '.join(runs)}); an export never "
                          "replaces one, even with --overwrite: choose another --out")
    if any(out.iterdir()) and not overwrite:
        raise ExportError(f"--out {out} already exists and is not empty: pass --overwrite to "
                          "replace it, or choose another --out")


def write_hf_folder(model, tokenizer, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``model`` and ``tokenizer`` as a Hugging Face checkpoint folder ``out``, atomically:
    everything goes into a temporary folder beside it, which is then renamed to ``out``."""
    out = Path(out)
    check_out_folder(out, overwrite)
    arrays, files = hf_files(model, tokenizer)  # every error before anything is written
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    old = None
    try:
        save_safetensors(temporary / "model.safetensors", arrays, {"format": "pt"})
        for name, text in files.items():
            write_bytes(temporary / name, text.encode("utf-8"))
        os.chmod(temporary, 0o755)  # mkdtemp's folders are private (0o700)
        check_out_folder(out, overwrite)  # again, just before the rename
        if out.is_dir():  # empty, or replaced with --overwrite: moved aside, deleted after
            old = temporary.with_name(temporary.name.removesuffix(".tmp") + ".old")
            os.rename(out, old)
        os.rename(temporary, out)
    except BaseException:
        if old is not None and not out.exists():
            os.rename(old, out)  # put the previous export back
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out


def export_run(checkpoint: str | os.PathLike, out: str | os.PathLike, fmt: str = "hf",
               overwrite: bool = False) -> Path:
    """Export the training checkpoint ``checkpoint`` (a file, or a run folder) to ``out``."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {list(EXPORT_FORMATS)}")
    path = Path(checkpoint)
    quantized = path / QUANTIZED_NAME if path.is_dir() else path
    if not (path / CHECKPOINT_NAME).exists() and is_quantized_checkpoint(quantized):
        raise ExportError(f"{checkpoint} is a quantized checkpoint (int8/int4 levels and "
                          "scales, chapter 16); Hugging Face's GPT-2 and BERT hold float weights: "
                          "export the training run it was quantized from")
    if not path.exists():
        raise ExportError(f"{checkpoint} does not exist: give a run folder written by "
                          f"`tinyllm train` (holding {CHECKPOINT_NAME}) or that file")
    if path.is_dir() and not (path / CHECKPOINT_NAME).exists():
        raise ExportError(f"{checkpoint} is not a run: it has no {CHECKPOINT_NAME}; give the "
                          "folder `tinyllm train --out` wrote")
    model, tokenizer, _ = load_checkpoint(path)
    if not isinstance(model, (GPT, BERT)):
        raise ExportError(f"{checkpoint} holds a {type(model).__name__}; `tinyllm export` "
                          f"exports the model kinds {sorted(EXPORT_KINDS)} (as "
                          f"{' and '.join(EXPORT_KINDS.values())}); LSTM and seq2seq models "
                          "have no Hugging Face counterpart here")
    return write_hf_folder(model, tokenizer, out, overwrite)


# ----------------------------------------------------------------------------- the command

def add_parser(commands) -> None:
    """``tinyllm export``'s arguments (cli.py calls this)."""
    p = commands.add_parser("export", help="write a GPT or BERT as a Hugging Face checkpoint",
                            description="Write a trained GPT (as GPT2LMHeadModel) or BERT (as "
                                        "BertForPreTraining) with its tokenizer to a folder "
                                        "that transformers' from_pretrained reads.")
    p.add_argument("--checkpoint", required=True, help="run folder, or its checkpoint file")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="hf",
                   help="hf: Hugging Face transformers (config.json, model.safetensors, "
                        "tokenizer files)")
    p.add_argument("--out", required=True, help="folder to write (must not exist or be empty)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --out (never a folder holding a tinyllm run)")
    p.set_defaults(handler=run_command)


def run_command(args) -> None:
    """``tinyllm export``: the run as a Hugging Face folder, and what to do with it."""
    out = export_run(args.checkpoint, args.out, args.format, args.overwrite)
    names = sorted(p.name for p in out.iterdir())
    print(f"wrote {out}: {', '.join(names)}")
    architecture = json.loads((out / "config.json").read_text())["architectures"][0]
    loader = "AutoModelForCausalLM" if architecture == EXPORT_KINDS["gpt"] else architecture
    print(f"in Python, with transformers: {loader}.from_pretrained({str(out)!r}) and "
          f"AutoTokenizer.from_pretrained({str(out)!r})")

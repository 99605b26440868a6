"""Chapter 09, a training checkpoint is checked before anything is built from it.

Under test: ``tinyllm/checkpoint/validate.py`` and the reading side of
``tinyllm/checkpoint/training.py``: every metadata field the loader uses is present and of its
type, ``model_config`` is a config of the right fields, types and ranges, the parameter count it
implies equals the weights the file holds, and a BPE tokenizer cannot spell a vocabulary too large
to hold; all of it from the header, before an array is allocated. Each error names the file and
the field.
"""

import dataclasses
import json
import re
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyllm import optim
from tinyllm.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_optimizer,
    load_safetensors,
    save_checkpoint,
    save_optimizer,
    save_safetensors,
    saved_settings,
)
from tinyllm.models import (
    BERT,
    GPT,
    BERTConfig,
    GPTConfig,
    bert_parameter_count,
    gpt_parameter_count,
)
from tinyllm.tokenizers import BPETokenizer, CharTokenizer

pytestmark = pytest.mark.ch09

TEXT = "to be or not to be"


def write_checkpoint(path, model, tokenizer) -> None:
    optimizer = optim.AdamW(model.parameters(), lr=1e-3)
    for p in model.parameters():  # one step, so that the optimizer has moments to save
        p.grad = np.ones_like(p.data)
    optimizer.step()
    scheduler = optim.LRScheduler(optimizer, lambda step: 1e-3)
    save_checkpoint(path, model, optimizer, scheduler, tokenizer, np.random.default_rng(0),
                    settings={"model": "gpt", "lr": 1e-3}, step=1,
                    history={"step": [1], "train_loss": [2.0]},
                    data={"path": "t.txt", "size": 18, "sha256": "0" * 64})


@pytest.fixture
def gpt_file(tmp_path):
    """A complete checkpoint of a tiny GPT (V = 7 characters, C = 4, 248 weights): about 5 KB."""
    tokenizer = CharTokenizer.from_text(TEXT)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, context_length=4, num_layers=1,
                       num_heads=1, d_model=4)
    path = tmp_path / "gpt.safetensors"
    write_checkpoint(path, GPT(config, rng=np.random.default_rng(1)), tokenizer)
    return path


def rewritten(path, metadata=None, arrays=None, drop=()):
    """A copy of the checkpoint at ``path`` with some metadata fields and arrays replaced."""
    old_arrays, old_metadata = load_safetensors(path)
    new_metadata = {k: v for k, v in {**old_metadata, **(metadata or {})}.items() if k not in drop}
    new_arrays = {k: v for k, v in {**old_arrays, **(arrays or {})}.items() if k not in drop}
    target = path.with_name("edited.safetensors")
    save_safetensors(target, new_arrays, new_metadata)
    return target


def config_of(path, **changes) -> str:
    return json.dumps({**json.loads(load_safetensors(path)[1]["model_config"]), **changes})


def test_a_valid_checkpoint_loads_with_every_field(gpt_file):
    model, tokenizer, info = load_checkpoint(gpt_file)
    assert isinstance(model, GPT) and tokenizer.vocab_size == model.config.vocab_size == 7
    assert info["step"] == 1 and info["scheduler_state"] == {"step_count": 0}
    assert info["history"] == {"step": [1], "train_loss": [2.0]}
    assert info["data"] == {"path": "t.txt", "size": 18, "sha256": "0" * 64}
    assert info["settings"] == {"model": "gpt", "lr": 1e-3} == saved_settings(gpt_file)
    assert set(info["optimizer_state"]["state"]) == set(range(len(model.parameters())))


def test_a_bert_checkpoint_with_a_bpe_tokenizer_loads(tmp_path):
    tokenizer = BPETokenizer.train(TEXT * 3, vocab_size=256 + 5 + 4,
                                   special_tokens=["[PAD]", "[CLS]", "[SEP]", "[MASK]"])
    config = BERTConfig(vocab_size=tokenizer.vocab_size, context_length=8, num_layers=1,
                        num_heads=2, d_model=4, d_ff=8)
    path = tmp_path / "bert.safetensors"
    write_checkpoint(path, BERT(config, rng=np.random.default_rng(2)), tokenizer)
    model, loaded, _ = load_checkpoint(path)
    assert isinstance(model, BERT) and model.config == config
    assert loaded.encode(TEXT) == tokenizer.encode(TEXT)


# (field, new metadata value, phrase of the error): each a file the loader must refuse
BAD_METADATA = [
    ("model_kind", "llama",
     "field 'model_kind' is 'llama'; expected one of ['bert', 'gpt', 'lstm', 'seq2seq']"),
    ("step", "-1", "field 'step' must be a non-negative integer"),
    ("step", "1.5", "field 'step' must be a non-negative integer"),
    ("step", "\u0663", "field 'step' must be a non-negative integer"),  # an Arabic-Indic 3
    ("model_config", "[4, 4]", "field 'model_config' must be a JSON object"),
    ("model_config", "{not json", "field 'model_config' is not valid JSON"),
    ("train_config", "null", "field 'train_config' must be a JSON object"),
    ("history", "[" * 100_000, "field 'history' is not valid JSON"),  # no RecursionError
    ("history", "[" * 100_000 + "]" * 100_000, "field 'history' is not valid JSON"),
    ("tokenizer", '{"type": "word"}', "field 'tokenizer' is not a tokenizer"),
    ("tokenizer", '{"type": "char", "chars": "ab"}', "has 2 tokens but model_config.vocab_size"),
    ("tokenizer", '{"type": "char", "chars": "aabbccd"}', "field 'tokenizer' is not a"),
    ("optimizer", '{"steps": 1}', "field 'optimizer' must hold a 'state' object"),
    ("generators", '{"blocks.0.rng": {}}', "field 'generators' must hold the batch generator"),
    ("scheduler", '{"step_count": "3"}', "field 'scheduler' must hold an integer 'step_count'"),
    ("data", "[1]", "field 'data' must be a JSON object or null"),
]


@pytest.mark.parametrize("field, value, phrase", BAD_METADATA,
                         ids=[f"{f}={v[:12]!r}" for f, v, _ in BAD_METADATA])
def test_each_bad_metadata_field_is_named(field, value, phrase, gpt_file):
    bad = rewritten(gpt_file, {field: value})
    with pytest.raises(CheckpointError, match=re.escape(phrase)) as info:
        load_checkpoint(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("field", ["model_kind", "model_config", "step", "tokenizer",
                                   "optimizer", "generators", "history", "train_config"])
def test_a_missing_metadata_field_is_named(field, gpt_file):
    with pytest.raises(CheckpointError, match=f"field '{field}' is missing"):
        load_checkpoint(rewritten(gpt_file, drop=[field]))


def test_files_from_before_the_scheduler_and_the_data_were_saved_still_load(gpt_file):
    _, _, info = load_checkpoint(rewritten(gpt_file, drop=["scheduler", "data"]))
    assert info["scheduler_state"] == {"step_count": 1} and info["data"] is None


# (field of model_config, value, phrase): each breaks the type or the range of one field
BAD_CONFIG = [
    ("num_layers", True, "'model_config.num_layers' must be a positive integer, got True"),
    ("num_layers", 1.0, "'model_config.num_layers' must be a positive integer, got 1.0"),
    ("num_layers", 0, "'model_config.num_layers' must be a positive integer, got 0"),
    ("d_model", -4, "'model_config.d_model' must be a positive integer"),
    ("d_model", "4", "'model_config.d_model' must be a positive integer, got '4'"),
    ("vocab_size", None, "'model_config.vocab_size' must be a positive integer, got None"),
    ("dropout", 1.5, "'model_config.dropout' must be in [0, 1)"),
    ("dropout", float("nan"), "'model_config.dropout' must be a finite number"),
    ("dropout", False, "'model_config.dropout' must be a finite number"),
    ("bias", 1, "'model_config.bias' must be true or false, got 1"),
    ("activation", "swish", "'model_config.activation' must be one of ['gelu', 'gelu_tanh'"),
    ("num_heads", 3, "'model_config.num_heads' must divide d_model = 4, got 3"),
]


@pytest.mark.parametrize("name, value, phrase", BAD_CONFIG,
                         ids=[f"{n}={v!r}" for n, v, _ in BAD_CONFIG])
def test_each_bad_config_field_is_named(name, value, phrase, gpt_file):
    bad = rewritten(gpt_file, {"model_config": config_of(gpt_file, **{name: value})})
    with pytest.raises(CheckpointError, match=re.escape(phrase)) as info:
        load_checkpoint(bad)
    assert str(bad) in str(info.value)


def test_config_fields_must_be_exactly_the_dataclass_fields(gpt_file):
    config = json.loads(config_of(gpt_file))
    config["n_embd"] = config.pop("d_model")
    with pytest.raises(CheckpointError, match=re.escape(
            "does not describe a GPTConfig: unknown ['n_embd'], missing ['d_model']")):
        load_checkpoint(rewritten(gpt_file, {"model_config": json.dumps(config)}))


def test_a_tiny_file_that_claims_a_huge_model_is_refused_before_anything_is_allocated(gpt_file):
    """A few KB that claim a 100-billion-parameter GPT: refused from the header, allocating
    (almost) nothing; building the model first would ask for hundreds of gigabytes."""
    huge = dict(vocab_size=7, context_length=4096, num_layers=96, num_heads=128, d_model=12288)
    claimed = gpt_parameter_count(GPTConfig(**huge))
    assert claimed > 10**11
    bad = rewritten(gpt_file, {"model_config": config_of(gpt_file, **huge)})
    assert bad.stat().st_size < 8_000
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=re.escape(
                f"describes a GPT of {claimed:,} parameters but the file holds 248 weights")):
            load_checkpoint(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000


def test_a_bpe_tokenizer_whose_merges_would_fill_the_memory_is_refused(tmp_path):
    """Merge k joins token 255 + k with itself: token lengths double, 2**60 bytes after 60
    merges. The lengths are added up without building a single token."""
    merges = [[0, 0]] + [[256 + k, 256 + k] for k in range(59)]
    tokenizer = BPETokenizer(merges[:3])  # a valid small one to write the file with
    config = GPTConfig(vocab_size=256 + 60, context_length=4, num_layers=1, num_heads=1,
                       d_model=4)
    path = tmp_path / "bomb.safetensors"
    model = GPT(config, rng=np.random.default_rng(0))
    write_checkpoint(path, model, tokenizer)
    bomb = json.dumps({**tokenizer.to_dict(), "merges": merges})
    bad = rewritten(path, {"tokenizer": bomb})
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="field 'tokenizer' has merges whose tokens"):
            load_checkpoint(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000


def test_weights_that_do_not_fit_the_config_are_refused(gpt_file):
    arrays, _ = load_safetensors(gpt_file)
    weight = arrays["model.wpe.weight"]  # (4, 4): the count stays, the names or shapes do not
    cases = [
        ({"model.wpe.weight": weight[:2]}, "describes a GPT of 248 parameters but the file holds"),
        ({"model.wpe.weight": weight.astype(np.int64)}, "'model.wpe.weight' is I64"),
        ({"model.wpe.weight": weight.reshape(2, 8)}, "the weights do not fit its model_config"),
        ({"optimizer.first.m": np.zeros(1)}, "'optimizer.first.m' is not named optimizer."),
    ]
    for replacement, phrase in cases:
        with pytest.raises(CheckpointError, match=re.escape(phrase)):
            load_checkpoint(rewritten(gpt_file, arrays=replacement))


@settings(max_examples=25, deadline=None)
@given(V=st.integers(1, 9), T=st.integers(1, 5), L=st.integers(1, 2), H=st.sampled_from([1, 2]),
       C=st.sampled_from([2, 4]), bias=st.booleans(), bert=st.booleans(), F=st.integers(1, 6))
def test_the_parameter_count_of_a_config_is_the_models(V, T, L, H, C, bias, bert, F):
    """check_weights trusts the closed forms (eq. 11.7, 12.5): they must count what the model
    holds, tied weights once, or a valid checkpoint would be refused."""
    if bert:
        config = BERTConfig(vocab_size=V, context_length=T, num_layers=L, num_heads=H, d_model=C,
                            d_ff=F)
        model, count = BERT(config), bert_parameter_count(config)
    else:
        config = GPTConfig(vocab_size=V, context_length=T, num_layers=L, num_heads=H, d_model=C,
                           bias=bias)
        model, count = GPT(config), gpt_parameter_count(config)
    assert count == model.num_parameters() == sum(a.size for a in model.state_dict().values())
    assert dataclasses.asdict(config)  # the config a checkpoint stores is plain data


def test_an_optimizer_file_with_bad_json_is_a_checkpoint_error(tmp_path):
    model = GPT(GPTConfig(vocab_size=4, context_length=2, num_layers=1, num_heads=1, d_model=2))
    path = tmp_path / "opt.safetensors"
    save_optimizer(path, optim.AdamW(model.parameters()))
    arrays, metadata = load_safetensors(path)
    for bad, phrase in [("[" * 100_000, "not valid JSON"), ("[1]", "must hold a 'state'")]:
        save_safetensors(path, arrays, {**metadata, "optimizer": bad})
        with pytest.raises(CheckpointError, match=f"field 'optimizer' .*{re.escape(phrase)}"):
            load_optimizer(path, optim.AdamW(model.parameters()))

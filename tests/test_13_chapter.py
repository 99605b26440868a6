"""Chapter 13's equations that the other test_13 files do not already check.

- eq. 13.2: the first unit WordPiece learns is the pair of highest pointwise mutual information,
  computed by hand from the counts; BPE (eq. 10.x, highest count) picks another pair;
- eq. 13.6: the safetensors layout by hand: 8-byte size, JSON header, arrays back to back;
- eq. 13.8: a Linear weight read from a Hugging Face file is used transposed: x W^T + b by hand
  equals tinyllm's layer; the export (tinyllm/export.py) and load_bert invert each other;
- eq. 13.9: float32 summation error within the bound (n - 1) u sum |x_i|, whatever the order.
"""

import json
import math
import struct
import warnings
from collections import Counter

import numpy as np
import pytest

from tinyllm.bpe import learn_merges
from tinyllm.checkpoint.safetensors import load_safetensors, read_header, save_safetensors
from tinyllm.export import bert_config, write_hf_folder
from tinyllm.models import BERT, BERTConfig
from tinyllm.pretrained import AbsentHeadsWarning, bert_config_from_hf, load_bert
from tinyllm.tensor import Tensor
from tinyllm.wordpiece import WordPieceTokenizer
from tinyllm.wordpiece_merges import initial_units, learn_wordpiece, merged_unit

pytestmark = pytest.mark.ch13
TINY = BERTConfig(vocab_size=30, context_length=12, num_layers=2, num_heads=2, d_model=8,
                  d_ff=16, dropout=0.0)


# ----------------------------------------------------------------------------- eq. 13.2

def test_the_first_merge_has_the_highest_pointwise_mutual_information():
    # eq. 13.2
    words = {"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5, "qz": 1}
    units, pairs = Counter(), Counter()
    for word, n in words.items():
        pieces = initial_units(word)
        for piece in pieces:
            units[piece] += n
        for a, b in zip(pieces, pieces[1:]):
            pairs[a, b] += n
    total = sum(units.values())                            # N, all units
    pmi = {(a, b): math.log(total * c / (units[a] * units[b])) for (a, b), c in pairs.items()}
    best = max(pmi, key=pmi.get)
    learned = learn_wordpiece(list(words), list(words.values()), len(set(units)) + 1)
    assert learned[-1] == merged_unit(*best) == "qz"       # rare, but never apart
    most_frequent = pairs.most_common(1)[0][0]             # BPE's rule: the highest count
    byte_words = [w.encode() for w in words]
    (first_bpe,) = learn_merges(byte_words, list(words.values()), 1)
    assert bytes(first_bpe) == "".join(most_frequent).replace("#", "").encode() == b"ug"


# ----------------------------------------------------------------------------- eq. 13.6

def test_the_safetensors_layout_by_hand(tmp_path):
    # eq. 13.6
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([7], np.int64),
              "c": np.ones((2, 2), np.float16)}
    path = tmp_path / "x.safetensors"
    save_safetensors(path, arrays, metadata={"note": "hi"})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])                    # the header's length, little-endian
    header = json.loads(raw[8:8 + n])
    assert header.pop("__metadata__") == {"note": "hi"}
    begin = 0
    for name, array in arrays.items():                     # back to back, in order
        entry = header[name]
        assert entry["shape"] == list(array.shape)
        assert entry["data_offsets"] == [begin, begin + array.itemsize * array.size]
        stored = raw[8 + n + begin: 8 + n + entry["data_offsets"][1]]
        assert stored == array.astype(array.dtype.newbyteorder("<")).tobytes()
        begin = entry["data_offsets"][1]
    assert len(raw) == 8 + n + begin                       # nothing after the last array
    assert [(i.begin, i.end) for i in read_header(path).tensors.values()] == \
        [tuple(header[k]["data_offsets"]) for k in arrays]
    assert {k: v["dtype"] for k, v in header.items()} == {"a": "F32", "b": "I64", "c": "F16"}


# ----------------------------------------------------------------------------- eq. 13.8

def test_a_linear_weight_is_used_transposed(tmp_path):
    # eq. 13.8
    model = BERT(TINY, rng=np.random.default_rng(1)).eval()
    tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                                   + [f"t{i}" for i in range(25)])
    folder = write_hf_folder(model, tokenizer, tmp_path / "m")
    arrays, _ = load_safetensors(folder / "model.safetensors")
    w = arrays["bert.encoder.layer.1.intermediate.dense.weight"]   # PyTorch: (out, in)
    b = arrays["bert.encoder.layer.1.intermediate.dense.bias"]
    assert w.shape == (16, 8)
    x = np.random.default_rng(2).standard_normal((3, 8)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AbsentHeadsWarning)  # every head is in the file
        loaded = load_bert(folder)
    fc1 = loaded.encoder.layers[1].ff.fc1
    np.testing.assert_allclose(fc1(Tensor(x)).numpy(), x @ w.T + b, rtol=1e-5, atol=1e-6)
    assert fc1.weight.shape == (8, 16)                      # tinyllm: (in, out)
    for name, p in model.named_parameters():               # the export inverts load_bert
        np.testing.assert_array_equal(dict(loaded.named_parameters())[name].data, p.data)
    assert bert_config_from_hf(bert_config(model, tokenizer)) == TINY
    assert WordPieceTokenizer.from_vocab(folder / "vocab.txt").vocab == tokenizer.vocab


# ----------------------------------------------------------------------------- eq. 13.9

def test_float32_summation_stays_within_the_rounding_bound():
    # eq. 13.9
    rng = np.random.default_rng(0)
    x = rng.standard_normal(10_000).astype(np.float32)
    exact = math.fsum(x.astype(np.float64))               # the float32 numbers, summed exactly
    u = 2.0 ** -24                                         # float32's unit roundoff
    bound = (len(x) - 1) * u * np.abs(x.astype(np.float64)).sum()
    sums = {"forward": np.float32(0), "backward": np.float32(0)}
    for value in x:
        sums["forward"] = np.float32(sums["forward"] + value)
    for value in x[::-1]:
        sums["backward"] = np.float32(sums["backward"] + value)
    sums["pairwise"] = x.sum()                             # NumPy's pairwise summation
    for order, total in sums.items():
        assert abs(float(total) - exact) <= bound, order
    assert len({float(s) for s in sums.values()}) > 1      # the order changes the result

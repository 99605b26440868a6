"""The schematics of chapters 06-12 (tinyllm/schematics.py, schematics_text.py, drawing.py).

Each figure is read back from its Axes (texts, and the gid of each patch) and compared with what
the library computes: the GPT and BERT boxes with the config and the closed-form parameter counts,
the merge tree with a trained tokenizer's encoding, the 80/10/10 counts with ``mask_tokens`` run
with the same seed, the KV cache with a real cache, the key weights with the softmax of eq. 6.1.
Every label is at least 9 points, and a figure saves as a PNG.
"""

from collections import Counter

import numpy as np
import pytest
from matplotlib.figure import Figure

import tinyllm as tl
from tinyllm import schematics
from tinyllm.corpus import load_corpus
from tinyllm.drawing import figure_texts, save_png
from tinyllm.models import (
    BERT,
    BERT_PRESETS,
    GPT,
    GPT_PRESETS,
    BERTConfig,
    GPTConfig,
    bert_parameter_count,
    gpt_parameter_count,
)
from tinyllm.nn import KVCache, MultiHeadAttention
from tinyllm.nn.losses import IGNORE_INDEX
from tinyllm.objectives import BERT_SPECIAL_TOKENS, mask_tokens
from tinyllm.tokenizers import BPETokenizer

pytestmark = [pytest.mark.ch06, pytest.mark.ch07, pytest.mark.ch08, pytest.mark.ch10,
              pytest.mark.ch11, pytest.mark.ch12]


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


@pytest.fixture(scope="module")
def bpe(corpus):
    """A real byte-level BPE tokenizer: 300 merges on the first 100,000 training characters."""
    return BPETokenizer.train(corpus[0][:100_000], 256 + 300 + 4,
                              special_tokens=BERT_SPECIAL_TOKENS)


def texts_with_gid(figure: Figure, gid: str) -> list[tuple[float, float, str]]:
    """(x, y, text) of every label whose gid names ``gid``, in drawing order."""
    return [(*t.get_position(), t.get_text()) for ax in figure.axes for t in ax.texts
            if t.get_gid() and gid in t.get_gid().split()]


def patch_kinds(figure: Figure) -> Counter:
    return Counter(p.get_gid() for ax in figure.axes for p in ax.patches if p.get_gid())


def all_text_sizes(figure: Figure) -> list[float]:
    return [t.get_fontsize() for ax in figure.axes for t in [ax.title, *ax.texts] if t.get_text()]


@pytest.mark.parametrize("config", [GPT_PRESETS["shakespeare-char"],
                                    GPTConfig(vocab_size=16, context_length=8, num_layers=2,
                                              num_heads=2, d_model=12, bias=True)])
def test_the_gpt_figure_shows_the_config_and_its_parameter_count(config):
    figure = schematics.gpt_architecture(config)
    texts = figure_texts(figure)
    count = gpt_parameter_count(config)
    assert count == GPT(config, rng=np.random.default_rng(0)).num_parameters()
    assert f"GPT: {count:,} parameters (eq. 11.7)" in texts
    assert [t for *_, t in texts_with_gid(figure, "layers")] == [f"L = {config.num_layers}"]
    joined = "\n".join(texts)
    C = config.d_model
    for part in (f"W_te ({config.vocab_size}×{C})", f"W_pe ({config.context_length}×{C})",
                 f"H = {config.num_heads} heads of D = {C // config.num_heads}",
                 f"V = {config.vocab_size}"):
        assert part in joined


def test_the_bert_figure_shows_the_config_and_its_parameter_count():
    config = BERTConfig(vocab_size=50, context_length=16, num_layers=3, num_heads=2, d_model=8,
                        d_ff=24)
    built = BERT(config, rng=np.random.default_rng(0))
    assert bert_parameter_count(config) == built.num_parameters()
    for shape in (config, BERT_PRESETS["bert-base"]):
        figure = schematics.bert_architecture(shape)
        texts = figure_texts(figure)
        assert f"BERT: {bert_parameter_count(shape):,} parameters (eq. 12.5)" in texts
        assert [t for *_, t in texts_with_gid(figure, "layers")] == [f"L = {shape.num_layers}"]
        assert f"d_ff = {shape.d_ff}" in "\n".join(texts)
    assert "BERT: 110,106,428 parameters (eq. 12.5)" in figure_texts(figure)
    with pytest.raises(TypeError, match="BERTConfig"):
        schematics.bert_architecture(GPT_PRESETS["shakespeare-char"])


def test_a_schematic_shows_itself_in_a_notebook_as_a_png():
    """IPython shows an object with _repr_png_; a bare Figure (no pyplot) has none, and a cell
    ending in a schematic printed "<Figure size ...>" until schematics had one."""
    figure = schematics.query_and_keys(np.array([1.0, 0.0]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert isinstance(figure, Figure)
    png = figure._repr_png_()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (500, 440)  # 5.0 x 4.4 inches at 100 dpi


def test_pre_and_post_ln_blocks_put_the_layernorms_where_eqs_8_14_and_8_15_say():
    figure = schematics.pre_and_post_ln_blocks()
    pre, post = figure.axes
    assert pre.get_title() == "pre-LN (eq. 8.14)" and post.get_title() == "post-LN (eq. 8.15)"

    def bottom_to_top(ax):
        boxes = sorted((t.get_position()[1], t.get_text()) for t in ax.texts)
        return [text for _, text in boxes if text not in ("", "residual", "x (B, T, C)",
                                                          "out (B, T, C)")]

    assert bottom_to_top(pre) == ["LayerNorm 1", "self-attention", "+", "LayerNorm 2",
                                  "feed-forward", "+"]
    assert bottom_to_top(post) == ["self-attention", "+", "LayerNorm 1", "feed-forward", "+",
                                   "LayerNorm 2"]


def test_head_split_shows_each_heads_columns():
    config = GPTConfig(num_heads=3, d_model=48)
    figure = schematics.head_split(config)
    texts = figure_texts(figure)
    assert ["0..15", "16..31", "32..47"] == [t for t in texts if ".." in t]
    assert patch_kinds(figure) == {"columns": 3, "head": 3}
    assert "H = 3 heads,  D = C / H = 16" in texts
    with pytest.raises(ValueError, match="not divisible"):
        schematics.head_split(GPTConfig(num_heads=3, d_model=16))


def test_the_kv_cache_figure_draws_a_real_cache(device):
    layer = MultiHeadAttention(16, 2, rng=np.random.default_rng(0)).to(device)
    x = tl.tensor(np.random.default_rng(1).standard_normal((1, 7, 16)).astype(np.float32))
    x = x.to(device)                                      # (B, T, C) on the CPU or the GPU
    cache = KVCache(context_length=12)
    with pytest.raises(ValueError, match="empty"):
        schematics.kv_cache(cache)
    with tl.no_grad():
        layer(x[:, :5], is_causal=True, cache=cache)     # a prompt of 5 tokens ...
        layer(x[:, 5:7], is_causal=True, cache=cache)    # ... then 2 new positions at once
    figure = schematics.kv_cache(cache, new_positions=2)
    assert patch_kinds(figure) == {"cached": 2 * 5, "new": 2 * 2, "empty": 2 * 5}  # keys, values
    texts = figure_texts(figure)
    assert "length = 7 of T_max = 12" in texts
    assert f"keys {tuple(cache.keys.shape)}" in texts and "keys (1, 2, 12, 8)" in texts
    with pytest.raises(ValueError, match="new_positions"):
        schematics.kv_cache(cache, new_positions=8)


def leaf_bytes(text: str) -> bytes:
    """A leaf label's first line back to its byte: "<c3>" or a character (␣ for a space)."""
    first = text.split("\n")[0]
    return bytes.fromhex(first[1:3]) if first.startswith("<") else first.replace("␣", " ").encode()


@pytest.mark.parametrize("word", [" question", "Rosencrantz", " naïve"])
def test_the_merge_tree_has_the_words_bytes_as_leaves_and_its_tokens_as_roots(bpe, word):
    figure = schematics.bpe_merge_tree(bpe, word)
    leaves = sorted(texts_with_gid(figure, "leaf"))                     # left to right
    assert b"".join(leaf_bytes(t) for _, _, t in leaves) == word.encode("utf-8")
    assert [int(t.split("\n")[1]) for _, _, t in leaves] == list(word.encode("utf-8"))
    roots = sorted(texts_with_gid(figure, "root"))
    assert [int(t.split("\n")[1]) for _, _, t in roots] == bpe.encode(word)
    inner = texts_with_gid(figure, "node")
    ids = {int(t.split("\n")[1]) for _, _, t in inner + roots}
    for token in ids - set(range(256)):                                   # every merge node's
        left, right = bpe.merges[token - 256]                             # children are drawn
        assert {left, right} <= ids | set(word.encode("utf-8"))
    assert figure_texts(schematics.bpe_merge_tree(bpe.merges, word)) == figure_texts(figure)


def test_the_merge_tree_of_a_merged_word_has_one_root(bpe):
    word = " the"
    assert len(bpe.encode(word)) == 1
    figure = schematics.bpe_merge_tree(bpe, word)
    (root,) = texts_with_gid(figure, "root")
    assert root[2] == f"␣the\n{bpe.encode(word)[0]}"
    assert root[1] == max(y for _, y, _ in texts_with_gid(figure, "node") + [root])


def test_the_80_10_10_figure_counts_what_mask_tokens_did(corpus, bpe):
    text = corpus[1][:600]
    figure = schematics.masking_80_10_10(bpe, text, np.random.default_rng(3), num_rows=4,
                                         row_length=12)
    rows = np.array(bpe.encode(text, allowed_special=False)[:48]).reshape(4, 12)   # (B, T)
    special = bpe.special_tokens
    inputs, labels = mask_tokens(rows, special["[MASK]"], bpe.vocab_size,
                                 special_ids=tuple(special.values()), p=0.15,
                                 rng=np.random.default_rng(3))
    chosen = labels != IGNORE_INDEX
    masked = int((inputs[chosen] == special["[MASK]"]).sum())
    kept = int((inputs[chosen] == rows[chosen]).sum())
    expected = {"not chosen": int((~chosen).sum()), "[MASK]": masked,
                "random": int(chosen.sum()) - masked - kept, "unchanged": kept}
    assert patch_kinds(figure) == {k: v for k, v in expected.items() if v}
    counts = [t for *_, t in texts_with_gid(figure, "count")]
    assert counts == [f"{kind}: {n}" for kind, n in expected.items()]
    assert f"{int(chosen.sum())} of 48 tokens chosen" in figure_texts(figure)[0]
    with pytest.raises(ValueError, match="fewer than"):
        schematics.masking_80_10_10(bpe, "To be", np.random.default_rng(0))


def test_query_and_keys_labels_each_key_with_its_softmax_weight():
    keys = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.2], [0.7, 0.7]])   # (T_k, 2)
    query = 2.0 * np.array([-1.0, 0.1])                                  # (2,)
    scores = keys @ query / np.sqrt(2)                                   # eq. 6.1, d_k = 2
    weights = np.exp(scores) / np.exp(scores).sum()
    figure = schematics.query_and_keys(query, keys)
    assert [t for *_, t in texts_with_gid(figure, "key")] == [
        f"k{j}: {w:.2f}" for j, w in enumerate(weights)]
    with pytest.raises(ValueError, match="plane"):
        schematics.query_and_keys([1.0, 2.0, 3.0], keys)


def test_bert_input_embeddings_sum_three_rows():
    tokens = ["[CLS]", "my", " lord", "[SEP]", " good", "[SEP]"]
    segments = [0, 0, 0, 0, 1, 1]
    figure = schematics.bert_input_embeddings(tokens, segments)
    assert [t for *_, t in texts_with_gid(figure, "segment")] == ["E_A"] * 4 + ["E_B"] * 2
    assert [t for *_, t in texts_with_gid(figure, "position")] == [f"E_{i}" for i in range(6)]
    assert [t for *_, t in texts_with_gid(figure, "token")][2] == "E[␣lord]"
    with pytest.raises(ValueError, match="one segment id per token"):
        schematics.bert_input_embeddings(tokens, segments[:-1])


def test_every_label_is_readable_and_a_figure_saves_as_png(tmp_path, bpe):
    figures = [schematics.pre_and_post_ln_blocks(),
               schematics.gpt_architecture(GPT_PRESETS["shakespeare-char"]),
               schematics.bert_architecture(BERT_PRESETS["shakespeare-bert"]),
               schematics.head_split(GPT_PRESETS["shakespeare-char"]),
               schematics.bpe_merge_tree(bpe, " question"),
               schematics.bert_input_embeddings(["[CLS]", "a", "[SEP]"], [0, 0, 0]),
               schematics.query_and_keys([1.0, 0.0], [[1.0, 0.0], [0.0, 1.0]])]
    for figure in figures:
        assert isinstance(figure, Figure)
        assert min(all_text_sizes(figure)) >= 9
    path = save_png(figures[1], tmp_path / "figures" / "gpt.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="PNG"):
        save_png(figures[1], tmp_path / "gpt.svg")

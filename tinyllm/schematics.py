"""Schematics of the model's structure, drawn with matplotlib from the library's own objects.

One function per picture, each returning a :class:`matplotlib.figure.Figure` (save it with
:func:`tinyllm.drawing.save_png`). Where the library holds the numbers, the figure reads them from
it, so a figure cannot drift from the code:

- :func:`query_and_keys` (chapter 06, eq. 6.1): a query, keys in the plane, and the softmax weights
  that ``F.scaled_dot_product_attention`` gives them;
- :func:`head_split` (chapter 07, eq. 7.2): the width C cut into H heads of D = C / H columns;
- :func:`kv_cache` (chapter 07, eq. 7.4): the filled, new and empty positions of a real ``KVCache``;
- :func:`pre_and_post_ln_blocks` (chapter 08, eqs. 8.14 and 8.15);
- :func:`gpt_architecture` (chapter 11, eq. 11.4) and :func:`bert_architecture` (chapter 12,
  eq. 12.4), labelled with a config's sizes and its closed-form parameter count (eqs. 11.7, 12.5).

The token-level pictures (the BPE merge tree, BERT's input embeddings, the 80/10/10 corruption)
live in :mod:`tinyllm.schematics_text` and are imported here, so ``schematics.X`` finds them all.
"""

from __future__ import annotations

import numpy as np

from tinyllm.drawing import PALETTE, arrow, box, cell, circle, label, line, new_figure
from tinyllm.models.bert import BERTConfig, bert_parameter_count
from tinyllm.models.gpt import GPTConfig, gpt_parameter_count
from tinyllm.nn.multihead import KVCache
from tinyllm.schematics_text import (  # noqa: F401 (part of this module's interface)
    bert_input_embeddings,
    bpe_merge_tree,
    masking_80_10_10,
)

KINDS = {"LayerNorm": "norm", "attention": "attention", "feed-forward": "feedforward"}


def _residual_column(ax, steps: list[str], x: float = 0.0) -> None:
    """Draw a block bottom to top. ``steps``: "fork" starts a residual branch, "+" adds it back,
    any other string is a box (coloured by the kind named in it)."""
    y, fork = 0.0, None
    label(ax, x, y - 0.3, "x (B, T, C)")
    for step in steps:
        if step == "fork":
            fork = y
            continue
        arrow(ax, (x, y), (x, y + 0.6))
        y += 1.0
        if step == "+":
            circle(ax, x, y - 0.2, 0.2)
            bend = [(x, fork + 0.25), (x - 1.6, fork + 0.25), (x - 1.6, y - 0.2)]
            line(ax, bend + [(x - 0.2, y - 0.2)])  # the residual path into the sum
            label(ax, x - 1.75, (fork + y) / 2, "residual", rotation=90)
            y -= 0.2
        else:
            kind = next((k for name, k in KINDS.items() if name in step), "data")
            box(ax, x, y, 2.4, 0.6, step, PALETTE[kind])
            y += 0.3
    arrow(ax, (x, y), (x, y + 0.5))
    label(ax, x, y + 0.75, "out (B, T, C)")
    ax.set_xlim(x - 2.2, x + 1.6)
    ax.set_ylim(-0.7, y + 1.1)


def pre_and_post_ln_blocks():
    """Chapter 08: a pre-LN block (eq. 8.14, GPT-2) beside a post-LN block (eq. 8.15, BERT)."""
    figure, (pre, post) = new_figure(7.5, 6.2, columns=2)
    _residual_column(pre, ["fork", "LayerNorm 1", "self-attention", "+",
                           "fork", "LayerNorm 2", "feed-forward", "+"])
    pre.set_title("pre-LN (eq. 8.14)", fontsize=11)
    _residual_column(post, ["fork", "self-attention", "+", "LayerNorm 1",
                            "fork", "feed-forward", "+", "LayerNorm 2"])
    post.set_title("post-LN (eq. 8.15)", fontsize=11)
    return figure


def _stack(ax, rows: list[tuple[str, str]], x: float = 0.0, width: float = 4.2) -> float:
    """Boxes bottom to top joined by arrows; ``rows``: (text, kind). Returns the top y."""
    y = 0.0
    for i, (text, kind) in enumerate(rows):
        if i:
            arrow(ax, (x, y - 0.55), (x, y - 0.35))
        box(ax, x, y, width, 0.7, text, PALETTE[kind])
        y += 1.0
    return y - 1.0


def _layers_bracket(ax, y: float, num_layers: int, x: float = 2.3) -> None:
    """The "L = n" mark beside the box of the repeated block at height ``y``."""
    line(ax, [(x, y - 0.35), (x + 0.15, y - 0.35), (x + 0.15, y + 0.35), (x, y + 0.35)])
    label(ax, x + 0.3, y, f"L = {num_layers}", ha="left", gid="layers", weight="bold")


def gpt_architecture(config: GPTConfig):
    """Chapter 11, eq. 11.4: embeddings, L pre-LN blocks, the final LayerNorm and the tied output
    layer, with ``config``'s sizes and ``gpt_parameter_count(config)`` (eq. 11.7)."""
    if not isinstance(config, GPTConfig):
        raise TypeError(f"gpt_architecture needs a GPTConfig, got {type(config).__name__}")
    V, T, C, H = config.vocab_size, config.context_length, config.d_model, config.num_heads
    figure, (ax,) = new_figure(6.4, 5.0)
    top = _stack(ax, [
        ("token ids (B, T)", "data"),
        (f"token embedding W_te ({V}×{C})\n+ position embedding W_pe ({T}×{C})", "embedding"),
        (f"pre-LN block: causal self-attention, H = {H} heads of D = {C // H}", "attention"),
        (f"final LayerNorm ln_f (C = {C})", "norm"),
        (f"logits = ln_f(h) W_teᵀ  (B, T, V = {V})", "head"),
    ])
    _layers_bracket(ax, 2.0, config.num_layers)
    label(ax, -2.65, (1.0 + top) / 2, "tied: the same W_te", rotation=90, style="italic")
    line(ax, [(-2.1, 1.0), (-2.45, 1.0), (-2.45, top), (-2.1, top)])
    ax.set_xlim(-2.9, 3.4)
    ax.set_ylim(-0.6, top + 0.6)
    ax.set_title(f"GPT: {gpt_parameter_count(config):,} parameters (eq. 11.7)", fontsize=11)
    return figure


def bert_architecture(config: BERTConfig):
    """Chapter 12, eq. 12.4: three embeddings summed and normalised, L post-LN encoder blocks, the
    MLM head (tied output) and the NSP head on [CLS], with ``bert_parameter_count(config)``."""
    if not isinstance(config, BERTConfig):
        raise TypeError(f"bert_architecture needs a BERTConfig, got {type(config).__name__}")
    V, T, C, H = config.vocab_size, config.context_length, config.d_model, config.num_heads
    S = config.type_vocab_size
    figure, (ax,) = new_figure(7.6, 6.0)
    _stack(ax, [
        ("ids, segment ids (B, T)", "data"),
        (f"token ({V}×{C}) + position ({T}×{C}) + segment ({S}×{C})", "embedding"),
        ("LayerNorm, dropout", "norm"),
        (f"post-LN block: self-attention, H = {H}, padding mask; d_ff = {config.d_ff}",
         "attention"),
    ], width=5.0)
    _layers_bracket(ax, 3.0, config.num_layers, x=2.7)
    arrow(ax, (-0.8, 3.35), (-1.6, 3.85))
    arrow(ax, (0.8, 3.35), (1.6, 3.85))
    box(ax, -1.8, 4.3, 3.4, 0.8, f"MLM head: dense, GELU, LN,\n· E_tokᵀ + b  → (B, T, {V})",
        PALETTE["head"])
    box(ax, 1.9, 4.3, 3.2, 0.8, "NSP head on [CLS]:\npooler tanh, 2-way → (B, 2)",
        PALETTE["head"])
    ax.set_xlim(-3.6, 3.7)
    ax.set_ylim(-0.6, 4.9)
    ax.set_title(f"BERT: {bert_parameter_count(config):,} parameters (eq. 12.5)", fontsize=11)
    return figure


def head_split(config: GPTConfig | BERTConfig):
    """Chapter 07, eq. 7.2: the C columns of Q (T, C) read as H heads of D = C / H columns, then
    transposed to H separate (T, D) problems: (B, T, C) -> (B, T, H, D) -> (B, H, T, D)."""
    C, H = config.d_model, config.num_heads
    if C % H:
        raise ValueError(f"d_model = {C} is not divisible by num_heads = {H}")
    D = C // H
    colors = [f"C{h % 10}" for h in range(H)]
    figure, (ax,) = new_figure(7.0, 4.2)
    for h in range(H):  # top: one (T, C) matrix, head h's columns in its colour
        cell(ax, (h + 0.5) * 6.0 / H, 3.0, 6.0 / H, 1.2, colors[h], gid="columns").set_alpha(0.45)
        label(ax, (h + 0.5) * 6.0 / H, 3.0, f"{h * D}..{(h + 1) * D - 1}")
    label(ax, 3.0, 3.95, f"Q (T, C = {C}): columns of each head", gid="matrix")
    gap = 0.3
    width = (6.0 - gap * (H - 1)) / H
    for h in range(H):  # bottom: H separate (T, D) matrices
        x = h * (width + gap) + width / 2
        cell(ax, x, 0.6, width, 1.2, colors[h], gid="head").set_alpha(0.45)
        label(ax, x, 0.6, f"head {h}\n(T, D)", gid="head")
    arrow(ax, (3.0, 2.3), (3.0, 1.35))
    label(ax, 3.15, 1.85, "reshape (B, T, H, D), transpose (B, H, T, D)", ha="left")
    label(ax, 3.0, -0.3, f"H = {H} heads,  D = C / H = {D}")
    ax.set_xlim(-0.2, 6.4 + max(0.0, 3.2 - 6.0 / H))
    ax.set_ylim(-0.6, 4.3)
    return figure


def kv_cache(cache: KVCache, new_positions: int = 1):
    """Chapter 07, eq. 7.4: the positions of a real ``KVCache`` after a step that appended
    ``new_positions``: cached ones, the new ones, and the empty rest of ``context_length``; the
    new query attends to every filled key."""
    if cache.keys is None:
        raise ValueError("the KV cache is empty: run the layer with cache=... first, then draw it")
    if not 0 < new_positions <= cache.length:
        raise ValueError(f"new_positions must be in [1, cache.length = {cache.length}], "
                         f"got {new_positions}")
    T_max, t = cache.context_length, cache.length
    kinds = np.where(np.arange(T_max) < t - new_positions, "cached", "new")
    kinds[t:] = "empty"  # (T_max,)
    color = {"cached": PALETTE["embedding"], "new": PALETTE["attention"], "empty": "white"}
    size = min(0.6, 9.0 / T_max)
    figure, (ax,) = new_figure(7.0, 3.6)
    for row, (name, array) in enumerate((("values", cache.values), ("keys", cache.keys))):
        y = 0.8 * row
        for position, kind in enumerate(kinds):
            cell(ax, position * size, y, size, 0.6, color[kind], gid=kind)
        label(ax, -0.3, y, f"{name} {tuple(array.shape)}", ha="right")
    query_x = (t - 0.5 * new_positions - 0.5) * size
    box(ax, query_x, 2.2, 1.8, 0.5, "new query", PALETTE["attention"])
    for position in range(t):
        arrow(ax, (query_x, 1.95), (position * size, 1.1), style="-")
    label(ax, -0.3, 2.2, f"length = {t} of T_max = {T_max}", ha="right", gid="length")
    for i, kind in enumerate(("cached", "new", "empty")):
        cell(ax, i * 2.4, -0.9, 0.3, 0.3, color[kind])
        label(ax, i * 2.4 + 0.3, -0.9, kind, ha="left")
    ax.set_xlim(-4.5, max(T_max * size, 7.0))
    ax.set_ylim(-1.3, 2.7)
    ax.set_title(f"KV cache: the new query reads {t} keys, O(t C) per step (eq. 7.4)",
                 fontsize=11)
    return figure


def _tip_label(ax, tip: np.ndarray, text: str, **options) -> None:
    """A label just beyond the tip of an arrow from the origin, on the side it points to."""
    where = tip + 0.1 * tip / max(np.linalg.norm(tip), 1e-12) + np.array([0.0, 0.12])
    ha = "left" if tip[0] > 0.1 else ("right" if tip[0] < -0.1 else "center")
    label(ax, where[0], where[1], text, ha=ha, **options)


def query_and_keys(query, keys):
    """Chapter 06, eq. 6.1: a query and keys in the plane, each key labelled with its attention
    weight softmax(q k_j / sqrt(2)) as ``F.scaled_dot_product_attention`` computes it."""
    import tinyllm.nn.functional as F
    from tinyllm.creation import tensor

    query = np.asarray(query, dtype=np.float64).reshape(1, -1)  # (1, 2)
    keys = np.asarray(keys, dtype=np.float64)  # (T_k, 2)
    if query.shape != (1, 2) or keys.ndim != 2 or keys.shape[1] != 2:
        raise ValueError(f"query_and_keys draws in the plane: query (2,) and keys (T_k, 2), got "
                         f"{query.shape} and {keys.shape}")
    values = np.zeros((len(keys), 1))  # (T_k, 1): only the weights are drawn
    _, weights = F.scaled_dot_product_attention(tensor(query), tensor(keys), tensor(values),
                                                return_weights=True)
    weights = weights.numpy()[0]  # (T_k,)
    figure, (ax,) = new_figure(5.0, 4.4)
    ax.set_aspect("equal")
    ax.axhline(0, color="0.85", linewidth=0.8)
    ax.axvline(0, color="0.85", linewidth=0.8)
    for j, (key, w) in enumerate(zip(keys, weights)):
        ax.annotate("", xy=key, xytext=(0, 0), arrowprops={"arrowstyle": "-|>", "color": "C0",
                                                           "linewidth": 1 + 4 * w})
        _tip_label(ax, key, f"k{j}: {w:.2f}", gid="key")
    ax.annotate("", xy=query[0], xytext=(0, 0),
                arrowprops={"arrowstyle": "-|>", "color": "C3", "linewidth": 2})
    _tip_label(ax, query[0], "q", gid="query", color="C3", weight="bold")
    reach = 1.45 * max(np.linalg.norm(keys, axis=1).max(), np.linalg.norm(query))
    ax.set_xlim(-reach, reach)
    ax.set_ylim(-0.6 * reach, 0.9 * reach)
    ax.set_title("keys labelled with softmax(q·k / √d) (eq. 6.1)", fontsize=11)
    return figure

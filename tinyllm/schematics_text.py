"""Schematics at the level of tokens, drawn from a real tokenizer (chapters 10 and 12).

- :func:`bpe_merge_tree` (chapter 10, eq. 10.9): the tree of merges that builds each token of a
  word, read from a trained tokenizer's ``merges``; its leaves are the word's bytes, its roots
  the tokens ``encode`` gives.
- :func:`bert_input_embeddings` (chapter 12, eq. 12.4): each input token as the sum of a token,
  a segment and a position embedding.
- :func:`masking_80_10_10` (chapter 12, eq. 12.2): what ``mask_tokens`` did to a real text with
  a given generator: which tokens were chosen, and which became [MASK], a random token, or stayed.

Each returns a :class:`matplotlib.figure.Figure`; ``tinyllm.schematics`` re-exports them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tinyllm.drawing import PALETTE, box, cell, label, line, new_figure, shown
from tinyllm.nn.losses import IGNORE_INDEX
from tinyllm.objectives.masked_lm import mask_tokens
from tinyllm.tokenizers import BPETokenizer

MAX_DRAWN_TOKENS = 16  # the widest row of tokens a schematic draws legibly
OUTCOME_COLORS = {"not chosen": "white", "[MASK]": "#f4cccc", "random": "#fce5cd",
                  "unchanged": "#d9ead3"}


def _byte_text(tokenizer: BPETokenizer, token_id: int) -> str:
    """A token's text, or its bytes in hex (<c3>) when they are not whole UTF-8 characters."""
    raw = tokenizer.vocab[token_id]
    try:
        return shown(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return "".join(f"<{b:02x}>" for b in raw)


def bpe_merge_tree(tokenizer_or_merges: BPETokenizer | Sequence[tuple[int, int]], word: str):
    """Chapter 10: the merge tree of every token of ``word`` (eq. 10.9). Token 256 + r has the two
    ids of ``merges[r]`` as children; bytes (ids < 256) are the leaves, drawn in the word's order,
    and each root is one token of ``tokenizer.encode(word)``. Node labels: text, then id."""
    tokenizer = (tokenizer_or_merges if isinstance(tokenizer_or_merges, BPETokenizer)
                 else BPETokenizer(tokenizer_or_merges))
    ids = tokenizer.encode(word, allowed_special=False)
    if not ids:
        raise ValueError("bpe_merge_tree needs a non-empty word")
    if len(word.encode("utf-8")) > 2 * MAX_DRAWN_TOKENS:
        raise ValueError(f"{word!r} has more than {2 * MAX_DRAWN_TOKENS} bytes: too wide to draw; "
                         "give a single word")
    figure, (ax,) = new_figure(7.0, 4.2)
    next_leaf = [0]  # x of the next leaf, left to right

    def draw(token_id: int, gid: str) -> tuple[float, int]:
        """Draw the subtree of ``token_id``; returns its (x, height)."""
        if token_id < 256:
            x, height = float(next_leaf[0]), 0
            next_leaf[0] += 1
        else:
            children = [draw(child, "node") for child in tokenizer.merges[token_id - 256]]
            x, height = sum(c[0] for c in children) / 2, 1 + max(c[1] for c in children)
            for child_x, child_height in children:
                line(ax, [(x, height - 0.25), (child_x, child_height + 0.25)])
        kind = "leaf" if token_id < 256 else gid
        color = PALETTE["data"] if token_id < 256 else PALETTE["embedding"]
        if gid == "root":
            color = PALETTE["head"]
            kind = "root leaf" if token_id < 256 else "root"
        box(ax, x, height, 0.95, 0.5, f"{_byte_text(tokenizer, token_id)}\n{token_id}", color,
            gid=kind, size=9)
        return x, height

    heights = [draw(token_id, "root")[1] for token_id in ids]
    ax.set_xlim(-0.6, next_leaf[0] - 0.4)
    ax.set_ylim(-0.5, max(heights) + 0.5)
    ax.set_title(f"BPE merges of {shown(word)!r}: {next_leaf[0]} bytes → {len(ids)} token(s)",
                 fontsize=11)
    return figure


def bert_input_embeddings(tokens: Sequence[str], segment_ids: Sequence[int]):
    """Chapter 12, eq. 12.4: input i enters BERT as E_tok[x_i] + E_seg[s_i] + E_pos[i] (then a
    LayerNorm). ``tokens`` are the token strings, ``segment_ids`` 0 (sentence A) or 1 (B)."""
    if len(tokens) != len(segment_ids) or not tokens:
        raise ValueError(f"need one segment id per token, got {len(tokens)} tokens and "
                         f"{len(segment_ids)} segment ids")
    if len(tokens) > MAX_DRAWN_TOKENS:
        raise ValueError(f"{len(tokens)} tokens are too many to draw; give at most "
                         f"{MAX_DRAWN_TOKENS}")
    if not set(segment_ids) <= {0, 1}:
        raise ValueError(f"segment ids must be 0 (A) or 1 (B), got {sorted(set(segment_ids))}")
    n = len(tokens)
    figure, (ax,) = new_figure(max(6.0, 0.75 * n + 2.0), 3.6)
    rows = [("input", [shown(t) for t in tokens], "data"),
            ("token", [f"E[{shown(t)}]" for t in tokens], "embedding"),
            ("segment", [f"E_{'AB'[s]}" for s in segment_ids], "norm"),
            ("position", [f"E_{i}" for i in range(n)], "feedforward")]
    for r, (name, texts, kind) in enumerate(rows):
        y = 3.0 - r
        label(ax, -0.7, y, name if r == 0 else f"{name}\nembeddings", ha="right")
        for i, text in enumerate(texts):
            color = PALETTE[kind] if name != "segment" else ("#fff2cc", "#d9d2e9")[segment_ids[i]]
            box(ax, i, y, 0.95, 0.7, text, color, gid=name, size=9)
        if r >= 2:
            label(ax, -0.55, y + 0.5, "+")
    ax.set_xlim(-2.6, n - 0.4)
    ax.set_ylim(-0.5, 3.5)
    ax.set_title("BERT's input: token + segment + position embeddings (eq. 12.4)", fontsize=11)
    return figure


def masking_80_10_10(tokenizer: BPETokenizer, text: str, rng: np.random.Generator,
                     num_rows: int = 4, row_length: int = 12, p: float = 0.15):
    """Chapter 12, eq. 12.2: the first ``num_rows * row_length`` tokens of ``text``, as rows
    (num_rows, row_length) corrupted by ``mask_tokens(rows, ..., p, rng)``; each token is coloured
    by what happened to it, and the legend counts the tokens of each kind."""
    special = tokenizer.special_tokens
    if "[MASK]" not in special:
        raise ValueError("the tokenizer has no [MASK] token: train it with BERT's special tokens")
    ids = np.array(tokenizer.encode(text, allowed_special=False), dtype=np.int64)
    if not (1 <= num_rows <= 8 and 1 <= row_length <= MAX_DRAWN_TOKENS):
        raise ValueError(f"draw 1 to 8 rows of 1 to {MAX_DRAWN_TOKENS} tokens, got num_rows = "
                         f"{num_rows}, row_length = {row_length}")
    if len(ids) < num_rows * row_length:
        raise ValueError(f"the text has {len(ids)} tokens, fewer than num_rows * row_length = "
                         f"{num_rows * row_length}: give a longer text or fewer rows")
    rows = ids[: num_rows * row_length].reshape(num_rows, row_length)  # (B, T)
    inputs, labels = mask_tokens(rows, special["[MASK]"], tokenizer.vocab_size,
                                 special_ids=tuple(special.values()), p=p, rng=rng)
    chosen = labels != IGNORE_INDEX  # (B, T)
    outcome = np.full(rows.shape, "not chosen", dtype=object)
    outcome[chosen & (inputs == special["[MASK]"])] = "[MASK]"
    outcome[chosen & (inputs == rows)] = "unchanged"
    outcome[chosen & (inputs != rows) & (inputs != special["[MASK]"])] = "random"
    counts = {kind: int((outcome == kind).sum()) for kind in OUTCOME_COLORS}
    figure, (ax,) = new_figure(0.85 * row_length + 1.0, 0.75 * num_rows + 1.6)
    for (b, t), kind in np.ndenumerate(outcome):
        text_shown = _byte_text(tokenizer, rows[b, t])
        if kind == "random":
            text_shown += f"\n→{_byte_text(tokenizer, inputs[b, t])}"
        elif kind == "[MASK]":
            text_shown += "\n→[MASK]"
        cell(ax, t, -b, 0.95, 0.7, OUTCOME_COLORS[kind], gid=kind)
        label(ax, t, -b, text_shown, size=9, gid=kind)
    for i, (kind, color) in enumerate(OUTCOME_COLORS.items()):
        cell(ax, i * row_length / 4, 1.0, 0.3, 0.3, color)
        label(ax, i * row_length / 4 + 0.25, 1.0, f"{kind}: {counts[kind]}", ha="left",
              gid="count")
    ax.set_xlim(-0.6, row_length - 0.4)
    ax.set_ylim(-num_rows + 0.4, 1.4)
    ax.set_title(f"mask_tokens: {int(chosen.sum())} of {rows.size} tokens chosen (p = {p}), "
                 "then 80/10/10 (eq. 12.2)", fontsize=11)
    return figure

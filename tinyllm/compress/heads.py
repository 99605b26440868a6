"""Attention-head pruning by importance score (chapter 16, "Pruning heads").

Michel, Levy & Neubig 2019 ("Are Sixteen Heads Really Better than One?") put a gate xi_h in front
of each head's output, MHA(x) = sum_h xi_h Att_h(x) W_O^h with xi = 1, and score a head by how
much the loss moves when its gate does (eq. 16.13, their eq. 2, with the batches as the samples):

    I_h = E_x | dL(x) / d xi_h |,     dL/d xi_h = sum_{b, t, d} G_{b,t,hD+d} O_{b,t,hD+d},

where O (B, T, C) is the concatenation of the heads (head h in channels hD .. hD + D - 1) that
``out_proj`` reads and G = dL/d(xi O). The scores of a layer are then divided by their l2 norm
(their section 4.2), and the heads with the smallest scores over the whole model are removed.

The gate needs no change in ``nn/multihead.py``: since ``out_proj`` reads O, a :class:`HeadGate`
wrapping ``out_proj`` multiplies O by xi repeated D times, which is xi_h Att_h. Removing head h
for good is zeroing the D rows hD .. hD + D - 1 of ``out_proj.weight`` (C, C); the masks of
:func:`head_weight_masks` also zero the head's D columns of ``q_proj``, ``k_proj`` and
``v_proj``, all four as named masks that ``prune.apply_masks`` keeps at zero through training.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

from tinyllm.backend import to_numpy
from tinyllm.nn import Module, MultiHeadAttention
from tinyllm.tensor import Tensor

HeadMasks = dict[str, np.ndarray]  # attention module name -> boolean (H,), True = head kept


class HeadGate(Module):
    """out_proj(xi * O): ``gate`` xi (H,) on the concatenated heads O (B, T, C = H D)."""

    def __init__(self, out_proj: Module, num_heads: int, gate: np.ndarray):
        self.out_proj, self.num_heads = out_proj, num_heads
        self.gate = Tensor(np.asarray(gate, dtype=out_proj.weight.dtype), requires_grad=True)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        H = self.num_heads
        heads = x.reshape(B, T, H, C // H)  # (B, T, H, D)
        gated = heads * self.gate.reshape(H, 1)  # (B, T, H, D): head h times xi_h
        return self.out_proj(gated.reshape(B, T, C))  # (B, T, C)


def attention_layers(model: Module) -> dict[str, MultiHeadAttention]:
    """Every self- or cross-attention module of ``model`` by name ("blocks.0.attn", ...)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, MultiHeadAttention)}


@contextlib.contextmanager
def head_gates(model: Module, head_masks: HeadMasks | None = None) -> Iterator[dict[str, Tensor]]:
    """Inside: each attention's ``out_proj`` is gated; yields the gates xi (H,) by attention name,
    1 for every head, or ``head_masks`` as 0/1 (a head switched off without touching weights).
    The original ``out_proj`` modules come back on leaving."""
    layers = attention_layers(model)
    head_masks = head_masks or {}
    gates = {}
    try:
        for name, attn in layers.items():
            gate = head_masks.get(name, np.ones(attn.num_heads, dtype=bool))
            attn.out_proj = HeadGate(attn.out_proj, attn.num_heads, gate)
            gates[name] = attn.out_proj.gate
        yield gates
    finally:
        for attn in layers.values():
            if isinstance(attn.out_proj, HeadGate):
                attn.out_proj = attn.out_proj.out_proj


def head_importance(model: Module, task, batches: int = 8, seed: int = 0,
                    normalize: bool = True) -> dict[str, np.ndarray]:
    """I_h = mean over ``batches`` training batches of |dL/d xi_h| (eq. 16.13), by attention name,
    each layer's scores divided by their l2 norm if ``normalize``. The model's weights get no
    gradient (they are frozen while the gates are measured) and are left as they were."""
    if batches < 1:
        raise ValueError(f"batches must be >= 1, got {batches}")
    rng = np.random.default_rng(seed)
    params = model.parameters()
    flags = [p.requires_grad for p in params]
    was_training = model.training
    model.eval()  # no dropout: the score of the model as it is used
    scores = {name: np.zeros(attn.num_heads) for name, attn in attention_layers(model).items()}
    try:
        for p in params:
            p.requires_grad = False  # only the gates need a gradient
        with head_gates(model) as gates:
            for _ in range(batches):
                task.loss(model, task.batch("train", rng)).backward()
                for name, gate in gates.items():
                    scores[name] += np.abs(to_numpy(gate.grad.data)) / batches  # |dL/d xi|
                    gate.grad = None
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad = flag
        model.train(was_training)
    if normalize:
        scores = {name: s / max(np.linalg.norm(s), 1e-12) for name, s in scores.items()}
    return scores


def heads_to_remove(importance: dict[str, np.ndarray], count: int) -> HeadMasks:
    """Head masks that remove the ``count`` heads of lowest importance over all layers."""
    names = list(importance)
    flat = np.concatenate([importance[name] for name in names])  # (L H,)
    if not 0 <= count <= flat.size:
        raise ValueError(f"can remove 0 to {flat.size} heads, got {count}")
    keep = np.ones(flat.size, dtype=bool)
    keep[np.argsort(flat, kind="stable")[:count]] = False
    sizes = np.cumsum([importance[name].size for name in names])[:-1]
    return dict(zip(names, np.split(keep, sizes)))


def head_weight_masks(model: Module, head_masks: HeadMasks) -> dict[str, np.ndarray]:
    """Weight masks (True = kept) that remove the heads ``head_masks`` switch off: for each
    attention, the rows hD .. hD + D - 1 of ``out_proj.weight`` and the same columns of
    ``q_proj``, ``k_proj``, ``v_proj`` (weights stored (in, out), so a head's outputs are
    columns)."""
    layers = attention_layers(model)
    masks = {}
    for name, kept in head_masks.items():
        if name not in layers:
            raise KeyError(f"{name!r} is not an attention module of the model; expected one of "
                           f"{sorted(layers)}")
        attn = layers[name]
        if tuple(kept.shape) != (attn.num_heads,):
            raise ValueError(f"head mask {name!r} has shape {kept.shape}, expected "
                             f"({attn.num_heads},) (H,)")
        channels = np.repeat(np.asarray(kept, dtype=bool), attn.head_dim)  # (C,) channel hD + d
        for proj in ("q_proj", "k_proj", "v_proj"):
            shape = getattr(attn, proj).weight.shape  # (C, C)
            masks[f"{name}.{proj}.weight"] = np.broadcast_to(channels[None, :], shape).copy()
        shape = attn.out_proj.weight.shape
        masks[f"{name}.out_proj.weight"] = np.broadcast_to(channels[:, None], shape).copy()
    return masks

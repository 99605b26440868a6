"""Global magnitude pruning with named masks (chapter 16, "Pruning").

Han et al. 2015 ("Learning both Weights and Connections for Efficient Neural Networks") remove the
weights of smallest magnitude and fine-tune the rest, the pruned ones held at zero. Here the
criterion is *global* (one threshold over all Linear weights of the model, the variant Frankle &
Carbin 2019 use; Han et al. set one per layer): for a sparsity s over n weights, the k = round(s n)
entries with the smallest |w| are pruned (eq. 16.12),

    m_i = 0 if |w_i| is among the k smallest, else 1;       w <- m * w.

A mask is a named boolean array (True = kept) with its parameter's name and shape, e.g.
``masks["blocks.0.attn.q_proj.weight"]``, so a checkpoint can store it next to the weights
(:func:`masks_to_arrays`). The optimizer does not know the masks: AdamW's momentum and its decay
step would move a pruned weight off zero, so the trainer calls :func:`apply_masks` after every
optimizer step (and may call :func:`mask_gradients` before it, so the moments stay zero too).
"""

from __future__ import annotations

import numpy as np

from tinyllm.backend import get_array_module, to_device, to_numpy
from tinyllm.nn import Embedding, LearnedPositionalEmbedding, Linear, Module, Parameter

MASK_PREFIX = "prune_mask."  # a mask's name in a checkpoint: prefix + the parameter's name

Masks = dict[str, np.ndarray]  # parameter name -> boolean array of its shape, True = kept


def prunable_weights(model: Module, include_embeddings: bool = False) -> dict[str, Parameter]:
    """The weights magnitude pruning ranks: every Linear's ``weight``; with
    ``include_embeddings`` also the token and position tables (a GPT's token table is its tied
    output layer too)."""
    kinds = (Linear, Embedding, LearnedPositionalEmbedding) if include_embeddings else (Linear,)
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, kinds):
            found[f"{name}.weight" if name else "weight"] = module.weight
    return found


def magnitude_masks(model: Module, sparsity: float, include_embeddings: bool = False) -> Masks:
    """Masks that prune the fraction ``sparsity`` of the prunable weights with the smallest |w|,
    ranked over the whole model at once (eq. 16.12); exactly round(s n) entries are pruned (ties
    at the threshold are broken by position)."""
    if not 0 <= sparsity <= 1:
        raise ValueError(f"sparsity is the fraction of weights to prune, in [0, 1]; got {sparsity}")
    weights = prunable_weights(model, include_embeddings)
    if not weights:
        raise ValueError(f"{type(model).__name__} has no Linear layers to prune")
    magnitudes = np.concatenate([np.abs(to_numpy(p.data)).reshape(-1) for p in weights.values()])
    k = int(round(sparsity * magnitudes.size))  # entries to prune
    keep = np.ones(magnitudes.size, dtype=bool)  # (n,) over all prunable weights
    if k > 0:
        keep[np.argpartition(magnitudes, k - 1)[:k]] = False  # the k smallest, in O(n)
    masks, start = {}, 0
    for name, p in weights.items():
        masks[name] = keep[start:start + p.size].reshape(p.shape)
        start += p.size
    return masks


def _named_parameters_for(model: Module, masks: Masks) -> dict[str, Parameter]:
    own = dict(model.named_parameters())
    unknown = sorted(set(masks) - set(own))
    if unknown:
        raise KeyError(f"masks name parameters the model does not have: {unknown}; were they "
                       "made for another model configuration?")
    for name, mask in masks.items():
        if tuple(mask.shape) != own[name].shape:
            raise ValueError(f"mask {name!r} has shape {tuple(mask.shape)}, the parameter "
                             f"{own[name].shape}")
    return own


def apply_masks(model: Module, masks: Masks) -> None:
    """w <- m * w for every masked parameter, in place: the hook a trainer calls after each
    optimizer step, so pruned weights stay exactly zero."""
    own = _named_parameters_for(model, masks)
    for name, mask in masks.items():
        p = own[name]
        xp = get_array_module(p.data)
        xp.multiply(p.data, to_device(mask, p.device), out=p.data)


def mask_gradients(model: Module, masks: Masks) -> None:
    """g <- m * g for every masked parameter that has a gradient (before the optimizer step:
    the pruned weights' Adam moments then stay zero)."""
    own = _named_parameters_for(model, masks)
    for name, mask in masks.items():
        p = own[name]
        if p.grad is not None:
            p.grad.data = p.grad.data * to_device(mask, p.device)


def combine_masks(*mask_sets: Masks) -> Masks:
    """Masks that keep a weight only where every set keeps it (logical and, by name)."""
    combined: Masks = {}
    for masks in mask_sets:
        for name, mask in masks.items():
            combined[name] = combined[name] & mask if name in combined else mask.copy()
    return combined


def sparsity(masks: Masks) -> float:
    """The fraction of masked entries that are pruned."""
    total = sum(mask.size for mask in masks.values())
    return 1.0 - sum(int(mask.sum()) for mask in masks.values()) / max(total, 1)


def masks_to_arrays(masks: Masks) -> dict[str, np.ndarray]:
    """Masks as checkpoint arrays: ``prune_mask.<parameter name>``, boolean."""
    return {MASK_PREFIX + name: np.asarray(mask, dtype=bool) for name, mask in masks.items()}


def masks_from_arrays(arrays: dict[str, np.ndarray]) -> Masks:
    """The masks among a checkpoint's arrays (the inverse of :func:`masks_to_arrays`)."""
    return {name[len(MASK_PREFIX):]: np.asarray(array) != 0
            for name, array in arrays.items() if name.startswith(MASK_PREFIX)}

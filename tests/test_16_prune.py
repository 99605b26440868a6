"""Chapter 16, pruning: global magnitude masks, masks through training, head importance.

Magnitude pruning removes exactly round(s n) weights, all smaller than every kept one (eq.
16.12); the masks are named arrays that survive a safetensors file; pruned weights stay exactly
zero through AdamW steps with weight decay and momentum when the trainer's hook re-applies them
(and drift away when it does not). Head gates change nothing at xi = 1, switch a head off exactly
as zeroing its weights does, and their gradient passes a float64 finite-difference check; the
importance score of eq. 16.13 ranks heads so that removing the least important hurts least.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyllm as tl
from tinyllm import optim
from tinyllm.checkpoint import load_safetensors, save_safetensors
from tinyllm.compress import (
    apply_masks,
    combine_masks,
    head_gates,
    head_importance,
    head_weight_masks,
    heads_to_remove,
    magnitude_masks,
    mask_gradients,
    masks_from_arrays,
    masks_to_arrays,
    sparsity,
)
from tinyllm.compress.heads import HeadGate
from tinyllm.compress.prune import prunable_weights
from tinyllm.models import GPT, GPTConfig
from tinyllm.nn import Linear
from tinyllm.objectives import LanguageModelTask
from tinyllm.train import train_step

pytestmark = pytest.mark.ch16

CONFIG = GPTConfig(vocab_size=16, context_length=8, num_layers=2, num_heads=4, d_model=32)


def tiny_gpt(seed=0, dtype=np.float32):
    return GPT(CONFIG, rng=np.random.default_rng(seed), dtype=dtype)


def pattern_task(batch_size=8):
    rng = np.random.default_rng(0)
    pattern = (np.arange(3000) * 5) % 16  # token t is followed by t + 5 (mod 16)
    ids = np.where(rng.random(pattern.size) < 0.1, rng.integers(0, 16, pattern.size), pattern)
    return LanguageModelTask(ids[:2600], ids[2600:], batch_size, CONFIG.context_length)


def copy_task(batch_size=8):
    """Chunks of 4 random tokens said three times (a b c d a b c d a b c d ...): from the fifth
    token of a chunk on, the next token is the one 3 positions back, which only attention can
    find."""
    chunks = np.random.default_rng(0).integers(0, 16, (300, 4))
    ids = np.concatenate([chunks, chunks, chunks], axis=1).reshape(-1)  # (3600,)
    return LanguageModelTask(ids[:2800], ids[2800:], batch_size, CONFIG.context_length)


@pytest.fixture(scope="module")
def trained():
    """A tiny GPT trained 300 steps on the copy task (about 2 s), and the task."""
    model, task = tiny_gpt(), copy_task()
    optimizer, scheduler = adamw(model)
    rng = np.random.default_rng(0)
    for _ in range(300):
        train_step(model, task, rng, optimizer, scheduler, 1.0, 1)
    assert task.evaluate(model, "val", 4, seed=1)["loss"] < 2.3  # log 16 = 2.77: it copies
    return model.state_dict(), task


def adamw(model, lr=1e-2):
    optimizer = optim.AdamW(optim.param_groups_for_weight_decay(model, 0.1), lr=lr,
                            betas=(0.9, 0.99))
    return optimizer, optim.LRScheduler(optimizer, lambda step: lr)


# --------------------------------------------------------------------------------------------------
# Magnitude pruning
# --------------------------------------------------------------------------------------------------


@given(st.floats(0.0, 1.0), st.integers(0, 100))
def test_magnitude_masks_prune_exactly_the_smallest_weights(s, seed):
    model = tiny_gpt(seed)
    masks = magnitude_masks(model, s)
    weights = prunable_weights(model)
    assert set(masks) == set(weights) and "wte.weight" not in masks
    n = sum(p.size for p in weights.values())
    pruned = np.concatenate([np.abs(weights[k].numpy()[~m]) for k, m in masks.items()])
    kept = np.concatenate([np.abs(weights[k].numpy()[m]) for k, m in masks.items()])
    assert pruned.size == round(s * n)  # exactly k = round(s n) entries
    if pruned.size and kept.size:
        assert pruned.max() <= kept.min()  # one global threshold (eq. 16.12)
    assert sparsity(masks) == pytest.approx(pruned.size / n)


def test_embeddings_are_left_out_unless_asked_and_bad_sparsity_is_refused():
    model = tiny_gpt()
    with_tables = magnitude_masks(model, 0.5, include_embeddings=True)
    assert {"wte.weight", "wpe.weight"} <= set(with_tables)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        magnitude_masks(model, 1.5)


def test_masks_round_trip_through_a_safetensors_file_with_the_weights(tmp_path):
    model = tiny_gpt()
    masks = magnitude_masks(model, 0.6)
    arrays = {**model.state_dict(), **masks_to_arrays(masks)}
    assert arrays["prune_mask.blocks.0.ff.fc1.weight"].dtype == np.bool_
    save_safetensors(tmp_path / "pruned.safetensors", arrays)
    loaded, _ = load_safetensors(tmp_path / "pruned.safetensors")
    restored = masks_from_arrays(loaded)
    assert set(restored) == set(masks)
    for name, mask in masks.items():
        np.testing.assert_array_equal(restored[name], mask)


def test_apply_masks_zeroes_and_checks_names_and_shapes():
    model = tiny_gpt()
    masks = magnitude_masks(model, 0.5)
    apply_masks(model, masks)
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert np.all(params[name].numpy()[~mask] == 0) and np.all(params[name].numpy()[mask] != 0)
    with pytest.raises(KeyError, match="does not have"):
        apply_masks(model, {"blocks.9.ff.fc1.weight": np.ones((2, 2), dtype=bool)})
    with pytest.raises(ValueError, match="has shape"):
        apply_masks(model, {"blocks.0.ff.fc1.weight": np.ones((2, 2), dtype=bool)})
    both = combine_masks(masks, {"blocks.0.ff.fc1.weight": np.zeros((32, 128), dtype=bool)})
    assert not both["blocks.0.ff.fc1.weight"].any()
    assert both["blocks.1.ff.fc1.weight"] is not masks["blocks.1.ff.fc1.weight"]  # a copy


@pytest.mark.parametrize("mask_grads", [False, True])
def test_pruned_weights_stay_zero_through_adamw_with_the_hook(mask_grads):
    model, task = tiny_gpt(), pattern_task()
    masks = magnitude_masks(model, 0.7)
    apply_masks(model, masks)
    optimizer, scheduler = adamw(model)
    rng = np.random.default_rng(0)
    start = {name: p.numpy().copy() for name, p in model.named_parameters()}
    for _ in range(6):  # train_step's pieces, with the two hooks around the update
        scheduler.step()
        task.loss(model, task.batch("train", rng)).backward()
        if mask_grads:
            mask_gradients(model, masks)
        optimizer.step()
        optimizer.zero_grad()
        apply_masks(model, masks)  # the hook after every optimizer step
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert np.all(params[name].numpy()[~mask] == 0)
        assert np.all(params[name].numpy()[mask] != start[name][mask])  # the rest trained
    if mask_grads:  # the pruned weights' Adam moments never left zero either
        index = {id(p): i for i, _, p in optimizer.indexed_params()}
        m = optimizer.state[index[id(params["blocks.0.ff.fc1.weight"])]]["m"]
        assert np.all(m[~masks["blocks.0.ff.fc1.weight"]] == 0)


def test_without_the_hook_adamw_moves_pruned_weights_off_zero():
    model, task = tiny_gpt(), pattern_task()
    masks = magnitude_masks(model, 0.7)
    apply_masks(model, masks)
    optimizer, scheduler = adamw(model)
    rng = np.random.default_rng(0)
    for _ in range(2):
        train_step(model, task, rng, optimizer, scheduler, 1.0, 1)
    fc1 = dict(model.named_parameters())["blocks.0.ff.fc1.weight"].numpy()
    assert np.count_nonzero(fc1[~masks["blocks.0.ff.fc1.weight"]]) > 0


def test_light_pruning_is_nearly_free_and_heavy_pruning_costs_loss(trained):
    weights, task = trained
    model, losses = tiny_gpt(), []
    for s in (0.0, 0.3, 0.9):
        model.load_state_dict(weights)
        apply_masks(model, magnitude_masks(model, s))
        losses.append(task.evaluate(model, "val", 4, seed=1)["loss"])
    assert abs(losses[1] - losses[0]) < 0.02 and losses[2] > losses[0] + 0.1


# --------------------------------------------------------------------------------------------------
# Attention heads
# --------------------------------------------------------------------------------------------------

IDS = np.random.default_rng(5).integers(0, 16, (2, 8))


def test_open_gates_change_nothing_and_the_model_is_restored():
    model = tiny_gpt()
    with tl.no_grad():
        reference = model(IDS).numpy()
        with head_gates(model) as gates:
            assert set(gates) == {"blocks.0.attn", "blocks.1.attn"}
            assert isinstance(model.blocks[0].attn.out_proj, HeadGate)
            np.testing.assert_array_equal(model(IDS).numpy(), reference)
    assert type(model.blocks[0].attn.out_proj) is Linear


def test_a_closed_gate_is_the_same_as_zeroing_the_heads_weights():
    model = tiny_gpt()
    heads = {"blocks.0.attn": np.array([True, False, True, True]),
             "blocks.1.attn": np.array([False, True, True, False])}
    with tl.no_grad(), head_gates(model, heads):
        gated = model(IDS).numpy()
    masks = head_weight_masks(model, heads)
    assert masks["blocks.0.attn.out_proj.weight"][8:16].sum() == 0  # head 1: rows D .. 2D - 1
    assert masks["blocks.0.attn.q_proj.weight"][:, 8:16].sum() == 0  # and its query columns
    apply_masks(model, masks)
    with tl.no_grad():
        np.testing.assert_allclose(model(IDS).numpy(), gated, rtol=1e-5, atol=1e-6)


def test_the_gate_gradient_passes_a_float64_gradcheck():
    model = tiny_gpt(dtype=np.float64)
    targets = np.roll(IDS, -1, axis=1)
    with head_gates(model) as gates:
        gate = gates["blocks.1.attn"]
        gate.data = np.array([1.0, 0.5, 0.0, 2.0])
        assert tl.gradcheck(lambda g: model(IDS, targets)[1], gate, atol=1e-7)


def test_head_importance_is_normalized_and_leaves_the_model_untouched():
    model, task = tiny_gpt(), pattern_task()
    before = model.state_dict()
    scores = head_importance(model, task, batches=3)
    assert set(scores) == {"blocks.0.attn", "blocks.1.attn"}
    for s in scores.values():
        assert s.shape == (4,) and np.all(s >= 0)
        np.testing.assert_allclose(np.linalg.norm(s), 1.0)
    raw = head_importance(model, task, batches=3, normalize=False)
    for name in scores:
        np.testing.assert_allclose(raw[name] / np.linalg.norm(raw[name]), scores[name])
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(p.numpy(), before[name])
        assert p.requires_grad and p.grad is None
    assert type(model.blocks[1].attn.out_proj) is Linear and model.training


def test_heads_to_remove_takes_the_lowest_scores_over_all_layers():
    scores = {"a": np.array([0.5, 0.1, 0.9]), "b": np.array([0.2, 0.8, 0.05])}
    masks = heads_to_remove(scores, 3)
    np.testing.assert_array_equal(masks["a"], [True, False, True])
    np.testing.assert_array_equal(masks["b"], [False, True, False])
    with pytest.raises(ValueError, match="0 to 6"):
        heads_to_remove(scores, 7)


def test_removing_the_least_important_head_hurts_less_than_the_most_important(trained):
    weights, task = trained
    model = tiny_gpt()
    model.load_state_dict(weights)
    # raw scores, compared across layers (Michel et al.'s per-layer l2 normalisation ranks the
    # heads of this tiny model worse: its second layer matters less as a whole)
    scores = head_importance(model, task, batches=8, normalize=False)
    flat = [(s, name, h) for name, values in scores.items() for h, s in enumerate(values)]

    def loss_without(name, head):
        keep = {n: np.ones(4, dtype=bool) for n in scores}
        keep[name][head] = False
        with head_gates(model, keep):
            return task.evaluate(model, "val", 4, seed=1)["loss"]

    _, low_name, low_head = min(flat)
    _, high_name, high_head = max(flat)
    base = task.evaluate(model, "val", 4, seed=1)["loss"]
    assert loss_without(low_name, low_head) - base < 0.02
    assert loss_without(high_name, high_head) - base > 0.1


def test_pruned_heads_stay_zero_through_training():
    model, task = tiny_gpt(), pattern_task()
    masks = head_weight_masks(model, heads_to_remove(head_importance(model, task, 2), 3))
    apply_masks(model, masks)
    optimizer, scheduler = adamw(model)
    rng = np.random.default_rng(1)
    for _ in range(4):
        train_step(model, task, rng, optimizer, scheduler, 1.0, 1)
        apply_masks(model, masks)
    params = dict(model.named_parameters())
    assert sum(int((~m).sum()) for m in masks.values()) == 3 * 4 * 8 * 32  # 3 heads, 4 matrices
    for name, mask in masks.items():
        assert np.all(params[name].numpy()[~mask] == 0)

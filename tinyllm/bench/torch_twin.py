"""The benchmark's GPT written in PyTorch, to time tinyllm against (chapter 11, "Making it fast").

Only the benchmark imports this, and only when PyTorch is installed: tinyllm itself never depends on
it. The caller hands over everything the twin copies (the shape, the initial weights, the batches,
the recipe and the schedule), so the two frameworks compute the same losses step by step (up to
float32 rounding) and their times compare like with like.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tinyllm.models import GPTConfig
from tinyllm.objectives import LanguageModelTask
from tinyllm.train import TrainConfig


class TorchStep:
    """The same GPT in PyTorch: the given initial weights, the same batches, the same recipe.

    Written with ``torch.nn.functional`` on a dict of leaf tensors, so it reads like the tinyllm
    model: tied embeddings, pre-LN blocks without biases, exact GELU,
    ``F.scaled_dot_product_attention``. As in nanoGPT (and the PyTorch reference), W_q, W_k and W_v
    are one (C, 3C) matrix, one product instead of three. AdamW with the same groups (decay on
    matrices only), ``clip_grad_norm_``, ``zero_grad``.

    ``state`` is the tinyllm model's ``state_dict()``; batches come from ``task`` with a generator
    seeded with ``seed``, as the tinyllm step draws them; ``schedule(step)`` gives each step's
    learning rate. ``device``: "cpu", or "cuda" (weights and batches on ``torch.device("cuda")``).
    """

    def __init__(self, config: GPTConfig, state: dict[str, np.ndarray], task: LanguageModelTask,
                 recipe: TrainConfig, schedule: Callable[[int], float], seed: int, threads: int,
                 device: str = "cpu"):
        import torch
        import torch.nn.functional as F

        self.torch, self.F = torch, F
        self.device = torch.device(device)
        torch.set_num_threads(threads)
        self.config, self.recipe, self.schedule, self.task = config, recipe, schedule, task
        self.data_rng = np.random.default_rng(seed)  # the twin's batches, step by step
        self.weights = self._copy_weights(state)
        params = list(self.weights.values())
        decay, no_decay = [p for p in params if p.dim() >= 2], [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": recipe.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW(groups, lr=recipe.lr, betas=(recipe.beta1, recipe.beta2))
        self.params = params
        self.step_count = 0
        self.losses: list[float] = []

    def _copy_weights(self, state: dict[str, np.ndarray]) -> dict:
        # tinyllm stores Linear weights as (in, out): x @ W reads the same here
        def leaf(array):
            return self.torch.tensor(array, device=self.device, requires_grad=True)

        weights = {"wte": leaf(state["wte.weight"]), "wpe": leaf(state["wpe.weight"]),
                   "ln_f": leaf(state["ln_f.weight"])}
        for i in range(self.config.num_layers):
            p = f"blocks.{i}."
            qkv = np.concatenate([state[p + f"attn.{name}_proj.weight"] for name in "qkv"],
                                 axis=1)  # (C, 3C)
            weights.update({p + "ln1": leaf(state[p + "ln1.weight"]), p + "qkv": leaf(qkv),
                            p + "out": leaf(state[p + "attn.out_proj.weight"]),
                            p + "ln2": leaf(state[p + "ln2.weight"]),
                            p + "fc1": leaf(state[p + "ff.fc1.weight"]),
                            p + "fc2": leaf(state[p + "ff.fc2.weight"])})
        return weights

    def loss(self, ids, targets):
        F, w = self.F, self.weights
        B, T = ids.shape
        C, H = self.config.d_model, self.config.num_heads
        x = F.embedding(ids, w["wte"]) + w["wpe"][:T]  # (B, T, C)
        for i in range(self.config.num_layers):
            p = f"blocks.{i}."
            qkv = F.layer_norm(x, (C,), w[p + "ln1"]) @ w[p + "qkv"]  # (B, T, 3C)
            q, k, v = (t.view(B, T, H, C // H).transpose(1, 2)
                       for t in qkv.split(C, dim=2))  # 3 x (B, H, T, D)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
            x = x + y.transpose(1, 2).reshape(B, T, C) @ w[p + "out"]  # (B, T, C)
            h = F.gelu(F.layer_norm(x, (C,), w[p + "ln2"]) @ w[p + "fc1"])  # (B, T, 4C)
            x = x + h @ w[p + "fc2"]  # (B, T, C)
        logits = F.layer_norm(x, (C,), w["ln_f"]) @ w["wte"].T  # (B, T, V)
        return F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))

    def step(self) -> float:
        lr = self.schedule(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = self.task.batch("train", self.data_rng)
        loss = self.loss(self.torch.from_numpy(x).to(self.device),  # (B, T) x 2, copied up
                         self.torch.from_numpy(y).to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.recipe.grad_clip > 0:
            self.torch.nn.utils.clip_grad_norm_(self.params, self.recipe.grad_clip)
        self.optimizer.step()
        self.step_count += 1
        self.losses.append(loss.item())  # waits for the GPU: the step's wall clock is honest
        return self.losses[-1]

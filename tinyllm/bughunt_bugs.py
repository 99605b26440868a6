"""The bugs of ``tinyllm bughunt`` as data (chapters 02-12); the command is in ``bughunt.py``.

Each :class:`Bug` replaces one exact piece of the library's source, ``old``, by a wrong version,
``new``; ``old`` occurs exactly once in its file (``tests/test_bughunt.py`` checks it, so that a
refactor which moves the code also moves the bug). ``tests`` are the pytest node ids (from the
repository root) that catch the bug: ``tinyllm bughunt answer N`` shows them once the student has
made a prediction.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bug:
    """One wrong line (or block) of the library, and the tests that catch it."""

    number: int  # as the student types it: tinyllm bughunt apply 3
    title: str  # what is wrong, in one line
    chapter: int  # the chapter that derives the right version
    file: str  # path relative to the tinyllm package, e.g. "nn/softmax.py"
    old: str  # the right source text, found exactly once in the file
    new: str  # the buggy text that replaces it
    hint: str  # where to look, without giving the answer away
    tests: tuple[str, ...]  # pytest node ids that fail with the bug applied


BUG_LIST: tuple[Bug, ...] = (
    Bug(1, "a dropped unbroadcast: the stretched axes of length 1 are not summed", 2,
        "autograd.py",
        "    axes = (*range(extra), *stretched)  # ... and axes of length 1 that it stretched\n",
        "    axes = tuple(range(extra))  # the axes that broadcasting added\n",
        "a (3, 1) tensor plus a (3, 4) tensor: what shape does the (3, 1) tensor's gradient get?",
        ("tests/test_02_tensors.py::test_binary_gradient_is_the_hand_sum_over_broadcast_axes",)),
    Bug(2, "softmax without the max subtraction", 3, "nn/softmax.py",
        "        y = x - x.max(axis=self.axis, keepdims=True)"
        "  # a new array we own: shifted scores, all <= 0\n",
        "        y = x.copy()  # a new array we own: the scores\n",
        "eq. 3.3: what is exp(1e4) in float32?",
        ("tests/test_03_softmax.py::test_stable_at_plus_minus_1e4",)),
    Bug(3, "label smoothing on ignored targets", 3, "nn/losses.py",
        "        if self.eps:\n"
        "            grad_z -= (self.eps / num_classes) * weights[:, None]  # - w_n eps / V\n"
        "        if self.ignored_rows.size:\n"
        "            grad_z[self.ignored_rows] = 0"
        "  # exactly zero, even if an ignored row held inf or nan\n",
        "        if self.ignored_rows.size:\n"
        "            grad_z[self.ignored_rows] = 0"
        "  # exactly zero, even if an ignored row held inf or nan\n"
        "        if self.eps:\n"
        "            grad_z -= (self.eps / num_classes) * weights[:, None]  # - w_n eps / V\n",
        "eq. 3.12 with ignore_index: which rows of dL/dz must be exactly zero?",
        ("tests/test_03_softmax.py::test_cross_entropy_gradcheck",)),
    Bug(4, "attention without the 1/sqrt(D) scale", 6, "nn/attention.py",
        "        self.scale = 1 / math.sqrt(q.shape[-1])\n",
        "        self.scale = 1.0\n",
        "eq. 6.3 and the variance of a dot product of D unit-variance terms",
        ("tests/test_06_attention.py::test_fused_equals_composed",)),
    Bug(5, "the mask applied after the softmax", 6, "nn/attention.py",
        "        if self.allowed is not None:\n"
        "            xp.copyto(scores, -xp.inf, where=~self.allowed)"
        "  # masked pairs: exp(-inf) = 0 exactly\n"
        "        row_max = scores.max(axis=-1, keepdims=True)  # (..., T_q, 1)\n"
        "        if self.allowed is not None:\n"
        "            xp.copyto(row_max, 0, where=xp.isinf(row_max))"
        "  # fully masked row: max -inf, shift 0\n"
        "        scores -= row_max  # in place: every entry <= 0, no overflow (eq. 6.4)\n"
        "        weights = xp.exp(scores, out=scores)  # the same buffer, now exp(S - max)\n"
        "        total = weights.sum(axis=-1, keepdims=True)"
        "  # (..., T_q, 1); >= 1 unless fully masked\n"
        "        if self.allowed is not None:\n"
        "            xp.copyto(total, 1, where=total == 0)"
        "  # fully masked row: weights 0 / 1 = 0 (eq. 6.8)\n"
        "        weights /= total  # P, eq. 6.4\n",
        "        row_max = scores.max(axis=-1, keepdims=True)  # (..., T_q, 1)\n"
        "        scores -= row_max  # in place: every entry <= 0, no overflow (eq. 6.4)\n"
        "        weights = xp.exp(scores, out=scores)  # the same buffer, now exp(S - max)\n"
        "        weights /= weights.sum(axis=-1, keepdims=True)  # P, eq. 6.4\n"
        "        if self.allowed is not None:\n"
        "            xp.copyto(weights, 0, where=~self.allowed)  # masked pairs: weight 0\n",
        "eqs. 6.4-6.5: do the weights of a masked row still sum to 1?",
        ("tests/test_06_attention.py::test_masked_keys_get_exactly_zero_weight",)),
    Bug(6, "a transposed causal mask", 6, "nn/attention.py",
        "        causal = xp.tri(T_q, T_k, k=T_k - T_q, dtype=bool)"
        "  # (T_q, T_k): j <= i + T_k - T_q\n",
        "        causal = xp.tri(T_k, T_q, k=T_q - T_k, dtype=bool).T  # (T_q, T_k)\n",
        "eq. 6.7: which keys may query 0 see?",
        ("tests/test_06_attention.py::test_causal_output_ignores_the_future",)),
    Bug(7, "Bessel-corrected LayerNorm variance", 8, "nn/normalization.py",
        "        rstd = out.mean(axis=-1, keepdims=True)"
        "  # (..., 1) the biased variance, eq. 8.2\n",
        "        rstd = out.sum(axis=-1, keepdims=True) / (x.shape[-1] - 1)  # (..., 1) eq. 8.2\n",
        "eq. 8.2: divide by C or by C - 1? And what did the backward (eq. 8.7) assume?",
        ("tests/test_08_transformer.py::"
         "test_layer_norm_matches_the_definition_with_biased_variance_and_eps",)),
    Bug(8, "Adam without bias correction", 9, "optim/optimizers.py",
        "        scratch /= math.sqrt(1 - beta2 ** t)\n"
        "        scratch += eps  # sqrt(v_hat) + eps\n"
        "        xp.divide(m, scratch, out=scratch)\n"
        "        scratch *= lr / (1 - beta1 ** t)  # lr * m_hat / (sqrt(v_hat) + eps)\n",
        "        scratch += eps  # sqrt(v) + eps\n"
        "        xp.divide(m, scratch, out=scratch)\n"
        "        scratch *= lr  # lr * m / (sqrt(v) + eps)\n",
        "eqs. 9.8-9.9: how large is m after the first step, when it starts at 0?",
        ("tests/test_09_optim.py::test_adam_first_step_has_size_lr_whatever_the_gradient_scale",)),
    Bug(9, "BPE merges applied out of order", 10, "bpe.py",
        "        rank, pair = heapq.heappop(heap)\n",
        "        rank, pair = heap.pop()\n",
        "eq. 10.9: which pair of a word must be merged first?",
        ("tests/test_10_tokenizers.py::test_encoding_by_rank_replays_every_merge_in_order",)),
    Bug(10, "a wrong KV-cache position offset: cached tokens restart at position 0", 11,
        "models/gpt.py",
        "        x = self.drop(self.wpe(x, offset=offset))  # (B, T, C)\n",
        "        x = self.drop(self.wpe(x))  # (B, T, C)\n",
        "generating with a cache, which learned position does the 10th token get?",
        ("tests/test_11_gpt.py::test_generate_with_and_without_cache_equals_the_definition",)),
    Bug(11, "next-token targets off by one", 11, "objectives/language_model.py",
        "    return data[index].astype(np.int64), data[index + 1].astype(np.int64)"
        "  # (B, T), (B, T)\n",
        "    return data[index].astype(np.int64), data[index].astype(np.int64)  # (B, T), (B, T)\n",
        "eq. 11.2: what does position t predict? A model can get this loss to 0 too easily",
        ("tests/test_11_gpt.py::test_get_batch_windows_and_shift",)),
    Bug(12, "80/10/10 applied to special tokens", 12, "objectives/masked_lm.py",
        "    keys = np.where(can_choose, rng.random(rows.shape), np.inf)  # specials sort last\n",
        "    keys = rng.random(rows.shape)  # (B, T) a random key per position\n",
        "eq. 12.2: may [CLS], [SEP] or [PAD] be chosen for masking?",
        ("tests/test_12_bert.py::test_mask_tokens_chooses_15_percent_of_ordinary_tokens",)),
)

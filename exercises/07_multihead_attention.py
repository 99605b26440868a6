"""Chapter 07 exercises: heads as reshapes, the mask broadcast over heads, the key/value cache.
Grade them with

    python exercises/grade.py 07

Each function replaces one piece of ``tinyllm/nn/multihead.py`` while the chapter's real tests run
(see exercises/README.md). Shapes: x (B, T_q, C), context (B, T_k, C), C = H * D; the attention
of chapter 06 takes q, k, v (B, H, T, D). Arrays are NumPy or CuPy: take the array module from the
input (``xp = get_array_module(keys)`` from ``tinyllm.backend``).
"""

from __future__ import annotations


def mha_forward(self, x, context=None, mask=None, is_causal=False, return_weights=False,
                cache=None):
    """Replaces ``tinyllm.nn.multihead.MultiHeadAttention.forward``   (eqs. 7.1, 7.2)

    x (B, T_q, C) -> out (B, T_q, C); with ``return_weights`` return (out, weights), the weights
    (B, H, T_q, T_k).
    Start with ``mask = self._check_inputs(x, context, mask, cache)`` (it checks the shapes and
    gives the mask 4 axes, or None). With Z = x (self-attention) or Z = ``context``:
        Q = x W_Q + b_Q,  K = Z W_K + b_K,  V = Z W_V + b_V     (7.1)  ``self.q_proj`` etc.
    Cut each (B, T, C) into heads by a reshape and a transpose, (B, T, H, D) -> (B, H, T, D), with
    H = ``self.num_heads``, D = ``self.head_dim`` (no loop over heads). With a ``cache``, replace
    k and v by ``cache.append(k.data, v.data)`` wrapped as Tensors (B, H, T_past + T_q, D).
    Run every head at once with ``scaled_dot_product_attention`` (``tinyllm.nn.attention``):
    mask, is_causal, ``dropout_p = self.dropout_p`` in training mode (``self.training``) and 0
    otherwise, ``rng=self.rng`` and return_weights. Glue the heads back, (B, H, T_q, D) ->
    (B, T_q, H, D) -> (B, T_q, C), and apply ``self.out_proj``                         (7.2)
    (If ``self.attention == "blockwise"``, chapter 17's ``blockwise_attention`` takes the same
    arguments without return_weights, and asking for weights is a ValueError; the graded tests
    use the fused op.)
    """
    raise NotImplementedError("exercise 07.1: project, split into heads, attend, glue, project")


def head_mask(self, mask, B, T_q, T_k):
    """Replaces ``tinyllm.nn.multihead.MultiHeadAttention._head_mask``   (section 7.4)

    A user mask (None, a bool array or a bool Tensor: use ``mask.data``; a list: ``np.asarray``)
    as 4 axes broadcastable to the scores (B, H, T_q, T_k), True = may attend:
        (B, T_k) key padding mask  -> (B, 1, 1, T_k)   every head and query of example b ignores
                                                        b's padded keys (a first axis of 1 is fine)
        (B, T_q, T_k)              -> (B, 1, T_q, T_k)  shared by the heads
        (B, H, T_q, T_k)           -> as given;   None -> None.
    Errors (ValueError): a 2-D mask whose shape is not (B or 1, T_k): "a 2-D mask is a key padding
    mask (B, T_k) = (B, T_k), True = real token; got (...). For a (T_q, T_k) pattern shared by
    the batch pass mask[None] (1, T_q, T_k)"; any other number of axes: "mask expected (B, T_k),
    (B, T_q, T_k) or (B, H, T_q, T_k) = ..., got (...)".
    """
    raise NotImplementedError("exercise 07.2: insert the head (and query) axes of length 1")


def kv_cache_append(self, keys, values):
    """Replaces ``tinyllm.nn.multihead.KVCache.append``   (section 7.5, eq. 7.4)

    Store keys (B, H, T_new, D) and values (B, H, T_new, D_v) after the ``self.length`` cached
    positions and return all cached ones, (B, H, length + T_new, D) and (..., D_v).
    At the first call (``self.keys is None``) allocate ``self.keys`` (B, H, context_length, D) and
    ``self.values`` (B, H, context_length, D_v) once, with ``xp.empty`` and the inputs' dtype;
    later calls write into them in place (no concatenation: the past is never copied again).
    Then advance ``self.length``. Errors (ValueError, raised before anything is written):
    - B, H, D or D_v differ from the cached ones, or values (B, H, T_new) do not match keys:
      "KV cache holds keys (B, H, T, D) = (B, H, length, D), got new keys ... and values ...;
      call reset() before caching another batch";
    - length + T_new > context_length: "KV cache full: {length} cached + {T_new} new positions >
      context_length = {context_length}; ..." (say how to fix it).
    """
    raise NotImplementedError("exercise 07.3: preallocate once, write the new slice in place")


# number, the library attribute it replaces, your function, the tests that grade it
EXERCISES = (
    ("07.1", "tinyllm.nn.multihead:MultiHeadAttention.forward", mha_forward,
     ("tests/test_07_multihead.py::test_reshaped_heads_equal_a_loop_over_heads",
      "tests/test_07_multihead.py::test_causal_reference_and_weights",
      "tests/test_07_multihead.py::test_gradcheck_self_attention[plain]",
      "tests/test_07_multihead.py::test_gradcheck_self_attention[causal]",
      "tests/test_07_multihead.py::test_gradcheck_with_dropout_in_training",
      "tests/test_07_multihead.py::test_causal_output_ignores_later_inputs",
      "tests/test_07_multihead.py::test_dropout_only_in_training_and_seeded",
      "tests/test_07_multihead.py::test_float32_stays_float32",
      "tests/test_07_multihead.py::test_on_device[cuda]")),
    ("07.2", "tinyllm.nn.multihead:MultiHeadAttention._head_mask", head_mask,
     ("tests/test_07_multihead.py::test_padding_mask_forms_agree_and_hide_padded_tokens",
      "tests/test_07_multihead.py::test_gradcheck_self_attention[padding]",
      "tests/test_07_multihead.py::test_gradcheck_self_attention[padding+causal]",
      "tests/test_07_multihead.py::test_gradcheck_cross_attention",
      "tests/test_07_multihead.py::test_errors_name_the_shapes")),
    ("07.3", "tinyllm.nn.multihead:KVCache.append", kv_cache_append,
     ("tests/test_07_multihead.py::test_kv_cache_token_by_token_equals_full_causal"
      "[float32-1e-06]",
      "tests/test_07_multihead.py::test_kv_cache_token_by_token_equals_full_causal"
      "[float64-1e-12]",
      "tests/test_07_multihead.py::test_kv_cache_prompt_then_tokens_and_weights",
      "tests/test_07_multihead.py::test_kv_cache_is_preallocated_and_resets",
      "tests/test_07_multihead.py::test_one_cache_per_layer",
      "tests/test_07_multihead.py::test_kv_cache_errors",
      "tests/test_07_chapter.py::test_a_cached_step_costs_c_squared_plus_t_c")),
)

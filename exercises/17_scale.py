"""Chapter 17 exercises: the gradient all-reduce, the online softmax, the FlashAttention backward
and the FLOPs of a training step. Grade them with

    python exercises/grade.py 17

Each function replaces one piece of tinyllm while the chapter's real tests run (see
exercises/README.md); no test here starts MPI processes (the all-reduce is graded against a
stand-in for mpi4py). Arrays are NumPy or CuPy: use ``xp = get_array_module(q)`` from
``tinyllm.backend``. Shapes: q (..., T_q, D), k (..., T_k, D), v (..., T_k, D_v), the leading
axes (B, H); a query block (..., b_q, D), a key block (..., b_k, D).
"""

from __future__ import annotations


def reduce_gradients(self, model, loss_sum):
    """Replaces ``tinyllm.distributed.MPIWorld.reduce_gradients``: the all-reduce of eq. 17.1

    Every rank has run its share of the step's W k micro-batches, each loss already divided by
    W k, so the SUM over the ranks of their gradients is the gradient of the whole batch. Sum them
    in place with as few messages as possible (eq. 17.4: one latency per message):
    for each gradient dtype (group ``model.parameters()`` by ``p.data.dtype``) build ONE flat
    host buffer (NumPy) of the group's flattened gradients (zeros where ``p.grad`` is None)
    followed by one count per parameter (1 if this rank has its gradient), and call
    ``self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)`` once on it. Then give
    each parameter whose summed count is > 0 its slice reshaped to ``p.data.shape``, on the
    model's device (``xp.asarray``; a new ``Tensor`` where ``p.grad`` was None); a parameter no
    rank touched keeps ``grad = None``. Finally all-reduce the loss, a float64 array of shape
    (1,) holding ``float(to_numpy(loss_sum))``, and return its sum as a 0-d array on the device.
    """
    raise NotImplementedError("exercise 17.1: one flat buffer per dtype, one Allreduce each")


def blockwise_forward(self, q, k, v):
    """Replaces ``tinyllm.nn.blockwise_attention.BlockwiseAttention.forward``  (eqs. 17.6-17.9)

    O = softmax(q k^T / sqrt(D), masked) v without ever building a (T_q, T_k) array. For each
    query block ``i0, i1`` of ``_spans(T_q, self.block_q)`` (the module's helper) keep per row
    m = -inf, l = 0 (..., b_q, 1) and o = 0 (..., b_q, D_v); for each key block
    ``j0, j1, allowed in self._key_blocks(xp, i0, i1, T_q, T_k)`` (causal blocks above the
    diagonal are already skipped; ``allowed`` is the block's boolean mask or None):
        S_b = q_block k_block^T / sqrt(D)  (..., b_q, b_k);  masked pairs -> -inf
        m_b = max(m_{b-1}, rowmax S_b)                                       (17.6)
        l_b = e^(m_{b-1} - m_b) l_{b-1} + rowsum e^(S_b - m_b)               (17.7)
        o_b = e^(m_{b-1} - m_b) o_{b-1} + e^(S_b - m_b) V_b                  (17.8)
    where, while a row has seen no visible key (m_b = -inf), shift by 0 instead of m_b (no nan).
    At the end O = o / l and L = m + log l (17.9); a row with l = 0 (every key masked) gets
    O = 0 and L = 0 (eq. 6.8). Leading axes: ``np.broadcast_shapes(q.shape[:-2], k.shape[:-2])``.
    Save ``self.scale`` = 1/sqrt(D), ``self.q, self.k, self.v``, ``self.out`` = O (..., T_q, D_v)
    and ``self.logsumexp`` = L (..., T_q, 1) for the backward; return O. With dropout
    (``self.dropout_p > 0``; not in the graded tests) multiply e^(S_b - m_b) by
    ``self._keep(xp, i0, j0, shape, dtype)`` after adding its rowsum to l and before the product
    with V_b.
    """
    raise NotImplementedError("exercise 17.2: the running max, normaliser and output per row")


def blockwise_backward(self, grad):
    """Replaces ``tinyllm.nn.blockwise_attention.BlockwiseAttention.backward`` (eqs. 17.10-17.12)

    ``grad`` dO (..., T_q, D_v); saved by the forward: ``self.q, self.k, self.v``, ``self.out``
    O, ``self.logsumexp`` L (..., T_q, 1), ``self.scale`` 1/sqrt(D). Never store P: first
        Delta = rowsum(dO * O)                      (..., T_q, 1)            (17.11)
    then for the same blocks as the forward (``_spans`` and ``self._key_blocks``), recompute
        P_b = exp(q_block k_block^T * scale - L_block)   masked pairs -> exp(-inf) = 0   (17.10)
        dP_b = dO_block V_b^T,   dS_b = P_b * (dP_b - Delta_block)                       (17.11)
        dV_b += P_b^T dO_block,  dQ_block += dS_b K_b * scale,  dK_b += dS_b^T Q_block * scale
                                                                                         (17.12)
    Return (dQ, dK, dV) shaped like the gradient's leading axes with q's, k's and v's last two
    (``grad.shape[:-1] + q.shape[-1:]``, ``grad.shape[:-2] + k.shape[-2:]``, ...): the engine
    sums over broadcast axes. With dropout (``self.dropout_p > 0``) the block's factor
    M = ``self._keep(xp, i0, j0, shape, dtype)`` multiplies P_b in dV and dP_b before dS.
    """
    raise NotImplementedError("exercise 17.3: Delta once, then recompute P block by block")


def training_flops_per_token(config):
    """Replaces ``tinyllm.bench.training.training_flops_per_token``   (eq. 17.14)

    ``config`` a GPTConfig: L = ``num_layers``, T = ``context_length``, C = ``d_model``,
    V = ``vocab_size``. A forward pass costs 2 N_mm FLOPs per token in the weight products
    (N_mm = 12 L C^2 + V C, ``matmul_weights(config)``) and 4 L T C in Q K^T and P V; the backward
    twice the forward. Return the int 3 (2 N_mm + 4 L T C) = 6 N_mm + 12 L T C.
    """
    raise NotImplementedError("exercise 17.4: three forward passes of 2 N_mm + 4 L T C")


# number, the library attribute it replaces, your function, the tests that grade it
EXERCISES = (
    ("17.1", "tinyllm.distributed:MPIWorld.reduce_gradients", reduce_gradients,
     ("tests/test_17_distributed.py::test_gradients_are_summed_in_one_flat_buffer[cpu]",
      "tests/test_17_distributed.py::test_gradients_are_summed_in_one_flat_buffer[cuda]")),
    ("17.2", "tinyllm.nn.blockwise_attention:BlockwiseAttention.forward", blockwise_forward,
     ("tests/test_17_chapter.py::test_blockwise_attention_is_the_recurrence_on_every_row",
      "tests/test_17_blockwise_attention.py::"
      "test_causal_is_bottom_right_aligned_as_in_the_fused_op[2-3-7-7]",
      "tests/test_17_blockwise_attention.py::"
      "test_causal_is_bottom_right_aligned_as_in_the_fused_op[2-3-3-10]",
      "tests/test_17_blockwise_attention.py::"
      "test_causal_is_bottom_right_aligned_as_in_the_fused_op[2-3-10-4]",
      "tests/test_17_blockwise_attention.py::"
      "test_causal_is_bottom_right_aligned_as_in_the_fused_op[128-2-1-9]",
      "tests/test_17_blockwise_attention.py::"
      "test_fully_masked_rows_give_zero_output_and_zero_gradient")),
    ("17.3", "tinyllm.nn.blockwise_attention:BlockwiseAttention.backward", blockwise_backward,
     ("tests/test_17_blockwise_attention.py::test_gradcheck[0.0-5-7-None-False]",
      "tests/test_17_blockwise_attention.py::test_gradcheck[0.0-7-7-None-True]",
      "tests/test_17_blockwise_attention.py::test_gradcheck[0.0-6-4-None-True]",
      "tests/test_17_blockwise_attention.py::test_gradcheck[0.0-5-7-mask_shape3-True]",
      "tests/test_17_blockwise_attention.py::test_gradcheck[0.0-5-7-mask_shape4-False]",
      "tests/test_17_blockwise_attention.py::test_float32_agrees_with_the_fused_op")),
    ("17.4", "tinyllm.bench.training:training_flops_per_token", training_flops_per_token,
     ("tests/test_17_chapter.py::"
      "test_the_flop_count_is_the_matrix_products_of_a_forward_pass[2-2-16-8-11]",
      "tests/test_17_chapter.py::"
      "test_the_flop_count_is_the_matrix_products_of_a_forward_pass[3-4-64-32-100]",
      "tests/test_17_chapter.py::"
      "test_the_flop_count_is_the_matrix_products_of_a_forward_pass[1-1-8-5-3]")),
)

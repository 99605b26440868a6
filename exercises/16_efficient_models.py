"""Chapter 16 exercises: bfloat16 rounding, the loss scaler, absmax quantization, the int8 product,
the distillation KL and magnitude pruning. Grade them with

    python exercises/grade.py 16

Each function replaces one piece of ``tinyllm/compress/`` while the chapter's real tests run (see
exercises/README.md). Arrays are NumPy (or CuPy: take ``xp = get_array_module(x)`` from
``tinyllm.backend``). Shapes: a weight W (K, N) = (in_features, out_features), activations
x (M, K), logits (..., V).
"""

from __future__ import annotations


def bfloat16_bits(x):
    """Replaces ``tinyllm.compress.precision.bfloat16_bits``: float32 -> bfloat16 bit patterns

    ``x`` (any shape) as float32; return uint16 patterns of the same shape, the nearest bfloat16,
    ties to even (eq. 16.3). View the float32 bits as uint32 b (``x.view(np.uint32)``) and keep
    the high half after adding the rounding term:
        bf16(b) = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    (a carry out of the significand bumps the exponent, which is right, up to inf). Keep every
    constant a ``np.uint32`` so nothing is promoted to int64. A nan stays a nan of the same sign:
    for it return the high half of ``b | 0x00400000`` (the quiet bit), not the rounded value.
    """
    raise NotImplementedError("exercise 16.1: add 0x7FFF + the lowest kept bit, keep the high half")


def loss_scaler_update(self):
    """Replaces ``tinyllm.compress.precision.LossScaler.update``: one step of eq. 16.4

    ``self.found_overflow`` is the verdict of the last ``unscale_and_check`` (None: no check since
    the last update: raise a RuntimeError that names ``unscale_and_check``).
        overflow:   self.skipped_steps += 1, self.clean_steps = 0,
                    S <- S * self.backoff_factor   (only if self.enabled)
        clean:      self.clean_steps += 1; if self.enabled and clean_steps >= growth_interval:
                    S <- S * self.growth_factor and clean_steps = 0
    S is ``self.loss_scale``. Finally set ``self.found_overflow = None`` (the check is used up).
    """
    raise NotImplementedError("exercise 16.2: halve on overflow, double after N clean steps")


def quantize_absmax(weight, bits=8, group_size=None):
    """Replaces ``tinyllm.compress.quantize.quantize_absmax``: symmetric absmax, eq. 16.5

    ``weight`` W (K, N); groups of g = ``group_size`` rows (None: g = K, one scale per output
    column). ``q_max = max_level(bits)`` (127 or 7) and ``g = _check_groups(weight.shape,
    group_size, bits)`` from ``tinyllm.compress.quantize`` check the settings. In float64:
        W as (K/g, g, N);   s_Gj = max_{i in G} |W_ij| / q_max  (an all-zero group: s = 1)
        q_ij = round(W_ij / s_Gj)   (no clipping needed: |W / s| <= q_max; eq. 16.6)
    Return ``QuantizedWeight(values, scales, bits, g, (K, N))`` with ``scales`` float32 (K/g, N)
    and ``values`` the int8 levels (K, N), or for bits=4 ``pack_int4(levels)`` (K/2, N).
    """
    raise NotImplementedError("exercise 16.3: one scale per group and column, then round")


def int8_matmul(x, qweight):
    """Replaces ``tinyllm.compress.quantize.int8_matmul``: y = x W in integers (eq. 16.8)

    ``x`` (M, K) float, ``qweight`` a QuantizedWeight of W (K, N) (``.levels`` q int8 (K, N),
    ``.scales`` s (K/g, N), ``.group_size`` g). Quantize the rows of x with
    ``quantize_rows(x)`` -> p int8 (M, K), t (M, 1), so x_m ~ t_m p_m. Then, per group G of g rows,
    sum p_mi q_ij in int32 (exact), and
        y_mj = t_m sum_G s_Gj sum_{i in G} p_mi q_ij          (M, N), returned as float32
    (do the scaling in float64). Reshape p to (K/g, M, g) and q to (K/g, g, N) so one batched
    product gives every group's sums (K/g, M, N). An x that is not (M, K) is a ValueError
    naming "x (M, K) with K = ...".
    """
    raise NotImplementedError("exercise 16.4: int32 sums per group, scaled by s and t")


def distillation_kl_forward(self, student):
    """Replaces ``tinyllm.compress.distill.DistillationKL.forward``: the soft term of eq. 16.10

    ``student`` s (..., V) array; ``self.teacher`` t (..., V) array (cast it to s's dtype),
    ``self.temperature`` T, ``self.kept`` a boolean array (...) of the positions that count.
    With N = max(number of kept positions, 1), rows flattened to (N_all, V):
        p = softmax(t / T),  q = softmax(s / T)   (stable log-softmax: subtract the row max)
        L = T^2 / N * sum_{n kept} sum_v p_nv (log p_nv - log q_nv)     a 0-d array, s's dtype
    Save for the library's backward, dL/ds_n = g T (q_n - p_n) / N on kept rows (eq. 16.11):
    ``self.p`` and ``self.q`` (N_all, V), ``self.weights`` (N_all, 1) = kept as 0/1 in s's dtype,
    ``self.count`` = N and ``self.shape`` = s's shape.
    """
    raise NotImplementedError("exercise 16.5: T^2 KL(p_T || q_T), mean over the kept rows")


def magnitude_masks(model, sparsity, include_embeddings=False):
    """Replaces ``tinyllm.compress.prune.magnitude_masks``: global magnitude pruning (eq. 16.12)

    ``prunable_weights(model, include_embeddings)`` (``tinyllm.compress.prune``) gives the
    weights by name; if it is empty raise a ValueError, and a sparsity s outside [0, 1] is a
    ValueError that says "in [0, 1]". Over all n prunable entries at once (``to_numpy`` them),
    prune exactly k = round(s n) entries with the smallest |w| (``np.argpartition``; ties by
    position): return {name: boolean mask of that parameter's shape, True = kept}.
    """
    raise NotImplementedError("exercise 16.6: one threshold over all weights, k = round(s n)")


# number, the library attribute it replaces, your function, the tests that grade it
EXERCISES = (
    ("16.1", "tinyllm.compress.precision:bfloat16_bits", bfloat16_bits,
     ("tests/test_16_precision.py::test_bfloat16_bits_of_hand_worked_patterns[1065385984-16256]",
      "tests/test_16_precision.py::test_bfloat16_bits_of_hand_worked_patterns[1065451520-16258]",
      "tests/test_16_precision.py::test_bfloat16_bits_of_hand_worked_patterns[1073709056-16384]",
      "tests/test_16_precision.py::test_bfloat16_bits_of_hand_worked_patterns[2139095039-32640]",
      "tests/test_16_precision.py::test_bfloat16_bits_of_hand_worked_patterns[98304-2]",
      "tests/test_16_precision.py::test_nan_stays_nan_and_keeps_its_sign[4294967295]",
      "tests/test_16_precision.py::test_bfloat16_matches_the_slow_reference",
      "tests/test_16_chapter.py::test_the_formats_table_of_section_16_1")),
    ("16.2", "tinyllm.compress.precision:LossScaler.update", loss_scaler_update,
     ("tests/test_16_precision.py::test_scaler_grows_after_n_clean_steps",
      "tests/test_16_precision.py::test_scaler_unscales_in_place_and_halves_and_skips_on_overflow",
      "tests/test_16_precision.py::test_scaler_scale_multiplies_the_loss_and_update_needs_a_check",
      "tests/test_16_precision.py::"
      "test_a_disabled_scaler_keeps_scale_one_but_still_refuses_non_finite_gradients",
      "tests/test_16_precision.py::"
      "test_the_scaler_backs_off_from_a_huge_scale_until_steps_go_through")),
    ("16.3", "tinyllm.compress.quantize:quantize_absmax", quantize_absmax,
     ("tests/test_16_quantize.py::test_dequantize_error_is_at_most_half_a_step",
      "tests/test_16_quantize.py::test_the_bound_is_nearly_reached_and_the_absmax_entry_is_exact",
      "tests/test_16_quantize.py::test_quantize_refuses_bad_settings")),
    ("16.4", "tinyllm.compress.quantize:int8_matmul", int8_matmul,
     ("tests/test_16_quantize.py::test_int8_product_is_exact_in_its_integers_and_within_the_bound",
      "tests/test_16_quantize.py::test_int8_matmul_checks_its_input",
      "tests/test_16_chapter.py::test_the_int8_product_error_is_within_eq_16_9")),
    ("16.5", "tinyllm.compress.distill:DistillationKL.forward", distillation_kl_forward,
     ("tests/test_16_distill.py::test_kl_gradient_is_the_closed_form[1.0]",
      "tests/test_16_distill.py::test_kl_gradient_is_the_closed_form[5.0]",
      "tests/test_16_distill.py::"
      "test_fused_kl_passes_a_float64_gradcheck_and_equals_the_composed_one",
      "tests/test_16_distill.py::test_kl_is_zero_for_the_teacher_itself_and_positive_otherwise",
      "tests/test_16_distill.py::test_ignored_positions_count_for_neither_term")),
    ("16.6", "tinyllm.compress.prune:magnitude_masks", magnitude_masks,
     ("tests/test_16_prune.py::test_magnitude_masks_prune_exactly_the_smallest_weights",
      "tests/test_16_prune.py::"
      "test_embeddings_are_left_out_unless_asked_and_bad_sparsity_is_refused")),
)

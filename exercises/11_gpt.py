"""Chapter 11 exercises: the GPT forward pass, its initialisation and size, and sampling the next
token. Grade them with

    python exercises/grade.py 11

Each function replaces one piece of ``tinyllm/models/gpt.py`` or ``tinyllm/sampling.py`` while the
chapter's real tests run (see exercises/README.md). Shapes: ids (B, T), width C, vocabulary V,
logits (B, T, V); the sampler works on the logits of the last position, (B, V), as NumPy arrays.
"""

from __future__ import annotations


def gpt_forward(self, ids, targets=None, caches=None):
    """Replaces ``tinyllm.models.gpt.GPT.forward``   (eqs. 11.2, 11.4)

    ids (B, T) (an array, a list or a Tensor: use ``ids.data``) -> logits (B, T, V); with
    ``targets`` (B, T) return (logits, the mean cross-entropy ``F.cross_entropy(logits, targets)``
    of eq. 11.2, ``tinyllm.nn.functional as F``). ``caches``: None, or one KVCache per block; then
    ids are the new positions, which start at ``offset = caches[0].length``, else offset = 0.
    First ``self._check_ids(ids, offset)`` (shape and context-length errors). Then
        h_0 = W_te[x_t] + W_pe[offset + t]      ``self.wte``, then ``self.wpe(x, offset=offset)``,
                                                 then dropout ``self.drop``
        h_l = Block_l(h_{l-1})                  each of ``self.blocks`` with ``is_causal=True`` and
                                                 ``cache=caches[l]`` (or None)
        z_t = LN_f(h_L) W_te^T                  (11.4)  ``self.ln_f``; the output layer is the
                                                 token embedding's matrix, transposed (tied)
    """
    raise NotImplementedError("exercise 11.1: embed, add positions, L causal blocks, LN, tied W_te")


def gpt_init_weights(self, rng):
    """Replaces ``tinyllm.models.gpt.GPT._init_weights``   (eqs. 11.5, 11.6)

    GPT-2's initialisation, over ``self.named_parameters()`` in their order, each drawn with
    ``rng.normal(0.0, std, p.shape).astype(p.dtype)`` and stored in ``p.data``:
    - every matrix (``p.ndim == 2``, embeddings included): std 0.02, except the two projections
      that write into the residual stream in every block, the names ending in
      "attn.out_proj.weight" and "ff.fc2.weight": std 0.02 / sqrt(2 L), L = num_layers, so that
      the 2L branches add about the variance of one (eq. 11.6);
    - biases (names ending in ".bias"): 0; LayerNorm gains keep their 1.
    """
    raise NotImplementedError("exercise 11.2: N(0, 0.02^2), residual projections / sqrt(2L)")


def gpt_parameter_count(config):
    """Replaces ``tinyllm.models.gpt.gpt_parameter_count``: the closed form of eq. 11.7

    N = V C + T C + L (12 C^2 + 2 C) + C   (token and position tables, per block the four C x C
    attention projections, the C x 4C and 4C x C feed-forward matrices and two LayerNorm gains,
    then the final gain; the output layer is tied: no matrix of its own). With ``config.bias``
    add L (4 C + 5 C + 2 C) + C: the attention biases, the feed-forward biases (4C and C), the two
    LayerNorm shifts per block and the final shift. V = vocab_size, T = context_length,
    L = num_layers, C = d_model.
    """
    raise NotImplementedError("exercise 11.3: eq. 11.7, plus the biases when config.bias")


def filter_logits(logits, top_k=None, top_p=None):
    """Replaces ``tinyllm.sampling.filter_logits``: top-k and nucleus filters   (eqs. 11.10, 11.11)

    Return a float64 COPY of ``logits`` (B, V) (never modify the input) in which the tokens outside
    the kept set are -inf, per row; the kept logits keep their values. Check the arguments first
    with ``tinyllm.sampling._check_filters(top_k, top_p)`` (its ValueErrors name them).
    - top_k (if not None): keep exactly the k largest logits (``np.argpartition``); a k >= V
      keeps all.
    - then top_p (if not None and < 1): with p = softmax of the (already filtered) row, sorted
      decreasingly, keep the smallest prefix whose mass reaches top_p: drop a token when the mass
      of the tokens ranked above it is already >= top_p (the most likely token always stays).
      top_p = 1 keeps every token, however unlikely (do not let rounding drop any).
    """
    raise NotImplementedError("exercise 11.4: -inf outside the k largest and outside the nucleus")


def sample_next(logits, rng, temperature=1.0, top_k=None, top_p=None):
    """Replaces ``tinyllm.sampling.sample_next``: one token per row of ``logits`` (B, V)   (11.9)

    Returns int64 (B,). Errors: logits not 2-D -> ValueError "sample_next expects logits (B, V),
    got shape ..."; then ``tinyllm.sampling.check_sampling(temperature, top_k, top_p)``; a row
    whose maximum is not finite (NaN, +inf, or every logit -inf) -> ValueError "the logits of row
    {row} are NaN, +inf or all -inf: ..." (also at temperature 0).
    temperature 0: greedy, the arg-max of each row. Otherwise
        s = (z - max z) / temperature   in float64 (every s <= 0: a tiny temperature underflows
                                         to exp(s) = 0 off the maximum, never overflow or NaN),
        s = tinyllm.sampling.filter_logits(s, top_k, top_p)   (the library's while 11.5 is
                                                                graded; exercise 11.4 is yours)
        p = exp(s) / sum exp(s)   (eq. 11.9),
    and draw by inverting the cumulative distribution: u = rng.random((B, 1)) * cdf[:, -1:], the
    token is the first index whose cdf exceeds u (clip to V - 1).
    """
    raise NotImplementedError("exercise 11.5: temperature, filters, softmax, invert the cdf")


# number, the library attribute it replaces, your function, the tests that grade it
EXERCISES = (
    ("11.1", "tinyllm.models.gpt:GPT.forward", gpt_forward,
     ("tests/test_11_gpt.py::test_output_layer_is_the_token_embedding",
      "tests/test_11_gpt.py::test_logits_at_t_do_not_see_later_tokens",
      "tests/test_11_gpt.py::test_loss_at_initialisation_is_log_vocabulary",
      "tests/test_11_gpt.py::test_gradcheck_of_the_whole_loss[wte.weight]",
      "tests/test_11_gpt.py::test_gradcheck_of_the_whole_loss[wpe.weight]",
      "tests/test_11_gpt.py::test_tied_matrix_gets_the_input_and_the_output_gradient",
      "tests/test_11_gpt.py::test_cached_logits_equal_full_recomputation[float32-2e-05]",
      "tests/test_11_gpt.py::test_cached_logits_equal_full_recomputation[float64-1e-12]",
      "tests/test_11_gpt.py::test_too_long_input_is_a_clear_error",
      "tests/test_11_gpt.py::test_dropout_is_active_in_training_only",
      "tests/test_11_chapter.py::test_the_forward_pass_is_the_composition_of_eq_11_4",
      "tests/test_11_chapter.py::"
      "test_the_sequence_probability_is_the_product_of_the_next_token_ones")),
    ("11.2", "tinyllm.models.gpt:GPT._init_weights", gpt_init_weights,
     ("tests/test_11_gpt.py::test_gpt2_initialisation[False]",
      "tests/test_11_gpt.py::test_gpt2_initialisation[True]",
      "tests/test_11_gpt.py::test_initialisation_is_seeded",
      "tests/test_11_chapter.py::test_the_residual_stream_adds_the_variances_of_its_branches")),
    ("11.3", "tinyllm.models.gpt:gpt_parameter_count", gpt_parameter_count,
     ("tests/test_11_gpt.py::test_parameter_count_of_the_cpu_preset",
      "tests/test_11_gpt.py::test_parameter_count_closed_form_and_by_name[shape0-False]",
      "tests/test_11_gpt.py::test_parameter_count_closed_form_and_by_name[shape0-True]",
      "tests/test_11_gpt.py::test_parameter_count_closed_form_and_by_name[shape1-False]",
      "tests/test_11_gpt.py::test_parameter_count_closed_form_and_by_name[shape1-True]",
      "tests/test_11_gpt.py::test_parameter_count_closed_form_and_by_name[shape2-False]",
      "tests/test_11_gpt.py::test_parameter_count_closed_form_and_by_name[shape2-True]")),
    ("11.4", "tinyllm.sampling:filter_logits", filter_logits,
     ("tests/test_11_gpt.py::test_top_k_and_top_p_combine_and_rows_are_independent",
      "tests/test_11_gpt.py::test_filter_logits_keeps_values_and_copies",
      "tests/test_11_gpt.py::test_top_k_keeps_exactly_the_k_largest",
      "tests/test_11_gpt.py::test_top_p_keeps_the_smallest_set_reaching_the_mass",
      "tests/test_11_gpt.py::test_top_p_of_one_keeps_every_token_of_moderate_probability",
      "tests/test_11_gpt.py::test_top_p_of_one_disables_the_filter",
      "tests/test_11_gpt.py::test_non_integer_top_k_is_a_clear_error",
      "tests/test_11_gpt.py::test_top_k_sampling_renormalises_the_k_most_likely[2-expected1]",
      "tests/test_11_gpt.py::test_top_k_sampling_renormalises_the_k_most_likely[10-expected4]",
      "tests/test_11_gpt.py::test_top_p_sampling_keeps_the_smallest_nucleus[0.01-expected0]",
      "tests/test_11_gpt.py::test_top_p_sampling_keeps_the_smallest_nucleus[0.45-expected2]",
      "tests/test_11_gpt.py::test_top_p_sampling_keeps_the_smallest_nucleus[1.0-expected6]")),
    ("11.5", "tinyllm.sampling:sample_next", sample_next,
     ("tests/test_11_gpt.py::test_sampled_frequencies_follow_softmax_with_temperature[1.0]",
      "tests/test_11_gpt.py::test_sampled_frequencies_follow_softmax_with_temperature[0.5]",
      "tests/test_11_gpt.py::test_sampled_frequencies_follow_softmax_with_temperature[2.0]",
      "tests/test_11_gpt.py::test_tokens_with_minus_infinity_logits_are_never_drawn",
      "tests/test_11_gpt.py::test_temperature_zero_is_greedy_argmax",
      "tests/test_11_gpt.py::test_seeded_generation_is_reproducible",
      "tests/test_10_bpe_scaling.py::test_a_tiny_temperature_is_greedy_decoding",
      "tests/test_10_bpe_scaling.py::test_tied_maxima_at_a_tiny_temperature_are_drawn_evenly",
      "tests/test_10_bpe_scaling.py::test_non_finite_logits_are_a_clear_error_not_token_0[nan]",
      "tests/test_10_bpe_scaling.py::test_non_finite_logits_are_a_clear_error_not_token_0[inf]")),
)

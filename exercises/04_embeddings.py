"""Chapter 04 exercises: the embedding lookup, its scatter-add gradient, checking token ids.
Grade them with

    python exercises/grade.py 04

Each function replaces one piece of ``tinyllm/nn/embedding.py`` while the chapter's real tests run
(see exercises/README.md). Arrays are NumPy or CuPy: use ``xp = get_array_module(weight)`` from
``tinyllm.backend``.
"""

from __future__ import annotations


def embedding_forward(self, weight):
    """Replaces ``tinyllm.nn.embedding.EmbeddingFunction.forward``   (eqs. 4.2, 4.3)

    y[n] = W[ids[n]]: the rows of the table ``weight`` (V, C) picked by the integer array
    ``self.ids`` (any shape, already checked); the result has shape ids.shape + (C,). Save
    ``self.vocab_size = V``: the backward needs it.
    """
    raise NotImplementedError("exercise 04.1: gather the rows of weight")


def embedding_backward(self, grad):
    """Replaces ``tinyllm.nn.embedding.EmbeddingFunction.backward``   (eqs. 4.4, 4.5)

    dL/dW[v] = the sum of the gradient rows g[n] over every position n with ids[n] = v; rows of
    tokens that do not occur are 0. ``grad`` has shape ids.shape + (C,); return (V, C). A token that
    occurs twice must get both rows: ``dW[ids] += g`` does *not* do that in NumPy (the second write
    wins); ``tinyllm.backend.scatter_add(target, index, values)`` or ``np.add.at`` do.
    """
    raise NotImplementedError("exercise 04.2: a scatter-add of the gradient rows")


def check_token_ids(ids, vocab_size, device="cpu", name="embedding"):
    """Replaces ``tinyllm.nn.embedding.check_token_ids``: token ids, checked, as an integer array.

    ``ids``: an integer array, an integer Tensor (use ``ids.data``) or a nested list of ints.
    Return them as an integer array on ``device`` (``tinyllm.backend.to_device``). Errors, with the
    wording the tests look for:
    * not integers: TypeError "{name}: token ids must be integers, got dtype {dtype}; convert them
      with ids.astype(np.int64)"
    * out of range: IndexError "{name}: token id {id} at position {pos} of the ids ... for a table
      of V={vocab_size} rows; valid ids are 0..{vocab_size - 1}", where pos is the bad id's index
      as a tuple, e.g. (1, 2) or (3,) (``np.unravel_index``; ``str(tuple(...))`` of Python ints).
    """
    raise NotImplementedError("exercise 04.3: the dtype check, then the range check")


# number, the library attribute it replaces, your function, the tests that grade it
EXERCISES = (
    ("04.1", "tinyllm.nn.embedding:EmbeddingFunction.forward", embedding_forward,
     ("tests/test_04_embeddings.py::test_lookup_returns_rows",
      "tests/test_04_embeddings.py::test_embedding_on_device[cuda]")),
    ("04.2", "tinyllm.nn.embedding:EmbeddingFunction.backward", embedding_backward,
     ("tests/test_04_embeddings.py::test_gradient_with_all_ones_counts_tokens",
      "tests/test_04_embeddings.py::test_gradcheck_with_repeated_ids")),
    ("04.3", "tinyllm.nn.embedding:check_token_ids", check_token_ids,
     ("tests/test_04_embeddings.py::test_id_too_large_names_id_position_and_V",
      "tests/test_04_embeddings.py::test_negative_id_names_id_and_position",
      "tests/test_04_embeddings.py::test_float_and_bool_ids_are_rejected")),
)

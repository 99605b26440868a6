"""Chapter 14 exercises: the confusion matrix, precision, recall and F1 with their averages, the
classification head's pooling, tf-idf, and the warm-up + linear decay schedule. Grade them with

    python exercises/grade.py 14

Each function replaces one piece of tinyllm while the chapter's real tests run (see
exercises/README.md). The metric tests compare with scikit-learn on random labels, errors
included. Labels may be ints or strings; ``tinyllm.metrics.classification`` has the helpers
``_check_pair(y_true, y_pred)`` (1-D arrays of equal, non-zero length, or a ValueError) and
``_labels_1d(labels, "labels")``.
"""

from __future__ import annotations


def confusion_matrix(y_true, y_pred, labels=None):
    """Replaces ``tinyllm.metrics.classification.confusion_matrix``   (section 14.3, eq. 14.1)

    C[i, j] = #{n : y_n = labels[i], yhat_n = labels[j]}: rows the true class, columns the
    predicted one; an int64 array (K, K). Check the inputs with ``_check_pair``. Without
    ``labels`` the classes are the sorted union of the labels seen (``np.union1d``). With them,
    ``labels`` (``_labels_1d``) fixes the order; it must be non-empty and distinct, and at least
    one y_true must be among them (else ValueError); an example whose true or predicted label is
    not among them is left out. Then accuracy = trace(C) / N (eq. 14.1).
    """
    raise NotImplementedError("exercise 14.1: count each (true, predicted) pair in its cell")


def precision_recall_f1(y_true, y_pred, average="binary", labels=None, pos_label=1,
                        zero_division=0.0):
    """Replaces ``tinyllm.metrics.classification.precision_recall_f1``   (eqs. 14.2-14.4)

    For each class k of the classes scored: TP_k = #{y = k = yhat}, true_k = #{y = k},
    pred_k = #{yhat = k};
        precision_k = TP_k / pred_k,  recall_k = TP_k / true_k,
        F1_k = 2 TP_k / (true_k + pred_k)                          (eqs. 14.2, 14.3)
    where a denominator is 0 the value is ``zero_division`` (0.0, 1.0 or nan).
    Which classes: ``labels`` if given (a class that never occurs is allowed), else the sorted
    union of y_true and y_pred; "binary" scores the one class ``pos_label`` (and needs at most 2
    labels in y_true and y_pred together, and, if there are 2, pos_label among them).
    Averages (eq. 14.4): None: the three (K,) arrays; "macro": the plain mean over the classes;
    "weighted": the mean weighted by true_k; "micro": sum TP, true and pred over the classes
    first, then divide. A mean skips nan values (all nan: nan); "weighted" with all weights 0
    is the plain mean. Return floats (or the arrays).
    ValueErrors: ``average`` not one of "binary", "micro", "macro", "weighted", None;
    ``zero_division`` not 0.0, 1.0 or nan; the inputs (``_check_pair``); the binary cases above.
    """
    raise NotImplementedError("exercise 14.2: TP, true and predicted counts, then the averages")


def pool(self, h, attention_mask):
    """Replaces ``tinyllm.finetune.head.SequenceClassifier.pool``: one vector per passage (eq. 14.6)

    ``h`` is the encoder's output Tensor (B, T, C), ``attention_mask`` (B, T) True at real
    tokens. By ``self.pooling``:
        "pooler":  u_b = tanh(h_b0 W_p + b_p)   (``self.bert.pooler`` is that Linear layer)
        "cls":     u_b = h_b0                   (position 0, the [CLS] token)
        "mean":    u_b = sum_t m_bt h_bt / max(sum_t m_bt, 1)
    Returns a Tensor (B, C) made of Tensor operations, so the gradient reaches h (eq. 14.10).
    For "mean" build the mask with the array module of ``h.data`` (``get_array_module`` from
    ``tinyllm.backend``), as ``h.dtype``, shaped (B, T, 1).
    """
    raise NotImplementedError("exercise 14.3: the pooler, the [CLS] vector, or the masked mean")


def bag_of_words_fit(self, texts):
    """Replaces ``tinyllm.finetune.bow.BagOfWords.fit``: the vocabulary and idf (eq. 14.7)

    The words of a text are ``tinyllm.finetune.bow.WORD.findall(text.lower())``. With N texts,
    df_j = the number of texts that contain word j, and total_j = its occurrences in all of them:
    keep the words with df_j >= ``self.min_df``; of those, the ``self.max_features`` with the
    largest total_j (ties: the alphabetically first). If none is kept, raise a ValueError that
    names min_df. Set
        self.vocabulary = the kept words, sorted, as a NumPy str array (V,)
        self.idf = ln((1 + N) / (1 + df_j)) + 1 for those words, float32 (V,)   (eq. 14.7)
    and return ``self``. (``transform`` then counts each word, multiplies by idf and scales
    each row to unit length.)
    """
    raise NotImplementedError("exercise 14.4: document frequencies, the kept words, the idf")


def warmup_linear(step, max_lr, warmup_steps, total_steps):
    """Replaces ``tinyllm.finetune.trainer.warmup_linear``: the learning rate at ``step`` (eq. 14.8)

    step < w:  max_lr (step + 1) / (w + 1)
    else:      max_lr max(0, (S - step) / max(S - w, 1))
    with w = ``warmup_steps`` and S = ``total_steps``; a float.
    """
    raise NotImplementedError("exercise 14.5: a linear ramp, then a straight line to 0")


# number, the library attribute it replaces, your function, the tests that grade it
EXERCISES = (
    ("14.1", "tinyllm.metrics.classification:confusion_matrix", confusion_matrix,
     ("tests/test_14_chapter.py::test_accuracy_precision_recall_f1_read_off_the_confusion_matrix",
      "tests/test_14_classification_metrics.py::"
      "test_accuracy_confusion_matrix_and_the_single_metrics_equal_sklearn",
      "tests/test_14_classification_metrics.py::test_a_worked_example_by_hand")),
    ("14.2", "tinyllm.metrics.classification:precision_recall_f1", precision_recall_f1,
     ("tests/test_14_chapter.py::test_the_three_averages_by_hand",
      "tests/test_14_chapter.py::"
      "test_a_class_the_model_never_predicts_pulls_macro_f1_down_but_not_accuracy",
      "tests/test_14_classification_metrics.py::test_zero_division_conventions",
      "tests/test_14_classification_metrics.py::test_precision_recall_f1_equal_sklearn")),
    ("14.3", "tinyllm.finetune.head:SequenceClassifier.pool", pool,
     ("tests/test_14_chapter.py::test_the_head_computes_its_logits_as_the_chapter_writes_them"
      "[pooler]",
      "tests/test_14_chapter.py::test_the_head_computes_its_logits_as_the_chapter_writes_them"
      "[cls]",
      "tests/test_14_chapter.py::test_the_head_computes_its_logits_as_the_chapter_writes_them"
      "[mean]",
      "tests/test_14_chapter.py::test_the_gradient_that_reaches_the_encoder[cls]",
      "tests/test_14_chapter.py::test_the_gradient_that_reaches_the_encoder[mean]")),
    ("14.4", "tinyllm.finetune.bow:BagOfWords.fit", bag_of_words_fit,
     ("tests/test_14_chapter.py::test_tfidf_by_hand",
      "tests/test_14_finetune.py::test_tfidf_equals_scikit_learn")),
    ("14.5", "tinyllm.finetune.trainer:warmup_linear", warmup_linear,
     ("tests/test_14_chapter.py::test_warmup_then_linear_decay_values",
      "tests/test_14_chapter.py::test_the_trainer_steps_through_eq_14_8",
      "tests/test_14_finetune.py::"
      "test_weight_decay_skips_biases_and_layernorms_and_the_schedule_warms_then_decays")),
)

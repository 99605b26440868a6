"""Evaluation metrics for generated text, written from scratch (chapter 15).

- BLEU (Papineni et al. 2002) with sacreBLEU's conventions (Post 2018): ``corpus_bleu``,
  ``sentence_bleu``, ``sentence_bleu_scores``, ``tokenize_13a``                     bleu.py
- chrF and chrF++ (Popović 2015, 2017): ``corpus_chrf``, ``sentence_chrf``          chrf.py
- ROUGE-N and ROUGE-L (Lin 2004), as Google's rouge_score: ``rouge_scores``,
  ``sentence_rouge``                                                              rouge.py
- character and word error rate, Levenshtein distance: ``character_error_rate``,
  ``word_error_rate``, ``edit_distances``, ``levenshtein``                           cer.py
- classification (chapter 14): ``accuracy``, ``precision``, ``recall``, ``f1_score``,
  ``precision_recall_f1``, ``confusion_matrix``, ``perplexity``          classification.py

Each is whole-array NumPy over the corpus (``sequences.py``: ids, n-gram counts;
``alignment.py``: the edit-distance and LCS tables). They agree with ``sacrebleu`` and
``rouge-score`` to 1e-6 (tests/test_15_metrics.py); the library never imports either.

    from tinyllm.metrics import corpus_bleu, corpus_chrf, character_error_rate
    corpus_bleu(hypotheses, [references]).score      # references[k][i]: k-th reference of i
"""

from tinyllm.metrics.bleu import (
    BLEUScore,
    corpus_bleu,
    sentence_bleu,
    sentence_bleu_scores,
    tokenize_13a,
)
from tinyllm.metrics.cer import (
    character_error_rate,
    edit_distances,
    levenshtein,
    word_error_rate,
)
from tinyllm.metrics.chrf import CHRFScore, corpus_chrf, sentence_chrf
from tinyllm.metrics.classification import (
    accuracy,
    confusion_matrix,
    f1_score,
    perplexity,
    precision,
    precision_recall_f1,
    recall,
)
from tinyllm.metrics.rouge import RougeScore, rouge_scores, sentence_rouge

__all__ = [
    "BLEUScore", "CHRFScore", "RougeScore", "character_error_rate", "corpus_bleu", "corpus_chrf",
    "edit_distances", "levenshtein", "rouge_scores", "sentence_bleu", "sentence_bleu_scores",
    "sentence_chrf", "sentence_rouge", "tokenize_13a", "word_error_rate",
    "accuracy", "confusion_matrix", "f1_score", "perplexity", "precision", "precision_recall_f1",
    "recall",
]

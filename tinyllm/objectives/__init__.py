"""What is optimised: the pretraining objectives, each whole in one module (chapters 11 and 12).

- :mod:`tinyllm.objectives.language_model` (GPT): the shifted windows of a token stream
  (``get_batch``), next-token prediction (``next_token_loss``, eq. 11.2; ``lm_loss``, eq. 3.14) and
  ``LanguageModelTask``;
- :mod:`tinyllm.objectives.masked_lm` (BERT): the 80/10/10 corruption (``mask_tokens``, eq. 12.2),
  sentence pairs (``nsp_pairs``, ``text_segments``), ``mlm_loss``, ``mlm_accuracy``, ``nsp_loss``
  (eq. 12.3) and ``MaskedLMTask``;
- :mod:`tinyllm.objectives.streams` (recurrent models): B contiguous streams for truncated BPTT,
  the state carried from batch to batch and detached (``make_streams``, eq. 18.13; ``StreamTask``).

A task turns token ids into batches, a batch into a loss, and a model into validation metrics; the
trainer (``tinyllm.train``) runs either. The generic losses they build on (``cross_entropy``,
``IGNORE_INDEX``) are chapter 03's, in ``tinyllm.nn.losses``.
"""

from tinyllm.objectives.language_model import (
    LanguageModelTask,
    get_batch,
    lm_loss,
    next_token_loss,
)
from tinyllm.objectives.masked_lm import (
    BERT_SPECIAL_TOKENS,
    MaskedLMTask,
    NSPBatch,
    mask_tokens,
    mlm_accuracy,
    mlm_loss,
    nsp_loss,
    nsp_pairs,
    text_segments,
)
from tinyllm.objectives.streams import StreamTask, make_streams

__all__ = [
    "BERT_SPECIAL_TOKENS",
    "LanguageModelTask",
    "MaskedLMTask",
    "NSPBatch",
    "StreamTask",
    "get_batch",
    "lm_loss",
    "make_streams",
    "mask_tokens",
    "mlm_accuracy",
    "mlm_loss",
    "next_token_loss",
    "nsp_loss",
    "nsp_pairs",
    "text_segments",
]

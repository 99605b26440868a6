"""A classification head on BERT: fine-tuning and the linear probe (chapter 14).

    h = BERT.encode(ids, segments, mask)                    (B, T, C)   the pretrained encoder
    pooled = tanh(h_cls W_p + b_p)     ("pooler": BERT's NSP pooler, if the checkpoint has it)
           | h_cls                     ("cls": the [CLS] hidden state itself)
           | sum_t m_t h_t / sum_t m_t ("mean": the mean over real tokens, eq. 13.4 without the
                                        normalisation; all-MiniLM-L6-v2's own pooling)
    logits = dropout(pooled) W_c + b_c                      (B, K)      eq. 14.6
    loss   = mean_b -log softmax(logits_b)[y_b]             cross-entropy, eq. 3.8

As Hugging Face's ``BertForSequenceClassification`` (Devlin et al. 2019, section 4): the head is
new (W_c ~ N(0, 0.02^2), b_c = 0), everything else starts from the checkpoint. ``freeze=True`` is
the linear probe: the encoder and the pooler are frozen (``requires_grad`` off, so backward gives
them no gradient and :meth:`trainable_parameters` leaves them out of the optimizer) and only the
head's W_c, b_c learn. The pretraining heads (MLM, NSP) are never used here, so they are frozen
too.
"""

from __future__ import annotations

import numpy as np

from tinyllm.backend import get_array_module
from tinyllm.creation import default_rng, spawn_rng
from tinyllm.models import BERT
from tinyllm.nn import Dropout, Linear, Module, Parameter
from tinyllm.nn.losses import cross_entropy
from tinyllm.tensor import Tensor

POOLINGS = ("auto", "pooler", "cls", "mean")
PRETRAINING_HEADS = ("nsp_head", "mlm_dense", "mlm_ln", "mlm_bias")  # unused by classification


def pooling_for(bert: BERT, pooling: str = "auto") -> str:
    """'auto' -> 'pooler' if the checkpoint held BERT's pooler (``load_bert`` lists the heads it
    lacked in ``absent_heads``; a tinyllm BERT trains its pooler with NSP), else 'cls'."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {list(POOLINGS)}")
    if pooling != "auto":
        return pooling
    return "cls" if "pooler" in getattr(bert, "absent_heads", ()) else "pooler"


class SequenceClassifier(Module):
    """``model(batch)`` -> logits (B, K); ``batch`` holds "ids", "segment_ids", "attention_mask"
    (B, T) as ``WordPieceTokenizer.encode_batch`` gives them."""

    def __init__(self, bert: BERT, num_labels: int, pooling: str = "auto", freeze: bool = False,
                 dropout: float | None = None, rng: np.random.Generator | None = None):
        if num_labels < 2:
            raise ValueError(f"num_labels must be at least 2, got {num_labels}")
        rng = rng or default_rng()
        self.bert, self.num_labels, self.freeze = bert, num_labels, freeze
        self.pooling = pooling_for(bert, pooling)
        C = bert.config.d_model
        self.dropout = Dropout(bert.config.dropout if dropout is None else dropout,
                               rng=spawn_rng(rng))
        self.classifier = Linear(C, num_labels, rng=rng, dtype=bert.tok_emb.weight.dtype)
        self.classifier.weight.data = rng.normal(0.0, 0.02, (C, num_labels)).astype(
            self.classifier.weight.dtype)  # (C, K), BERT's initialisation
        self.classifier.bias.data = np.zeros(num_labels, dtype=self.classifier.bias.dtype)
        unused = set(PRETRAINING_HEADS) | ({"pooler"} if self.pooling != "pooler" else set())
        for name, p in bert.named_parameters():
            if freeze or name.split(".")[0] in unused:
                p.requires_grad_(False)

    def trainable_parameters(self) -> list[Parameter]:
        """The parameters that learn: the head, and the encoder unless frozen."""
        return [p for p in self.parameters() if p.requires_grad]

    def pool(self, h: Tensor, attention_mask) -> Tensor:
        """(B, T, C) -> (B, C) by ``self.pooling`` (module docstring)."""
        if self.pooling == "pooler":
            return self.bert.pooler(h[:, 0, :]).tanh()  # (B, C)
        if self.pooling == "cls":
            return h[:, 0, :]  # (B, C)
        xp = get_array_module(h.data)
        m = xp.asarray(attention_mask).astype(h.dtype)[:, :, None]  # (B, T, 1), on h's device
        return (h * m).sum(axis=1) / xp.maximum(m.sum(axis=1), 1.0)  # (B, C)

    def forward(self, batch: dict) -> Tensor:
        h = self.bert.encode(batch["ids"], batch["segment_ids"],
                             batch["attention_mask"])  # (B, T, C)
        return self.classifier(self.dropout(self.pool(h, batch["attention_mask"])))  # (B, K)

    def loss(self, batch: dict) -> Tensor:
        """Mean cross-entropy of the logits against ``batch["labels"]`` (B,)."""
        return cross_entropy(self(batch), batch["labels"])

    def extra_repr(self) -> str:
        return f"K={self.num_labels}, pooling={self.pooling}, freeze={self.freeze}"

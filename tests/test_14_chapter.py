"""Chapter 14's closed forms, each computed as the chapter writes it and compared with the library.

The metrics read off a confusion matrix, the majority baseline, perplexity, the head's logits and
its gradient in float64 against autograd (into the head and back into the encoder's hidden
states), tf-idf by hand, and the warm-up + linear decay schedule the Trainer steps through.
"""

import math

import numpy as np
import pytest
import test_14_finetune as finetune_tests

import tinyllm as tl
from tinyllm.finetune.bow import BagOfWords
from tinyllm.finetune.data import TokenDataset
from tinyllm.finetune.head import SequenceClassifier
from tinyllm.finetune.report import classification_metrics
from tinyllm.finetune.trainer import Trainer, TrainerConfig, warmup_linear
from tinyllm.metrics.classification import (
    accuracy,
    confusion_matrix,
    perplexity,
    precision_recall_f1,
)
from tinyllm.nn.losses import cross_entropy
from tinyllm.tensor import Tensor

pytestmark = pytest.mark.ch14

# A 3-class confusion matrix of the chapter's kind (rows true, columns predicted).
C = np.array([[250, 21, 92], [81, 277, 61], [97, 105, 158]])


def labels_of(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, y_pred) with exactly ``confusion[i, j]`` examples of true i predicted j."""
    K = len(confusion)
    cells = np.arange(K * K)
    flat = np.repeat(cells, confusion.ravel())  # (N,)
    order = np.random.default_rng(0).permutation(len(flat))
    return flat[order] // K, flat[order] % K


def tiny_bert(seed=0, dtype=np.float64, dropout=0.0):
    """test_14_finetune's tiny BERT, in float64 for the closed forms here."""
    return finetune_tests.tiny_bert(dropout=dropout, seed=seed, dtype=dtype)


def planted_batch(n=6, seed=0):
    """One batch of test_14_finetune's planted rows (the label is in the first token)."""
    return finetune_tests.token_data(n, seed).batch(np.arange(n))


# ----------------------------------------------------------------------------- the metrics

def test_accuracy_precision_recall_f1_read_off_the_confusion_matrix():
    """eq. 14.1: accuracy = trace(C) / N; eq. 14.2: precision = diagonal / column sums, recall =
    diagonal / row sums; eq. 14.3: F1 = their harmonic mean = 2 TP / (row + column)."""
    y_true, y_pred = labels_of(C)
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred), C)
    tp, predicted, true = np.diag(C), C.sum(axis=0), C.sum(axis=1)
    assert accuracy(y_true, y_pred) == pytest.approx(np.trace(C) / C.sum())
    assert accuracy(y_true, y_pred) == pytest.approx(685 / 1142)
    p, r, f = precision_recall_f1(y_true, y_pred, average=None)
    np.testing.assert_allclose(p, tp / predicted)
    np.testing.assert_allclose(r, tp / true)
    np.testing.assert_allclose(f, 2 * p * r / (p + r))
    np.testing.assert_allclose(f, 2 * tp / (true + predicted))
    assert p[0] == pytest.approx(250 / 428) and r[2] == pytest.approx(158 / 360)


def test_the_three_averages_by_hand():
    """eq. 14.4: macro = the plain mean of the per-class F1, weighted = the mean weighted by the
    row sums, micro = pooled counts, which for single-label data is the accuracy (eq. 14.1)."""
    y_true, y_pred = labels_of(C)
    tp, predicted, true = np.diag(C), C.sum(axis=0), C.sum(axis=1)
    f1 = 2 * tp / (true + predicted)
    _, _, macro = precision_recall_f1(y_true, y_pred, average="macro")
    _, _, weighted = precision_recall_f1(y_true, y_pred, average="weighted")
    p_micro, r_micro, f_micro = precision_recall_f1(y_true, y_pred, average="micro")
    assert macro == pytest.approx(sum(f1) / 3)
    assert weighted == pytest.approx(float((f1 * true).sum() / true.sum()))
    assert p_micro == r_micro == f_micro == pytest.approx(np.trace(C) / C.sum())
    metrics = classification_metrics(np.eye(3)[y_pred], y_true, ("c", "h", "t"))
    assert metrics["macro_f1"] == pytest.approx(macro)
    assert metrics["confusion"] == C.tolist()


def test_a_class_the_model_never_predicts_pulls_macro_f1_down_but_not_accuracy():
    """eqs. 14.1-14.4 on the degenerate case: predicting only class 0 gives class 1 and 2
    precision 0/0 := 0, so macro-F1 is one third of class 0's F1."""
    y_true = np.array([0] * 6 + [1] * 3 + [2] * 1)
    y_pred = np.zeros(10, dtype=int)
    assert accuracy(y_true, y_pred) == pytest.approx(0.6)
    p, r, f = precision_recall_f1(y_true, y_pred, average=None, labels=[0, 1, 2])
    np.testing.assert_allclose(p, [0.6, 0, 0])
    np.testing.assert_allclose(r, [1, 0, 0])
    _, _, macro = precision_recall_f1(y_true, y_pred, average="macro", labels=[0, 1, 2])
    assert macro == pytest.approx((2 * 0.6 / 1.6) / 3)


@pytest.mark.parametrize("counts", [[363, 419, 360], [1999, 1679, 1907], [5, 1, 1]])
def test_the_majority_baseline_in_closed_form(counts):
    """eq. 14.11: always predicting the largest class m of the training set scores accuracy
    n_m / N and macro-F1 (2 n_m / (N + n_m)) / K on a test set of counts n_k."""
    test_counts = np.array([363, 419, 360])
    m = int(np.argmax(counts))  # the training set's majority class
    y_true = np.repeat(np.arange(3), test_counts)
    y_pred = np.full(len(y_true), m)
    N = test_counts.sum()
    assert accuracy(y_true, y_pred) == pytest.approx(test_counts[m] / N)
    _, _, macro = precision_recall_f1(y_true, y_pred, average="macro", labels=[0, 1, 2])
    assert macro == pytest.approx(2 * test_counts[m] / (N + test_counts[m]) / 3)


def test_perplexity_is_the_exponential_of_the_mean_loss():
    """eq. 14.5: exp(mean NLL); a uniform model over V tokens has perplexity V, and perplexity
    rises by the factor exp(delta) when the mean loss rises by delta (section 14.9)."""
    V = 400
    assert perplexity(math.log(V)) == pytest.approx(V)
    nll = np.random.default_rng(1).exponential(3.0, 50)
    assert perplexity(nll) == pytest.approx(math.exp(nll.mean()))
    assert perplexity(nll + 0.1) / perplexity(nll) == pytest.approx(math.exp(0.1))


# ----------------------------------------------------------------------------- the head

@pytest.mark.parametrize("pooling", ["pooler", "cls", "mean"])
def test_the_head_computes_its_logits_as_the_chapter_writes_them(pooling):
    """eq. 14.6: logits = pooled W_c + b_c, with pooled = tanh(h_0 W_p + b_p), h_0, or the mean
    over the real tokens; dropout is off in evaluation mode."""
    model = SequenceClassifier(tiny_bert(), 3, pooling=pooling, dropout=0.5,
                               rng=np.random.default_rng(2)).eval()
    model.classifier.bias.data = np.array([0.1, -0.2, 0.3])
    batch = planted_batch()
    h = model.bert.encode(batch["ids"], batch["segment_ids"], batch["attention_mask"]).data
    m = batch["attention_mask"][:, :, None].astype(np.float64)  # (B, T, 1)
    pooled = {"pooler": np.tanh(h[:, 0] @ model.bert.pooler.weight.data
                                + model.bert.pooler.bias.data),
              "cls": h[:, 0],
              "mean": (h * m).sum(axis=1) / m.sum(axis=1)}[pooling]  # (B, C)
    expected = pooled @ model.classifier.weight.data + model.classifier.bias.data  # (B, K)
    np.testing.assert_allclose(model(batch).data, expected, rtol=1e-10, atol=1e-12)


def test_the_gradient_of_the_head_in_closed_form():
    """eq. 14.9: for L = mean_b -log softmax(z_b)[y_b] with z = x W + b, dL/dz = (P - Y) / B,
    dL/dW = x^T (P - Y) / B, dL/db = the column sums of (P - Y) / B: equal to autograd in float64
    and to finite differences."""
    rng = np.random.default_rng(4)
    B, C_width, K = 7, 5, 3
    x = Tensor(rng.normal(size=(B, C_width)), requires_grad=True)
    W = Tensor(rng.normal(size=(C_width, K)), requires_grad=True)
    b = Tensor(rng.normal(size=K), requires_grad=True)
    y = rng.integers(0, K, B)
    loss = cross_entropy(x @ W + b, y)
    loss.backward()
    z = x.data @ W.data + b.data  # (B, K)
    P = np.exp(z - z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)  # (B, K)
    G = (P - np.eye(K)[y]) / B  # (B, K), dL/dz
    np.testing.assert_allclose(W.grad.data, x.data.T @ G, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.grad.data, G.sum(axis=0), rtol=1e-10, atol=1e-12)
    assert tl.gradcheck(lambda x, W, b: cross_entropy(x @ W + b, y), x, W, b)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_the_gradient_that_reaches_the_encoder(pooling):
    """eq. 14.10: dL/dpooled = (P - Y) W_c^T / B; into the hidden states h (B, T, C) it lands on
    position 0 alone ("cls"), or spread as m_t / sum_t m_t over the real tokens ("mean")."""
    model = SequenceClassifier(tiny_bert(), 3, pooling=pooling, rng=np.random.default_rng(5))
    model.eval()
    batch = planted_batch(5, seed=3)
    h_data = model.bert.encode(batch["ids"], batch["segment_ids"], batch["attention_mask"]).data
    h = Tensor(h_data.copy(), requires_grad=True)  # (B, T, C), the encoder's output as a leaf
    logits = model.classifier(model.pool(h, batch["attention_mask"]))  # (B, K)
    cross_entropy(logits, batch["labels"]).backward()
    P = np.exp(logits.data - logits.data.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    B = len(batch["labels"])
    g = (P - np.eye(3)[batch["labels"]]) @ model.classifier.weight.data.T / B  # (B, C)
    m = batch["attention_mask"].astype(np.float64)  # (B, T)
    if pooling == "cls":
        share = np.zeros_like(m)
        share[:, 0] = 1.0
    else:
        share = m / m.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(h.grad.data, share[:, :, None] * g[:, None, :],
                               rtol=1e-10, atol=1e-12)  # (B, T, C)
    assert np.all(h.grad.data[~batch["attention_mask"]] == 0)  # padding learns nothing


def test_a_frozen_encoder_gets_no_gradient_and_a_full_fine_tune_does():
    """eq. 14.10's consequence: the linear probe's backward stops at the head; full fine-tuning
    gives every encoder matrix a gradient."""
    batch = planted_batch()
    probe = SequenceClassifier(tiny_bert(), 3, freeze=True)
    probe.loss(batch).backward()
    assert probe.bert.tok_emb.weight.grad is None
    full = SequenceClassifier(tiny_bert(), 3, pooling="cls")
    full.loss(batch).backward()
    assert full.bert.tok_emb.weight.grad is not None
    assert np.abs(full.bert.tok_emb.weight.grad.data).sum() > 0


# ----------------------------------------------------------------------------- tf-idf

def test_tfidf_by_hand():
    """eq. 14.7: x_j = count_j (ln((1 + N) / (1 + df_j)) + 1), then x / |x|, on three texts."""
    texts = ["the king the crown", "the fool", "a king a fool a jest"]
    bag = BagOfWords(min_df=1).fit(texts)
    assert bag.vocabulary.tolist() == ["a", "crown", "fool", "jest", "king", "the"]
    df = np.array([1, 1, 2, 1, 2, 2])
    idf = np.log(4 / (1 + df)) + 1
    np.testing.assert_allclose(bag.idf, idf, rtol=1e-6)
    counts = np.array([[0, 1, 0, 0, 1, 2], [0, 0, 1, 0, 0, 1], [3, 0, 1, 1, 1, 0]])
    x = counts * idf
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(bag.transform(texts).dense(np.arange(3)), x, rtol=1e-6)
    unseen = bag.transform(["the jester"]).dense([0])  # "jester" is not in the vocabulary
    np.testing.assert_allclose(unseen, [[0, 0, 0, 0, 0, 1]], rtol=1e-6)


# ----------------------------------------------------------------------------- the schedule

def test_warmup_then_linear_decay_values():
    """eq. 14.8: eta(s) = eta_max (s + 1) / (w + 1) for s < w, then eta_max (S - s) / (S - w)."""
    lr, w, S = 1e-4, 4, 20
    rates = np.array([warmup_linear(s, lr, w, S) for s in range(S)])
    np.testing.assert_allclose(rates[:w], lr * np.arange(1, w + 1) / (w + 1))
    np.testing.assert_allclose(rates[w:], lr * (S - np.arange(w, S)) / (S - w))
    assert rates.max() == pytest.approx(lr) and rates.argmax() == w
    assert np.all(np.diff(rates[w:]) < 0) and rates[-1] == pytest.approx(lr / (S - w))
    assert warmup_linear(S, lr, w, S) == 0.0 and warmup_linear(S + 3, lr, w, S) == 0.0
    assert warmup_linear(0, lr, 0, S) == pytest.approx(lr)  # no warm-up: start at the peak


def test_the_trainer_steps_through_eq_14_8(tmp_path):
    """The rate of every step of a Trainer run is eq. 14.8 with w = int(ratio * S) and S = epochs
    x ceil(N / batch size)."""
    batch = planted_batch(10)
    rows = [batch["ids"][i][batch["attention_mask"][i]] for i in range(10)]
    data = TokenDataset(rows, batch["labels"], pad_id=0)
    model = SequenceClassifier(tiny_bert(dtype=np.float32), 3)
    config = TrainerConfig(epochs=3, batch_size=4, lr=1e-3, warmup_ratio=0.25,
                           out_dir=str(tmp_path / "run"))
    trainer = Trainer(model, data, data, lambda z, y: classification_metrics(z, y, "abc"),
                      config, log=lambda message: None)
    seen = []
    trainer.train(progress=False,
                  on_step=lambda step: seen.append(trainer.optimizer.param_groups[0]["lr"]))
    S = 3 * math.ceil(10 / 4)
    w = int(0.25 * S)
    np.testing.assert_allclose(seen, [warmup_linear(s, 1e-3, w, S) for s in range(S)])

"""Fine-tuning (tinyllm/finetune): the head, the Trainer, the genre task, the BoW baseline, the CLI.

- the head: logits (B, K), pooling, a float64 gradient check, freezing (the linear probe);
- the Trainer: early stopping at the right epoch on a planted metric sequence, the best epoch's
  weights kept and restored, Ctrl-C then resume == an uninterrupted run bit for bit, runs never
  overwritten, the same step as ``tinyllm train`` (weight decay groups, the schedule);
- the genre split: catalogue labels, no play in two splits, class balance, checksums;
- tf-idf against scikit-learn (oracle), logistic regression learning a planted task;
- ``tinyllm finetune`` end to end on a tiny random BERT, on the CPU and on "cuda".
"""

import json
import os
import signal

import numpy as np
import pytest

import tinyllm as tl
from tinyllm import cli, optim
from tinyllm.checkpoint import load_safetensors, save_checkpoint
from tinyllm.corpus import CORPORA, CorpusError, sdist_path
from tinyllm.finetune import genre
from tinyllm.finetune.bow import BagOfWords, BagOfWordsDataset, LogisticRegression
from tinyllm.finetune.data import TokenDataset, subsample
from tinyllm.finetune.head import SequenceClassifier
from tinyllm.finetune.report import classification_metrics
from tinyllm.finetune.trainer import BEST_NAME, Trainer, TrainerConfig, warmup_linear
from tinyllm.models import BERT, BERTConfig
from tinyllm.objectives import BERT_SPECIAL_TOKENS
from tinyllm.runs import RunError
from tinyllm.tokenizers import BPETokenizer

pytestmark = pytest.mark.ch14
LABELS = ("a", "b", "c")


def tiny_bert(dropout=0.0, seed=0, dtype=np.float32):
    config = BERTConfig(vocab_size=40, context_length=12, num_layers=1, num_heads=2, d_model=8,
                        d_ff=16, dropout=dropout)
    return BERT(config, rng=np.random.default_rng(seed), dtype=dtype)


def token_data(n=20, seed=0):
    """Rows of 4..10 ids with labels planted in the first token (5 + label): learnable."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    rows = [np.concatenate([[1, 5 + y], rng.integers(10, 40, rng.integers(2, 8)), [2]])
            for y in labels]
    return TokenDataset(rows, labels, pad_id=0)


def metrics_of(logits, labels):
    return classification_metrics(logits, labels, LABELS)


def make_trainer(tmp_path, dropout=0.1, seed=0, name="run", **settings):
    model = SequenceClassifier(tiny_bert(dropout, seed), 3, rng=np.random.default_rng(seed))
    config = TrainerConfig(**{"epochs": 3, "batch_size": 6, "lr": 1e-2,
                              "out_dir": str(tmp_path / name), **settings})
    return Trainer(model, token_data(), token_data(9, seed=1), metrics_of, config,
                   label_names=LABELS, log=lambda message: None)


# ----------------------------------------------------------------------------- the head

def test_the_head_gives_logits_per_example_and_picks_its_pooling():
    bert = tiny_bert()
    batch = token_data(5).batch(np.arange(5))
    model = SequenceClassifier(bert, 3)
    assert model.pooling == "pooler" and model(batch).shape == (5, 3)  # (B, K)
    bert.absent_heads = ["pooler", "MLM head"]  # as load_bert marks a bare BertModel
    assert SequenceClassifier(bert, 3).pooling == "cls"
    mean = SequenceClassifier(tiny_bert(), 3, pooling="mean").eval()
    h = mean.bert.encode(batch["ids"], batch["segment_ids"], batch["attention_mask"]).data
    m = batch["attention_mask"][:, :, None]
    expected = (h * m).sum(1) / m.sum(1) @ mean.classifier.weight.data + mean.classifier.bias.data
    np.testing.assert_allclose(mean(batch).data, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="num_labels must be at least 2"):
        SequenceClassifier(tiny_bert(), 1)


@pytest.mark.parametrize("pooling", ["pooler", "mean"])
def test_gradcheck_of_the_classification_loss(pooling):
    model = SequenceClassifier(tiny_bert(dtype=np.float64), 3, pooling=pooling,
                               rng=np.random.default_rng(3)).astype(np.float64)
    batch = token_data(4).batch(np.arange(4))
    head = [model.classifier.weight, model.classifier.bias]
    inner = [model.bert.pooler.weight] if pooling == "pooler" else [model.bert.emb_ln.weight]
    for parameter in head + inner:
        assert tl.gradcheck(lambda p: model.loss(batch), parameter)


def test_freeze_trains_only_the_head():
    model = SequenceClassifier(tiny_bert(), 3, freeze=True)
    batch = token_data(6).batch(np.arange(6))
    model.loss(batch).backward()
    head = {id(model.classifier.weight), id(model.classifier.bias)}
    assert {id(p) for p in model.trainable_parameters()} == head
    assert all(p.grad is None for p in model.bert.parameters())
    assert model.classifier.weight.grad is not None
    unfrozen = SequenceClassifier(tiny_bert(), 3)  # the MLM and NSP heads never learn
    names = {n for n, p in unfrozen.named_parameters() if p.requires_grad}
    assert "bert.tok_emb.weight" in names and "bert.pooler.weight" in names
    assert not any(n.startswith(("bert.mlm", "bert.nsp")) for n in names)


def test_a_linear_probe_leaves_the_encoder_untouched(tmp_path):
    model = SequenceClassifier(tiny_bert(0.1), 3, freeze=True)
    before = model.bert.state_dict()
    trainer = Trainer(model, token_data(), token_data(9, 1), metrics_of,
                      TrainerConfig(epochs=2, batch_size=6, lr=1e-2, out_dir=str(tmp_path / "p")),
                      log=lambda message: None)
    assert sum(len(g["params"]) for g in trainer.optimizer.param_groups) == 2
    trainer.train(progress=False)
    after = model.bert.state_dict()
    assert all(np.array_equal(before[name], after[name]) for name in before)


# ----------------------------------------------------------------------------- the Trainer

def test_weight_decay_skips_biases_and_layernorms_and_the_schedule_warms_then_decays(tmp_path):
    trainer = make_trainer(tmp_path, weight_decay=0.1, warmup_ratio=0.25)
    decay, no_decay = trainer.optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    ln = trainer.model.bert.emb_ln
    assert all(p.ndim == 2 for p in decay["params"])
    assert {id(ln.weight), id(ln.bias)} <= {id(p) for p in no_decay["params"]}
    rates = [warmup_linear(step, 1.0, 2, 10) for step in range(11)]
    np.testing.assert_allclose(rates, [1 / 3, 2 / 3, 1, .875, .75, .625, .5, .375, .25, .125, 0])


class Planted:
    """compute_metrics that reports a planted macro-F1 per epoch and snapshots the weights."""

    def __init__(self, model, values):
        self.model, self.values, self.weights = model, list(values), []

    def __call__(self, logits, labels):
        self.weights.append(self.model.state_dict())
        return {"macro_f1": self.values[len(self.weights) - 1]}


def test_early_stopping_stops_at_the_right_epoch_and_keeps_the_best_weights(tmp_path):
    model = SequenceClassifier(tiny_bert(0.1), 3)
    planted = Planted(model, [0.5, 0.7, 0.6, 0.65, 0.9, 0.95])
    trainer = Trainer(model, token_data(), token_data(9, 1), planted,
                      TrainerConfig(epochs=6, batch_size=6, patience=2,
                                    out_dir=str(tmp_path / "run")), log=lambda message: None)
    metrics = trainer.train(progress=False)
    assert metrics["epochs_run"] == 4 and metrics["stopped_early"]  # epochs 3, 4: not better
    assert metrics["best_epoch"] == 2 and metrics["best_metric"] == 0.7
    assert [row["eval_macro_f1"] for row in metrics["history"]] == [0.5, 0.7, 0.6, 0.65]
    best, _ = load_safetensors(tmp_path / "run" / BEST_NAME)
    at_epoch_2, final = planted.weights[1], model.state_dict()
    assert all(np.array_equal(best[n], at_epoch_2[n]) for n in at_epoch_2)
    assert all(np.array_equal(final[n], at_epoch_2[n]) for n in at_epoch_2)  # loaded at the end
    assert not np.array_equal(planted.weights[3]["classifier.weight"], at_epoch_2[
        "classifier.weight"])  # training went on after the best epoch


def test_ctrl_c_then_resume_equals_an_uninterrupted_run(tmp_path):
    whole = make_trainer(tmp_path, name="whole")
    expected = whole.train(progress=False)

    def interrupt(step):
        if step == 5:  # mid-epoch 2 (4 steps an epoch): a real SIGINT, as Ctrl-C sends
            os.kill(os.getpid(), signal.SIGINT)

    first = make_trainer(tmp_path, name="split")
    stopped = first.train(progress=False, on_step=interrupt)
    assert stopped == {"interrupted": True, "step": 5, "epoch": 1}
    again = make_trainer(tmp_path, name="split", seed=0)
    again.model.classifier.weight.data += 1.0  # whatever it holds is replaced by the checkpoint
    resumed = again.train(resume=True, progress=False)
    assert resumed["history"] == expected["history"]
    assert resumed["best_epoch"] == expected["best_epoch"]
    a, b = whole.model.state_dict(), again.model.state_dict()
    assert all(np.array_equal(a[name], b[name]) for name in a)


def test_a_run_is_never_overwritten_without_asking(tmp_path):
    make_trainer(tmp_path, epochs=1).train(progress=False)
    with pytest.raises(RunError, match="already holds a run"):
        make_trainer(tmp_path, epochs=1).train(progress=False)
    assert make_trainer(tmp_path, epochs=1).train(overwrite=True, progress=False)["steps"] == 4
    with pytest.raises(ValueError, match="cannot resume .* different settings: lr"):
        make_trainer(tmp_path, epochs=1, lr=0.5).train(resume=True, progress=False)


def test_classification_metrics_equal_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(50, 3)), rng.integers(0, 3, 50)
    ours, predicted = metrics_of(logits, labels), logits.argmax(1)
    p, r, _, _ = sk.precision_recall_fscore_support(labels, predicted, labels=[0, 1, 2])
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted))
    assert ours["macro_f1"] == pytest.approx(sk.f1_score(labels, predicted, average="macro"))
    assert [ours[f"precision_{k}"] for k in LABELS] == pytest.approx(p)
    assert [ours[f"recall_{k}"] for k in LABELS] == pytest.approx(r)
    assert ours["confusion"] == sk.confusion_matrix(labels, predicted).tolist()
    assert ours["loss"] == pytest.approx(sk.log_loss(labels, np.exp(logits) / np.exp(
        logits).sum(1, keepdims=True)))


# ----------------------------------------------------------------------------- bag of words

def test_tfidf_equals_scikit_learn():
    text = pytest.importorskip("sklearn.feature_extraction.text")
    texts = ["To be, or not to be", "the rest is silence", "To be or not", "O, be some other "
             "name", "silence is the rest", "what's in a name? That which we call a rose"]
    ours = BagOfWords(min_df=2).fit(texts)
    theirs = text.TfidfVectorizer(token_pattern=r"[a-z']+", min_df=2)
    expected = theirs.fit_transform(texts).toarray()
    assert list(ours.vocabulary) == list(theirs.get_feature_names_out())
    np.testing.assert_allclose(ours.transform(texts).dense(np.arange(6)), expected, rtol=1e-6)


def test_logistic_regression_learns_a_planted_task(tmp_path):
    rng = np.random.default_rng(0)
    cue = ("jest", "crown", "dagger")  # one word per class, among shared filler words
    filler = np.array(["the", "and", "my", "lord", "good", "sir", "thou", "art", "what", "now"])
    labels = rng.integers(0, 3, 240)
    texts = [" ".join([*rng.choice(filler, 6), cue[y], *rng.choice(filler, 3)]) for y in labels]
    bag = BagOfWords().fit(texts[:160])
    train, test = (BagOfWordsDataset(bag.transform(texts[s]), labels[s])
                   for s in (slice(0, 160), slice(160, 240)))
    trainer = Trainer(LogisticRegression(bag.width, 3), train, test, metrics_of,
                      TrainerConfig(epochs=5, batch_size=16, lr=0.1, out_dir=str(tmp_path / "b")),
                      log=lambda message: None)
    metrics = trainer.train(test_dataset=test, progress=False)
    assert metrics["test"]["accuracy"] == 1.0


# ----------------------------------------------------------------------------- the genre task

@pytest.fixture(scope="module")
def genre_splits():
    try:
        sdist_path()
    except CorpusError as error:
        pytest.skip(f"the corpus sdist is not available: {error}")
    return {name: genre.load_genre_split(name) for name in genre.GENRE_SPLITS}


def test_the_catalogue_divides_35_plays_and_leaves_out_the_others():
    counts = {g: sum(v == g for v in genre.FOLIO_CATALOGUE.values()) for g in genre.GENRES}
    assert counts == {"comedy": 14, "history": 10, "tragedy": 11}
    assert genre.FOLIO_CATALOGUE["cymbeline"] == "tragedy"
    assert genre.FOLIO_CATALOGUE["richard_iii"] == "history"
    assert not set(genre.LEFT_OUT) & set(genre.FOLIO_CATALOGUE)
    with pytest.raises(CorpusError, match="not on its Catalogue page"):
        genre.split_of("troilus_and_cressida")
    held_out = {p for plays in genre.GENRE_SPLIT_PLAYS.values() for p in plays}
    assert not held_out & set(CORPORA["shakespeare"])  # never seen by the pretrained tinyllm BERT


def test_the_genre_split_is_by_play_labelled_by_the_catalogue_and_checksummed(genre_splits):
    plays = {name: {p.play for p in passages} for name, passages in genre_splits.items()}
    assert not (plays["train"] & plays["validation"] or plays["train"] & plays["test"]
                or plays["validation"] & plays["test"])
    assert plays["validation"] | plays["test"] == {
        p for ps in genre.GENRE_SPLIT_PLAYS.values() for p in ps}
    assert len(plays["train"]) == 26 and "pericles" not in plays["train"]
    for passages in genre_splits.values():
        assert all(p.genre == genre.FOLIO_CATALOGUE[p.play] for p in passages)
    balance = {name: [genre.class_balance(ps)[g]["passages"] for g in genre.GENRES]
               for name, ps in genre_splits.items()}
    assert balance == {"train": [1999, 1679, 1907], "validation": [211, 193, 299],
                       "test": [363, 419, 360]}
    assert all("\t" not in p.text and "\n" not in p.text for p in genre_splits["test"])


def test_an_edited_split_file_is_refused(genre_splits, tmp_path):
    folder = tmp_path / genre.GENRE_NAME
    folder.mkdir()
    for name in genre.GENRE_SPLITS:
        source = genre.genre_path() / f"{name}.tsv"
        (folder / f"{name}.tsv").write_bytes(source.read_bytes())
    assert genre.load_genre_split("test", tmp_path) == genre_splits["test"]
    (folder / "test.tsv").write_bytes((folder / "test.tsv").read_bytes().replace(b"a", b"e", 1))
    with pytest.raises(CorpusError, match="test.tsv has SHA-256 .* Was it edited"):
        genre.load_genre_split("test", tmp_path)


def test_subsample_is_seeded_and_sorted():
    first = subsample(100, 10, seed=3)
    assert np.array_equal(first, subsample(100, 10, seed=3)) and len(set(first)) == 10
    assert np.all(np.diff(first) > 0) and np.array_equal(subsample(5, None, 0), np.arange(5))


# ----------------------------------------------------------------------------- tinyllm finetune

@pytest.fixture(scope="module")
def bert_run(tmp_path_factory):
    """A tiny random BERT saved as `tinyllm train --model bert` saves one, with a small BPE."""
    tokenizer = BPETokenizer.train("To be, or not to be: that is the question. " * 20,
                                   vocab_size=256 + 30 + 4, special_tokens=BERT_SPECIAL_TOKENS)
    config = BERTConfig(vocab_size=tokenizer.vocab_size, context_length=32, num_layers=1,
                        num_heads=2, d_model=8, d_ff=16)
    model = BERT(config, rng=np.random.default_rng(0))
    optimizer = optim.AdamW(model.parameters(), lr=1e-3)
    folder = tmp_path_factory.mktemp("bert-run")
    save_checkpoint(folder / "checkpoint.safetensors", model, optimizer,
                    optim.LRScheduler(optimizer, lambda step: 1e-3), tokenizer,
                    np.random.default_rng(0), settings={"model": "bert"}, step=0,
                    history={"step": [], "train_loss": []})
    return folder


def test_tinyllm_finetune_end_to_end(genre_splits, bert_run, device, tmp_path, capsys):
    out = tmp_path / "genre"
    argv = ["finetune", "--model", str(bert_run), "--train-limit", "24", "--eval-limit", "9",
            "--test-limit", "12", "--epochs", "2", "--batch-size", "8", "--lr", "1e-3",
            "--device", device, "--no-progress", "--out", str(out)]
    assert cli.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and len(metrics["history"]) == 2
    assert metrics["max_length"] == 32 and metrics["pooling"] == "pooler"
    assert np.sum(metrics["test"]["confusion"]) == 12 and 0 <= metrics["test"]["macro_f1"] <= 1
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / BEST_NAME).is_file()
    capsys.readouterr()
    assert cli.main(argv) == 2  # the run is there: refused before the model and data are loaded
    captured = capsys.readouterr()
    assert "already holds a run" in captured.err and captured.out == ""
    assert cli.main(argv[:-2] + ["--max-length", "64", "--out", str(tmp_path / "x")]) == 2
    assert "--max-length must be from 3 to the context length 32" in capsys.readouterr().err


def test_fine_tuning_on_cuda_equals_the_cpu(strict_device, tmp_path):
    """The stand-in computes with NumPy: without dropout a "cuda" run equals the CPU run exactly."""
    runs = [make_trainer(tmp_path, dropout=0.0, name=device, device=device, epochs=2)
            for device in ("cpu", "cuda")]
    cpu, cuda = (trainer.train(progress=False) for trainer in runs)
    assert cuda["history"] == cpu["history"] and cuda["best_epoch"] == cpu["best_epoch"]
    a, b = (trainer.model.state_dict() for trainer in runs)
    assert all(np.array_equal(a[name], b[name]) for name in a)


def test_texts_become_cls_tokens_sep_cut_to_max_length_and_padded_batches():
    from tinyllm.finetune.data import encode_texts, special_ids
    from tinyllm.wordpiece import WordPieceTokenizer

    wordpiece = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "to", "be", ","])
    bpe = BPETokenizer.train("to be or not to be " * 5, 256 + 4 + 4,
                             special_tokens=BERT_SPECIAL_TOKENS)
    for tokenizer in (wordpiece, bpe):
        ids = special_ids(tokenizer)
        rows = encode_texts(tokenizer, ["To be, or not to be", "to"], max_length=5)
        assert [len(row) for row in rows] == [5, 3]
        assert all(row[0] == ids["[CLS]"] and row[-1] == ids["[SEP]"] for row in rows)
        batch = TokenDataset(rows, [0, 1], ids["[PAD]"]).batch([1, 0])
        assert batch["ids"].shape == (2, 5) and list(batch["ids"][0, 3:]) == [ids["[PAD]"]] * 2
        assert batch["attention_mask"].sum(1).tolist() == [3, 5]
    assert encode_texts(wordpiece, ["to be"], 8)[0].tolist() == [2, 5, 6, 3]
    with pytest.raises(ValueError, match="fine-tuning needs a BERT tokenizer"):
        special_ids(BPETokenizer.train("abc abc", 257))

"""The translation task end to end (chapter 15): the objective's batches and loss, the trainer's
seq2seq kind (checkpoint, exact resume), the two baselines, translating with a checkpoint, the
`tinyllm translate` command, and the same on "cuda" (the strict stand-in without a GPU)."""

import contextlib
import dataclasses
import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyllm as tl
import tinyllm.recipe as R
import tinyllm.train as T
import tinyllm.translate as translate
from tinyllm.checkpoint import load_checkpoint
from tinyllm.cli import main
from tinyllm.decoding import beam_search, greedy_search
from tinyllm.models import Seq2Seq, Seq2SeqConfig
from tinyllm.models.seq2seq import pad_sequences
from tinyllm.objectives.translation import (
    SEQ2SEQ_PRESETS,
    TranslationTask,
    pair_tokenizer,
    pairs_text,
    parse_pairs,
)
from tinyllm.parallel_corpus import load_parallel_corpus
from tinyllm.translate import (
    WordSubstitution,
    evaluate_split,
    identity,
    score,
    split_source,
    translate_texts,
)

pytestmark = pytest.mark.ch15

PAIRS = [("Heere Master: What cheere?", "Here, master: what cheer?"),
         ("Good vpon a fall", "Good, upon a fall"), ("lowder then the weather", "louder than the"
                                                     " weather"),
         ("vpon my life", "upon my life"), ("Boteswaine", "Boatswain"), ("Fall to't", "Fall to't"),
         ("Then vpon", "Then upon"), ("it is heere", "it is here")]
TOKENIZER = pair_tokenizer(pairs_text(PAIRS))
TINY = Seq2SeqConfig(vocab_size=TOKENIZER.vocab_size, context_length=32, num_encoder_layers=1,
                     num_decoder_layers=1, num_heads=2, d_model=16, d_ff=32, dropout=0.0)


# ----------------------------------------------------------------------------- the objective

def test_the_tokenizer_puts_pad_bos_eos_first_and_knows_printable_ascii():
    assert TOKENIZER.chars[:3] == ["\x00", "\x01", "\x02"]
    assert TOKENIZER.decode(TOKENIZER.encode("Heere | ~{}")) == "Heere | ~{}"  # unseen chars
    assert "\t" not in TOKENIZER.chars and "\n" not in TOKENIZER.chars


@given(st.lists(st.tuples(st.text("abc ,.'", min_size=1), st.text("xyz ,.'", min_size=1)),
                max_size=6))
def test_pairs_travel_as_text_unchanged(pairs):
    assert parse_pairs(pairs_text(pairs)) == pairs


def test_a_line_that_is_not_a_pair_is_named():
    with pytest.raises(ValueError, match="line 2 of the pairs is not 'source<TAB>target'"):
        parse_pairs("a\tb\nno tab here\n")


def test_batches_are_teacher_forced_bucketed_and_fit_the_context():
    long = ("x" * 40, "y" * 10)  # longer than the context: left out
    task = TranslationTask(PAIRS + [long], PAIRS, TOKENIZER, batch_size=3, context_length=32)
    assert task.pairs("train") == len(PAIRS)
    rng = np.random.default_rng(0)
    for _ in range(20):
        src, tgt_in, targets = task.batch("train", rng)
        lengths = (src != 0).sum(axis=1)
        assert np.all(np.diff(lengths) >= 0)  # neighbours in length order
        assert lengths.max() == src.shape[1] and (targets != 0).sum(axis=1).max() == \
            targets.shape[1]  # trimmed to the longest row
        assert np.all(tgt_in[:, 0] == 1) and np.array_equal(tgt_in[:, 1:], targets[:, :-1])
        ends = (targets != 0).sum(axis=1) - 1
        assert np.all(targets[np.arange(3), ends] == 2)  # every target ends in EOS
        for row in range(3):  # each row is a real pair, encoded
            source = TOKENIZER.decode([int(i) for i in src[row] if i])
            target = TOKENIZER.decode([int(i) for i in targets[row] if i > 2])
            assert (source, target) in PAIRS


def test_the_task_loss_is_eq_15_2_recomputed_and_passes_a_float64_gradcheck():
    task = TranslationTask(PAIRS, PAIRS, TOKENIZER, batch_size=4, context_length=32)
    model = Seq2Seq(TINY, rng=np.random.default_rng(1)).astype(np.float64).eval()
    src, tgt_in, targets = task.batch("train", np.random.default_rng(2))
    logits = model(src, tgt_in).numpy()  # (B, T, V)
    log_p = logits - logits.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    real = targets != 0
    nll = -np.take_along_axis(log_p, targets[..., None], -1)[..., 0]
    eps = TINY.label_smoothing
    expected = ((1 - eps) * nll - eps * log_p.mean(-1))[real].mean()  # eq. 15.2
    loss = task.loss(model, (src, tgt_in, targets))
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    for weight in (model.decoder.norm.weight, model.decoder.layers[0].cross_attn.q_proj.weight):
        assert tl.gradcheck(lambda w: task.loss(model, (src, tgt_in, targets)), weight)


def test_evaluate_is_the_mean_loss_of_seeded_batches():
    task = TranslationTask(PAIRS, PAIRS, TOKENIZER, batch_size=4, context_length=32)
    model = Seq2Seq(TINY, rng=np.random.default_rng(1))
    first = task.evaluate(model, "val", 3, seed=5)
    assert first == task.evaluate(model, "val", 3, seed=5) and model.training
    rng = np.random.default_rng(5)
    model.eval()
    with tl.no_grad():
        losses = [task.loss(model, task.batch("val", rng)).item() for _ in range(3)]
    assert first["loss"] == pytest.approx(np.mean(losses), rel=1e-6)
    assert first["perplexity"] == pytest.approx(np.exp(first["loss"]))


def test_too_few_pairs_for_a_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="the val split has 2 pairs that fit"):
        TranslationTask(PAIRS, PAIRS[:2], TOKENIZER, batch_size=3, context_length=32)


# ----------------------------------------------------------------------------- the baselines

def test_identity_copies_and_word_substitution_learns_the_frequent_spellings():
    assert identity(["vpon"]) == ["vpon"]
    table = WordSubstitution.learn(PAIRS, min_count=2)
    assert table.table == {"vpon": "upon"}  # three times; "heere", "Heere": once each
    assert table(["(vpon, my heere!", "Heere"]) == ["(upon, my heere!", "Heere"]
    once = WordSubstitution.learn(PAIRS, min_count=1).table
    assert once["Boteswaine"] == "Boatswain" and once["heere"] == "here" and "Then" not in once


def test_word_substitution_beats_identity_on_the_real_test_plays():
    train, test = load_parallel_corpus("train")[:2000], load_parallel_corpus("test")[:300]
    sources, references = [p.folio for p in test], [p.modern for p in test]
    copy, substituted = score(identity(sources), references), score(
        WordSubstitution.learn(train)(sources), references)
    assert substituted["bleu"] > copy["bleu"] + 5 and substituted["cer"] < copy["cer"]


@given(st.lists(st.text("ab,.", min_size=1, max_size=9), min_size=1, max_size=30),
       st.integers(10, 40))
def test_a_long_source_is_cut_at_spaces_into_pieces_that_fit(words, max_chars):
    text = " ".join(words)
    pieces = split_source(text, max_chars)
    assert all(0 < len(piece) <= max_chars for piece in pieces)
    assert " ".join(pieces) == text


# ----------------------------------------------------------------------------- the model

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """`tinyllm train --model seq2seq` with a tiny shape, 6 steps, on the real corpus."""
    out = tmp_path_factory.mktemp("s2s") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(SEQ2SEQ_PRESETS, "tiny-s2s", dataclasses.replace(TINY, context_length=64))
        config = dataclasses.replace(R.TRAIN_PRESETS["folio-modern"], preset="tiny-s2s",
                                     iters=6, batch_size=8, warmup_iters=2, eval_interval=3,
                                     eval_iters=2, final_eval_iters=2, checkpoint_interval=3,
                                     out_dir=str(out))
        metrics = T.train(config, progress=False, log=lambda message: None)
        yield out, config, metrics


def test_the_trainer_runs_the_seq2seq_kind_and_saves_it(tiny_run):
    out, config, metrics = tiny_run
    assert metrics["model"] == "seq2seq" and metrics["iters"] == 6
    assert np.isfinite(metrics["val_loss"]) and metrics["val_loss"] < 5.0
    model, tokenizer, info = load_checkpoint(out)
    assert isinstance(model, Seq2Seq) and tokenizer.chars[:3] == ["\x00", "\x01", "\x02"]
    assert info["data"] == R.data_fingerprint(config)  # the pairs' SHA-256 is recorded


def test_an_interrupted_seq2seq_run_resumes_exactly(tiny_run, tmp_path):
    _, config, _ = tiny_run
    half = dataclasses.replace(config, iters=3, out_dir=str(tmp_path / "half"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(SEQ2SEQ_PRESETS, "tiny-s2s", dataclasses.replace(TINY, context_length=64))
        T.train(half, progress=False, log=lambda message: None)
        T.train(dataclasses.replace(half, iters=6), resume=True, progress=False,
                log=lambda message: None)
    whole = load_checkpoint(tiny_run[0])[2]["history"]["train_loss"]
    resumed = load_checkpoint(tmp_path / "half")[2]["history"]["train_loss"]
    assert resumed == whole


def test_translate_texts_is_the_search_on_each_piece(tiny_run):
    model, tokenizer, _ = load_checkpoint(tiny_run[0])
    sources = ["Heere Master", "vpon"]
    ids = pad_sequences([tokenizer.encode(s) for s in sources[::-1]], 0)  # by length
    for width, search in ((1, lambda: greedy_search(model, ids, 23)),  # 1.25 S + 8
                          (3, lambda: beam_search(model, ids, 3, 23, 0.6))):
        decoded = search()
        expected = [tokenizer.decode([int(t) for t in decoded.ids[r, :decoded.lengths[r]]
                                      if t > 2]) for r in (1, 0)]
        assert translate_texts(model, tokenizer, sources, width) == expected
    long = "vpon my life " * 12  # 156 characters: three pieces of at most 56
    pieces = split_source(long, 56)
    assert translate_texts(model, tokenizer, [long]) == [
        " ".join(p for p in translate_texts(model, tokenizer, pieces) if p)]


@pytest.fixture
def small_table(monkeypatch):
    """The word-substitution table of PAIRS instead of the whole training split's (seconds)."""
    monkeypatch.setattr(translate, "folio_substitution", lambda: WordSubstitution.learn(PAIRS))


def test_evaluate_split_scores_every_system(tiny_run, small_table):
    report = evaluate_split("test", tiny_run[0], beam_widths=(1, 2), limit=6)
    assert list(report["results"]) == ["identity", "word substitution", "model, greedy",
                                       "model, beam 2"]
    sources, references = report["outputs"]["source"], report["outputs"]["reference"]
    for name, row in report["results"].items():
        assert row == {**score(report["outputs"][name], references), "wall_s": row["wall_s"],
                       **({"learn_s": row["learn_s"]} if "learn_s" in row else {})}
    assert report["outputs"]["identity"] == sources


def cli(argv) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in argv])
    return code, out.getvalue()


def test_the_translate_command(tiny_run, tmp_path, small_table):
    model, tokenizer, _ = load_checkpoint(tiny_run[0])
    code, out = cli(["translate", "--checkpoint", tiny_run[0], "--text", "vpon", "--beam", "2"])
    assert code == 0 and out == translate_texts(model, tokenizer, ["vpon"], 2)[0] + "\n"
    (tmp_path / "in.txt").write_text("vpon\nHeere Master\n", encoding="utf-8")
    code, out = cli(["translate", "--checkpoint", tiny_run[0], "--file", tmp_path / "in.txt",
                     "--beam", "1"])
    expected = translate_texts(model, tokenizer, ["vpon", "Heere Master"])
    assert code == 0 and out.splitlines() == expected
    code, out = cli(["translate", "--checkpoint", tiny_run[0], "--evaluate", "test",
                     "--limit", "3", "--beam", "2"])
    assert code == 0 and out.startswith("test: 3 pairs") and "model, beam 2" in out


def test_translation_on_a_device_equals_the_cpu(tiny_run, device):
    cpu, tokenizer, _ = load_checkpoint(tiny_run[0])
    moved = load_checkpoint(tiny_run[0])[0].to(device)
    sources = ["Heere Master: What cheere?", "vpon"]
    for width in (1, 3):
        assert translate_texts(moved, tokenizer, sources, width) == \
            translate_texts(cpu, tokenizer, sources, width)
    task = TranslationTask(PAIRS, PAIRS, tokenizer, batch_size=4, context_length=32)
    batch = task.batch("train", np.random.default_rng(0))
    cpu.eval(), moved.eval()
    assert task.loss(moved, batch).item() == pytest.approx(task.loss(cpu, batch).item(),
                                                           rel=1e-5)

"""The table + word model of chapter 15: word pairs aligned inside the sentence pairs, the
word-level seq2seq trained on them (`tinyllm train --model seq2seq --preset folio-words`), and
the system that asks it only for the words the substitution table never saw."""

import contextlib
import dataclasses
import io

import numpy as np
import pytest

import tinyllm.recipe as R
import tinyllm.train as T
import tinyllm.translate as translate
from tinyllm.checkpoint import load_checkpoint
from tinyllm.cli import _train_config as train_config
from tinyllm.cli import build_parser, main
from tinyllm.folio_alignment import aligned_word_counts, word_cores, word_pairs
from tinyllm.models import Seq2SeqConfig
from tinyllm.objectives.translation import SEQ2SEQ_PRESETS, folio_texts, parse_pairs
from tinyllm.parallel_corpus import load_parallel_corpus
from tinyllm.translate import (
    TableAndWordModel,
    WordSubstitution,
    evaluate_split,
    load_system,
    translate_texts,
)

pytestmark = pytest.mark.ch15

PAIRS = [("Heere Master: What cheere?", "Here, master: what cheer?"),
         ("Good vpon a fall", "Good, upon a fall"), ("Vpon my life", "upon my life"),
         ("vpon my Tresses", "upon my tresses"), ("it is heere", "it is here")]


def test_word_cores_keep_the_punctuation_around_a_word():
    assert word_cores("(vpon, my heere!") == [("(", "vpon", ","), ("", "my", ""),
                                               ("", "heere", "!")]
    assert word_cores("-- a") == [("--", "", ""), ("", "a", "")]


def test_aligned_word_counts_pair_the_words_of_each_sentence():
    counts = aligned_word_counts(PAIRS)
    assert counts[("vpon", "upon")] == 2 and counts[("Vpon", "upon")] == 1
    assert counts[("heere", "here")] == 1 and counts[("Heere", "Here")] == 1
    assert counts[("Tresses", "tresses")] == 1 and ("vpon", "Good") not in counts


def test_word_pairs_one_per_folio_word_with_the_source_case_sorted():
    pairs = word_pairs(PAIRS)
    assert [f for f, _ in pairs] == sorted({f for f, _ in pairs})  # distinct and sorted
    as_dict = dict(pairs)
    assert as_dict["vpon"] == "upon" and as_dict["Vpon"] == "Upon"  # first letter: the source's
    assert as_dict["Tresses"] == "Tresses" and as_dict["Master"] == "Master"
    assert as_dict["cheere"] == "cheer" and as_dict["my"] == "my"


def test_the_substitution_table_remembers_every_word_it_saw():
    substitution = WordSubstitution.learn(PAIRS, min_count=1)
    assert substitution.seen == frozenset(f for f, _ in word_pairs(PAIRS))
    assert substitution.table["vpon"] == "upon" and "my" not in substitution.table


def test_table_and_word_model_asks_the_model_only_for_unseen_words():
    asked = []

    def spell(words):  # a stand-in for the word-level model: records what it is asked
        asked.append(list(words))
        return [w.replace("v", "u").replace("ie", "y") if w != "Blanke" else "" for w in words]

    system = TableAndWordModel(WordSubstitution.learn(PAIRS, min_count=1), spell)
    out = system(["(vpon my trecherie, vndaunted!", "Heere vpon-trecherie Blanke", "-- vpon"])
    assert asked == [["Blanke", "trecherie", "vndaunted"]]  # once each, sorted; parts split
    assert out == ["(upon my trechery, undaunted!", "Here upon-trechery Blanke", "-- upon"]
    assert system([]) == [] and asked == [["Blanke", "trecherie", "vndaunted"]]


def test_the_word_level_preset_trains_on_the_word_pairs():
    train_text, val_text = folio_texts(R.TRAIN_PRESETS["folio-words"])
    assert parse_pairs(val_text) == word_pairs(load_parallel_corpus("validation"))
    train = dict(parse_pairs(train_text))
    assert len(train) == len(parse_pairs(train_text)) == 32925  # one pair per Folio word
    assert train["vpon"] == "upon" and train["Vpon"] == "Upon" and train["heere"] == "here"
    sentences = folio_texts(R.TRAIN_PRESETS["folio-modern"])[0]
    assert parse_pairs(sentences)[0] == tuple(load_parallel_corpus("train")[0][:2])


def test_train_takes_a_presets_own_recipe():
    args = build_parser().parse_args(["train", "--model", "seq2seq", "--preset", "folio-words"])
    config = train_config(args)
    assert (config.batch_size, config.iters, config.out_dir) == (128, 3000, "runs/folio-words")
    args = build_parser().parse_args(["train", "--model", "seq2seq", "--iters", "7"])
    assert train_config(args).batch_size == R.TRAIN_PRESETS["folio-modern"].batch_size


@pytest.fixture(scope="module")
def word_run(tmp_path_factory):
    """`tinyllm train --model seq2seq --preset folio-words` with a tiny shape, 4 steps."""
    out = tmp_path_factory.mktemp("words") / "run"
    tiny = Seq2SeqConfig(vocab_size=99, context_length=32, num_encoder_layers=1,
                         num_decoder_layers=1, num_heads=2, d_model=16, d_ff=32, dropout=0.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(SEQ2SEQ_PRESETS, "folio-words", tiny)
        config = dataclasses.replace(R.TRAIN_PRESETS["folio-words"], iters=4, batch_size=16,
                                     warmup_iters=1, eval_interval=2, eval_iters=1,
                                     final_eval_iters=1, out_dir=str(out))
        T.train(config, progress=False, log=lambda message: None)
    yield out


@pytest.fixture
def small_table(monkeypatch):
    monkeypatch.setattr(translate, "folio_substitution",
                        lambda: WordSubstitution.learn(PAIRS, min_count=1))


def test_a_word_level_checkpoint_is_the_table_and_word_model(word_run, small_table):
    model, tokenizer, _ = load_checkpoint(word_run)
    name, system = load_system(word_run, beam_width=2)
    sources = ["Heere vndaunted, my trecherie"]
    expected = TableAndWordModel(WordSubstitution.learn(PAIRS, min_count=1),
                                 lambda words: translate_texts(model, tokenizer, words, 2))
    assert name == "table + word model, beam 2" and system(sources) == expected(sources)
    report = evaluate_split("test", word_run, beam_widths=(1,), limit=4)
    assert list(report["results"]) == ["identity", "word substitution",
                                       "table + word model, greedy"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["translate", "--checkpoint", str(word_run), "--text", sources[0],
                     "--beam", "2"])
    assert code == 0 and out.getvalue() == expected(sources)[0] + "\n"


def test_the_word_model_on_a_device_equals_the_cpu(word_run, device, small_table):
    sources = ["vndaunted trecherie", "Heere Master"]
    cpu = load_system(word_run)[1](sources)
    assert load_system(word_run, device=device)[1](sources) == cpu
    assert np.all([isinstance(line, str) for line in cpu])

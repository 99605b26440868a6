"""Chapter 15's equations and worked examples, each checked against the library (the others are in
tests/test_15_seq2seq.py, test_15_decoding.py, test_15_metrics.py and test_15_translate.py)."""

import math
from collections import Counter

import numpy as np
import pytest

import tinyllm as tl
from tinyllm.decoding import beam_search, greedy_search, length_penalty
from tinyllm.metrics import (
    character_error_rate,
    corpus_bleu,
    levenshtein,
    sentence_bleu,
    sentence_chrf,
    sentence_rouge,
    tokenize_13a,
)
from tinyllm.models import Seq2Seq, Seq2SeqConfig, seq2seq_parameter_count
from tinyllm.models.seq2seq import shift_right
from tinyllm.objectives.translation import SEQ2SEQ_PRESETS
from tinyllm.parallel_corpus import load_parallel_corpus
from tinyllm.translate import WordSubstitution

pytestmark = pytest.mark.ch15

HYP, REF = "Here Master, what cheere?", "Here, master: what cheer?"  # the chapter's example


def ngrams(items, n):
    return Counter(tuple(items[i:i + n]) for i in range(len(items) - n + 1))


def test_eq_15_3_the_folio_modern_preset_has_931712_parameters():
    # eq. 15.3
    shape = SEQ2SEQ_PRESETS["folio-modern"]
    config = Seq2SeqConfig(**{**shape.__dict__, "vocab_size": 99})
    V, C, F = 99, 128, 512
    by_hand = V * C + 2 * (4 * C * C + 2 * C * F + 2 * C) + 2 * (8 * C * C + 2 * C * F + 3 * C) \
        + 2 * C
    assert by_hand == 931_712 == seq2seq_parameter_count(config) == Seq2Seq(config).num_parameters()


def test_eq_15_4_the_length_penalty_values_quoted():
    # eq. 15.4
    np.testing.assert_allclose(length_penalty([1, 10, 50], 0.6), [1.0, 1.733, 3.779], atol=5e-4)
    assert length_penalty(7, 0.0) == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eq_15_5_a_beams_score_is_its_teacher_forced_log_probability_over_lp(seed):
    config = Seq2SeqConfig(vocab_size=6, context_length=8, num_encoder_layers=1,
                           num_decoder_layers=1, num_heads=2, d_model=8, d_ff=16, dropout=0.0)
    model = Seq2Seq(config, rng=np.random.default_rng(seed)).astype(np.float64).eval()
    src = np.array([[3, 4, 5, 3]])
    for alpha, decoded in ((0.6, beam_search(model, src, 3, 6, 0.6)),
                           (0.0, greedy_search(model, src, 6))):
        output = decoded.ids[0, :decoded.lengths[0]]
        with tl.no_grad():
            z = model(src, shift_right(output[None], 1, 0)).numpy()[0]
        z[:, [config.pad_id, config.bos_id]] = -np.inf
        log_p = z - z.max(-1, keepdims=True)
        log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
        total = log_p[np.arange(len(output)), output].sum()  # eq. 15.5
        assert decoded.scores[0] == pytest.approx(total / length_penalty(len(output), alpha),
                                                  rel=1e-9)


def test_eqs_15_6_to_15_8_the_worked_bleu_example():
    # eqs. 15.6-15.8: clipped precisions, the brevity penalty and geometric mean, the smoothing
    h, r = tokenize_13a(HYP).split(), tokenize_13a(REF).split()
    assert h == ["Here", "Master", ",", "what", "cheere", "?"]
    matches = [sum((ngrams(h, n) & ngrams(r, n)).values()) for n in range(1, 5)]
    totals = [len(h) - n + 1 for n in range(1, 5)]
    assert matches == [4, 0, 0, 0] and totals == [6, 5, 4, 3]
    p = [4 / 6, 1 / (2 * 5), 1 / (4 * 4), 1 / (8 * 3)]  # eq. 15.8 for the zero orders k = 1, 2, 3
    bp = math.exp(1 - 7 / 6)  # eq. 15.7: c = 6 < r = 7
    bleu = 100 * bp * math.exp(sum(map(math.log, p)) / 4)
    assert bleu == pytest.approx(9.7165, abs=1e-4)
    assert sentence_bleu(HYP, [REF]).score == pytest.approx(bleu, rel=1e-12)
    assert corpus_bleu([HYP], [[REF]]).score == pytest.approx(bleu, rel=1e-12)


def test_bleu_is_brittle_as_the_chapter_says():
    assert sentence_bleu(HYP, [REF], lowercase=True).score == pytest.approx(10.27, abs=5e-3)
    assert sentence_bleu("Here Master what cheere?", [REF]).score == pytest.approx(9.42, abs=5e-3)
    assert sentence_bleu(REF, [REF]).score == pytest.approx(100.0)


def test_eqs_15_9_15_10_the_worked_chrf_example():
    # eqs. 15.9, 15.10
    P, R = [], []
    for n in range(1, 7):
        h = Counter(HYP.replace(" ", "")[i:i + n] for i in range(len(HYP.replace(" ", "")) - n + 1))
        r = Counter(REF.replace(" ", "")[i:i + n] for i in range(len(REF.replace(" ", "")) - n + 1))
        m = sum((h & r).values())
        P.append(m / sum(h.values()))
        R.append(m / sum(r.values()))
    chrP, chrR = np.mean(P), np.mean(R)
    chrf = 100 * 5 * chrP * chrR / (4 * chrP + chrR)
    assert chrf == pytest.approx(54.4281, abs=1e-4)
    assert sentence_chrf(HYP, [REF]).score == pytest.approx(chrf, rel=1e-12)


def test_eqs_15_11_15_12_the_worked_rouge_example():
    # eqs. 15.11, 15.12
    scores = sentence_rouge(HYP, REF)
    assert scores["rouge1"].fmeasure == pytest.approx(3 / 4)  # here master what | cheere, cheer
    assert scores["rouge2"].fmeasure == pytest.approx(2 / 3)  # here master, master what
    assert scores["rougeL"].fmeasure == pytest.approx(3 / 4)  # LCS: here master what


def test_eqs_15_13_15_15_the_worked_edit_distance_example():
    # eqs. 15.13, 15.15
    assert levenshtein(HYP, REF) == 4  # ", " moved: 2; ":" for ","; the final "e": 1
    assert character_error_rate([HYP], [REF]) == pytest.approx(4 / 25)


def test_eq_15_16_the_table_learns_the_folios_spellings():
    # eq. 15.16
    table = WordSubstitution.learn(load_parallel_corpus("train")[:3000]).table
    assert table["vpon"] == "upon" and table["haue"] == "have" and table["selfe"] == "self"
    assert "the" not in table  # a word spelt alike is never listed


def test_teacher_forcing_inputs_and_targets():
    """Eq. 15.1: a batch of TranslationTask holds targets [y_1 .. y_n, EOS] and decoder inputs
    [BOS, y_1 .. y_n] (a shorter row's inputs after that only predict padding)."""
    from tinyllm.objectives.translation import TranslationTask, pair_tokenizer, pairs_text

    pairs = [("Heere", "Here"), ("Mistris", "Mistress")]
    tokenizer = pair_tokenizer(pairs_text(pairs))
    task = TranslationTask(pairs, pairs, tokenizer, batch_size=2, context_length=16)
    _, tgt_in, targets = task.batch("train", np.random.default_rng(0))
    PAD, BOS, EOS = 0, 1, 2
    decoded = []
    for row_in, row_out in zip(tgt_in.tolist(), targets.tolist()):
        n = row_out.index(EOS)
        y, padding = row_out[:n], [PAD] * (len(row_out) - n - 1)
        assert row_out == y + [EOS] + padding
        assert row_in[: n + 1] == [BOS] + y  # later inputs predict PAD, which the loss skips
        decoded.append(tokenizer.decode(y))
    assert sorted(decoded) == sorted(modern for _, modern in pairs)

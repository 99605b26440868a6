"""``tinyllm check`` and the expected-result cards (``tinyllm/check.py``, ``tinyllm/cards.py``,
``benchmarks/make_cards.py``).

Each diagnosis on a run broken on purpose, trained with the real trainer on a tiny GPT (1 layer,
width 32, context 8) and a synthetic play; the card of the tiny preset is made by make_cards.py
from three healthy runs (seeds 1, 2, 3: validation 0.874, 0.829, 0.751 on 200 batches; this tiny,
unconverged preset varies more from seed to seed than the real ones), and a fourth (seed 6,
0.805) is on it:

- learning rate 0 -> not learning (stuck at ln V);
- a huge learning rate without clipping -> the trainer stops before its first checkpoint; a nan
  loss after a checkpoint -> a folder whose checkpoint is older than the run: both non-finite;
- 300 steps of a wider GPT on 400 characters -> overfitting;
- the causal mask removed from every attention -> far below the band: a leak;
- a quarter of the learning rate behind the trainer's back -> above the band;
- the command's exit status: 0 on card, 1 with a finding, 2 for a folder that holds no run.
"""

import ast
import dataclasses
import importlib.util
import math
import signal
from pathlib import Path

import numpy as np
import pytest
from synthetic import synthetic_play

import tinyllm.train as T
from tinyllm import check
from tinyllm.cards import CARDS
from tinyllm.cli import main
from tinyllm.models import GPT_PRESETS, GPTConfig
from tinyllm.nn import functional as F
from tinyllm.nn import multihead
from tinyllm.recipe import TRAIN_PRESETS
from tinyllm.tensor import Tensor

pytestmark = pytest.mark.ch11

ROOT = Path(__file__).resolve().parents[1]
TINY = GPTConfig(vocab_size=1, context_length=8, num_layers=1, num_heads=2, d_model=32)
WIDER = GPTConfig(vocab_size=1, context_length=16, num_layers=2, num_heads=2, d_model=32)


def load_make_cards():
    spec = importlib.util.spec_from_file_location("make_cards", ROOT / "benchmarks/make_cards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_cards = load_make_cards()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The tiny presets, the synthetic texts, a trainer and the tiny card (seeds 1, 2, 3)."""
    root = tmp_path_factory.mktemp("check")
    play, small = root / "play.txt", root / "small.txt"
    play.write_text(synthetic_play(), encoding="utf-8")
    small.write_text(synthetic_play(paragraphs=5), encoding="utf-8")  # about 400 characters
    base = dataclasses.replace(
        TRAIN_PRESETS["shakespeare-char"], preset="tiny", data=str(play), iters=240,
        batch_size=8, lr=2e-2, min_lr=2e-3, warmup_iters=10, eval_interval=80, eval_iters=4,
        final_eval_iters=200, checkpoint_interval=20, sample_tokens=0)

    def train(name: str, **changes) -> Path:
        config = dataclasses.replace(base, out_dir=str(root / name), **changes)
        try:
            T.train(config, progress=False, log=lambda message: None)
        except T.runs.NonFiniteError:
            pass  # what such a run leaves behind is what `tinyllm check` reads
        return root / name

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(GPT_PRESETS, "tiny", TINY)
        patch.setitem(GPT_PRESETS, "wider", WIDER)
        healthy = [train(f"seed{seed}", seed=seed) for seed in (1, 2, 3)]
        cards = make_cards.build_cards([("tiny", folder) for folder in healthy])
        patch.setitem(CARDS, "tiny", cards["tiny"])
        yield train, small, root


def kinds(run_dir) -> list[str]:
    return [finding.kind for finding in check.check_run(run_dir)]


def run_cli(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_the_card_is_made_from_the_measured_runs(lab, tmp_path):
    card = CARDS["tiny"]
    assert [run["seed"] for run in card["runs"]] == [1, 2, 3]
    assert all(run["iters"] == 240 and run["eval_batches"] == 200 for run in card["runs"])
    assert [step for step, _, _ in card["runs"][0]["history"]] == [80, 160]  # the last is final
    assert card["settings"]["lr"] == 2e-2 and "seed" not in card["settings"]
    _, train_, root = lab
    out = tmp_path / "cards.py"
    make_cards.main(["--run", f"tiny={root / 'seed1'}", "--out", str(out)])
    text = out.read_text(encoding="utf-8")
    written = ast.literal_eval(text.split("CARDS = ", 1)[1])  # a plain literal: no code
    assert set(written) == set(make_cards.RECORDED) | {"tiny"}
    assert written["shakespeare-char"]["runs"][0]["val_loss"] == 1.9417
    assert all(len(line) <= 100 for line in text.splitlines())
    with pytest.raises(SystemExit, match="PRESET=DIR"):
        make_cards.main(["--run", "tiny", "--out", str(out)])


def test_the_shipped_cards_are_what_make_cards_writes():
    shipped = (ROOT / "tinyllm" / "cards.py").read_text(encoding="utf-8")
    assert shipped == make_cards.render(make_cards.build_cards([]))


def test_a_healthy_run_is_on_its_card(lab, capsys):
    train, _, _ = lab
    run_dir = train("seed6", seed=6)
    findings = check.check_run(run_dir)
    assert not [f for f in findings if f.off], [str(f) for f in findings]
    assert [f.kind for f in findings if f.kind == "ok"] == ["ok"] * 4  # val, train, 2 history
    code, out, _ = run_cli(["check", run_dir], capsys)
    assert code == 0 and out.strip().endswith(": OK")


def test_learning_rate_zero_is_not_learning(lab, capsys):
    train, _, _ = lab
    run_dir = train("lr0", lr=0.0, min_lr=0.0)
    assert kinds(run_dir) == ["not-learning"]
    code, out, _ = run_cli(["check", run_dir], capsys)
    assert code == 1 and "ln V" in out and "--lr" in out and "OFF CARD" in out


def test_a_huge_learning_rate_without_clipping_stops_before_any_checkpoint(lab, capsys):
    train, _, _ = lab
    run_dir = train("huge", lr=1e4, min_lr=1e4, warmup_iters=0, grad_clip=0.0)
    assert not (run_dir / "checkpoint.safetensors").exists()  # what the trainer leaves
    assert kinds(run_dir) == ["non-finite"]
    code, out, _ = run_cli(["check", run_dir], capsys)
    assert code == 1 and "lower --lr" in out


def test_a_nan_after_a_checkpoint_leaves_an_older_checkpoint(lab, monkeypatch):
    train, _, _ = lab
    step_fn = T.train_step
    calls = []

    def nan_at_step_30(*args, **kwargs):  # as train_step's own check of the loss raises
        calls.append(1)
        if len(calls) == 30:
            T.runs.check_finite("training loss", math.nan)
        return step_fn(*args, **kwargs)

    monkeypatch.setattr(T, "train_step", nan_at_step_30)
    run_dir = train("nan30")
    assert not (run_dir / "metrics.json").exists()
    findings = check.check_run(run_dir)
    assert [f.kind for f in findings] == ["non-finite"]
    assert "after step 20 of 240" in findings[0].message


def test_an_interrupted_run_is_unfinished(lab, monkeypatch):
    train, _, _ = lab
    step_fn = T.train_step
    calls = []

    def sigterm_at_step_25(*args, **kwargs):  # the run finishes the step, saves, stops
        calls.append(1)
        if len(calls) == 25:
            signal.raise_signal(signal.SIGTERM)
        return step_fn(*args, **kwargs)

    monkeypatch.setattr(T, "train_step", sigterm_at_step_25)
    findings = check.check_run(train("stopped"))
    assert [f.kind for f in findings] == ["unfinished"]
    assert "step 25 of 240" in findings[0].message and "--resume" in findings[0].fix


def test_diagnoses_from_the_numbers_alone():
    """The cases no tiny run reaches cheaply: divergence without a nan, a nan a run recorded
    (metrics.json writes it as null), a loss under the label-smoothing floor."""
    settings = dict(preset="none", iters=100, checkpoint_interval=50)
    history = dict(step=list(range(1, 101)), train_loss=[5.0] * 100, eval_step=[], val_loss=[])
    info = dict(history=history, settings=settings, step=100, uniform=math.log(33), floor=0.0)
    assert [f.kind for f in check.check_learning(info)] == ["diverging"]
    assert [f.kind for f in check.check_finished(info, {"val_loss": None})] == ["non-finite"]
    info["floor"] = check.smoothed_floor(80, 0.1)
    found = check.check_card(info, {"val_loss": 0.70}, None)
    assert [f.kind for f in found] == ["leak"] and "label-smoothed" in found[0].message


def test_a_tiny_training_text_overfits(lab):
    train, small, _ = lab
    run_dir = train("overfit", preset="wider", data=str(small), iters=300, eval_interval=50,
                    weight_decay=0.0, min_lr=2e-2)
    found = check.check_run(run_dir)
    assert [f.kind for f in found if f.off] == ["overfitting"]
    assert found[-1].kind == "note"  # no card for "wider": only the card-free checks


def test_attention_without_its_causal_mask_is_a_leak(lab, monkeypatch):
    train, _, _ = lab
    forward = multihead.MultiHeadAttention.forward

    def sees_the_future(self, x, context=None, mask=None, is_causal=False, **kwargs):
        return forward(self, x, context, mask, False, **kwargs)

    monkeypatch.setattr(multihead.MultiHeadAttention, "forward", sees_the_future)
    found = check.check_run(train("leak", seed=6))
    assert "leak" in [f.kind for f in found]
    assert any("causal mask" in f.cause for f in found if f.kind == "leak")


def test_a_slower_run_is_above_the_band(lab, monkeypatch):
    train, _, _ = lab
    build = T.build_scheduler

    def quarter_rate(config, optimizer):  # the settings stay the card's: only the rate changes
        return build(dataclasses.replace(config, lr=config.lr / 4, min_lr=config.min_lr / 4),
                     optimizer)

    monkeypatch.setattr(T, "build_scheduler", quarter_rate)
    found = check.check_run(train("slow", seed=6))
    off = [f for f in found if f.off]
    assert off and {f.kind for f in off} == {"off-band"}
    assert all("above it" in f.message for f in off)


def test_other_settings_or_steps_than_the_card_are_a_note(lab):
    train, _, root = lab
    found = check.check_run(train("short", seed=6, iters=120))
    assert [f.kind for f in found] == ["note"] and "runs of [240] steps" in found[0].message


def test_a_folder_without_a_run_is_a_user_error(tmp_path, capsys):
    code, _, err = run_cli(["check", tmp_path / "missing"], capsys)
    assert code == 2 and "not a folder" in err
    code, _, err = run_cli(["check", tmp_path], capsys)
    assert code == 2 and "holds no run" in err
    file = tmp_path / "notes.txt"
    file.write_text("hello")
    code, _, err = run_cli(["check", file], capsys)
    assert code == 2 and "not a folder" in err


def test_the_band_and_the_label_smoothing_floor():
    assert check.margin(200) == pytest.approx(0.05)
    assert check.margin(50) == pytest.approx(0.10)
    finding = check.compare("val_loss", 500, 2.31, [(2.3225, 200), (2.3184, 200)], 200)
    assert finding.kind == "ok" and "[2.268, 2.372]" in finding.message
    assert check.compare("val_loss", 500, 2.40, [(2.3225, 200)], 200).kind == "off-band"
    assert check.compare("val_loss", 500, 2.20, [(2.3225, 200)], 200).kind == "off-band"
    assert check.compare("val_loss", 500, 1.90, [(2.3225, 200)], 200).kind == "leak"
    # the floor: the loss of the best possible prediction, the smoothed target itself
    V, eps = 80, 0.1
    target = np.full((1, V), eps / V)
    target[0, 3] += 1 - eps
    loss = F.cross_entropy(Tensor(np.log(target)), np.array([3]), label_smoothing=eps)
    assert check.smoothed_floor(V, eps) == pytest.approx(loss.item(), rel=1e-6)
    assert check.smoothed_floor(V, 0.0) == 0.0

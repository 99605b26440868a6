"""``tinyllm check RUN_DIR``: is a run where its expected-result card says it should be?

    tinyllm check runs/shakespeare-char

A card (``tinyllm.cards``, written by ``benchmarks/make_cards.py``) records what a preset's runs
reached: final validation (and training) loss, the validation history, the time. This module reads a
run folder (its checkpoint's settings and loss history, and ``metrics.json``) and reports each
finding with a cause and a fix. Five diagnoses, in the order they are tried:

- **non-finite**: the trainer stops at an inf or nan loss without saving it
  (``runs.NonFiniteError``), so such a run leaves a folder with no checkpoint, or a checkpoint
  older than its last step and no ``metrics.json``: the learning rate is too large, or clipping off;
- **not learning**: over the last 10% of the steps the training loss is still within 5% of the
  loss of a uniform guess, ln V (chapter 03: a model that has learnt nothing predicts 1 / V for
  every token, and -ln(1/V) = ln V; BERT's loss adds next-sentence prediction's ln 2);
- **overfitting**: validation minus training loss above 0.25 nats and 15% of the validation loss,
  and still growing (or the validation loss rising from its best);
- **too good to be true**: a loss below the floor the data allows (a label-smoothed loss cannot go
  under the entropy of its smoothed target: H(q, p) = H(q) + KL(q || p) >= H(q), eq. 3.9), or far
  below the card's band: a leak, e.g. a causal mask that lets each position see what it predicts;
- **off the band** at a step the card records (slower or faster than expected).

The band: for runs of the card with the run's number of steps, [lowest - m, highest + m] with
m = 0.05 * sqrt(200 / batches) nats. 0.05 is the README's bar against the PyTorch reference and
2.4 times the seed-to-seed spread of the GPT preset (1.9417 and 1.9206 at 2,000 steps; 2.3184 to
2.3326 at 500 over three seeds); an estimate averaged over fewer batches is noisier as
1 / sqrt(batches), so a 10-batch validation point gets m = 0.22. "Far below" is 4 m under the band.
Exit status: 0 on card, 1 with a finding, 2 for a folder that holds no run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyllm.cards import CARDS
from tinyllm.checkpoint import CHECKPOINT_NAME, load_checkpoint
from tinyllm.runs import LOCK_NAME, METRICS_NAME

NOT_LEARNING = 0.05  # within 5% of the uniform guess's loss
DIVERGING = 1.10  # 10% above it: worse than guessing
OVERFIT_GAP, OVERFIT_RELATIVE = 0.25, 0.15  # nats, and fraction of the validation loss
FAR_BELOW = 4.0  # margins under the band's low edge
PER_RUN = ("iters", "seed", "out_dir", "device", "checkpoint_interval", "eval_interval",
           "eval_iters", "final_eval_iters", "sample_tokens")  # as benchmarks/make_cards.py
LOSSES = ("val_loss", "train_loss", "mlm_loss")  # the final metrics a card can record
OFF = ("non-finite", "unfinished", "not-learning", "diverging", "overfitting", "leak", "off-band")


@dataclass(frozen=True)
class Finding:
    """A line of the report: ``kind`` ("ok", "note" or one of OFF), what, why, what to do."""

    kind: str
    message: str
    cause: str = ""
    fix: str = ""

    @property
    def off(self) -> bool:
        return self.kind in OFF

    def __str__(self) -> str:
        parts = [f"{self.kind.upper()}: {self.message}"]
        parts += [f"  likely cause: {self.cause}"] if self.cause else []
        parts += [f"  fix: {self.fix}"] if self.fix else []
        return "\n".join(parts)


def margin(batches: int) -> float:
    """Half-width of a band around a loss averaged over ``batches`` batches (module docstring)."""
    return 0.05 * math.sqrt(200 / max(int(batches), 1))


def smoothed_floor(vocab_size: int, eps: float) -> float:
    """The least cross-entropy against the label-smoothed target q = (1 - eps) onehot + eps / V,
    reached at p = q (eq. 3.9): H(q) = -(1 - eps + eps/V) ln(1 - eps + eps/V) - (V - 1) (eps/V)
    ln(eps/V). Chapter 15's sentence model (V = 99, eps = 0.1): 0.777, the README's 0.77."""
    if eps <= 0:
        return 0.0
    top, rest = 1 - eps + eps / vocab_size, eps / vocab_size
    return float(-top * math.log(top) - (vocab_size - 1) * rest * math.log(rest))


# --------------------------------------------------------------------------------------------------
# Reading the run
# --------------------------------------------------------------------------------------------------


def read_run(run_dir: Path) -> tuple[dict, dict | None]:
    """(info, metrics or None) of a run folder with a checkpoint: ``load_checkpoint``'s info,
    plus "uniform" (the loss of a uniform guess) and "floor" (the least loss the targets allow)."""
    metrics_path = run_dir / METRICS_NAME
    metrics = (json.loads(metrics_path.read_text(encoding="utf-8"))
               if metrics_path.is_file() else None)
    _, _, info = load_checkpoint(run_dir / CHECKPOINT_NAME)
    info["uniform"] = math.log(info["shape"].vocab_size) + (math.log(2) if
                                                            info["settings"]["model"] == "bert"
                                                            else 0.0)
    info["floor"] = smoothed_floor(info["shape"].vocab_size,
                                   getattr(info["shape"], "label_smoothing", 0.0))
    return info, metrics


def no_checkpoint(run_dir: Path) -> list[Finding]:
    """A folder without a checkpoint: a trainer that stopped before its first save, or no run."""
    if not (run_dir / LOCK_NAME).is_file():
        raise FileNotFoundError(f"{run_dir} holds no run (no {CHECKPOINT_NAME}): give the --out "
                                "folder of a `tinyllm train` run")
    return [Finding("non-finite", "a trainer used this folder but saved no checkpoint",
                    "the run stopped before its first checkpoint; the trainer stops this way on "
                    "an inf or nan loss (it never saves one): learning rate too large, or no "
                    "gradient clipping", "lower --lr or keep --grad-clip (1.0), then train again "
                    "with --overwrite; if it crashed instead, its error names the cause")]


# --------------------------------------------------------------------------------------------------
# The diagnoses
# --------------------------------------------------------------------------------------------------


def check_finished(info: dict, metrics: dict | None) -> list[Finding]:
    """Non-finite numbers in the history or metrics; a run that stopped short of its steps."""
    history, settings, step = info["history"], info["settings"], info["step"]
    values = [*history["train_loss"], *history["val_loss"]]
    values += [metrics.get(k) for k in LOSSES if k in metrics] if metrics else []
    if any(v is None or not math.isfinite(v) for v in values):
        return [Finding("non-finite", "the loss history or metrics.json holds inf or nan",
                        "learning rate too large, or no gradient clipping",
                        "lower --lr, keep --grad-clip 1.0, and train again with --overwrite")]
    if metrics is not None and step >= settings["iters"]:
        return []
    if step % settings["checkpoint_interval"] == 0 and step < settings["iters"]:
        cause = ("the trainer stops on an inf or nan loss without saving it, so the folder keeps "
                 f"its last periodic checkpoint: learning rate too large or no clipping (an "
                 f"interrupt at step {step} leaves the same files)")
        return [Finding("non-finite", f"stopped after step {step} of {settings['iters']}, at a "
                        "periodic checkpoint, with no metrics.json", cause,
                        "lower --lr (keep --grad-clip 1.0) and train again with --overwrite; if "
                        "it was interrupted, continue with `tinyllm train --resume`")]
    return [Finding("unfinished", f"stopped at step {step} of {settings['iters']} (no "
                    "metrics.json)", "the run was interrupted (Ctrl-C, SIGTERM) and saved there",
                    "continue it with `tinyllm train --resume --out RUN_DIR`")]


def check_learning(info: dict) -> list[Finding]:
    """Not learning (stuck near ln V) or diverging (above it), from the last 10% of the steps."""
    losses = np.asarray(info["history"]["train_loss"], dtype=np.float64)  # (steps,)
    if losses.size < 10:
        return []
    late = losses[-max(losses.size // 10, 1):].mean()  # the last 10% of the steps
    uniform = info["uniform"]
    if late > DIVERGING * uniform:
        return [Finding("diverging", f"training loss {late:.3f} at the end is above ln V = "
                        f"{uniform:.3f}, the loss of a uniform guess",
                        "learning rate too large, or no gradient clipping",
                        "lower --lr, keep --grad-clip 1.0")]
    if late > (1 - NOT_LEARNING) * uniform:
        return [Finding("not-learning", f"training loss {late:.3f} after {losses.size} steps is "
                        f"within {NOT_LEARNING:.0%} of ln V = {uniform:.3f} (a uniform guess)",
                        "the weights barely move: learning rate zero or tiny, gradients not "
                        "reaching the weights, or labels unrelated to inputs",
                        "check --lr (and --min-lr, --warmup-iters), and that the loss "
                        "backpropagates")]
    return []


def eval_gaps(info: dict, metrics: dict | None) -> list[tuple[int, float, float]]:
    """(step, val, val - train) at each validation point; train: the mean training loss of the
    steps since the previous point, or the final training-set estimate."""
    history, points = info["history"], []
    steps, train = np.asarray(history["step"]), np.asarray(history["train_loss"])
    previous = 0
    for step, val in zip(history["eval_step"], history["val_loss"]):
        window = train[(steps > previous) & (steps <= step)]
        if window.size:
            points.append((int(step), float(val), float(val - window.mean())))
        previous = step
    if metrics and metrics.get("train_loss") is not None and points:
        points[-1] = (points[-1][0], metrics["val_loss"], metrics["val_loss"] -
                      metrics["train_loss"])
    return points


def check_overfitting(info: dict, metrics: dict | None) -> list[Finding]:
    points = eval_gaps(info, metrics)
    if len(points) < 2:
        return []
    step, val, gap = points[-1]
    best = min(v for _, v, _ in points)
    growing = gap > points[len(points) // 2][2] + 0.05 or val > best + 0.05
    if gap > max(OVERFIT_GAP, OVERFIT_RELATIVE * val) and growing:
        return [Finding("overfitting", f"validation loss {val:.3f} is {gap:.3f} above the "
                        f"training loss at step {step}, and the gap grew (best validation "
                        f"{best:.3f})", "the model memorises its training text: too little "
                        "text for its size, or too many steps",
                        "more text (--corpus shakespeare-all), fewer steps, dropout or weight "
                        "decay, or a smaller preset")]
    return []


def check_card(info: dict, metrics: dict | None, card: dict | None) -> list[Finding]:
    """The floor the data allows, then each loss the card records at the run's steps."""
    settings, findings = info["settings"], []
    values = {k: metrics[k] for k in LOSSES if metrics and metrics.get(k) is not None}
    lowest = min(values.values(), default=None)
    if lowest is not None and info["floor"] and lowest < info["floor"] - 1e-3:
        return [Finding("leak", f"loss {lowest:.3f} is below {info['floor']:.3f}, the least a "
                        "label-smoothed loss can be", "the loss is computed wrongly, or the "
                        "targets leak into the inputs", "check the loss and the decoder's mask")]
    if card is None:
        return [Finding("note", f"no card for preset {settings['preset']!r} (cards: "
                        f"{', '.join(CARDS)}): only the card-free checks ran")]
    changed = [f"{k} {settings.get(k)!r} (card {v!r})" for k, v in card["settings"].items()
               if k not in PER_RUN and settings.get(k) != v]
    if changed:
        return [Finding("note", f"settings differ from the card's: {', '.join(changed)}; its "
                        "bands do not apply")]
    runs = [r for r in card["runs"] if r["iters"] == settings["iters"]]
    if not runs:
        recorded = sorted({r["iters"] for r in card["runs"]})
        return [Finding("note", f"the card records runs of {recorded} steps, not "
                        f"{settings['iters']}: no band to compare with")]
    batches = settings["final_eval_iters"]
    for key, value in values.items():
        recorded = [(r[key], r["eval_batches"]) for r in runs if key in r]
        if recorded:
            findings.append(compare(key, settings["iters"], value, recorded, batches))
    eval_points = dict(zip(info["history"]["eval_step"], info["history"]["val_loss"]))
    by_step: dict[int, list] = {}  # the card's validation history: step -> [(loss, batches)]
    for run in runs:
        for step, val, card_batches in run.get("history", []):
            by_step.setdefault(step, []).append((val, card_batches))
    for step, recorded in sorted(by_step.items()):
        nearest = min(eval_points, key=lambda s: abs(s - step), default=None)
        if nearest is not None and abs(nearest - step) <= settings["iters"] // 10:
            findings.append(compare("val_loss", nearest, eval_points[nearest], recorded,
                                    settings["eval_iters"]))
    ms = metrics.get("ms_per_step") if metrics else None
    timed = [r for r in runs if r.get("ms_per_step")]
    if ms and timed:  # machines differ: a note, never a finding
        findings.append(Finding("note", f"{ms:g} ms/step (card: {timed[0]['ms_per_step']:g} "
                                f"ms/step, {timed[0].get('machine', 'machine not recorded')})"))
    return findings


def compare(key: str, step: int, value: float, recorded: list, batches: int) -> Finding:
    """``value`` of ``key`` at ``step`` against the band of the card's ``recorded`` values."""
    m = margin(min(batches, *(b for _, b in recorded)))
    low, high = min(v for v, _ in recorded) - m, max(v for v, _ in recorded) + m
    where = f"{key} {value:.4f} at step {step}, card band [{low:.3f}, {high:.3f}]"
    if value < low - FAR_BELOW * m:
        return Finding("leak", f"{where}: far below it", "too good to be true: the model sees "
                       "what it predicts (a causal mask dropped, validation text in the training "
                       "text, targets not shifted)", "check the attention mask and the data split")
    if value < low:
        return Finding("off-band", f"{where}: below it (learning faster than the card)",
                       "a different corpus, tokenizer or evaluation than the card's",
                       "check --data and the tokenizer; if the run is right, add it to the card "
                       "(benchmarks/make_cards.py --run)")
    if value > high:
        return Finding("off-band", f"{where}: above it (learning slower than the card)",
                       "fewer tokens per step than the card's, a different learning rate or "
                       "schedule, or changed data", "compare the settings with the card's and "
                       "the data's SHA-256 in the checkpoint")
    return Finding("ok", where)


def check_run(run_dir: str | Path, cards: dict | None = None) -> list[Finding]:
    """Every finding for the run in ``run_dir`` (see the module docstring); ``cards``: CARDS."""
    run_dir = Path(run_dir)
    cards = CARDS if cards is None else cards
    if not (run_dir / CHECKPOINT_NAME).is_file():
        if not run_dir.is_dir():
            raise FileNotFoundError(f"{run_dir} is not a folder: give the --out folder of a "
                                    "`tinyllm train` run")
        return no_checkpoint(run_dir)
    info, metrics = read_run(run_dir)
    findings = check_finished(info, metrics)
    if any(f.kind == "non-finite" for f in findings):
        return findings + check_learning(info)
    learning = check_learning(info)
    if learning:
        return findings + learning
    findings += check_overfitting(info, metrics)
    return findings + check_card(info, metrics, cards.get(info["settings"]["preset"]))


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------


def add_parser(commands) -> None:
    """``tinyllm check``'s arguments (cli.py calls this)."""
    p = commands.add_parser("check", help="compare a run with its expected-result card",
                            description="Compare a run folder's losses with its preset's card "
                                        "and name the likely cause when they are off. Exit "
                                        "status 0: on card; 1: a finding; 2: not a run.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of a `tinyllm train` run")
    p.set_defaults(handler=run_command)


def run_command(args) -> None:
    """``tinyllm check RUN_DIR``: print the findings; exit 1 if one is off the card."""
    findings = check_run(args.run_dir)
    for finding in findings:
        print(finding)
    off = [f for f in findings if f.off]
    print(f"{args.run_dir}: {'OFF CARD' if off else 'OK'}"
          f"{f' ({len(off)} finding(s))' if off else ''}")
    if off:
        raise SystemExit(1)

"""Regenerate ``tinyllm/cards.py``, the expected-result cards that ``tinyllm check`` reads.

    python benchmarks/make_cards.py                                    # the recorded runs only
    python benchmarks/make_cards.py --run shakespeare-char=runs/gpt-500 --run folio-words=runs/w

A card holds, for one training preset, the settings its numbers depend on and the measured runs:
for each run its steps (``iters``), seed, final validation and training loss (with the number of
batches they average), the validation history by step, the wall time and the machine. The bands
are not stored: ``tinyllm.check`` derives them from these measurements by one stated rule.

``RECORDED`` below are the runs this project's README and chapters report (each with its source).
``--run PRESET=DIR`` reads a run folder (its ``metrics.json`` and its checkpoint's settings and
history, through ``tinyllm.checkpoint.load_checkpoint``) and adds it to PRESET's card, replacing a
recorded run of the same steps and seed. ``--out`` writes elsewhere (default: tinyllm/cards.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pprint
import sys
from pathlib import Path

from tinyllm.checkpoint import load_checkpoint
from tinyllm.recipe import TRAIN_PRESETS

ROOT = Path(__file__).resolve().parents[1]
# settings that vary from run to run without changing what a run should reach
PER_RUN = ("iters", "seed", "out_dir", "device", "checkpoint_interval", "eval_interval",
           "eval_iters", "final_eval_iters", "sample_tokens")
CHAPTERS = {"shakespeare-char": 11, "shakespeare-bert": 12, "shakespeare-lstm": 18,
            "folio-modern": 15, "folio-words": 15}
SAMPLES = {  # what a good result looks like (README, "What it reaches")
    "shakespeare-char": "LEAGO:\nThou tends he consets'd in of usee of vercites\nMante, and thou "
                        "prive owser.\n\nGORT:\nWiRows you for or;\nShal thought you uncanns goods "
                        "of chold take,\n",
    "shakespeare-bert": "fills about 22% of masked tokens (most-frequent-token baseline 7.0%); "
                        "next-sentence prediction near chance (53.7%)",
    "shakespeare-lstm": "speaker names in capitals, then lines of word-like strings, as the GPT's",
    "folio-modern": "greedy decoding on the test plays: BLEU 55.19, CER 7.63% (identity 41.08)",
    "folio-words": "with the substitution table: BLEU 68.41, CER 4.56% on the test plays",
}
README = "README.md, 'What it reaches'"
RECORDED = {
    "shakespeare-char": [
        dict(iters=2000, seed=1337, val_loss=1.9417, train_loss=1.7848, eval_batches=200,
             wall_s=106, ms_per_step=53, machine="2 cores, 2 threads, idle", source=README),
        dict(iters=2000, seed=42, val_loss=1.9206, train_loss=1.7738, eval_batches=200,
             source=README),
        *(dict(iters=500, seed=seed, val_loss=loss, eval_batches=200,
               source="README.md, data-parallel section (one process, B = 12)")
          for seed, loss in ((1337, 2.3225), (1, 2.3184), (2, 2.3326))),
        dict(iters=500, seed=1337, val_loss=2.3211, train_loss=2.2904, eval_batches=200,
             history=[[250, 2.4514, 20]], wall_s=64.69, ms_per_step=129.38,
             machine="2 cores, 1 thread, shared with other jobs",
             source="`tinyllm train --iters 500 --threads 1 --sample-tokens 0`, read by --run "
                    "(the trainer's own batches; 2.3225 above: the data-parallel table's)"),
    ],
    "shakespeare-bert": [
        dict(iters=1500, seed=1337, mlm_loss=4.84, mlm_accuracy=0.222, eval_batches=50,
             wall_s=257, ms_per_step=166, machine="2 cores, 2 threads (whole command)",
             source=README),
    ],
    "shakespeare-lstm": [
        dict(iters=600, seed=1337, val_loss=2.1468, eval_batches=200, wall_s=117,
             ms_per_step=195, machine="2 cores, 1 thread", source=README + "; chapter 18"),
    ],
    "folio-modern": [
        dict(iters=3500, seed=1337, val_loss=0.956, eval_batches=50, wall_s=672,
             ms_per_step=192, machine="2 cores, 2 threads, busy", source=README + "; chapter 15",
             history=[[500, 1.409, 10], [1000, 1.173, 10], [1500, 1.071, 10],
                      [2000, 1.010, 10], [2500, 0.982, 10], [3000, 0.964, 10]]),
    ],
    "folio-words": [
        dict(iters=3000, seed=1337, val_loss=0.877, eval_batches=50, wall_s=1023,
             ms_per_step=341, machine="2 cores, 1 thread, shared with five jobs",
             source=README + "; chapter 15",
             history=[[500, 0.989, 10], [1000, 0.931, 10], [1500, 0.900, 10],
                      [2000, 0.881, 10], [2500, 0.875, 10]]),
    ],
}


def preset_settings(config) -> dict:
    """The settings of a TrainConfig (or its dict) that a card's numbers depend on."""
    values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return {key: value for key, value in values.items() if key not in PER_RUN}


def read_run(run_dir: Path) -> tuple[dict, dict]:
    """(settings, run entry) of a finished run folder: metrics.json plus the checkpoint history."""
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise SystemExit(f"{run_dir} has no metrics.json: give a finished run folder")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    _, _, info = load_checkpoint(run_dir)
    settings, history = info["settings"], info["history"]
    periodic = list(zip(history["eval_step"], history["val_loss"]))[:-1]  # the last is final
    run = dict(iters=info["step"], seed=settings["seed"], eval_batches=settings["final_eval_iters"],
               history=[[int(s), round(float(v), 4), settings["eval_iters"]] for s, v in periodic],
               wall_s=metrics.get("wall_s"), ms_per_step=metrics.get("ms_per_step"),
               machine="measured by make_cards.py", source=str(run_dir))
    for key in ("val_loss", "train_loss", "mlm_loss", "mlm_accuracy"):
        if metrics.get(key) is not None:
            run[key] = metrics[key]
    return settings, run


def build_cards(runs: list[tuple[str, Path]]) -> dict:
    cards = {}
    for preset, recorded in RECORDED.items():
        config = TRAIN_PRESETS[preset]
        cards[preset] = dict(model=config.model, chapter=CHAPTERS[preset],
                             settings=preset_settings(config), sample=SAMPLES[preset],
                             runs=[dict(entry) for entry in recorded])
    for preset, run_dir in runs:
        settings, run = read_run(run_dir)
        if preset not in cards:
            cards[preset] = dict(model=settings["model"], chapter=None, sample=None, runs=[],
                                 settings=preset_settings(settings))
        elif preset_settings(settings) != cards[preset]["settings"]:
            raise SystemExit(f"{run_dir} was trained with other settings than card {preset}'s")
        kept = [r for r in cards[preset]["runs"]
                if (r["iters"], r["seed"]) != (run["iters"], run["seed"])]
        cards[preset]["runs"] = [*kept, run]
    return cards


def render(cards: dict) -> str:
    body = pprint.pformat(cards, width=90, sort_dicts=False).replace("\n", "\n" + " " * 8)
    return ('"""Expected-result cards for ``tinyllm check`` (generated by '
            'benchmarks/make_cards.py:\ndo not edit by hand; rerun it with --run PRESET=DIR to '
            'add a measured run)."""\n\n'
            f"CARDS = {body}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", default=[], metavar="PRESET=DIR",
                        help="a finished run folder to add to PRESET's card (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "tinyllm" / "cards.py")
    args = parser.parse_args(argv)
    runs = []
    for item in args.run:
        preset, sep, folder = item.partition("=")
        if not sep or not folder:
            raise SystemExit(f"--run {item!r}: expected PRESET=DIR, e.g. shakespeare-char=runs/x")
        runs.append((preset, Path(folder)))
    args.out.write_text(render(build_cards(runs)), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

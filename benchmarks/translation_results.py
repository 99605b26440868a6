"""Chapter 15's results: Folio -> modern spelling on the test plays, and a cross-attention map.

    python benchmarks/translation_results.py --checkpoint /tmp/s2s-run --json /tmp/s2s.json
    python benchmarks/translation_results.py --checkpoint runs/folio-words   # table + word model

scores the identity and word-substitution baselines and the model (greedy and beam 4, length
penalty 0.6) on the four test plays with BLEU, chrF and CER (tinyllm.metrics, equal to
sacreBLEU), prints the table and five examples (the seed picks them), and draws the decoder's
cross-attention (last layer, mean over heads) for one test sentence into --png.
"""

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinyllm.models.seq2seq import shift_right  # noqa: E402
from tinyllm.translate import evaluate_split, load_translator, translate_texts  # noqa: E402


def cross_attention_png(checkpoint: str, source: str, path: Path) -> str:
    """Draw where each output character looks in the source (last decoder layer, head mean)."""
    from matplotlib.figure import Figure

    model, tokenizer = load_translator(checkpoint)
    output = translate_texts(model, tokenizer, [source], beam_width=4)[0]
    src = np.array([tokenizer.encode(source)])  # (1, S)
    targets = np.array([tokenizer.encode(output) + [model.config.eos_id]])  # (1, T)
    tgt_in = shift_right(targets, model.config.bos_id, model.config.pad_id)
    weights = model.cross_attention_weights(src, tgt_in)[-1][0].mean(axis=0)  # (T, S)
    fig = Figure(figsize=(0.16 * len(source) + 1.5, 0.16 * len(output) + 1.5))
    ax = fig.subplots()
    ax.imshow(weights, cmap="Blues", aspect="auto")
    ax.set_xticks(range(len(source)), list(source), fontsize=7, family="monospace")
    ax.set_yticks(range(len(output) + 1), list(output) + ["EOS"], fontsize=7, family="monospace")
    ax.set_xlabel("First Folio source (encoder positions)")
    ax.set_ylabel("modern output (decoder positions)")
    ax.set_title("cross-attention, last decoder layer, mean over heads")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the table and the examples here")
    parser.add_argument("--png", default=str(Path(__file__).with_name("cross_attention.png")))
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 4], help="1: greedy")
    args = parser.parse_args()
    with threadpool_limits(args.threads):
        report = evaluate_split(args.split, args.checkpoint, args.beams, 0.6, args.limit)
        print(f"{report['split']}: {report['pairs']} pairs")
        for name, row in report["results"].items():
            print(f"| {name} | {row['bleu']:.2f} | {row['chrf']:.2f} | {row['cer']:.2f}% | "
                  f"{row['wall_s']:.1f} s |")
        outputs = report["outputs"]
        picks = random.Random(args.seed).sample(range(report["pairs"]), 5)
        examples = [{name: outputs[name][i] for name in outputs} for i in picks]
        for example in examples:
            print()
            for name, text in example.items():
                print(f"  {name:<18} {text}")
        if any(name.startswith("table + word model") for name in report["results"]):
            write_json(args, report, examples)  # a word model: no sentence to draw
            return
        sentence = "Heere Master: What cheere?"
        output = cross_attention_png(args.checkpoint, sentence, Path(args.png))
        print(f"\ncross-attention of {sentence!r} -> {output!r}: {args.png}")
    write_json(args, report, examples)


def write_json(args, report: dict, examples: list) -> None:
    """Write the table and the examples to --json, if given."""
    if args.json:
        Path(args.json).write_text(json.dumps({"split": report["split"], "pairs": report["pairs"],
                                               "results": report["results"],
                                               "examples": examples}, indent=1))


if __name__ == "__main__":
    main()

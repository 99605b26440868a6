"""Post-training quantization of a trained GPT: validation loss, size and speed (chapter 16).

    python benchmarks/compress_quantize.py [--checkpoint RUN] [--eval-iters 200]

For float32 and each scheme (int8 per output channel, int8 per group of g = 32 and 64, int4 per
group of 32 and 64, with the dequantize-then-multiply product; int8 per channel also with the
int8 x int8 -> int32 product): the validation loss (the mean over ``--eval-iters`` random
validation batches, the trainer's seed), the bytes of the arrays a checkpoint stores (and of that
file, written with tinyllm's safetensors writer), and the median milliseconds per generated token
(batch 1, greedy, KV cache). NumPy has no int8 BLAS: the integer product is a correctness path
here, not a fast one.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from compress_common import load_run, ms_per_token, val_loss

from tinyllm.checkpoint import save_safetensors
from tinyllm.compress import quantize_model

SCHEMES = [  # (label, bits, group_size, matmul)
    ("int8 per channel", 8, None, "dequant"),
    ("int8 per channel, int8 x int8 product", 8, None, "int8"),
    ("int8 per group, g = 32", 8, 32, "dequant"),
    ("int8 per group, g = 64", 8, 64, "dequant"),
    ("int4 per group, g = 32", 4, 32, "dequant"),
    ("int4 per group, g = 64", 4, 64, "dequant"),
]


def file_bytes(arrays: dict) -> int:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "q.safetensors"
        save_safetensors(path, arrays)
        return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="a run folder of `tinyllm train`")
    parser.add_argument("--eval-iters", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=200, help="tokens generated for the timing")
    parser.add_argument("--int8-eval-iters", type=int, default=20,
                        help="batches for the int8 x int8 product (NumPy's integer matmul has no "
                             "BLAS: ~50x slower than float32)")
    parser.add_argument("--json", help="also write the table here (compress_plots.py reads it)")
    args = parser.parse_args()
    model, task, _, config, folder = load_run(args.checkpoint)
    seed = config.seed + 1  # the trainer's validation batches
    print(f"run {folder}; validation loss over {args.eval_iters} batches")
    print("| scheme | val loss | bytes (arrays) | file bytes | ms/token |")
    print("|---|---|---|---|---|")
    arrays = model.state_dict()
    rows = [{"scheme": "float32", "bits": 32, "group_size": None, "matmul": "float32",
             "val_loss": val_loss(model, task, args.eval_iters, seed),
             "bytes": sum(int(a.nbytes) for a in arrays.values()),
             "file_bytes": file_bytes(arrays), "ms_per_token": ms_per_token(model, args.tokens)}]
    print_row(rows[-1])
    for label, bits, group_size, matmul in SCHEMES:
        quantized = quantize_model(model, bits=bits, group_size=group_size, matmul=matmul)
        arrays = quantized.quantized_state_dict()
        iters = args.int8_eval_iters if matmul == "int8" else args.eval_iters
        rows.append({"scheme": label, "bits": bits, "group_size": group_size, "matmul": matmul,
                     "val_loss": val_loss(quantized, task, iters, seed), "eval_iters": iters,
                     "bytes": quantized.nbytes(), "file_bytes": file_bytes(arrays),
                     "ms_per_token": ms_per_token(quantized, args.tokens if matmul != "int8"
                                                  else 20, repeats=3)})
        print_row(rows[-1])
    if args.json:
        Path(args.json).write_text(json.dumps({"run": str(folder), "rows": rows}, indent=1))


def print_row(row: dict) -> None:
    print(f"| {row['scheme']} | {row['val_loss']:.4f} | {row['bytes']:,} | "
          f"{row['file_bytes']:,} | {row['ms_per_token']:.2f} |", flush=True)


if __name__ == "__main__":
    main()

"""How fast does tinyllm train and generate? The measuring tools behind ``tinyllm bench``
(chapter 11, "Making it fast"). They stand beside the library, not in it: nothing in tinyllm
imports them except the ``bench`` command.

Read in this order:

- ``training.py``: the model shapes timed, the FLOP count of a step, the machine's matmul peak, and
  a training step timed exactly as ``tinyllm train`` runs it (``tinyllm.train.train_step``);
- ``generation.py``: text generation with and without the KV cache (chapter 07);
- ``torch_twin.py``: the same GPT and recipe in PyTorch, timed in the same run when PyTorch is
  installed;
- ``profiling.py``: where a step spends its time (phases, op classes, cProfile), for ``--profile``;
- ``memory.py``: peak memory of a piece of work (RSS high-water growth, tracemalloc; chapter 17);
- ``run.py``: :func:`run_benchmarks`, which runs them all and prints the tables and one JSON line.

What the figures mean, how the FLOPs are counted and what we measured: ``benchmarks/README.md``.
"""

from tinyllm.bench.run import run_benchmarks

__all__ = ["run_benchmarks"]

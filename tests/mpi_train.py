"""``tinyllm train`` with two extra, tiny GPT shapes, for the MPI tests of test_17_distributed.py.

    mpiexec -n 2 python tests/mpi_train.py train --preset tiny --data text.txt ...

An MPI rank is a fresh process, so the shapes cannot be monkeypatched in from the test: this
script adds them to ``GPT_PRESETS`` in its own process (the library is unchanged) and runs the
command: "tiny" (no dropout: 2 ranks must equal 1 process with grad_accum 2 up to rounding) and
"tiny-dropout" (dropout 0.1: each rank's dropout generators must survive a resume).
"""

import sys

from tinyllm import cli
from tinyllm.models import GPT_PRESETS, GPTConfig

GPT_PRESETS["tiny"] = GPTConfig(context_length=16, num_layers=2, num_heads=2, d_model=32)
GPT_PRESETS["tiny-dropout"] = GPTConfig(context_length=16, num_layers=2, num_heads=2, d_model=32,
                                        dropout=0.1)

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:]))

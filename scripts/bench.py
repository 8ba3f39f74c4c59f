"""Run one of minigpt's benchmarks: `python scripts/bench.py NAME [options]`.

NAME is one of: engine (autograd overhead and matmul stack), model (training step vs PyTorch
eager), tokenizer (GPT-2 encode/decode throughput, BPE training), optim (AdamW step).
Each is `minigpt/benchmarks/NAME.py`; `python scripts/bench.py NAME --help` lists its options.
Measure with the machine's OpenBLAS variables unset:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench.py engine
"""

import sys

from minigpt.benchmarks import run

if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))

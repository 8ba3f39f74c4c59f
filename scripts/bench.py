"""Run one of minigpt's benchmarks: `python scripts/bench.py NAME [options]`, from the repository root.

NAME is one of benchmarks.NAMES: engine (autograd overhead and matmul stack), model (training step
vs PyTorch eager), tokenizer (GPT-2 encode/decode throughput, BPE training), optim (AdamW step),
load, library_loop, finetune, generate, checkpoint, lora, instruct, distributed, network.
Each is `scripts/benchmarks/NAME.py`; `python scripts/bench.py --help` lists every benchmark with
its options and `python scripts/bench.py NAME --help` shows one. The benchmarks live outside the
installed package: they need minigpt importable (`pip install -e .` in a clone) and this folder,
which Python puts on `sys.path` when it runs this file. Measure with the machine's OpenBLAS
variables unset:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench.py engine
"""

import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # scripts/, whatever the caller's path
    from benchmarks import main

    sys.exit(main(sys.argv[1:]))

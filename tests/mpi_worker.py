"""Run `minigpt train` under mpirun with a fault injected on rank 1 (for tests/test_distributed.py).

    mpirun -n 2 python tests/mpi_worker.py FAULT -- TRAIN ARGUMENTS...

FAULT is one of:
    raise   rank 1 raises RuntimeError at the start of step 3 (steps 1-2 are done and saved)
    kill    rank 1 kills itself with SIGKILL at the start of step 3
    nan     rank 1's first weight becomes NaN at the start of step 3 (its loss is NaN)
    seed    rank 1 starts with --seed 7 instead of the command line's
    data    rank 1 is given a --data file that does not exist (its command fails, the others wait)
    none    no fault
"""

import os
import signal
import sys

from minigpt.cli import main
from minigpt.train import Trainer

FAULT_STEP = 2  # the fault strikes when this many steps are done


def inject(fault: str, rank: int, argv: list) -> list:
    if rank != 1 or fault == "none":
        return argv
    if fault == "seed":
        return argv + ["--seed", "7"]
    if fault == "data":
        return argv + ["--data", "no-such-file.txt"]
    original_train_step = Trainer.train_step

    def train_step(self):
        if self.step == FAULT_STEP:
            if fault == "raise":
                raise RuntimeError("injected failure on rank 1")
            if fault == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if fault == "nan":
                next(iter(self.model.parameters())).data[...] = float("nan")
        return original_train_step(self)

    Trainer.train_step = train_step
    return argv


if __name__ == "__main__":
    fault, separator, *train_argv = sys.argv[1:]
    assert separator == "--", "usage: mpi_worker.py FAULT -- TRAIN ARGUMENTS"
    rank = int(os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
    sys.exit(main(["train", *inject(fault, rank, train_argv)]))

"""Run `minigpt train` under mpirun with a fault injected on rank 1 (for tests/test_distributed.py).

    mpirun -n 2 python tests/support/mpi_worker.py FAULT -- TRAIN ARGUMENTS...

FAULT is one of:
    raise   rank 1 raises RuntimeError at the start of step 3 (steps 1-2 are done and saved)
    kill    rank 1 kills itself with SIGKILL at the start of step 3
    nan     rank 1's first weight becomes NaN at the start of step 3 (its loss is NaN)
    seed    rank 1 starts with --seed 7 instead of the command line's
    data    rank 1 is given a --data file that does not exist (its command fails, the others wait)
    stall   at the start of step 3 (steps 1-2 are done and saved), rank 0 goes on to the step's
            Allreduce whatever signal comes (its safe points are switched off for that step), while
            rank 1 waits for a stop signal and then stops before the Allreduce: rank 0 is left
            waiting in it, as when Ctrl-C reaches it there. Each rank creates the file
            `stalled-rank-R` in $MPI_WORKER_MARKERS when it is in place, so that the test
            signals only then.
    none    no fault
"""

import os
import signal
import sys
import time

from minigpt.cli import main
from minigpt.trainer import Trainer

FAULT_STEP = 2  # the fault strikes when this many steps are done


def stall(rank: int) -> None:
    """The `stall` fault (see the module docstring)."""
    original_train_step = Trainer.train_step

    def train_step(self):
        if self.step == FAULT_STEP:
            if rank == 0:
                self._check_stop = lambda: None  # no safe point in this step: on into the Allreduce
            deadline = time.monotonic() + 60  # a test that never signals fails instead of hanging
            with open(os.path.join(os.environ["MPI_WORKER_MARKERS"], f"stalled-rank-{rank}"), "w"):
                pass
            while rank == 1 and not self._stops.requested and time.monotonic() < deadline:
                time.sleep(0.05)
        return original_train_step(self)

    Trainer.train_step = train_step


def inject(fault: str, rank: int, argv: list) -> list:
    if fault == "stall":
        stall(rank)
        return argv
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

"""Data-parallel training over MPI: one process per rank, gradients averaged with one Allreduce.

Beyond the book (which trains on one device): the same NumPy engine trains on N processes, on one
machine or many, as llm.c does over MPI. Every rank builds the same model from the same seed and
draws the same global batch (its data loader has the same seed and state as every other rank's);
rank r runs forward and backward on its own disjoint shard of the micro-batches, each loss divided
by the number of target tokens of the whole global batch; one `Allreduce` (sum) over a flat
buffer of all gradients then gives every rank the gradient of the global mean loss, and every rank
takes the same AdamW step. This is PyTorch's DistributedDataParallel (Li et al. 2020, "PyTorch
Distributed: Experiences on Accelerating Data Parallel Training") without the bucketing.

Nothing here imports mpi4py unless the process was started by `mpirun`/`mpiexec` (MPICH's hydra
sets PMI_RANK and PMI_SIZE, Open MPI sets OMPI_COMM_WORLD_RANK and OMPI_COMM_WORLD_SIZE) or
`init(force=True)` asks for it; a single process gets `SINGLE_PROCESS`, a World of size 1 whose
collectives do nothing, and behaves exactly as before.

Faults: `init` installs an excepthook that prints the failing rank's traceback and calls
`MPI_Abort`, which makes mpirun stop every other rank within seconds instead of leaving them
waiting forever in the next collective; a NaN loss is packed into the same Allreduce, so every
rank sees it and stops at the same step. `check_ranks_agree` allgathers hashes at start-up to catch
ranks that disagree on the model, the optimizer, the data or the seed.

References: MPI Forum, "MPI: A Message-Passing Interface Standard" 4.0, section 6.9 (Allreduce);
Patarasuk & Yuan 2009, "Bandwidth optimal all-reduce algorithms for clusters of workstations"
(the ring allreduce's 2 (N - 1) / N x bytes per rank); mpi4py (Dalcin et al.) for the bindings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import time
import traceback

import numpy as np

__all__ = ["World", "SINGLE_PROCESS", "launched_by_mpi", "init", "check_ranks_agree", "fingerprint"]

_SECONDS_BEFORE_ABORT = 1.0  # see World.abort

# The environment variables an MPI launcher sets in every process it starts: (rank, size).
_LAUNCHER_VARIABLES = (("PMI_RANK", "PMI_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"))


def launched_by_mpi(environ=None) -> bool:
    """True when this process was started by mpirun/mpiexec (MPICH/hydra or Open MPI), from its environment."""
    environ = os.environ if environ is None else environ
    return any(rank in environ and size in environ for rank, size in _LAUNCHER_VARIABLES)


@dataclasses.dataclass
class World:
    """The processes of a data-parallel run: this process's `rank` among `size`, and the communicator.

    `comm` is an `mpi4py.MPI.Comm` (None for a single process, whose collectives are identities).
    `local_size` counts the ranks on this machine (they share its CPUs).
    """

    rank: int = 0
    size: int = 1
    local_size: int = 1
    comm: object = None

    @property
    def is_main(self) -> bool:
        """True on rank 0, the one that prints, draws the progress bar and writes files."""
        return self.rank == 0

    def allreduce_gradients(self, parameters, loss: float) -> float:
        """Sum every parameter's gradient and the scalar `loss` over all ranks, in place; return the summed loss.

        One Allreduce over one flat float32 buffer (all gradients, then the loss), so that the
        call costs one network latency per step and a NaN anywhere reaches every rank.

        Args:
            parameters: the model's Parameters (same order on every rank); `.grad` float32 arrays.
            loss: this rank's share of the step's loss (a float).

        Returns:
            The sum of `loss` over the ranks (float).
        """
        if self.size == 1:
            return loss
        # NOTE: a parameter without a gradient has none on every rank (same model, same code), so
        # it stays out of the buffer and keeps grad None, which the optimizer skips as before.
        parameters = [parameter for parameter in parameters if parameter.grad is not None]
        sizes = [parameter.data.size for parameter in parameters]
        buffer = np.empty(sum(sizes) + 1, dtype=np.float32)  # (P + 1,)
        offset = 0
        for parameter, size in zip(parameters, sizes):
            buffer[offset:offset + size] = parameter.grad.reshape(-1)
            offset += size
        buffer[-1] = loss
        self.comm.Allreduce(_in_place(), buffer)  # default operation: MPI.SUM
        offset = 0
        for parameter, size in zip(parameters, sizes):
            parameter.grad = buffer[offset:offset + size].reshape(parameter.data.shape)  # a view: no copy
            offset += size
        return float(buffer[-1])

    def allreduce_sum(self, value: float) -> float:
        """The sum of a float over all ranks (float64 on the wire)."""
        if self.size == 1:
            return value
        buffer = np.array([value], dtype=np.float64)
        self.comm.Allreduce(_in_place(), buffer)
        return float(buffer[0])

    def allgather(self, value) -> list:
        """Every rank's `value` (a picklable object), in rank order."""
        return [value] if self.size == 1 else self.comm.allgather(value)

    def abort(self, status: int = 1) -> None:
        """Stop every rank of the run now (MPI_Abort); on a single process, exit with `status`."""
        sys.stderr.flush()
        sys.stdout.flush()
        if self.comm is None:
            raise SystemExit(status)
        # NOTE: mpirun forwards each rank's output through a pipe and stops forwarding once the
        # abort kills the ranks: a moment first lets the error message (just written) reach it.
        time.sleep(_SECONDS_BEFORE_ABORT)
        self.comm.Abort(status)
        os._exit(status)  # MPI_Abort does not return; if it ever does, this process stops anyway


SINGLE_PROCESS = World()


def _in_place():
    from mpi4py import MPI

    return MPI.IN_PLACE


def init(force: bool = False) -> World:
    """The World of this process: MPI's COMM_WORLD when launched by mpirun (or `force`), else SINGLE_PROCESS.

    Under MPI this also installs `sys.excepthook` so that an uncaught exception on any rank prints
    its traceback with the rank and aborts the whole run (see the module docstring).

    Raises:
        ImportError: MPI was asked for but mpi4py is not installed (`pip install -e ".[mpi]"`).
    """
    if not (force or launched_by_mpi()):
        return SINGLE_PROCESS
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(
            "this process was started by mpirun/mpiexec, but mpi4py is not installed: "
            'pip install -e ".[mpi]" (mpi4py and the mpich wheel)'
        ) from error
    comm = MPI.COMM_WORLD
    local_size = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size()
    world = World(rank=comm.Get_rank(), size=comm.Get_size(), local_size=local_size, comm=comm)
    if world.size > 1:
        _abort_on_uncaught_exception(world)
    return world


def _abort_on_uncaught_exception(world: World) -> None:
    """Make an uncaught exception on this rank stop all ranks (else they wait in a collective forever)."""

    def excepthook(kind, value, trace):
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, trace)
        else:
            message = "".join(traceback.format_exception(kind, value, trace))
            sys.stderr.write(f"[rank {world.rank} of {world.size}] {message}")
            sys.stderr.write(f"[rank {world.rank} of {world.size}] failed: aborting every rank of the run (MPI_Abort)\n")
        world.abort(1)

    sys.excepthook = excepthook


def fingerprint(*values) -> str:
    """A SHA-256 hex digest of NumPy arrays (their dtype, shape and bytes) and JSON-like values (their repr)."""
    digest = hashlib.sha256()
    for value in values:
        if isinstance(value, np.ndarray):
            digest.update(f"{value.dtype}{value.shape}".encode())
            digest.update(np.ascontiguousarray(value).data)
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()


def check_ranks_agree(world: World, **named_values) -> None:
    """Check that every rank holds the same values (hashed with `fingerprint`, then allgathered).

    Args:
        world: the World.
        named_values: name -> value (arrays, dicts, ...): e.g. weights=..., training_config=....

    Raises:
        RuntimeError: on every rank, naming the values and the ranks that differ from rank 0.
    """
    if world.size == 1:
        return
    mine = {name: fingerprint(*value) if isinstance(value, (list, tuple)) else fingerprint(value)
            for name, value in named_values.items()}
    everyone = world.allgather(mine)
    differences = [f"{name} (ranks {', '.join(str(rank) for rank, theirs in enumerate(everyone) if theirs[name] != everyone[0][name])} differ from rank 0)"
                   for name in mine if any(theirs[name] != everyone[0][name] for theirs in everyone)]
    if differences:
        raise RuntimeError(
            "the ranks of this run disagree on " + "; ".join(differences) + ": every rank must start from the "
            "same command line, seed, data and checkpoint"
        )

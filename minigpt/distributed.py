"""Data-parallel training over MPI: one process per rank, gradients averaged with one Allreduce.

Beyond the book (which trains on one device): the same NumPy engine trains on N processes, on one
machine or many, as llm.c does over MPI. Every rank builds the same model from the same seed and
draws the same global batch (its data loader has the same seed and state as every other rank's);
rank r runs forward and backward on its own disjoint shard of the micro-batches, each loss divided
by the number of target tokens of the whole global batch; one `Allreduce` (sum) over a flat
buffer of all gradients then gives every rank the gradient of the global mean loss, and every rank
takes the same AdamW step. This is PyTorch's DistributedDataParallel (Li et al. 2020, "PyTorch
Distributed: Experiences on Accelerating Data Parallel Training"). `World.allreduce_gradients`
runs one Allreduce after backward; `GradientBuckets` (`minigpt train --bucket-cap-mb MB`, the
default across machines) instead sends the gradients in buckets of about MB megabytes, each
launched (`Iallreduce`) as soon as backward has finished its gradients, so that communication
overlaps the backward of the layers below, as DistributedDataParallel's buckets do.

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

__all__ = ["World", "SINGLE_PROCESS", "GradientBuckets", "launched_by_mpi", "init", "check_ranks_agree", "fingerprint"]

_SECONDS_BEFORE_ABORT = 1.0  # see World.abort

# The environment variables an MPI launcher sets in every process it starts: (rank, size).
_LAUNCHER_VARIABLES = (("PMI_RANK", "PMI_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"))


def launched_by_mpi(environ=None) -> bool:
    """True when this process was started by mpirun/mpiexec (MPICH/hydra or Open MPI), from its environment."""
    environ = os.environ if environ is None else environ
    return any(rank in environ and size in environ for rank, size in _LAUNCHER_VARIABLES)


def launched_ranks(environ=None) -> int:
    """The number of ranks mpirun/mpiexec started (from the launcher's environment, without
    importing mpi4py); 1 for a process not started by it."""
    environ = os.environ if environ is None else environ
    for rank, size in _LAUNCHER_VARIABLES:
        if rank in environ and size in environ:
            try:
                return int(environ[size])
            except ValueError:
                return 1
    return 1


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


class GradientBuckets:
    """Allreduce the gradients in buckets launched during backward, overlapping communication.

    The parameters are grouped, in reverse order (backward finishes the last layers' gradients
    first), into buckets of at most `bucket_cap_mb` megabytes of float32 gradients (a parameter
    larger than that gets a bucket of its own). `arm(loss)` before the last backward of a step
    registers a post-accumulate-grad hook on every parameter; when backward has completed every
    gradient of bucket k and of all buckets before it, the hook copies them into bucket k's flat
    buffer and starts a nonblocking `Iallreduce` (sum) on it. After the first step the buckets are
    regrouped in the order backward actually completed the gradients. Buckets start in the same order on
    every rank (MPI requires collectives in the same order on all ranks): the backward walk is
    the same everywhere. `finish()` starts what is left, waits for every bucket and makes each
    `.grad` a view of its bucket, as `World.allreduce_gradients` does for its one buffer. With 2
    ranks the sums are bit for bit those of one flat Allreduce (a + b == b + a in floating point,
    whatever algorithm MPI picks for a message size); with more, MPI may add the ranks' values in
    another order for another message size, so results agree to float32 rounding.

    MPICH moves a nonblocking collective forward only inside MPI calls: each hook therefore also
    calls `Testall` on the buckets in flight. Measured (docs/mpi.md; book-124M, 2 ranks):
    on one machine, one rank per core, the copies and reductions compete with backward for the
    core and a step takes 1.04x as long as with one Allreduce after backward; over a 1 Gbit/s link
    the kernel sends while backward computes and a step is 1.19x faster. `minigpt train` therefore
    uses buckets by default only when the ranks span several machines.

    Args:
        world: the World (size > 1).
        parameters: the parameters that receive gradients, in the model's order (the same on every rank).
        bucket_cap_mb: the largest bucket, in megabytes (10^6 bytes) of float32 gradients (> 0, finite).
            PyTorch's DistributedDataParallel uses 25.

    Raises:
        ValueError: `bucket_cap_mb` is not a positive, finite number.

    References: Li et al. 2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel
    Training", section 3.2.3 (gradient bucketing) and 3.2.4 (overlap); MPI 4.0 section 6.12
    (nonblocking collectives); torch.nn.parallel.DistributedDataParallel(bucket_cap_mb=25).
    """

    def __init__(self, world: World, parameters, bucket_cap_mb: float = 25.0):
        if isinstance(bucket_cap_mb, bool) or not isinstance(bucket_cap_mb, (int, float)) or not 0 < bucket_cap_mb < float("inf"):
            raise ValueError(f"bucket_cap_mb must be a positive, finite number of megabytes, got {bucket_cap_mb!r}")
        self.world = world
        self.capacity = int(bucket_cap_mb * 1e6) // 4  # float32 elements
        self._fill(list(reversed([parameter for parameter in parameters if parameter.requires_grad])))
        self._completion_order: list | None = []  # recorded during the first armed backward, then None
        self._handles: list = []
        self._requests: list = []
        self._loss = 0.0

    def _fill(self, parameters: list) -> None:
        """Group `parameters`, in this order, into consecutive buckets of at most `capacity` elements."""
        self.buckets: list[list] = []  # lists of parameters, in launch order
        filled = self.capacity  # start a new bucket at the first parameter
        for parameter in parameters:
            if filled + parameter.data.size > self.capacity and filled > 0:
                self.buckets.append([])
                filled = 0
            self.buckets[-1].append(parameter)
            filled += parameter.data.size
        self._bucket_of = {id(parameter): number for number, bucket in enumerate(self.buckets) for parameter in bucket}
        self._ready = [0] * len(self.buckets)  # parameters of each bucket whose gradient is complete
        self._buffers: list = [None] * len(self.buckets)

    def arm(self, loss: float) -> None:
        """Before the step's last backward: launch each bucket as soon as its gradients are complete.

        Args:
            loss: this rank's share of the step's loss (a float); it travels in the first bucket,
                so that the summed loss (and a NaN on any rank) reaches every rank.
        """
        self._loss = loss
        self._ready = [0] * len(self.buckets)
        self._requests = []
        self._handles = [parameter.register_post_accumulate_grad_hook(self._gradient_complete)
                         for bucket in self.buckets for parameter in bucket]

    def _gradient_complete(self, parameter) -> None:
        """Post-accumulate-grad hook: count the parameter; start every bucket now complete, in order."""
        if self._completion_order is not None:
            self._completion_order.append(parameter)
        self._ready[self._bucket_of[id(parameter)]] += 1
        while len(self._requests) < len(self.buckets):
            number = len(self._requests)
            if self._ready[number] < len(self.buckets[number]):
                break
            self._launch(number)
        if self._requests:
            from mpi4py import MPI

            MPI.Request.Testall(self._requests)  # let MPI move the transfers in flight forward

    def _launch(self, number: int) -> None:
        """Copy bucket `number`'s gradients into its flat buffer and start its Iallreduce."""
        bucket = self.buckets[number]
        extra = 1 if number == 0 else 0  # the loss rides at the end of the first bucket
        buffer = self._buffers[number]
        if buffer is None or buffer.size != sum(parameter.data.size for parameter in bucket) + extra:
            buffer = self._buffers[number] = np.empty(sum(parameter.data.size for parameter in bucket) + extra, dtype=np.float32)
        offset = 0
        for parameter in bucket:
            size = parameter.data.size
            if parameter.grad is None:  # no gradient on any rank (the same graph everywhere): send zeros
                buffer[offset:offset + size] = 0
            elif not np.shares_memory(parameter.grad, buffer[offset:offset + size]):
                buffer[offset:offset + size] = parameter.grad.reshape(-1)
            offset += size
        if extra:
            buffer[-1] = self._loss
        self._requests.append(self.world.comm.Iallreduce(_in_place(), buffer))

    def finish(self) -> float:
        """After backward: start the buckets not started yet, wait for all, point each `.grad` into its bucket.

        Returns:
            The sum over the ranks of the loss given to `arm` (float).
        """
        from mpi4py import MPI

        for handle in self._handles:
            handle.remove()
        self._handles = []
        while len(self._requests) < len(self.buckets):
            self._launch(len(self._requests))
        MPI.Request.Waitall(self._requests)
        self._requests = []
        for bucket, buffer in zip(self.buckets, self._buffers):
            offset = 0
            for parameter in bucket:
                size = parameter.data.size
                if parameter.grad is not None:
                    parameter.grad = buffer[offset:offset + size].reshape(parameter.data.shape)  # a view: no copy
                offset += size
        loss = float(self._buffers[0][-1])
        if self._completion_order is not None:
            # After the first step, regroup the buckets in the order backward completed the
            # gradients (the model's parameter order is not the order of use: a block's first
            # layer norm is listed after its feed-forward), as DDP rebuilds its buckets after its
            # first iteration. The walk is the same on every rank, so is the new grouping.
            completed = {id(parameter) for parameter in self._completion_order}
            never = [parameter for bucket in self.buckets for parameter in bucket if id(parameter) not in completed]
            self._fill(self._completion_order + never)
            self._completion_order = None
        return loss


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


class RanksDisagreeError(RuntimeError):
    """The ranks of a run started from different weights, settings, data or data positions
    (raised on every rank by `check_ranks_agree`; `minigpt train` reports it as a command error)."""


def check_ranks_agree(world: World, **named_values) -> None:
    """Check that every rank holds the same values (hashed with `fingerprint`, then allgathered).

    Args:
        world: the World.
        named_values: name -> value (arrays, dicts, ...): e.g. weights=..., training_config=....

    Raises:
        RanksDisagreeError (a RuntimeError): on every rank, naming the values and the ranks that
            differ from rank 0.
    """
    if world.size == 1:
        return
    mine = {name: fingerprint(*value) if isinstance(value, (list, tuple)) else fingerprint(value)
            for name, value in named_values.items()}
    everyone = world.allgather(mine)
    differences = [f"{name} (ranks {', '.join(str(rank) for rank, theirs in enumerate(everyone) if theirs[name] != everyone[0][name])} differ from rank 0)"
                   for name in mine if any(theirs[name] != everyone[0][name] for theirs in everyone)]
    if differences:
        raise RanksDisagreeError(
            "the ranks of this run disagree on " + "; ".join(differences) + ": every rank must start from the "
            "same command line, seed, data and checkpoint"
        )

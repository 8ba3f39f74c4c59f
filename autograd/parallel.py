"""Spread row-independent NumPy work over the CPU's cores, as ATen's `at::parallel_for` does.

What this file adds: BLAS already multiplies matrices on every core, but NumPy's element-wise
ufuncs (exp, tanh, add, ...) run on one. Those ufuncs release the GIL while they loop over an
array, so two Python threads, each running the same ufuncs on its own half of the rows, use two
cores. `parallel_for(begin, end, grain_size, function)` cuts [begin, end) into a few contiguous
ranges and calls `function(start, stop)` on each, from the calling thread and a pool of workers.
The fast kernels of `autograd/fast/` (softmax inside attention, GELU, layer norm,
cross-entropy) use it for their element-wise passes; attention (its heads, products included) and
few-row linear products use `parallel_for_one_blas_thread`, which also keeps OpenBLAS in one
thread while the pieces run; the reference kernels never do. Measured per op on the book's 124M model
(batch 2 x 256, 2 cores, one forward + backward): GELU 54 -> 34 ms, cross-entropy 27 -> 17 ms,
attention 189 -> 166 ms, provided OpenBLAS's idle threads do not hold the second core (see
`set_openblas_thread_timeout` below); the matrix products, 87 % of the step, are BLAS's.

NOTE: only work whose rows are independent is split (each output row depends on its own input
row only), so the result is bit-identical for any number of threads. A reduction across rows
(a bias gradient, say) is never split here: splitting would change the order of its sums.

    >>> import numpy as np
    >>> x = np.arange(6.0).reshape(3, 2)
    >>> def double(start, stop):
    ...     x[start:stop] *= 2
    >>> parallel_for(0, 3, 1, double)
    >>> x
    array([[ 0.,  2.],
           [ 4.,  6.],
           [ 8., 10.]])

References: PyTorch's at::parallel_for and its GRAIN_SIZE (aten/src/ATen/Parallel.h);
torch.set_num_threads / torch.get_num_threads.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import math
import operator
import os
import queue
import threading

# Minimum elements per piece of work. ATen uses 32768 (at::internal::GRAIN_SIZE); here a piece
# also pays for Python: handing it to a thread and waiting costs tens of microseconds, and every
# ufunc call in it takes the GIL to start. Measured on training steps (forward + backward): with
# 32768 the character-level preset (arrays of 50,000 to 400,000 elements) ran 9 % slower in two
# threads than in one; with 131072 only its GELU arrays are split and it is within 3 % of one
# thread, and the 124M model (arrays of 400,000 to 25 million elements) is as fast as with 32768.
GRAIN_SIZE = 131072

# The most threads set_num_threads accepts: far beyond any CPU this runs on, well below the point
# where starting Python threads fails.
MAX_THREADS = 1024

_num_threads: int | None = None  # None: decided on first use (the CPUs this process may run on)
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_state = threading.local()  # .inside: this thread is running a task of parallel_for


def available_cpus() -> int:
    """The number of CPUs this process may run on: its affinity mask where the OS has one, else
    os.cpu_count(). The default of get_num_threads, and the most `minigpt --threads` accepts."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _count(value, name: str, function: str, low: int | None = None, high: int | None = None) -> int:
    """`value` as an int in [low, high] (anything with __index__ but bool; None: no bound).

    Raises TypeError for a value that is not an integer, ValueError for one out of range; both
    name `name`.
    """
    if low is None:
        expected = "an int"
    else:
        expected = f"an int >= {low}" if high is None else f"an int in [{low}, {high}]"
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None:
        raise TypeError(f"{function}: {name} must be {expected}, got {value!r}")
    if (low is not None and number < low) or (high is not None and number > high):
        raise ValueError(f"{function}: {name} must be {expected}, got {value!r}")
    return number


def get_num_threads() -> int:
    """The number of threads `parallel_for` uses (torch.get_num_threads).

    Returns:
        An int >= 1: the value given to `set_num_threads`, else the number of CPUs available to
        this process.
    """
    global _num_threads
    if _num_threads is None:
        _num_threads = available_cpus()
    return _num_threads


def set_num_threads(num_threads: int) -> None:
    """Set how many threads `parallel_for` uses (torch.set_num_threads); 1 runs everything inline.

    This sets the engine's own threads only: the number of BLAS threads (matrix products) is set
    by OPENBLAS_NUM_THREADS or OMP_NUM_THREADS before NumPy is imported. Safe to call at any
    time, from any thread: calls of parallel_for already running finish with the old threads.

    Args:
        num_threads: an int in [1, MAX_THREADS] (a Python or NumPy integer); more threads than
            CPUs only adds overhead.

    Raises:
        TypeError: num_threads is not an integer. ValueError: it is outside [1, MAX_THREADS].
    """
    global _num_threads, _pool
    num_threads = _count(num_threads, "num_threads", "set_num_threads", 1, MAX_THREADS)
    with _pool_lock:
        retired = _pool if num_threads != _num_threads else None
        if retired is not None:
            _pool = None  # the next parallel_for starts a pool of the new size
        _num_threads = num_threads
    if retired is not None:
        retired.shutdown(wait=False)  # its threads end once the work they hold is done


def _submit(submitted: list, workers: int, jobs: int, function, *args) -> None:
    """Queue `jobs` calls of function(*args) on the shared pool of `workers` threads.

    Each future goes into `submitted` as soon as it exists, so that the caller waits for it even
    when a later submit fails. The pool is looked up and used under one lock, so that
    set_num_threads, which retires a pool under the same lock, never shuts it down in between.
    """
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="autograd")
        for _ in range(jobs):
            submitted.append(_pool.submit(function, *args))


def _forget_pool_in_child() -> None:
    """After fork the child has no worker threads: start a new pool there when one is needed."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def _take_pieces(function, pieces: queue.SimpleQueue) -> None:
    """Run pieces of a parallel_for until none is left, marked so that nested calls run inline."""
    _state.inside = True
    try:
        while True:
            try:
                start, stop = pieces.get_nowait()  # shared with the other threads: each piece runs once
            except queue.Empty:
                return
            function(start, stop)
    finally:
        _state.inside = False


def parallel_for(begin: int, end: int, grain_size: int, function) -> None:
    """Call `function(start, stop)` on contiguous ranges covering [begin, end), in parallel.

    The range is cut into twice as many pieces as there are threads (each at least `grain_size`
    items); the calling thread and the pool's threads take pieces until none is left. So a
    worker that cannot run at once (its core busy elsewhere) costs nothing: the calling thread
    does its pieces too. One piece, run inline, when the range is smaller than two grains, when
    only one thread is set, or when called from inside another parallel_for. `function` must
    write disjoint parts of its outputs for disjoint ranges; it runs under the GIL except inside
    NumPy's loops.

    Args:
        begin, end: the range of row (or element) indices, begin <= end.
        grain_size: the smallest number of indices worth one piece, >= 1.
        function: called as function(start, stop) with begin <= start < stop <= end.

    Raises:
        TypeError: begin, end or grain_size is not an int; function is not callable.
        ValueError: grain_size < 1.
        Whatever `function` raises (after every piece in progress has finished, since they
        write the same outputs).
    """
    begin, end = _count(begin, "begin", "parallel_for"), _count(end, "end", "parallel_for")
    grain_size = _count(grain_size, "grain_size", "parallel_for", 1)
    if not callable(function):
        raise TypeError(f"parallel_for: function must be callable as function(start, stop), got {function!r}")
    size = end - begin
    if size <= 0:
        return
    threads = get_num_threads()
    pieces = min(2 * threads, size // grain_size)
    if threads <= 1 or pieces <= 1 or getattr(_state, "inside", False):
        function(begin, end)
        return
    step = math.ceil(size / pieces)
    queued = queue.SimpleQueue()
    for start in range(begin, end, step):
        queued.put((start, min(start + step, end)))
    jobs = []
    try:
        _submit(jobs, threads - 1, min(threads, pieces) - 1, _take_pieces, function, queued)
    except RuntimeError:
        pass  # no new thread (at interpreter exit, or the system's limit): the caller does the pieces
    errors = []
    try:
        _take_pieces(function, queued)
    except BaseException as raised:  # let the other pieces finish first: they write our outputs
        errors.append(raised)
    errors += _finish(jobs)
    if errors:
        raise errors[0]


def _finish(jobs: list) -> list[BaseException]:
    """Wait for the jobs that a worker has started, drop the others; return their exceptions.

    A job no worker has started yet finds nothing left to do: it is cancelled rather than waited
    for (all the workers may be busy, even waiting on this very call). A KeyboardInterrupt that
    arrives while waiting is kept and raised after the pieces have finished, so that no piece
    still writes the outputs once parallel_for has left.
    """
    errors = []
    for job in jobs:
        if job.cancel():
            continue
        while True:
            try:
                raised = job.exception()  # waits for the job; its exception, or None
            except KeyboardInterrupt as interrupt:  # Ctrl-C while this thread waits: raise it later
                errors.append(interrupt)
                continue
            if raised is not None:
                errors.append(raised)
            break
    return errors


def set_openblas_thread_timeout(exponent: int = 16) -> bool:
    """Make OpenBLAS's idle threads sleep after about 2**exponent CPU cycles instead of 2**28.

    After each matrix product, OpenBLAS's worker threads busy-wait for the next one, by default
    for 2**28 cycles (about 0.1 s): a whole core stays busy doing nothing, and the engine's own
    threads (`parallel_for`) cannot run on it. Measured here with the book's 124M model, GELU in
    two threads right after a product took 2.5 ms with the default (no faster than one thread)
    and 1.2 ms after this call; products themselves ran at the same speed. This is the
    OPENBLAS_THREAD_TIMEOUT setting, applied to the already-loaded library: the environment
    variable is set, OpenBLAS re-reads its environment and restarts its threads, and the
    variable is restored. It changes the whole process, so the library never calls it on
    import: `autograd.memory.apply_process_settings` calls it when an optimizer is built (unless
    MINIGPT_PROCESS_SETTINGS=0), and the `minigpt` command and the benchmarks call it directly.

    NOTE: call it before other threads use NumPy: OpenBLAS's threads are stopped and restarted.

    Args:
        exponent: 4 to 30, OPENBLAS_THREAD_TIMEOUT's range.

    Returns:
        True when an OpenBLAS with its own thread pool was found and updated; False otherwise
        (NumPy on another BLAS, or threadpoolctl not installed): nothing changed.

    Raises:
        TypeError: exponent is not an integer. ValueError: it is outside [4, 30].

    References: OpenBLAS's README (OPENBLAS_THREAD_TIMEOUT); threadpoolctl, which finds the BLAS
    library NumPy loaded.
    """
    exponent = _count(exponent, "exponent", "set_openblas_thread_timeout", 4, 30)
    try:
        import numpy  # noqa: F401  (loads OpenBLAS, so that threadpoolctl can see it)
        from threadpoolctl import threadpool_info
    except ImportError:
        return False
    applied = False
    for library in threadpool_info():
        if library.get("internal_api") != "openblas" or library.get("threading_layer") != "pthreads":
            continue
        try:
            openblas = ctypes.CDLL(library["filepath"])
            read_environment, stop_threads = openblas.openblas_read_env, openblas.blas_thread_shutdown_
        except (OSError, AttributeError):
            continue
        previous = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(exponent)
        try:
            read_environment()
            stop_threads()  # the next product starts them again, with the new timeout
        finally:
            if previous is None:
                del os.environ["OPENBLAS_THREAD_TIMEOUT"]
            else:
                os.environ["OPENBLAS_THREAD_TIMEOUT"] = previous
        applied = True
    return applied


_openblas_handles: list | None = None  # [(get, set)] per OpenBLAS with a thread pool; None: not looked up yet


def _openblas_thread_functions() -> list:
    """(get_num_threads, set_num_threads) of every pthreads OpenBLAS that NumPy loaded.

    Looked up once through threadpoolctl (which takes milliseconds and knows the libraries'
    symbol prefixes, e.g. NumPy's scipy_openblas64_), then cached: the calls themselves take
    about a microsecond. Empty without threadpoolctl or without OpenBLAS.
    """
    global _openblas_handles
    if _openblas_handles is None:
        try:
            import numpy  # noqa: F401  (loads OpenBLAS, so that threadpoolctl can see it)
            from threadpoolctl import ThreadpoolController
            libraries = ThreadpoolController().select(internal_api="openblas").lib_controllers
        except ImportError:
            libraries = []
        _openblas_handles = [(library.get_num_threads, library.set_num_threads) for library in libraries
                             if getattr(library, "threading_layer", None) == "pthreads"]
    return _openblas_handles


def parallel_for_one_blas_thread(begin: int, end: int, grain_size: int, function) -> None:
    """`parallel_for`, with OpenBLAS in one thread while the pieces run when they run in threads.

    For pieces that are themselves small matrix products (attention's (T x D) @ (D x T) per
    head): OpenBLAS would otherwise cut each small product over every core and make its threads
    wait for each other once per product, which on a busy machine costs far more than the product
    (measured, Qwen3-100M attention, 2 cores, load 10: 1.5 s per batch of 24 products of
    256 x 64 x 256 against 24-31 ms in one BLAS thread). Here the engine's threads share the
    heads instead and each product runs whole in the thread that calls it. The BLAS thread count
    is process-wide: it is restored when the pieces are done, by the last of the calls running
    at once in different Python threads (products that other Python threads start meanwhile run
    in one thread too). With one engine thread nothing changes: the pieces
    run inline and BLAS keeps its threads.

    Args and Raises: as `parallel_for`.
    """
    inline = get_num_threads() <= 1 or getattr(_state, "inside", False)
    handles = [] if inline else _openblas_thread_functions()
    if not handles:
        parallel_for(begin, end, grain_size, function)
        return
    _one_blas_thread_enter(handles)
    try:
        parallel_for(begin, end, grain_size, function)
    finally:
        _one_blas_thread_leave(handles)


_one_blas_lock = threading.Lock()
_one_blas_users = 0  # calls of parallel_for_one_blas_thread running now, in any Python thread
_one_blas_previous: list = []  # the BLAS thread counts the first of them found


def _one_blas_thread_enter(handles: list) -> None:
    """The first concurrent caller saves OpenBLAS's thread counts and sets 1; the others count."""
    global _one_blas_users, _one_blas_previous
    with _one_blas_lock:
        if _one_blas_users == 0:
            _one_blas_previous = [get() for get, _ in handles]
            for _, set_threads in handles:
                set_threads(1)
        _one_blas_users += 1


def _one_blas_thread_leave(handles: list) -> None:
    """The last concurrent caller to finish gives OpenBLAS its saved thread counts back."""
    global _one_blas_users
    with _one_blas_lock:
        _one_blas_users -= 1
        if _one_blas_users == 0:
            for (_, set_threads), count in zip(handles, _one_blas_previous):
                set_threads(count)

"""autograd.parallel: parallel_for's contract, thread settings, and bit-identical results of the
fused functions in any number of threads (their element-wise passes are split by rows).

The fused functions only split arrays of at least two GRAIN_SIZE pieces; the tests lower
`GRAIN_SIZE` of the fast kernels (autograd/fast/) so that small arrays are split too. The fused
functions run the fast kernels here, whatever MINIGPT_KERNELS says: only they use threads.
"""

import os
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import autograd
from autograd import functional as F
from autograd import Tensor, parallel
from autograd.fast import attention as fast_attention
from autograd.fast import cross_entropy as fast_cross_entropy
from autograd.fast import gelu as fast_gelu
from autograd.fast import layer_norm as fast_layer_norm
from autograd.gradcheck import gradcheck
from support.helpers import leaf


@pytest.fixture
def threads():
    """Set the engine's thread count inside a test; the previous count comes back afterwards."""
    before = parallel.get_num_threads()
    yield parallel.set_num_threads
    parallel.set_num_threads(before)


THREADED_KERNELS = (fast_gelu, fast_layer_norm, fast_cross_entropy, fast_attention)


@pytest.fixture(autouse=True)
def fast_kernels():
    """The fast kernels, the ones that use parallel_for, for every test of this file."""
    with autograd.kernels("fast"):
        yield


@pytest.fixture
def small_grain(monkeypatch):
    """Split arrays of a few hundred elements, so that small test inputs take the threaded path."""
    for module in THREADED_KERNELS:
        monkeypatch.setattr(module, "GRAIN_SIZE", 8)


# ------------------------------------------------------------------------------------------------
# parallel_for
# ------------------------------------------------------------------------------------------------


@given(begin=st.integers(-50, 50), size=st.integers(0, 300), grain_size=st.integers(1, 40), num_threads=st.integers(1, 4))
def test_parallel_for_covers_the_range_once_in_contiguous_pieces(begin, size, grain_size, num_threads):
    before = parallel.get_num_threads()
    parallel.set_num_threads(num_threads)
    try:
        seen, lock = [], threading.Lock()

        def record(start, stop):
            with lock:
                seen.append((start, stop))

        parallel.parallel_for(begin, begin + size, grain_size, record)
    finally:
        parallel.set_num_threads(before)
    covered = sorted(index for start, stop in seen for index in range(start, stop))
    assert covered == list(range(begin, begin + size))
    assert all(start < stop for start, stop in seen)
    assert len(seen) <= max(1, 2 * num_threads)
    if len(seen) > 1:  # pieces are split only when each gets at least one grain
        assert all(stop - start >= min(grain_size, size) or stop == begin + size for start, stop in seen)


def test_parallel_for_uses_other_threads(threads):
    threads(2)
    names, lock, started = set(), threading.Lock(), threading.Barrier(2, timeout=10)

    def record(start, stop):
        with lock:
            names.add(threading.current_thread().name)
        if len(names) < 2:
            try:
                started.wait()  # hold this piece until the other thread has taken one
            except threading.BrokenBarrierError:
                pass

    parallel.parallel_for(0, 4, 1, record)
    assert len(names) == 2


def test_nested_parallel_for_runs_inline(threads):
    threads(3)
    inner_calls = []

    def outer(start, stop):
        parallel.parallel_for(0, 100, 1, lambda a, b: inner_calls.append((a, b)))

    parallel.parallel_for(0, 6, 1, outer)
    # Every inner call ran as one piece in its own thread: 6 / pieces outer ranges, one inner each.
    assert all(call == (0, 100) for call in inner_calls)


def test_parallel_for_raises_what_a_piece_raises_after_all_pieces_finish(threads):
    threads(2)
    finished = []

    def work(start, stop):
        if start == 0:
            raise KeyError("piece 0 failed")
        finished.append(start)

    with pytest.raises(KeyError, match="piece 0 failed"):
        parallel.parallel_for(0, 8, 1, work)
    assert sorted(finished) == [2, 4, 6]  # the other pieces still ran to the end


@pytest.mark.parametrize("num_threads", [1, 2])
def test_parallel_for_checks_its_arguments_whatever_the_thread_count(threads, num_threads):
    threads(num_threads)
    for bad, error in ((0, ValueError), (-3, ValueError), (1.5, TypeError), (None, TypeError), (True, TypeError)):
        with pytest.raises(error, match=f"grain_size must be an int >= 1, got {bad!r}"):
            parallel.parallel_for(0, 10, bad, lambda start, stop: None)
    with pytest.raises(TypeError, match="function must be callable as function\\(start, stop\\), got None"):
        parallel.parallel_for(0, 10, 1, None)
    with pytest.raises(TypeError, match="end must be an int, got 10.5"):
        parallel.parallel_for(0, 10.5, 1, lambda start, stop: None)
    with pytest.raises(TypeError, match="begin must be an int, got 0.0"):
        parallel.parallel_for(0.0, 10, 1, lambda start, stop: None)
    seen = []
    parallel.parallel_for(np.int64(0), np.int32(4), np.int64(4), lambda start, stop: seen.append((start, stop)))
    assert seen == [(0, 4)] and all(type(value) is int for value in seen[0])


def _finishes_within(seconds, target):
    """Run target() in a daemon thread; True when it returned in time (a hang fails, not blocks)."""
    done = threading.Event()
    errors = []

    def run():
        try:
            target()
        except BaseException as error:  # reported by the caller
            errors.append(error)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    finished = done.wait(seconds)
    if errors:
        raise errors[0]
    return finished


def test_a_callback_that_waits_for_another_parallel_for_does_not_deadlock(threads):
    threads(2)  # one worker: the outer call keeps it busy while the inner call queues a job for it

    def outer(start, stop):
        helper = threading.Thread(target=lambda: parallel.parallel_for(0, 100, 1, lambda a, b: None))
        helper.start()
        helper.join()

    assert _finishes_within(20, lambda: parallel.parallel_for(0, 4, 1, outer))


def test_set_num_threads_inside_a_callback_and_from_other_threads(threads):
    threads(2)
    assert _finishes_within(20, lambda: parallel.parallel_for(0, 100, 1, lambda a, b: parallel.set_num_threads(3)))
    errors, stop = [], threading.Event()

    def work():
        out = np.zeros(1000)
        while not stop.is_set():
            try:
                parallel.parallel_for(0, 1000, 1, lambda a, b: out.__setitem__(slice(a, b), 1))
            except Exception as error:  # collected: any error fails the test
                errors.append(repr(error))

    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    for count in range(300):
        parallel.set_num_threads(2 + count % 2)
    stop.set()
    for worker in workers:
        worker.join()
    assert errors == []


def test_only_as_many_jobs_as_pieces(threads, monkeypatch):
    threads(64)
    submitted = []
    original = parallel._submit

    def counting(futures, workers, jobs, function, *args):
        submitted.append(jobs)
        return original(futures, workers, jobs, function, *args)

    monkeypatch.setattr(parallel, "_submit", counting)
    parallel.parallel_for(0, 10, 5, lambda start, stop: None)  # two pieces: one job besides the caller
    assert submitted == [1]


def test_parallel_for_of_an_empty_range_calls_nothing():
    parallel.parallel_for(5, 5, 1, lambda start, stop: pytest.fail("called"))
    parallel.parallel_for(5, 2, 1, lambda start, stop: pytest.fail("called"))


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError), (parallel.MAX_THREADS + 1, ValueError),
                                        (1.5, TypeError), ("2", TypeError), (True, TypeError), (None, TypeError)])
def test_set_num_threads_rejects_bad_values(bad, error):
    with pytest.raises(error, match=r"num_threads must be an int in \[1, 1024\]"):
        parallel.set_num_threads(bad)


def test_set_num_threads_takes_numpy_integers(threads):
    threads(np.int64(3))
    assert parallel.get_num_threads() == 3 and type(parallel.get_num_threads()) is int


def test_num_threads_default_is_theavailable_cpus():
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert parallel.available_cpus() == expected


def test_set_and_get_num_threads(threads):
    threads(3)
    assert parallel.get_num_threads() == 3
    threads(1)
    assert parallel.get_num_threads() == 1


# ------------------------------------------------------------------------------------------------
# The fused functions give the same bits in any number of threads
# ------------------------------------------------------------------------------------------------


def _forward_backward(function, inputs, upstream):
    """Values and input gradients of sum(function(*inputs) * upstream), as arrays."""
    tensors = [autograd.tensor(array, requires_grad=True) for array in inputs]
    out = function(*tensors)
    (out * autograd.tensor(upstream)).sum().backward()
    return [out.data] + [tensor.grad for tensor in tensors]


def _same_bits_in_1_2_and_3_threads(threads, function, inputs, upstream):
    results = []
    for count in (1, 2, 3):
        threads(count)
        results.append(_forward_backward(function, inputs, upstream))
    for other in results[1:]:
        for expected, received in zip(results[0], other):
            assert received.dtype == expected.dtype
            np.testing.assert_array_equal(received, expected)


RNG = np.random.default_rng(0)


def test_gelu_is_bit_identical_in_any_number_of_threads(threads, small_grain):
    x = RNG.standard_normal((7, 33), dtype=np.float32)
    _same_bits_in_1_2_and_3_threads(threads, F.gelu, [x], RNG.standard_normal(x.shape, dtype=np.float32))


def test_layer_norm_is_bit_identical_in_any_number_of_threads(threads, small_grain):
    x = RNG.standard_normal((5, 9, 16), dtype=np.float32)
    weight, bias = RNG.standard_normal(16, dtype=np.float32), RNG.standard_normal(16, dtype=np.float32)
    _same_bits_in_1_2_and_3_threads(threads, F.layer_norm, [x, weight, bias], RNG.standard_normal(x.shape, dtype=np.float32))


@pytest.mark.parametrize("dropout_p", [0.0, 0.3])
def test_attention_is_bit_identical_in_any_number_of_threads(threads, small_grain, dropout_p):
    q, k, v = (RNG.standard_normal((2, 3, 6, 4), dtype=np.float32) for _ in range(3))

    def attention(q, k, v):  # a fresh generator per call: the same dropout masks every time
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, rng=np.random.default_rng(5))

    _same_bits_in_1_2_and_3_threads(threads, attention, [q, k, v], RNG.standard_normal(q.shape, dtype=np.float32))


def test_cross_entropy_is_bit_identical_in_any_number_of_threads(threads, small_grain):
    logits = RNG.standard_normal((40, 11), dtype=np.float32) * 3
    targets = RNG.integers(0, 11, 40)
    targets[::7] = -100  # some ignored rows
    results = []
    for count in (1, 2, 3):
        threads(count)
        for reduction in ("mean", "none"):
            tensor = autograd.tensor(logits, requires_grad=True)
            loss = F.cross_entropy(tensor, targets, reduction=reduction)
            loss.sum().backward() if reduction == "none" else loss.backward()
            results.append((count, reduction, loss.data, tensor.grad))
    for count, reduction, loss, grad in results[2:]:
        expected = next(r for r in results if r[0] == 1 and r[1] == reduction)
        np.testing.assert_array_equal(loss, expected[2])
        np.testing.assert_array_equal(grad, expected[3])


def test_threaded_paths_pass_gradcheck(threads, small_grain):
    threads(3)
    rng = np.random.default_rng(1)
    x = leaf(rng.standard_normal((6, 10)))
    assert gradcheck(F.gelu, [x])
    assert gradcheck(lambda x, w, b: F.layer_norm(x, w, b), [x, leaf(rng.standard_normal(10)), leaf(rng.standard_normal(10))])
    q, k, v = (leaf(rng.standard_normal((2, 2, 5, 3))) for _ in range(3))
    assert gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v), [q, k, v])
    targets = rng.integers(0, 10, 6)
    assert gradcheck(lambda logits: F.cross_entropy(logits, targets), [x])


def test_the_threaded_paths_are_taken(threads, small_grain, monkeypatch):
    """Guard for the tests above: with the small grain, each function really splits its work."""
    threads(2)
    calls = []
    original = parallel.parallel_for

    def counting(begin, end, grain_size, function):
        calls.append((end - begin) // grain_size)
        return original(begin, end, grain_size, function)

    for module in THREADED_KERNELS:
        if hasattr(module, "parallel_for"):
            monkeypatch.setattr(module, "parallel_for", counting)
    monkeypatch.setattr(parallel, "parallel_for", counting)  # attention's, through parallel_for_one_blas_thread
    _forward_backward(F.gelu, [RNG.standard_normal((7, 33), dtype=np.float32)], np.ones((7, 33), np.float32))
    _forward_backward(lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
                      [RNG.standard_normal((2, 3, 6, 4), dtype=np.float32) for _ in range(3)], np.ones((2, 3, 6, 4), np.float32))
    assert len(calls) == 4 and all(pieces >= 2 for pieces in calls)


def test_parallel_for_one_blas_thread_runs_blas_in_one_thread_and_restores_it(threads):
    from threadpoolctl import threadpool_limits
    handles = parallel._openblas_thread_functions()
    if not handles:
        pytest.skip("NumPy's BLAS is not a pthreads OpenBLAS")
    get_threads = handles[0][0]
    with threadpool_limits(limits=2, user_api="blas"):
        threads(2)
        seen, lock = [], threading.Lock()

        def record(start, stop):
            with lock:
                seen.append((start, stop, get_threads()))

        parallel.parallel_for_one_blas_thread(0, 8, 1, record)
        assert sorted(start for start, _, _ in seen) == [start for start, _, _ in sorted(seen)] and len(seen) >= 2
        assert {count for _, _, count in seen} == {1}
        assert get_threads() == 2  # given back
        threads(1)  # one engine thread: inline, BLAS keeps its threads
        seen.clear()
        parallel.parallel_for_one_blas_thread(0, 8, 1, record)
        assert seen == [(0, 8, 2)]
        threads(2)  # two calls at once in two Python threads: the one that ends first restores nothing
        inner = []

        def outer(start, stop):
            helper = threading.Thread(target=parallel.parallel_for_one_blas_thread,
                                      args=(0, 1, 1, lambda a, b: inner.append(get_threads())))
            helper.start()
            helper.join()
            inner.append(get_threads())

        parallel.parallel_for_one_blas_thread(0, 1, 1, outer)
        assert inner == [1, 1] and get_threads() == 2


# ------------------------------------------------------------------------------------------------
# set_openblas_thread_timeout
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, error", [(3, ValueError), (31, ValueError), (16.0, TypeError), ("16", TypeError), (True, TypeError)])
def test_openblas_thread_timeout_rejects_bad_exponents(bad, error):
    with pytest.raises(error, match=r"exponent must be an int in \[4, 30\]"):
        parallel.set_openblas_thread_timeout(bad)


def test_openblas_thread_timeout_applies_and_leaves_the_environment_alone(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    openblas = [lib for lib in threadpoolctl.threadpool_info()
                if lib.get("internal_api") == "openblas" and lib.get("threading_layer") == "pthreads"]
    applied = parallel.set_openblas_thread_timeout(16)
    assert applied is bool(openblas)
    assert "OPENBLAS_THREAD_TIMEOUT" not in os.environ
    if openblas:
        import ctypes

        assert ctypes.CDLL(openblas[0]["filepath"]).openblas_thread_timeout() == 16
    a = np.arange(300 * 300, dtype=np.float64).reshape(300, 300) % 7
    np.testing.assert_allclose(a @ a, np.einsum("ij,jk->ik", a, a))  # products still right afterwards


def test_parallel_for_runs_inline_when_no_thread_can_start(threads, monkeypatch):
    """At interpreter exit (or at the system's thread limit) submitting fails: the caller does the work."""
    threads(2)

    def refuse(submitted, *args):
        raise RuntimeError("cannot schedule new futures after shutdown")

    monkeypatch.setattr(parallel, "_submit", refuse)
    out = np.zeros(8)
    parallel.parallel_for(0, 8, 1, lambda start, stop: out.__setitem__(slice(start, stop), 1))
    assert out.sum() == 8


def test_parallel_for_waits_for_started_pieces_before_raising(threads):
    threads(2)
    out, started = np.zeros(4), threading.Event()

    def work(start, stop):
        if threading.current_thread() is threading.main_thread():
            started.wait(10)  # the worker has its piece
            raise KeyboardInterrupt
        started.set()
        threading.Event().wait(0.3)
        out[start:stop] = 1

    with pytest.raises(KeyboardInterrupt):
        parallel.parallel_for(0, 4, 1, work)
    assert out.sum() >= 1  # the worker's piece was written before parallel_for left


def test_few_row_linear_shares_the_weight_rows_among_threads(threads, monkeypatch):
    """Cached generation's products (autograd/fast/linear.py): split by weight rows, same values."""
    from autograd.fast import linear as fast_linear
    rng = np.random.default_rng(3)
    x, weight, bias = (rng.standard_normal(shape, dtype=np.float32) for shape in ((2, 1, 24), (37, 24), (37,)))
    threads(1)
    expected = F.linear(Tensor(x), Tensor(weight), Tensor(bias)).numpy()
    threads(2)
    monkeypatch.setattr(fast_linear, "_WEIGHT_GRAIN", 24 * 5)  # pieces of 5 weight rows
    pieces, original = [], parallel.parallel_for

    def counting(begin, end, grain_size, function):
        pieces.append((end - begin) // grain_size)
        return original(begin, end, grain_size, function)

    monkeypatch.setattr(parallel, "parallel_for", counting)
    got = F.linear(Tensor(x), Tensor(weight), Tensor(bias)).numpy()
    assert pieces == [7]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got, x @ weight.T + bias, rtol=1e-5, atol=1e-5)

"""What a learner steps into from `loss.backward()` with the reference kernels (issue 21, item 1).

Measured over one tiny GPT training step's `loss.backward()`, with `sys.setprofile` and
`threading.setprofile` (scripts/learner_path.py, which prints the same figures for both modes on
the `tiny` preset):

(a) every `backward` method of a `Function` runs within 3 Python frames of `Tensor.backward`
    (Tensor.backward -> the walk -> X.backward): `s` in pdb reaches the gradient's NumPy lines;
(b) no thread is started and no work goes to a thread pool during backward, and with
    `set_num_threads(1)` no engine thread is alive;
(c) no closure (a nested function, a lambda, any function with free variables) runs.

Each assertion message carries the measured figures of its mode.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time

import pytest

from autograd import parallel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("learner_path", os.path.join(ROOT, "scripts", "learner_path.py"))
learner_path = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(learner_path)

TINY = {"vocab_size": 40, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 1,
        "drop_rate": 0.1, "qkv_bias": True}
FUSED_OPS = {"Embedding", "Dropout", "LayerNorm", "Linear", "ScaledDotProductAttention", "Gelu", "CrossEntropy"}


@pytest.fixture(scope="module")
def one_thread():
    """set_num_threads(1) for the module (the previous count comes back after)."""
    before = parallel.get_num_threads()
    parallel.set_num_threads(1)
    yield
    parallel.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(one_thread):
    """The measured backward of a tiny GPT step with the reference kernels, and its report."""
    profile = learner_path.measure("reference", TINY, batch=2, tokens=8)
    return profile, learner_path.report("reference", profile, learner_path.engine_threads_alive())


def test_every_backward_rule_runs_within_3_frames_of_tensor_backward(reference):
    profile, figures = reference
    assert FUSED_OPS <= set(profile.backward_depths), f"fused ops not seen in backward:\n{figures}"
    too_deep = {name: depth for name, depth in profile.backward_depths.items() if depth > 3}
    assert not too_deep, f"backward methods deeper than 3 frames: {too_deep}\n{figures}"


def test_no_thread_is_started_and_no_pool_runs_during_backward(reference):
    profile, figures = reference
    assert profile.threads_started == [] and not profile.threads_that_ran, figures
    assert profile.pool_jobs == 0 and profile.parallel_for_calls == 0, figures


def test_no_engine_thread_is_alive_with_one_thread(reference):
    _, figures = reference
    deadline = time.monotonic() + 10  # a pool retired by set_num_threads(1) ends its threads soon after
    while learner_path.engine_threads_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = learner_path.engine_threads_alive()
    assert alive == [], f"engine threads alive after set_num_threads(1): {alive}; all threads: {[t.name for t in threading.enumerate()]}\n{figures}"


def test_no_closure_runs_during_backward(reference):
    profile, figures = reference
    assert not profile.closures, f"closures run during backward: {dict(profile.closures)}\n{figures}"


def test_no_comprehension_with_free_variables_runs_during_backward(reference):
    profile, figures = reference
    assert not profile.comprehension_closures, f"{dict(profile.comprehension_closures)}\n{figures}"


def test_the_probes_see_what_the_fast_kernels_do():
    """The same measurement on the fast kernels finds their closures and parallel_for calls (so the
    reference assertions above can fail), while the walk itself is the same 3 frames."""
    profile = learner_path.measure("fast", TINY, batch=2, tokens=8)
    figures = learner_path.report("fast", profile, learner_path.engine_threads_alive())
    assert max(profile.backward_depths.values()) <= 3, figures
    assert profile.closures and profile.parallel_for_calls > 0, figures

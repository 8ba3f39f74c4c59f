"""Measure what a learner steps into during `loss.backward()`, with the reference and the fast kernels.

    python scripts/learner_path.py                      # the `tiny` preset, batch 2 x 128, 2 threads
    python scripts/learner_path.py --preset tiny --batch 2 --tokens 64 --threads 1

For one GPT training step (forward, cross-entropy, then the measured `loss.backward()`), run
under `sys.setprofile` and `threading.setprofile`, it prints per mode:

- frames: how many Python frames from `Tensor.backward` (1) to each op's `backward` method (the
  walk is 2, so 3 is the least possible) and to the deepest frame of the engine (`autograd/`),
  the line that computes a gradient in a helper or a closure;
- threads: threads started during backward, jobs handed to the engine's pool (`parallel_for`
  work that runs in a worker thread, where pdb never stops), and engine threads alive after it;
- closures: calls of functions with free variables or defined inside another function (nested
  functions, lambdas; comprehensions are not counted), with the three most called.

A warm-up step runs first, unmeasured (the first step of a process pays for allocations and
BLAS start-up, which are not the walk). tests/test_learner_path.py asserts the
reference figures (every backward within 3 frames, no thread, no closure) on a tiny model.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import threading

import numpy as np

import autograd
from autograd import functional as F
from autograd import parallel
from autograd.function import Function
from autograd.tensor import Tensor

_COMPREHENSIONS = ("<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>")
_ENGINE = os.path.dirname(os.path.abspath(autograd.__file__))


def _is_closure(code) -> bool:
    """A nested def or lambda, or any other function with free variables, but not a comprehension."""
    if code.co_name in _COMPREHENSIONS:
        return False
    return bool(code.co_freevars) or "<locals>" in code.co_qualname or code.co_name == "<lambda>"


def _is_comprehension_with_free_variables(code) -> bool:
    """A list/set/dict comprehension or generator expression that reads its function's variables."""
    return code.co_name in _COMPREHENSIONS and bool(code.co_freevars)


def _depth(frame, root_code) -> int | None:
    """Frames from the one running `root_code` (1) down to `frame`; None if it is not below it."""
    depth = 1
    while frame is not None and frame.f_code is not root_code:
        frame, depth = frame.f_back, depth + 1
    return depth if frame is not None else None


class BackwardProfile:
    """Profile one call of `loss.backward()`; the figures are attributes after `run`.

    Attributes:
        backward_depths: op class name -> deepest frame count of its `backward` method.
        deepest_engine_frame: (frames, "file:function") of the deepest function of autograd/ (not
            counting comprehensions, which add a frame of their own).
        closures: Counter of "file:qualname" -> calls of closures (see `_is_closure`).
        comprehension_closures: the same for comprehensions with free variables (a frame pdb's
            `s` steps into, and a closure in the strict sense: co_freevars).
        threads_started: names of threads started during backward.
        threads_that_ran: names of new threads that ran Python code during backward.
        pool_jobs: jobs submitted to a thread pool (`concurrent.futures` submit) during backward.
        parallel_for_calls: calls of autograd.parallel.parallel_for during backward.
    """

    def __init__(self) -> None:
        self.backward_depths: dict[str, int] = {}
        self.deepest_engine_frame = (0, "")
        self.closures: collections.Counter = collections.Counter()
        self.comprehension_closures: collections.Counter = collections.Counter()
        self.threads_started: list[str] = []
        self.threads_that_ran: set[str] = set()
        self.pool_jobs = 0
        self.parallel_for_calls = 0
        self._root = Tensor.backward.__code__

    def _profile(self, frame, event, arg) -> None:
        if event != "call":
            return
        code = frame.f_code
        where = f"{os.path.relpath(code.co_filename, os.path.dirname(_ENGINE))}:{code.co_qualname}"
        if _is_closure(code):
            self.closures[where] += 1
        elif _is_comprehension_with_free_variables(code):
            self.comprehension_closures[where] += 1
        if code is parallel.parallel_for.__code__:
            self.parallel_for_calls += 1
        if code.co_name == "submit" and "concurrent" in code.co_filename:
            self.pool_jobs += 1
        in_engine = code.co_filename.startswith(_ENGINE)
        if not in_engine and code.co_name != "backward":
            return
        depth = _depth(frame, self._root)
        if depth is None:
            return
        if in_engine and code.co_name not in _COMPREHENSIONS and depth > self.deepest_engine_frame[0]:
            self.deepest_engine_frame = (depth, where)
        owner = frame.f_locals.get("self") if code.co_name == "backward" else None
        if isinstance(owner, Function):
            name = type(owner).__name__
            self.backward_depths[name] = max(depth, self.backward_depths.get(name, 0))

    def _thread_profile(self, frame, event, arg) -> None:
        self.threads_that_ran.add(threading.current_thread().name)

    def run(self, loss: Tensor) -> None:
        """loss.backward() under the profilers (this thread's and every thread started meanwhile)."""
        original_start = threading.Thread.start
        started = self.threads_started

        def counting_start(thread, *args, **kwargs):  # noqa: ANN001 - the measurement's own closure
            started.append(thread.name)
            return original_start(thread, *args, **kwargs)

        threading.Thread.start = counting_start
        threading.setprofile(self._thread_profile)
        sys.setprofile(self._profile)
        try:
            loss.backward()
        finally:
            sys.setprofile(None)
            threading.setprofile(None)
            threading.Thread.start = original_start
        self.closures.pop(f"{os.path.relpath(__file__, os.path.dirname(_ENGINE))}:BackwardProfile.run.<locals>.counting_start", None)


def engine_threads_alive() -> list[str]:
    """Names of the engine's pool threads (`autograd_N`) still alive."""
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("autograd"))


def training_step_loss(cfg, batch: int, tokens: int, seed: int = 0) -> tuple:
    """(model, loss) of one training step's forward pass of a seeded GPTModel (train mode)."""
    from minigpt.model import GPTModel  # minigpt is built on autograd, not the other way round

    autograd.manual_seed(seed)
    model = GPTModel(cfg)
    model.train()
    vocab = model.tok_emb.weight.shape[0]
    ids = np.random.default_rng(seed).integers(0, vocab, (batch, tokens + 1))
    logits = model(ids[:, :-1])  # (B, T, V)
    return model, F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())


def measure(mode: str, cfg, batch: int, tokens: int) -> BackwardProfile:
    """Warm up with one step, then profile the backward of a second one, with `mode` kernels."""
    with autograd.kernels(mode):
        training_step_loss(cfg, batch, tokens)[1].backward()  # warm-up: process settings, pools
        profile = BackwardProfile()
        profile.run(training_step_loss(cfg, batch, tokens, seed=1)[1])
    return profile


def report(mode: str, profile: BackwardProfile, alive: list[str]) -> str:
    """The figures of one mode, a few lines of text."""
    deepest = max(profile.backward_depths.values(), default=0)
    top = ", ".join(f"{name} x{count}" for name, count in profile.closures.most_common(3)) or "-"
    return "\n".join([
        f"{mode}:",
        f"  frames  Tensor.backward -> op.backward: at most {deepest} (over {len(profile.backward_depths)} op classes); "
        f"deepest engine frame {profile.deepest_engine_frame[0]} ({profile.deepest_engine_frame[1]})",
        f"  threads started during backward {len(profile.threads_started)}, new threads that ran code "
        f"{len(profile.threads_that_ran)}, pool jobs {profile.pool_jobs}, parallel_for calls {profile.parallel_for_calls}, "
        f"engine threads alive after {len(alive)}",
        f"  closures run {sum(profile.closures.values())} calls of {len(profile.closures)} functions: {top}",
        f"  comprehensions with free variables {sum(profile.comprehension_closures.values())} calls: "
        + (", ".join(f"{name} x{count}" for name, count in profile.comprehension_closures.most_common(3)) or "-"),
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", help="GPT preset (minigpt.model.PRESETS); default tiny")
    parser.add_argument("--batch", type=int, default=2, help="sequences per batch (default 2)")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per sequence (default 128, the tiny context)")
    parser.add_argument("--threads", type=int, default=2, help="engine threads, autograd.set_num_threads (default 2)")
    args = parser.parse_args(argv)
    from minigpt.model import get_config

    cfg = get_config(args.preset)
    parallel.set_num_threads(args.threads)
    print(f"preset {args.preset}, batch {args.batch} x {args.tokens} tokens, {args.threads} engine thread(s)")
    for mode in ("reference", "fast"):
        profile = measure(mode, cfg, args.batch, args.tokens)
        print(report(mode, profile, engine_threads_alive()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

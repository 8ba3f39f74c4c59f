"""Ctrl-C and SIGTERM during training: finish (or roll back) the step, save, then stop.

Python's default turns Ctrl-C (SIGINT) into a KeyboardInterrupt raised wherever the program
happens to be, for instance half way through AdamW's in-place update of the weights, after
which no consistent state exists to save; and SIGTERM (what `kill` and job schedulers send)
ends the process without any save. `StopRequests` replaces both while a `Trainer` runs:

- 1st signal: training stops at the next safe point. Inside a step, that is the next
  micro-batch boundary (the step is rolled back: its gradients, batches and dropout draws are
  undone) or the end of the parameter update (the update is never cut in half). Outside a step
  (an evaluation, a sample), the KeyboardInterrupt is raised at once. The trainer then saves.
- 2nd signal: prints "saving checkpoint... press Ctrl-C again to abandon it" and goes on.
- 3rd signal, at least `ABANDON_DELAY` seconds after that message (so that a burst of presses
  is not taken as a decision): `SaveAbandoned` is raised. A checkpoint being written is dropped
  by the atomic save, so the previous checkpoint stays the valid one.

`StopBetweenSteps` gives a plain training loop (the fine-tuning commands' book loops) the same
first-signal rule around `optimizer.step()`, so that the weights of the last completed step can be
saved.

Handlers can only be installed from the main thread; elsewhere (a trainer in a worker thread)
the ordinary KeyboardInterrupt behaviour stays, which `Trainer.fit` also handles.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

# Seconds after the "press Ctrl-C again to abandon it" message during which presses are ignored.
ABANDON_DELAY = 0.5

SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


class SaveAbandoned(KeyboardInterrupt):
    """A third Ctrl-C asked to stop without finishing the save."""


def _write(message: str) -> None:
    """Print from a signal handler: straight to file descriptor 2, as the handler may run while
    the main program is inside a `print` to the same buffered stream (which would raise
    "reentrant call")."""
    try:
        os.write(sys.stderr.fileno(), ("\n" + message + "\n").encode())
    except (OSError, ValueError, AttributeError):  # no usable stderr: the message is a courtesy
        pass


class StopRequests:
    """The signals received during a run and what they ask for (see the module docstring).

    Attributes:
        signal: the first signal received (signal.SIGINT or SIGTERM), or None.
        presses: signals received so far.
        deferring: > 0 while code that must not be cut (a step's update, a save) runs; the
            first signal then only sets `signal`, which `check` turns into a KeyboardInterrupt at
            the next safe point.
        quiet: print none of the messages (a rank other than 0 under mpirun, where rank 0 alone
            reports and saves; otherwise every rank printed the first signal's line).
    """

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.signal = None
        self.presses = 0
        self.deferring = 0
        self._warned_at = None
        self._previous = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def signal_name(self) -> str:
        return SIGNAL_NAMES.get(self.signal, "Ctrl-C")

    def install(self) -> bool:
        """Handle SIGINT and SIGTERM until `restore`; False (nothing installed) outside the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for number in (signal.SIGINT, signal.SIGTERM):
            self._previous[number] = signal.signal(number, self._handle)
        return True

    def restore(self) -> None:
        """Put back the handlers that were in place before `install`."""
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    @contextlib.contextmanager
    def defer(self):
        """A region that a first signal must not cut (the parameter update, a save)."""
        self.deferring += 1
        try:
            yield
        finally:
            self.deferring -= 1

    def check(self) -> None:
        """At a safe point: raise KeyboardInterrupt if a stop was asked for."""
        if self.signal is not None:
            raise KeyboardInterrupt

    def _handle(self, number, frame) -> None:
        self.presses += 1
        if self.signal is None:
            self.signal = number
            if not self.deferring:
                raise KeyboardInterrupt
            if not self.quiet:
                _write(f"{SIGNAL_NAMES.get(number, 'signal')}: stopping at the end of this step to save a checkpoint")
            return
        if self._warned_at is None:
            self._warned_at = time.monotonic()
            if not self.quiet:
                _write("saving checkpoint... press Ctrl-C again to abandon it")
            return
        if time.monotonic() - self._warned_at >= ABANDON_DELAY:
            raise SaveAbandoned


class StopBetweenSteps:
    """Ctrl-C and SIGTERM for a plain training loop that is not a `Trainer` (the book's
    `train_classifier_simple` of chapter 6, `train_model_dpo_simple` of the DPO notebook).

    Such a loop has no safe points of its own, but the weights change only in `optimizer.step()`.
    So within the block a signal raises KeyboardInterrupt at once, except inside
    `optimizer.step()`, which a signal lets finish first (the step's update is never cut in half).
    At the KeyboardInterrupt the weights are therefore exactly those after `completed_steps`
    optimizer steps, ready to be saved.

        stops = StopBetweenSteps(optimizer)
        try:
            with stops:
                train_classifier_simple(model, train_loader, val_loader, optimizer, ...)
        except KeyboardInterrupt:
            ...  # save model.state_dict(): the weights after stops.completed_steps steps

    Attributes:
        requests: the `StopRequests` in force within the block (its `signal` says which one came).
        completed_steps: the optimizer steps completed within the block.
    """

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.requests = StopRequests()
        self.completed_steps = 0

    def __enter__(self) -> StopBetweenSteps:
        update = self.optimizer.step  # the bound method the loop would call

        def step(*args, **kwargs):
            with self.requests.defer():  # a signal here only asks to stop: the update finishes
                result = update(*args, **kwargs)
                self.completed_steps += 1
            self.requests.check()  # ... and then the loop stops, after a complete step
            return result

        self.optimizer.step = step  # on this optimizer only, for the block's duration
        self.requests.install()
        return self

    def __exit__(self, *exc_info) -> None:
        self.requests.restore()
        del self.optimizer.step  # the class's step again


# The signal that `interrupt_on_sigterm` turned into a KeyboardInterrupt (for the exit status).
received = {"signal": None}


def _raise_keyboard_interrupt(number, frame):
    received["signal"] = number
    raise KeyboardInterrupt


@contextlib.contextmanager
def interrupt_on_sigterm():
    """Within the block, SIGTERM raises KeyboardInterrupt as Ctrl-C does (Python's default ends
    the process without cleanup), so that every command stops the same way on both. Main thread
    only; the previous handler is put back at the end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received["signal"] = None
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_status(number=None) -> int:
    """128 + the signal's number, as a shell reports a process stopped by it (130 for Ctrl-C)."""
    return 128 + int(number or received["signal"] or signal.SIGINT)
